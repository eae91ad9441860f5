"""What every widget shares: the status/progress/error traits, the memo of results,
the cancel path, and the job runner that keeps the notebook responsive.

A widget's inputs are traits. A change calls `schedule()`, which hands the widget's
`compute()` to its Runner (`_runner.py`: the model's worker thread, latest request wins);
a job superseded mid-way stops at its next `check()` and never writes its result.
Errors a user can act on become `error`.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import threading
import time
import traceback
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import anywidget
import numpy as np
import traitlets as t

from .._remote import watching
from ..errors import ActWidgetsError, Cancelled
from ..methods import _checks
from . import _cells, _snapshot
from ._runner import Runner, on_worker, worker_for

log = logging.getLogger("actwidgets")
STATIC = Path(__file__).resolve().parent.parent / "static"
DISPLAY_WAIT_S = 1.5
SAVED_MID_RUN = ("Saved before this run finished: run the cell again, or end a notebook run headless "
                 "(nbconvert --execute, papermill) with aw.settle().")
# nnsight's errors when the model ran a forward of its own in the middle of this widget's trace
OUTSIDE_RUN_ERRORS = frozenset({"OutOfOrderError"})
OUTSIDE_RUN = ("The trace lost its place in the model's run. If code of your own ran the model meanwhile "
               "(another cell), put it in `with model.lock:` and run the widget again. ")
BLOCK_REPORT_S = 0.25  # a forward's per-block progress syncs at most this often (4 messages a second)


def bundle(name: str) -> str:
    """The built front-end module for a widget, or a stand-in that says how to build it.

    Its text, not its path: anywidget watches a path for edits (hot reload) through a signal
    that holds every instance, so no widget, nor its model, was ever freed, closed or not."""
    path = STATIC / f"{name}.js"
    if path.exists():
        return path.read_text(encoding="utf-8")
    return (
        "export default { render({ el }) { el.textContent = "
        f"'actwidgets: the front-end bundle {name}.js is missing; build it with `make js`.'; }} }}"
    )


def finite_or_none(value) -> float | None:
    """A float trait's value: None stands for "not known", since JSON has no NaN."""
    return float(value) if value is not None and np.isfinite(value) else None


def quoted(text: str, limit: int = 60) -> str:
    """A prompt in a title: quoted, on one line, cut at `limit` characters."""
    text = " ".join(str(text).split())
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def decode_f32(data: bytes, shape) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(shape)


class Memo:
    """A widget's recent results, keyed by the inputs that made them, newest kept: editing
    back and forth is instant. What `close()` lets go of."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._closed = False

    def get(self, key, default=None):
        if key not in self._items:
            return default
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key, value):
        if self._closed:  # a job still finishing after close(): its result is nobody's
            return value
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def close(self) -> None:
        self._closed = True
        self._items.clear()

    def reopen(self) -> None:
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)


def _parameters(cls) -> list[str]:
    """The keyword arguments a widget's constructor names (what its error message lists)."""
    skip = {"self", "model", "kwargs"}
    return [name for name in inspect.signature(cls.__init__).parameters if name not in skip] + ["layout"]


IN_FLIGHT = ("queued", "running")  # a run asked for and not over (js/src/lib/shell.ts: inFlight)


class JobWidget(anywidget.AnyWidget):
    """An anywidget whose model work runs on a Runner and reports status.

    Its display bundle also carries a snapshot, a PNG and text (see `_snapshot.py`),
    refreshed after each run, so a saved notebook shows the figure without a kernel.
    """

    snapshot_kind = ""  # the front-end module that draws a snapshot: "heatmap", "lens", ...

    status = t.Unicode("idle").tag(sync=True)  # idle | queued | running | done | error | cancelled
    # There is a figure, and it is an earlier input's: the run for this one failed, or was
    # cancelled before it drew anything. The page and the PNG dim it and say so.
    stale = t.Bool(False).tag(sync=True)
    progress = t.Float(0.0).tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    # Where a remote (NDIF) job is while status is "running": "queued (position 2)", "running",
    # "downloading"; "" otherwise. The status line shows it in place of "running".
    remote_status = t.Unicode("").tag(sync=True)

    def __init__(self, model, **kwargs) -> None:
        _checks.keywords(type(self).__name__, kwargs, _parameters(type(self)), self.class_trait_names())
        self._model = model
        self._runner = Runner(worker_for(model))
        self._current: Callable[[], bool] = lambda: True
        self._drawn_current = False  # whether the figure's traits come from the latest request
        self._drawn_any = False  # whether there is a figure at all
        # Taken by a new request (schedule, cancel) and by a job writing its result or its status:
        # the job finds it is still current, and writes, before any newer request can intervene.
        self._state_lock = threading.RLock()
        self._publisher = _snapshot.SnapshotPublisher(self)
        self._owns_layout = "layout" not in kwargs  # ipywidgets makes one Layout widget per widget
        self.memo = Memo()
        super().__init__(**kwargs)
        self.on_msg(self._on_front_end_message)
        _cells.belongs_here(self)

    @property
    def model(self):
        """The model this widget reads: fixed, as its worker and remembered results are that model's."""
        return self._model

    @model.setter
    def model(self, _other) -> None:
        raise AttributeError(f"A widget keeps the model it was made with; for another model make a new one, "
                             f"e.g. aw.{type(self).__name__}(other_model, ...).")

    # --- what outlives the kernel ----------------------------------------------
    @property
    def idle(self) -> bool:
        return self._runner.idle

    def figure(self):
        """The figure as a matplotlib Figure (waits for a run in progress), e.g. for a paper."""
        self.wait_unless_worker()
        return self.draw(_snapshot.live_state(self))

    def to_html(self, path) -> Path:
        """Write one self-contained HTML file that draws this figure offline; returns its path."""
        self.wait_unless_worker()
        path = Path(path)
        path.write_text(_snapshot.html_page(self), encoding="utf-8")
        return path

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)  # anywidget: (data, metadata) or None
        if bundle is None:
            return None
        data, metadata = bundle
        try:
            data = {**data, **_snapshot.static_bundle(self)}
        except Exception:  # the live view must still show if a figure cannot be drawn
            log.warning("actwidgets: could not draw the snapshot", exc_info=True)
        return data, metadata

    def _ipython_display_(self) -> None:
        # One display id per widget, so every place it is shown gets the later snapshots.
        from IPython.display import display

        if self.comm is None:  # released (its cell re-ran), but a variable still held it
            if self._owns_layout:
                self.layout.open()  # first: the widget's state names its layout's comm
            self.open()
            self.__dict__.pop("_repr_mimebundle_", None)  # ipywidgets' close() blanks it per instance
            self._reopen()
            self.schedule()
        _cells.belongs_here(self)
        self._publisher.shown()
        # A run that finishes within a moment (a heatmap, a lens) is displayed finished, so
        # its saved output is complete even where later display updates are not recorded
        # (nbclient keeps none after the last cell); a slower one shows its progress live.
        self._runner.wait(DISPLAY_WAIT_S)
        data, metadata = self._repr_mimebundle_()
        display(data, metadata=metadata, raw=True, display_id=self._publisher.display_id)

    # --- scheduling ----------------------------------------------------------
    def schedule(self, *_change) -> None:
        """Re-run `compute()` off the kernel thread; newer calls supersede older ones. Until the
        worker reaches it (it may be busy with another widget's job on the same model) the
        widget says "queued"."""
        with self._state_lock:
            self._drawn_current = False
            self.status = "queued"
            self._runner.submit(self._run)

    def wait(self, timeout: float | None = 120) -> "JobWidget":
        """Block until the widget is idle; returns self so `w.wait().error` reads well."""
        if not self._runner.wait(timeout):
            raise TimeoutError(f"{type(self).__name__} still running after {timeout} s")
        return self

    def cancel(self) -> None:
        """Stop the running job at its next check (or drop a queued one); the last figure stays,
        marked stale if it is an earlier input's."""
        with self._state_lock:
            self._runner.cancel()
            if self.status not in IN_FLIGHT:
                return
            with self.hold_sync():
                self.status, self.error = "cancelled", ""
                self.stale = self._earlier_figure
        self._publisher.poke()

    def close(self) -> None:
        """Stop work and let go of results: the widget is on no screen any more (see `_cells.py`)."""
        if hasattr(self, "memo"):  # ipywidgets also closes in __del__ a half-made widget (memo is set last)
            self.cancel()  # a variable that still holds it reads "cancelled", not "running" forever
            self._publisher.stop()
            self.memo.close()
            if self._owns_layout:
                self.layout.close()
        super().close()

    def _reopen(self) -> None:
        """Shown again after close(): remember results again."""
        self.memo.reopen()

    @property
    def _earlier_figure(self) -> bool:
        """There is a figure and the latest request has drawn none of it: `stale`, once settled."""
        return self._drawn_any and not self._drawn_current

    def as_saved(self, values: dict) -> dict:
        """The traits a page without a kernel shows: a run in flight never finishes there, so it
        reads as stopped, and says why; its figure is stale unless this run drew it (a lens's
        first screen)."""
        if values.get("status") not in IN_FLIGHT:
            return values
        return {**values, "status": "cancelled", "stale": self._earlier_figure, "error": SAVED_MID_RUN}

    def _on_front_end_message(self, _widget, content, _buffers) -> None:
        if isinstance(content, dict) and content.get("type") == "cancel":  # the cancel button
            self.cancel()

    def wait_unless_worker(self) -> None:
        """Wait for the current job, except on the worker itself (that would wait forever)."""
        if not on_worker():
            self.wait(timeout=None)

    def check(self) -> None:
        """Raise Cancelled when a newer request has superseded this job."""
        if not self._current():
            raise Cancelled

    _reported_at = 0.0

    def report(self, fraction: float, every: float = 0.0) -> None:
        """Raise Cancelled when superseded; else show `fraction` done, at most once per `every`
        seconds (for a caller that reports often: every block of a forward)."""
        self.check()
        now = time.monotonic()
        if every and now - self._reported_at < every:
            return
        self._reported_at = now
        self.progress = float(min(max(fraction, 0.0), 1.0))

    def reporter(self, start: float = 0.0, share: float = 1.0) -> Callable[[float], None]:
        """A method's `progress` callback: its fraction f shows as ``start + share * f`` of this
        run, at most every BLOCK_REPORT_S (it is called after every block of a forward)."""
        return lambda fraction: self.report(start + share * fraction, every=BLOCK_REPORT_S)

    def _run(self, is_current: Callable[[], bool]) -> None:
        self._current, self._reported_at = is_current, 0.0
        with self._state_lock, self.hold_sync():
            if not is_current():  # cancelled between the worker taking it and here
                return
            self.status, self.progress, self.error = "running", 0.0, ""
        try:
            # A remote wait gives up within 0.1 s of this job being superseded or cancelled.
            with watching(lambda: not self._current(), lambda text: self.set_trait("remote_status", text)):
                result = self.compute()
            with self.drawing():
                self.apply(result)
                self.status, self.progress = "done", 1.0
        except Cancelled:
            return  # the newer job publishes
        except ActWidgetsError as exc:
            self._fail(str(exc))
        except Exception as exc:  # a bug: say what broke, keep the widget alive
            log.debug("actwidgets job failed", exc_info=True)
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            cause = f"{type(exc).__name__}: {exc} (in {Path(frame.filename).name}:{frame.lineno})"
            self._fail(OUTSIDE_RUN + cause if type(exc).__name__ in OUTSIDE_RUN_ERRORS else cause)
        self._publisher.poke()  # a saved notebook shows what is on screen, error included

    @contextlib.contextmanager
    def writing(self):
        """Write traits for the current request, in one message; raises Cancelled instead when a
        newer request came first (its `schedule` waits meanwhile, so none comes in between)."""
        with self._state_lock, self.hold_sync():
            self.check()
            yield

    @contextlib.contextmanager
    def drawing(self):
        """`writing` the figure: it then holds the current request's result, or the part made so far."""
        with self.writing():
            yield
            self._drawn_current = self._drawn_any = True
            self.stale = False

    def show(self, result) -> None:
        """`apply` a result of the current request, whole or partial."""
        with self.drawing():
            self.apply(result)

    def _fail(self, message: str) -> None:
        with self._state_lock:
            if self._current():
                with self.hold_sync():
                    self.status, self.error, self.progress = "error", message, 0.0
                    self.stale = self._earlier_figure

    # --- to override ---------------------------------------------------------
    def compute(self):
        """Model work; runs on the worker thread. Raise InputError for bad input."""
        raise NotImplementedError

    def apply(self, result) -> None:
        """Write a result to the synced traits (inside hold_sync)."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line saying what the figure shows (text/plain and titles)."""
        return type(self).__name__

    def draw(self, state: dict):
        """A matplotlib Figure of `state` (see `_snapshot.live_state`)."""
        raise NotImplementedError
