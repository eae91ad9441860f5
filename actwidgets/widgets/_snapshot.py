"""What a widget leaves behind in a saved notebook: a snapshot, a PNG and text.

A live widget needs its kernel. So every widget's display bundle also carries
`application/vnd.actwidgets.snapshot+json` (its synced traits at the last finished
run, arrays packed compactly), which the JupyterLab extension and `to_html()` draw
with the live widget's own front-end code, plus a matplotlib PNG for GitHub and
nbviewer and a one-line text/plain. The kernel re-sends the bundle under the same
display id after each finished run (`SnapshotPublisher`), so a notebook saved at any
time holds the figure as it is on screen.

A notebook run headless (nbconvert --execute, papermill, nbclient) records only the
messages of the cell being run, and nothing after the last one. So a bundle due to be
re-sent is sent at once when a cell ends, one re-sent while no cell ran is sent again
when the next cell starts, and `settle()` waits for every displayed widget.
"""
from __future__ import annotations

import base64
import html
import io
import json
import logging
import threading
import uuid
import warnings
import weakref
from datetime import datetime, timezone
from pathlib import Path

import anywidget
import numpy as np

from ._figure import STALE_LABEL
from ._runner import later

log = logging.getLogger("actwidgets")

SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
FORMAT, VERSION = "actwidgets.snapshot", 1
PNG_DPI = 100
# float16 keeps 3 significant digits, plenty for a colour and a tooltip; beyond
# this magnitude it would overflow to inf, so such arrays stay float32.
_F16_LIMIT = 6.0e4
_BASE_TRAITS = frozenset(anywidget.AnyWidget.class_trait_names(sync=True))
_IIFE = Path(__file__).resolve().parent.parent / "static" / "snapshot.iife.js"


# --- compact arrays -----------------------------------------------------------
def pack(array: np.ndarray) -> dict:
    """An array as {"dtype", "data" (base64)} in the smallest dtype that shows the same figure."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        finite = np.abs(array[np.isfinite(array)])
        dtype = "<f2" if not finite.size or finite.max() < _F16_LIMIT else "<f4"
    else:
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        dtype = "|u1" if 0 <= low and high < 256 else "<i2" if -(2**15) <= low and high < 2**15 else "<i4"
    raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return {"dtype": dtype, "data": base64.b64encode(raw).decode("ascii")}


def unpack(packed: dict) -> np.ndarray:
    """The flat array `pack` wrote (float32 or int32)."""
    array = np.frombuffer(base64.b64decode(packed["data"]), dtype=packed["dtype"])
    return array.astype(np.float32 if array.dtype.kind == "f" else np.int32)


# --- the snapshot ---------------------------------------------------------------
def _traits(widget) -> tuple[dict, dict]:
    """The widget's own synced traits: plain values, and `Bytes` decoded by their `dtype` tag."""
    values, arrays = {}, {}
    for name in sorted(set(widget.trait_names(sync=True)) - _BASE_TRAITS):
        if name.startswith("_"):  # _esm, _css, _anywidget_id: the code, not the figure
            continue
        value = getattr(widget, name)
        if isinstance(value, (bytes, bytearray, memoryview)):
            arrays[name] = np.frombuffer(bytes(value), dtype=widget.trait_metadata(name, "dtype") or "<f4")
        else:
            values[name] = value
    return values, arrays


def live_state(widget) -> dict:
    """Everything a figure is drawn from, at full precision."""
    values, arrays = _traits(widget)
    return {**values, **arrays}


def snapshot(widget, traits: tuple[dict, dict] | None = None) -> dict:
    """The widget's traits (now, or as `_traits` read them), arrays packed: what a saved notebook keeps."""
    state, arrays = traits or _traits(widget)
    buffers = {name: pack(array) for name, array in arrays.items()}
    return {
        "format": FORMAT,
        "version": VERSION,
        "widget": widget.snapshot_kind,
        "title": widget.describe(),
        "model": getattr(widget.model, "name", ""),
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "state": state,
        "buffers": buffers,
    }


def snapshot_state(snap: dict) -> dict:
    """A snapshot's traits with every array unpacked (what the figures are drawn from)."""
    return {**snap["state"], **{name: unpack(p) for name, p in snap["buffers"].items()}}


def png_bytes(figure) -> bytes:
    """The figure as PNG; the figure is cleared afterwards. A Figure is a web of reference
    cycles that only a full collection frees, and those are rare in a busy kernel: without
    this, a cell re-run 100 times kept ~12 MB per run of dead figures."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # an emoji or a Hebrew token: the PNG shows a box, the cell no warning
        warnings.filterwarnings("ignore", message="Glyph .* missing from font", category=UserWarning)
        figure.savefig(buffer, format="png", dpi=PNG_DPI)
    figure.clear()
    return buffer.getvalue()


def static_bundle(widget) -> dict:
    """The mime types that outlive the kernel: snapshot, PNG and text."""
    # One read of the traits: a run finishing meanwhile cannot make the PNG and snapshot disagree.
    values, arrays = _traits(widget)
    values = widget.as_saved(values)
    snap = snapshot(widget, (values, arrays))
    png = png_bytes(widget.draw({**values, **arrays}))
    return {
        SNAPSHOT_MIME: snap,
        "image/png": base64.b64encode(png).decode("ascii"),
        "text/plain": _text(snap["title"], values),
    }


def _text(title: str, state: dict) -> str:
    """The one-line text: the title, then what went wrong and whose figure is shown."""
    notes = [f"error: {state['error']}"] if state.get("status") == "error" and state.get("error") else []
    notes += ["cancelled"] if state.get("status") == "cancelled" else []
    notes += [state["error"]] if state.get("status") == "cancelled" and state.get("error") else []
    notes += [STALE_LABEL] if state.get("stale") else []
    return title + "".join(f" ({note})" for note in notes)


# --- a self-contained HTML page -----------------------------------------------
_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>body {{ margin: 16px; font-family: system-ui, sans-serif; }}</style>
</head>
<body>
{figure}
</body>
</html>
"""

# One figure: where it draws, the PNG for readers without scripts, the snapshot, and (once
# per page) the drawing code. The documentation site embeds several per page (tools/docs_hooks.py).
_FIGURE = """<div id="{id}"></div>
<noscript><img alt="{title}" src="data:image/png;base64,{png}"></noscript>
<script type="application/json" id="{id}-snapshot">{snapshot}</script>
{code}<script>
actwidgetsSnapshot.renderSnapshot(document.getElementById("{id}"),
  JSON.parse(document.getElementById("{id}-snapshot").textContent));
</script>"""


def _inline_script(text: str) -> str:
    """Our own drawing code inside <script>: a literal `</` would end the element early.
    (It holds no `<!--`, which would change how the parser reads the rest; a test checks.)"""
    return text.replace("</", "<\\/")


_JSON_UNSAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                              "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _inline_json(value) -> str:
    """JSON safe inside <script> for ANY text a model or a user wrote: `<`, `>` and `&` as
    \\u escapes, so no `</script>`, `<!--` or `<script` can appear; U+2028/9 too."""
    return json.dumps(value, separators=(",", ":")).translate(_JSON_UNSAFE)


def html_page(widget) -> str:
    """One offline HTML file: the snapshot, the drawing code, and the PNG for no-script readers."""
    if not _IIFE.exists():
        raise FileNotFoundError(f"{_IIFE} is missing: build the front-end with `make js`.")
    bundle = static_bundle(widget)
    return _PAGE.format(title=html.escape(bundle["text/plain"]), figure=figure_html(bundle))


def figure_html(bundle: dict, element_id: str = "actwidgets", code: bool = True) -> str:
    """The markup that draws one saved figure (a display bundle: snapshot, PNG, text) offline.
    `code=False` where an earlier figure on the same page already brought the drawing code."""
    if code and not _IIFE.exists():
        raise FileNotFoundError(f"{_IIFE} is missing: build the front-end with `make js`.")
    script = f"<script>{_inline_script(_IIFE.read_text(encoding='utf-8'))}</script>\n" if code else ""
    return _FIGURE.format(
        id=html.escape(element_id),
        title=html.escape(bundle["text/plain"]),
        png=bundle["image/png"],
        snapshot=_inline_json(bundle[SNAPSHOT_MIME]),
        code=script,
    )


# --- keeping saved outputs current --------------------------------------------
class SnapshotPublisher:
    """Re-sends a widget's display bundle (same display id) once it has settled.

    Runs are coalesced: a slider dragged through ten strengths publishes once, a
    moment after the last run, off the worker thread so the next run is not delayed.
    """

    DELAY_S = 0.5

    def __init__(self, widget) -> None:
        self._widget = widget
        self.display_id: str | None = None
        self._unrecorded: tuple | None = None  # the bundle last sent while no cell ran: a headless run kept none

    def shown(self) -> None:
        """The widget is being displayed: from now on its saved output is kept current."""
        if self.display_id is None:
            self.display_id = uuid.uuid4().hex
        _watch_cells(self)

    def poke(self) -> None:
        if self.display_id is not None:
            later.call(self, self.DELAY_S, self._publish)

    def stop(self) -> None:
        later.drop(self)
        self.display_id = None

    def _publish(self) -> None:
        widget = self._widget
        if self.display_id is None or not widget.idle:
            return  # the run in progress will poke again when it finishes
        try:
            self._send(*widget._repr_mimebundle_())
        except Exception:  # a figure that fails to draw must not break the live widget
            log.warning("actwidgets: could not update the saved snapshot", exc_info=True)

    def _resend(self) -> None:
        """The bundle last sent while no cell ran, again (not drawn again), from this cell."""
        sent, self._unrecorded = self._unrecorded, None
        if sent is not None and self.display_id is not None:
            self._send(*sent)

    def _send(self, data: dict, metadata: dict) -> None:
        from IPython.display import update_display

        in_cell = _in_cell.is_set()  # read before sending: a cell may end meanwhile
        update_display(data, metadata=metadata, raw=True, display_id=self.display_id)
        # sent twice rather than never: a cell that started meanwhile may have looked already
        self._unrecorded = None if in_cell and _in_cell.is_set() else (data, metadata)


_publishers: "weakref.WeakSet[SnapshotPublisher]" = weakref.WeakSet()
_in_cell = threading.Event()
_hooked = False


def _watch_cells(publisher: SnapshotPublisher) -> None:
    global _hooked
    _publishers.add(publisher)
    if _hooked:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if getattr(shell, "kernel", None) is None:  # a script or a terminal: no cell output is recorded
        return
    shell.events.register("pre_run_cell", _cell_starts)
    shell.events.register("post_run_cell", _cell_ends)
    _hooked = True
    _in_cell.set()  # hooked from inside a cell


def _cell_starts(_info=None) -> None:
    _in_cell.set()
    for publisher in list(_publishers):
        publisher._resend()


def _cell_ends(_result=None) -> None:
    later.flush()  # re-sends due in a moment go now, while this cell's output is still recorded
    _in_cell.clear()


def settle(timeout: float | None = 600) -> None:
    """Wait for every displayed widget's run to finish, then re-send each final figure from
    this cell: end a notebook with it when it is run headless (``jupyter nbconvert --execute``,
    papermill), which records nothing after the last cell, so slow figures are saved finished."""
    shown = [publisher for publisher in list(_publishers) if publisher.display_id is not None]
    for publisher in shown:
        publisher._widget.wait(timeout)
    for publisher in shown:
        later.drop(publisher)  # sent here, once, not again a moment later
        publisher._publish()
