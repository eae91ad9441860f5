"""A notebook outlives its kernel: run a heatmap, a patching grid and a steering widget,
save, shut the kernel down, reload the page, and every figure is still drawn, marked
as a snapshot of the last run (not of the empty widget first displayed)."""
from __future__ import annotations

import nbformat
from playwright.sync_api import expect

from .harness import kernel_exec, open_notebook, run_all_cells, save_notebook, screenshot
from .test_quickstart import CANVAS_PIXELS

SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"
CELLS = [
    "import torch, actwidgets as aw\nmodel = aw.load()",
    'h = aw.Heatmap(model, "The Eiffel Tower is located in the city of")\nh',
    'g = aw.PatchingGrid(model, "When Mary and John went to the store, John gave a drink to",\n'
    '                    "When Mary and John went to the store, Mary gave a drink to", (" Mary", " John"))\ng',
    "torch.manual_seed(0)\nv = torch.randn(model.hf.config.hidden_size)\n"
    's = aw.Steering(model, "Tell me about cats.", vector=v / v.norm(), layer=10, strength=1.0, max_new_tokens=8)\ns',
]
WIDGETS = {1: "heatmap", 2: "patching", 3: "steering"}

# The status each saved snapshot holds, read from the notebook model (what gets saved).
SAVED_STATUS = """(path) => {
  const app = window.jupyterapp;
  const panel = [...app.shell.widgets('main')].find(w => w.context && w.context.path === path);
  const cells = panel.content.model.cells, out = {};
  for (let i = 0; i < cells.length; i++) {
    const outputs = cells.get(i).outputs;
    for (let j = 0; outputs && j < outputs.length; j++) {
      const snap = outputs.get(j).toJSON().data?.[MIME];
      if (snap) out[i] = snap.state.status;
    }
  }
  return out;
}""".replace("MIME", repr(SNAPSHOT_MIME))


def test_figures_survive_save_kernel_shutdown_and_reload(jupyter_server, page):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    path = jupyter_server.add_notebook(nb, "saved_figures.ipynb")
    page.set_viewport_size({"width": 1400, "height": 2400})
    open_notebook(page, jupyter_server, path)
    assert run_all_cells(page) == []
    kernel_exec(page, "h.wait(); g.wait(); s.wait(); import time; time.sleep(2.5)", timeout=300)
    # The kernel re-sent each bundle after its run: the notebook model holds finished runs.
    saved = {}
    for _ in range(60):
        saved = {int(k): v for k, v in page.evaluate(SAVED_STATUS, path).items()}
        if saved == {i: "done" for i in WIDGETS}:
            break
        page.wait_for_timeout(500)
    assert saved == {i: "done" for i in WIDGETS}, saved
    live = page.locator(".aw-root[data-widget]:not([data-snapshot])")
    expect(live).to_have_count(3)
    save_notebook(page)

    sessions = [s for s in jupyter_server.api("sessions") if s["path"].endswith(path)]
    assert sessions, "no kernel session for the notebook"
    for session in sessions:
        jupyter_server.api(f"sessions/{session['id']}", method="DELETE")
    assert not [s for s in jupyter_server.api("sessions") if s["path"].endswith(path)]

    page.reload()
    page.wait_for_function("() => !!(window.jupyterapp && window.jupyterapp.shell)", timeout=120_000)
    snapshots = page.locator(".aw-snapshot .aw-root[data-snapshot=true]")
    expect(snapshots).to_have_count(3, timeout=60_000)
    for kind in WIDGETS.values():
        root = page.locator(f".aw-snapshot .aw-root[data-widget={kind}]")
        expect(root).to_be_visible()
        expect(root).to_have_attribute("data-status", "done")
        host = page.locator(f".aw-snapshot[data-snapshot={kind}]")
        expect(host.locator(".aw-snapshot-badge")).to_contain_text("Snapshot")
    for kind in ("heatmap", "patching"):
        canvas = page.locator(f".aw-snapshot .aw-root[data-widget={kind}] canvas.aw-grid").first
        canvas.scroll_into_view_if_needed()
        assert canvas.evaluate(CANVAS_PIXELS)["painted"] > 0.5
    steering = page.locator(".aw-snapshot .aw-root[data-widget=steering]")
    assert len(steering.inner_text()) > 40
    expect(page.get_by_text("Error displaying widget")).to_have_count(0)
    page.locator(".aw-snapshot").first.scroll_into_view_if_needed()
    screenshot(page, "saved-notebook-reopened", full_page=True)
