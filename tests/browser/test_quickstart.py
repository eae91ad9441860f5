"""The quickstart notebook as a person uses it: real JupyterLab, headless Chromium,
real typing, hovering and clicking on the heatmap and the logit lens."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import expect

from .harness import (assert_only_local_requests, kernel_exec, open_notebook, run_all_cells, screenshot)

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# Fraction of the canvas that is painted (alpha > 0) and a hash of its pixels.
CANVAS_PIXELS = """(canvas) => {
    const ctx = canvas.getContext('2d');
    const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
    let painted = 0, hash = 0;
    for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] > 0) painted++;
        hash = (hash * 31 + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) | 0;
    }
    return {painted: painted / (data.length / 4), hash};
}"""


def widget(page, kind: str):
    """The live widget; the extension's snapshot copy (hidden once live) is marked data-snapshot."""
    return page.locator(f".aw-root[data-widget={kind}]:not([data-snapshot])")


def wait_done(root, timeout: float = 120_000):
    expect(root).to_have_attribute("data-status", "done", timeout=timeout)


def edit_prompt(root, text: str, col: int, token: str) -> None:
    """Type a new prompt into a widget as a person does (Enter commits) and wait until the
    model has re-run: token `col` reads `token` and the widget is done."""
    box = root.locator("textarea.aw-prompt")
    box.fill(text)
    box.press("Enter")
    expect(root.locator(f"span.aw-token[data-col='{col}']")).to_contain_text(token, timeout=60_000)
    wait_done(root)


def hover_cell(page, root, col: int, row_fraction: float = 0.5):
    """Move the mouse over column `col` (found from its token label) at a height of the grid."""
    label = root.locator(f"span.aw-token[data-col='{col}']")
    box = label.bounding_box()
    canvas = root.locator("canvas.aw-grid").bounding_box()
    x = box["x"] + box["width"] / 2
    y = canvas["y"] + canvas["height"] * row_fraction
    page.mouse.move(x, y)
    return x, y


@pytest.fixture
def quickstart(jupyter_server, page):
    path = jupyter_server.add_notebook(NOTEBOOKS / "01_quickstart.ipynb")
    page.set_viewport_size({"width": 1400, "height": 1000})
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_notebook(page, jupyter_server, path)
    errors = run_all_cells(page)
    assert errors == [], errors
    page.aw_dialogs = dialogs
    return page


def test_quickstart_heatmap_is_live(quickstart):
    page = quickstart
    heat = widget(page, "heatmap")
    wait_done(heat)
    heat.scroll_into_view_if_needed()
    canvas = heat.locator("canvas.aw-grid")
    before = canvas.evaluate(CANVAS_PIXELS)
    assert before["painted"] > 0.5, before
    screenshot(page, "quickstart_heatmap")

    # hover: the tooltip names the token under the mouse
    hover_cell(page, heat, col=1)
    tip = heat.locator(".aw-tooltip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("Mary")
    expect(tip).to_contain_text("layer")

    # click: Python sees the selection
    x, y = hover_cell(page, heat, col=3)
    page.mouse.click(x, y)
    out = kernel_exec(page, "print(heatmap.selection['token'], heatmap.selection['col'])")
    assert out.strip() == "John 3", out

    # edit the prompt inside the widget: the model re-runs and the figure changes
    edit_prompt(heat, "The quick brown fox jumps over the lazy dog", 1, "quick")
    after = canvas.evaluate(CANVAS_PIXELS)
    assert after["hash"] != before["hash"]
    assert kernel_exec(page, "print(heatmap.tokens[-1])").strip() == "dog"

    # Shift+Enter in the box is a new line, as its placeholder says, not JupyterLab's run-cell
    box = heat.locator("textarea.aw-prompt")
    runs = kernel_exec(page, "print(len(In))").strip()
    box.fill("Line one")
    box.press("Shift+Enter")
    box.press_sequentially("line two")
    expect(box).to_have_value("Line one\nline two")
    expect(box).to_be_focused()
    assert kernel_exec(page, "print(len(In))").strip() == runs  # no cell ran

    # a bad input is a message in the widget, and the widget still works afterwards
    box.fill("")
    box.press("Enter")
    expect(heat.locator(".aw-error")).to_contain_text("prompt is empty", timeout=30_000)
    box.fill("Hello world")
    box.press("Enter")
    wait_done(heat)
    expect(heat.locator(".aw-error")).to_be_hidden()
    screenshot(page, "quickstart_heatmap_after_edit")
    assert_only_local_requests(page)


def test_quickstart_logit_lens(quickstart):
    page = quickstart
    lens = widget(page, "lens")
    wait_done(lens)
    lens.scroll_into_view_if_needed()
    assert lens.locator("canvas.aw-grid").evaluate(CANVAS_PIXELS)["painted"] > 0.5
    last = len(lens.locator("span.aw-token").all()) - 1
    hover_cell(page, lens, col=last, row_fraction=0.98)  # the last layer, the last token
    tip = lens.locator(".aw-tooltip")
    expect(tip).to_contain_text("Paris")
    screenshot(page, "quickstart_lens")
    # the target box re-runs the lens
    target = lens.locator("input.aw-target")
    target.fill(" London")
    target.press("Enter")
    wait_done(lens)
    assert kernel_exec(page, "lens.wait(); print(lens.target, lens.status)").strip() == "London done"


def test_untrusted_prompt_shows_as_text(jupyter_server, page):
    evil = '<img src=x onerror=alert(1)> and <script>alert(2)</script>'
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        f"import actwidgets as aw\nmodel = aw.load()\nheatmap = aw.Heatmap(model, {evil!r})\nheatmap")]
    path = jupyter_server.add_notebook(nb, "untrusted.ipynb")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    open_notebook(page, jupyter_server, path)
    assert run_all_cells(page) == []
    heat = widget(page, "heatmap")
    wait_done(heat)
    assert heat.locator("textarea.aw-prompt").input_value() == evil
    assert heat.locator("img").count() == 0 and heat.locator("script").count() == 0
    labels = "".join(heat.locator("span.aw-token").all_text_contents())
    assert "<img" in labels and "<script>" in labels.replace("␣", " ").replace("·", " ")
    page.wait_for_timeout(500)
    assert dialogs == []
    screenshot(page, "untrusted_prompt")
