"""Linked views live on the light widget page: a click on a cell of a heads patching grid
shows that head's pattern in the Attention widget linked to it (the kernel hears the click,
points the Attention at the head, and its large view is redrawn)."""
from __future__ import annotations

from playwright.sync_api import expect

from .harness import kernel_exec, run_code_notebook, screenshot

SETUP = """import actwidgets as aw
from IPython.display import display
model = aw.load()
clean = "When Mary and John went to the store, John gave a drink to"
grid = aw.PatchingGrid(model, clean, "When Mary and John went to the store, Mary gave a drink to",
                       answer=(" Mary", " John"), site="heads")
att = aw.Attention(model, clean)
grid.link(att)
display(grid, att)"""
GRID = ".aw-root[data-widget=patching]:not([data-snapshot])"
ATT = ".aw-root[data-widget=attention]:not([data-snapshot])"


def test_a_heads_grid_click_shows_that_head_in_the_linked_attention(widget_server, page):
    run_code_notebook(page, widget_server, "linked.ipynb", SETUP, height=1800)
    grid, att = page.locator(GRID), page.locator(ATT)
    expect(grid).to_have_attribute("data-status", "done", timeout=300_000)
    expect(att).to_have_attribute("data-status", "done", timeout=120_000)
    expect(att.locator(".aw-pattern-title")).to_contain_text("layer 0 · head 0")
    before = att.locator("canvas.aw-pattern").evaluate("c => c.toDataURL()")

    canvas = grid.locator("canvas.aw-grid").first
    box = canvas.bounding_box()
    head = grid.locator("span.aw-token[data-col='3']").first.bounding_box()
    rows = int(kernel_exec(page, "print(grid.shape[0])"))
    page.mouse.click(head["x"] + head["width"] / 2, box["y"] + (23 + 0.5) * box["height"] / rows)
    assert kernel_exec(page, "print(grid.selection['row'], grid.selection['col'])").strip() == "23 3"
    expect(att.locator(".aw-pattern-title")).to_contain_text("layer 23 · head 3", timeout=60_000)
    expect(att).to_have_attribute("data-status", "done", timeout=60_000)
    assert kernel_exec(page, "print(att.pattern_head)").strip() == "[23, 3]"
    assert att.locator("canvas.aw-pattern").evaluate("c => c.toDataURL()") != before
    screenshot(page, "linked_heads_grid_to_attention")
