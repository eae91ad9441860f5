"""The patching grid, live on the light widget page (a real kernel, the real front-end
module; no JupyterLab): it fills in progressively, re-runs on edit,
explains a bad pair of prompts, cancels, and reports a clicked cell to Python."""
from __future__ import annotations

from playwright.sync_api import expect

from .harness import kernel_exec, run_code_notebook, screenshot

SETUP = """import actwidgets as aw
model = aw.load()
grid = aw.PatchingGrid(model,
    clean="When Mary and John went to the store, John gave a drink to",
    corrupted="When Mary and John went to the store, Mary gave a drink to",
    answer=(" Mary", " John"), site="resid", chunk_size=4)
grid"""

# The live widget's root; a snapshot of it (drawn while the live view loads) is marked data-snapshot.
LIVE_PATCHING = ".aw-root[data-widget=patching]:not([data-snapshot])"
NAN_COUNT = "import numpy as np; print(int(np.isnan(np.frombuffer(grid.values, '<f4')).sum()))"


def test_patching_grid_live(widget_server, page):
    run_code_notebook(page, widget_server, "patching.ipynb", SETUP, height=1100)
    root = page.locator(LIVE_PATCHING)

    # progressive: while it runs, part of the grid is still empty
    expect(root).to_have_attribute("data-status", "running", timeout=60_000)
    page.wait_for_function("() => { const p = document.querySelector('" + LIVE_PATCHING + " progress.aw-progress');"
                           " return p && p.value > 0.1; }", timeout=60_000)
    screenshot(page, "patching_filling_in")
    empty = int(kernel_exec(page, NAN_COUNT))
    assert 0 < empty < 420, empty
    expect(root).to_have_attribute("data-status", "done", timeout=180_000)
    assert int(kernel_exec(page, NAN_COUNT)) == 0
    expect(root.locator(".aw-summary")).to_contain_text("LD clean +6.12")
    screenshot(page, "patching_done")

    # a click on a cell reaches Python
    canvas = root.locator("canvas.aw-grid").first
    label = root.locator("span.aw-token[data-col='9']").first.bounding_box()
    box = canvas.bounding_box()
    page.mouse.click(label["x"] + label["width"] / 2, box["y"] + 3)
    assert kernel_exec(page, "print(grid.selection['row'], grid.selection['col'], repr(grid.selection['token']))").strip() == "0 9 ' John'"

    # a corrupted prompt of another length: a clear message with both tokenizations
    corrupted = root.locator("textarea.aw-corrupted")
    corrupted.fill("When Mary and John went to the store, Mary gave a drink")
    corrupted.press("Enter")
    error = root.locator(".aw-error")
    expect(error).to_contain_text("same number of tokens", timeout=30_000)
    expect(error).to_contain_text("corrupted has 13")

    # editing back shows the cached grid again; a new site re-runs, and cancel stops it
    corrupted.fill("When Mary and John went to the store, Mary gave a drink to")
    corrupted.press("Enter")
    expect(root).to_have_attribute("data-status", "done", timeout=30_000)
    expect(error).to_be_hidden()
    root.locator("select.aw-site").select_option("mlp")
    expect(root).to_have_attribute("data-status", "running", timeout=30_000)
    root.locator("button.aw-cancel").click()
    expect(root).to_have_attribute("data-status", "cancelled", timeout=30_000)
    root.locator("select.aw-method").select_option("attribution")
    expect(root).to_have_attribute("data-status", "done", timeout=180_000)
    expect(root.locator(".aw-summary")).to_contain_text("r(exact)")
    expect(root.locator(".aw-reference")).to_be_visible()
    screenshot(page, "patching_attribution_vs_exact")
