"""Notebook 7, as a person uses it: run the cells with Shift+Enter, get a live heatmap of the
default model (not its snapshot), edit the prompt in the widget, and see it re-run."""
from __future__ import annotations

import urllib.parse

import nbformat
from playwright.sync_api import expect

from .harness import assert_only_local_requests, screenshot
from .test_quickstart import CANVAS_PIXELS

CELLS = [
    "import actwidgets as aw\nmodel = aw.load()",
    'heatmap = aw.Heatmap(model, "The Eiffel Tower is located in the city of")\nheatmap',
]


def _run_with_shift_enter(page, cell):
    prompt = cell.locator(".jp-InputArea-prompt")
    for _ in range(5):
        cell.locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
        try:
            expect(prompt).not_to_have_text("[ ]:", timeout=20_000)
            return
        except AssertionError:
            continue
    raise AssertionError(f"five Shift+Enter presses left the cell unrun: {prompt.inner_text()!r}")


def test_notebook7_live_heatmap_reruns_on_a_new_prompt(jupyter_server, page):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in CELLS]
    path = jupyter_server.add_notebook(nb, "nb7_live.ipynb")
    page.goto(jupyter_server.url(f"notebooks/{urllib.parse.quote(path)}", token=jupyter_server.token))
    cells = page.locator(".jp-Notebook .jp-CodeCell")
    expect(cells).to_have_count(2, timeout=120_000)
    # Shift+Enter before Notebook 7 has wired its kernel to the page runs nothing (the prompt
    # stays "[ ]"): wait for the toolbar to say idle, then run each cell on its own and press
    # again until its prompt leaves "[ ]" (queued "[*]" or run "[1]"), so no press lands on a
    # cell the previous one moved past.
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status=idle]").first).to_be_attached(timeout=120_000)
    for i in range(len(CELLS)):
        _run_with_shift_enter(page, cells.nth(i))

    out = page.locator(".jp-OutputArea-output.aw-output")
    expect(out).to_have_attribute("data-aw-showing", "live", timeout=180_000)
    root = out.locator(".aw-output-live .aw-root[data-widget=heatmap]")
    expect(root).to_have_attribute("data-status", "done", timeout=120_000)
    expect(root.locator("span.aw-token")).to_have_count(10)
    prompt = root.locator("textarea.aw-prompt")
    expect(prompt).to_be_enabled()

    prompt.fill("Rome is the capital of Italy")
    prompt.press("Enter")
    expect(root.locator("span.aw-token")).to_have_count(6, timeout=120_000)
    expect(root).to_have_attribute("data-status", "done", timeout=120_000)
    canvas = root.locator("canvas.aw-grid")
    assert canvas.evaluate(CANVAS_PIXELS)["painted"] > 0.5
    expect(out).to_have_attribute("data-aw-showing", "live")  # the kernel's update kept it live
    out.scroll_into_view_if_needed()
    screenshot(page, "notebook7-live-heatmap")
    assert_only_local_requests(page)
