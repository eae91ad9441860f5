"""The actwidgets JupyterLab extension in real JupyterLab and Notebook 7 (headless Chromium).

A saved actwidgets output carries the live view (widget-view), a snapshot, a PNG and
text. With no live model (notebook reopened, kernel gone) the extension draws the
snapshot, trusted or not; with a live model it shows the live widget and keeps it
through update_display_data; when the live view goes (kernel restart) the latest
snapshot comes back. See js/WIRE.md, "Live or snapshot".
"""
from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import sys
import urllib.parse
import zlib

import nbformat
import numpy as np
import pytest
from playwright.sync_api import expect

from .harness import (
    assert_only_local_requests,
    open_notebook,
    screenshot,
    wait_kernel_idle,
)

SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
GONE_MODEL = "f" * 32  # a widget model id no kernel has

CANVAS_PIXELS = """(canvas) => {
    const ctx = canvas.getContext('2d');
    const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0; const colours = new Set();
    for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 0) { painted++; colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]); }
    }
    return {painted: painted / Math.max(1, data.length / 4), colours: colours.size, width: canvas.width};
}"""


# ----------------------------------------------------------------------------- bundles
def heatmap_snapshot(prompt: str = "The cat sat on the mat", seed: int = 0) -> dict:
    """A snapshot of a heatmap made by hand (the `Snapshot` interface of js/src/snapshot.ts)."""
    tokens = ["The", " cat", " sat", " on", " the", " mat"]
    rows = ["emb", "0", "1", "2", "3"]
    values = np.random.default_rng(seed).uniform(1.0, 9.0, (len(rows), len(tokens))).astype("<f4")
    return {
        "format": "actwidgets.snapshot",
        "version": 1,
        "widget": "heatmap",
        "title": "Heatmap (test)",
        "model": "test-model",
        "saved": "2025-01-02T03:04:05Z",
        "state": {
            "tokens": tokens, "row_labels": rows, "shape": [len(rows), len(tokens)],
            "vmin": 1.0, "vmax": 9.0, "colormap": "viridis", "scale": "linear",
            "value_label": "L2 norm", "status": "done", "progress": 1.0, "error": "",
            "prompt": prompt, "stat": "norm", "stat_options": ["norm"], "aux_label": "",
            "selected": {},
        },
        "buffers": {
            "values": {"dtype": "<f4", "data": base64.b64encode(values.tobytes()).decode()},
            "aux": {"dtype": "<f4", "data": ""},
        },
    }


def tiny_png(width: int = 8, height: int = 8) -> str:
    """A valid solid-red PNG, base64: what a bundle's image/png looks like to the front-end."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


def saved_bundle(model_id: str = GONE_MODEL, prompt: str = "The cat sat on the mat") -> dict:
    return {
        WIDGET_MIME: {"version_major": 2, "version_minor": 1, "model_id": model_id},
        SNAPSHOT_MIME: heatmap_snapshot(prompt),
        "image/png": tiny_png(),
        "text/plain": "Heatmap of the residual stream's L2 norm, 5 layers x 6 tokens",
    }


def saved_notebook(server, name: str) -> str:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("h = aw.Heatmap(model, 'The cat sat on the mat')\nh", execution_count=1)
    cell.outputs = [nbformat.v4.new_output("display_data", data=saved_bundle())]
    nb.cells = [nbformat.v4.new_markdown_cell("# A saved actwidgets figure"), cell]
    return server.add_notebook(nb, name)


def trust(server, path: str) -> None:
    """`jupyter trust` with the server's private data dir (where its signature database is)."""
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(server.home / "config"),
        JUPYTER_DATA_DIR=str(server.home / "data"),
        JUPYTER_RUNTIME_DIR=str(server.home / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_PREFER_ENV_PATH="1",
    )
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(server.root_dir / path)],
                   env=env, check=True, capture_output=True, timeout=60)


# ----------------------------------------------------------------------------- checks
def actwidgets_output(page):
    return page.locator(".jp-OutputArea-output.aw-output")


def assert_snapshot_drawn(page, out, prompt: str = "The cat sat on the mat") -> None:
    """The output shows the snapshot: a painted canvas, the badge, disabled controls, no PNG."""
    expect(out).to_have_attribute("data-aw-showing", "snapshot", timeout=30_000)
    snap = out.locator(".aw-output-snapshot")
    expect(snap).to_be_visible()
    root = snap.locator(".aw-root[data-snapshot='true'][data-widget='heatmap']")
    expect(root).to_have_count(1)
    badge = snap.locator(".aw-snapshot-badge")
    expect(badge).to_contain_text("Snapshot")
    expect(badge).to_contain_text("read-only")
    expect(root.locator("textarea.aw-prompt")).to_have_value(prompt)
    expect(root.locator("textarea.aw-prompt")).to_be_disabled()
    canvas = root.locator("canvas.aw-grid")
    page.wait_for_function(
        f"(c) => ({CANVAS_PIXELS})(c).painted > 0.2", arg=canvas.element_handle(), timeout=30_000
    )
    pixels = canvas.evaluate(CANVAS_PIXELS)
    assert pixels["colours"] >= 5, pixels  # a colour map, not a blank fill
    # The snapshot won over the PNG and the text; no live renderer shows.
    expect(out.locator("img")).to_have_count(0)
    expect(out.locator(".aw-output-live")).to_be_hidden()
    expect(out.get_by_text("Error displaying widget")).to_have_count(0)


def wait_model_not_found(out) -> None:
    """Trusted: the extension asked ipywidgets for the live view; it found no model, so its
    renderer (and its "Error displaying widget" text) is gone and the snapshot stays."""
    expect(out).to_have_attribute("data-aw-live", "failed", timeout=60_000)
    expect(out.locator(".aw-output-live")).to_have_count(0)
    expect(out.get_by_text("Error displaying widget")).to_have_count(0)


def output_ranks(page, path: str) -> dict:
    return page.evaluate(
        """([path, snap, wv]) => {
            const app = window.jupyterapp;
            const p = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);
            const rm = p.content.rendermime;
            const bundle = {[wv]: {}, [snap]: {}, 'image/png': '', 'text/plain': ''};
            return {snapshot: rm.getRank(snap), widget: rm.getRank(wv), png: rm.getRank('image/png'),
                    trusted: rm.preferredMimeType(bundle, 'any'), untrusted: rm.preferredMimeType(bundle, 'ensure'),
                    cellTrusted: p.content.model.cells.get(1).trusted};
        }""",
        [path, SNAPSHOT_MIME, WIDGET_MIME],
    )


# ----------------------------------------------------------------------------- JupyterLab
@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_lab_draws_saved_snapshot(jupyter_server, page, trusted):
    name = f"labext_saved_{'trusted' if trusted else 'untrusted'}.ipynb"
    path = saved_notebook(jupyter_server, name)
    if trusted:
        trust(jupyter_server, path)
    open_notebook(page, jupyter_server, path)
    out = actwidgets_output(page)
    expect(out).to_have_count(1, timeout=30_000)
    # the per-notebook renderer (not the app-wide one) drew it
    expect(out).to_have_attribute("data-aw-renderer", "notebook")

    ranks = output_ranks(page, path)
    assert ranks["cellTrusted"] is trusted, ranks
    assert ranks["snapshot"] < ranks["widget"] < ranks["png"], ranks
    assert ranks["trusted"] == ranks["untrusted"] == SNAPSHOT_MIME, ranks

    if trusted:
        wait_model_not_found(out)
    else:
        page.wait_for_timeout(2500)  # ipywidgets would have answered by now
        expect(out).to_have_attribute("data-aw-live", "none")
        expect(out.locator(".aw-output-live")).to_have_count(0)
    assert_snapshot_drawn(page, out)
    out.scroll_into_view_if_needed()
    screenshot(page, f"labext_lab_{'trusted' if trusted else 'untrusted'}")
    assert_only_local_requests(page)


# ----------------------------------------------------------------------------- Notebook 7
def open_notebook7(page, server, path: str, timeout: float = 120.0) -> None:
    url = server.url(f"notebooks/{urllib.parse.quote(path)}", token=server.token)
    page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_selector(".jp-Notebook", timeout=timeout * 1000)


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
def test_notebook7_draws_saved_snapshot(jupyter_server, page, trusted):
    # Notebook 7 is served by the same server (/tree, /notebooks/<path>).
    tree = page.request.get(jupyter_server.url("tree", token=jupyter_server.token))
    assert tree.status == 200, f"Notebook 7 is not installed/served: /tree -> {tree.status}"

    path = saved_notebook(jupyter_server, f"labext_nb7_{'trusted' if trusted else 'untrusted'}.ipynb")
    if trusted:
        trust(jupyter_server, path)
    open_notebook7(page, jupyter_server, path)
    out = actwidgets_output(page)
    expect(out).to_have_count(1, timeout=60_000)
    expect(out).to_have_attribute("data-aw-renderer", "notebook")
    if trusted:
        wait_model_not_found(out)
    else:
        page.wait_for_timeout(2500)
        expect(out).to_have_attribute("data-aw-live", "none")
        expect(out.locator(".aw-output-live")).to_have_count(0)
    assert_snapshot_drawn(page, out)
    out.scroll_into_view_if_needed()
    screenshot(page, f"labext_nb7_{'trusted' if trusted else 'untrusted'}")
    assert_only_local_requests(page)


# ----------------------------------------------------------------------------- live
LIVE_CELL = r'''
import base64, importlib.util, json, time
from pathlib import Path
import anywidget, traitlets as t
import numpy as np
from IPython.display import display

STATIC = Path(importlib.util.find_spec("actwidgets").submodule_search_locations[0]) / "static"
SNAP = {snapshot!r}

class LiveHeatmap(anywidget.AnyWidget):
    """The heatmap front-end on hand-set traits (no language model needed)."""
    _esm = STATIC / "heatmap.js"
    prompt = t.Unicode("live prompt").tag(sync=True)
    status = t.Unicode("done").tag(sync=True)
    progress = t.Float(1.0).tag(sync=True)
    error = t.Unicode("").tag(sync=True)
    tokens = t.List(t.Unicode(), default_value=["The", " cat", " sat"]).tag(sync=True)
    row_labels = t.List(t.Unicode(), default_value=["emb", "0", "1"]).tag(sync=True)
    shape = t.List(t.Int(), default_value=[3, 3]).tag(sync=True)
    values = t.Bytes(np.arange(1, 10, dtype="<f4").tobytes()).tag(sync=True)
    vmin = t.Float(1.0).tag(sync=True)
    vmax = t.Float(9.0).tag(sync=True)
    colormap = t.Unicode("viridis").tag(sync=True)
    scale = t.Unicode("linear").tag(sync=True)
    value_label = t.Unicode("L2 norm").tag(sync=True)
    aux = t.Bytes(b"").tag(sync=True)
    aux_label = t.Unicode("").tag(sync=True)
    selected = t.Dict().tag(sync=True)
    stat = t.Unicode("norm").tag(sync=True)
    stat_options = t.List(t.Unicode(), default_value=["norm"]).tag(sync=True)

def bundle(w, prompt):
    snap = json.loads(json.dumps(SNAP)); snap["state"]["prompt"] = prompt
    return {{"{widget}": {{"version_major": 2, "version_minor": 1, "model_id": w.model_id}},
            "{snap}": snap, "text/plain": "LiveHeatmap"}}

w = LiveHeatmap()
handle = display(bundle(w, "snapshot v1"), raw=True, display_id=True)
time.sleep({wait})  # the test marks the live view meanwhile
handle.update(bundle(w, "snapshot v2"), raw=True)  # what the Python side does after each run
'''


def test_lab_live_widget_stays_live(jupyter_server, page):
    nb = nbformat.v4.new_notebook()
    code = LIVE_CELL.format(snapshot=heatmap_snapshot("snapshot v0"), widget=WIDGET_MIME, snap=SNAPSHOT_MIME, wait=6)
    nb.cells = [nbformat.v4.new_code_cell(code)]
    path = jupyter_server.add_notebook(nb, "labext_live.ipynb")
    open_notebook(page, jupyter_server, path)
    page.evaluate(
        "async (path) => { const app = window.jupyterapp;"
        " const p = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);"
        " app.shell.activateById(p.id); p.content.activeCellIndex = 0;"
        " void app.commands.execute('notebook:run-cell'); }",
        path,
    )
    out = actwidgets_output(page)
    expect(out).to_have_attribute("data-aw-showing", "live", timeout=60_000)
    expect(out).to_have_attribute("data-aw-live", "live")
    live_root = out.locator(".aw-output-live .aw-root[data-widget='heatmap']")
    expect(live_root).to_have_count(1)
    live_root.evaluate("(el) => { el.__awMark = 'first-view'; }")  # survives only if not re-created

    wait_kernel_idle(page, path, timeout=120)  # the cell has sent update_display_data
    page.wait_for_function(
        "([path, snap]) => { const app = window.jupyterapp;"
        " const p = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);"
        " const o = p.content.model.cells.get(0).outputs; if (!o.length) return false;"
        " const d = o.get(0).toJSON().data[snap]; return !!d && d.state.prompt === 'snapshot v2'; }",
        arg=[path, SNAPSHOT_MIME],
        timeout=30_000,
    )
    page.wait_for_timeout(500)
    expect(out).to_have_count(1)
    expect(out).to_have_attribute("data-aw-showing", "live")
    expect(out.locator(".aw-output-live .aw-root")).to_have_count(1)  # no duplicate view
    # The snapshot drawn while the view loaded stays hidden and is not redrawn while
    # live: the newer one (v2) is only stored, and drawn if the live view goes.
    expect(out.locator(".aw-output-snapshot")).to_be_hidden()
    expect(out.locator(".aw-output-snapshot textarea.aw-prompt")).to_have_value("snapshot v1")
    assert live_root.evaluate("(el) => el.__awMark") == "first-view", "the live view was re-created"
    prompt = live_root.locator("textarea.aw-prompt")
    expect(prompt).to_be_enabled()
    expect(prompt).to_have_value("live prompt")
    expect(live_root).not_to_have_attribute("data-snapshot", "true")
    page.wait_for_function(
        f"(c) => ({CANVAS_PIXELS})(c).painted > 0.2",
        arg=live_root.locator("canvas.aw-grid").element_handle(), timeout=30_000,
    )
    out.scroll_into_view_if_needed()
    screenshot(page, "labext_lab_live")

    # Kernel restart: the widget model is gone, so the latest snapshot (v2) shows.
    page.evaluate(
        "async (path) => { const app = window.jupyterapp;"
        " const p = Array.from(app.shell.widgets('main')).find(w => w.context && w.context.path === path);"
        " await p.sessionContext.session.kernel.restart(); }",
        path,
    )
    assert_snapshot_drawn(page, out, prompt="snapshot v2")
    expect(out).to_have_attribute("data-aw-live", "gone")
    expect(out.locator(".aw-output-live")).to_have_count(0)  # the dead view is disposed
    screenshot(page, "labext_lab_after_restart")
    assert_only_local_requests(page)


# ----------------------------------------------------------------------------- app-wide renderer
def test_console_uses_the_app_wide_snapshot_renderer(jupyter_server, page):
    """Outside notebooks (a code console) the mimeExtension (rank 0, safe) draws a snapshot
    bundle, over its PNG; a live widget would still go to ipywidgets (rank -10)."""
    nb = nbformat.v4.new_notebook()
    path = jupyter_server.add_notebook(nb, "labext_console_host.ipynb")
    open_notebook(page, jupyter_server, path)  # the lab page, ready
    bundle = {k: v for k, v in saved_bundle().items() if k != WIDGET_MIME}
    code = f"from IPython.display import display\ndisplay({json.dumps(bundle)}, raw=True)"
    info = page.evaluate(
        """async ([code, snap, wv]) => {
            const app = window.jupyterapp;
            const panel = await app.commands.execute('console:create', {kernelPreference: {name: 'python3'}});
            await panel.sessionContext.ready;
            await panel.console.inject(code);
            const rm = panel.console.rendermime;
            return {rank: rm.getRank(snap), safe: rm.getFactory(snap).safe, widget: rm.getRank(wv),
                    png: rm.getRank('image/png')};
        }""",
        [code, SNAPSHOT_MIME, WIDGET_MIME],
    )
    assert info == {"rank": 0, "safe": True, "widget": -10, "png": 90}, info
    out = page.locator(".jp-CodeConsole .jp-OutputArea-output.aw-output")
    expect(out).to_have_count(1, timeout=60_000)
    expect(out).to_have_attribute("data-aw-renderer", "snapshot")
    expect(out).to_have_attribute("data-aw-live", "none")
    assert_snapshot_drawn(page, out)
    screenshot(page, "labext_console")
    assert_only_local_requests(page)
