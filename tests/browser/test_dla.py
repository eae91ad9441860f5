"""Direct logit attribution, live on the light widget page (a real kernel, the real front-end
module; no JupyterLab): the strip and the head grid draw, hovering a head reads its value back,
a click on a prompt token moves the attribution, and a click on a linked logit lens points it
at that token."""
from __future__ import annotations

from playwright.sync_api import expect

from .harness import kernel_exec, run_code_notebook, screenshot

SETUP = """import actwidgets as aw
model = aw.load()
lens = aw.LogitLens(model, "The Eiffel Tower is located in the city of")
dla = aw.LogitAttribution(model, "When Mary and John went to the store, John gave a drink to", " Mary", wrong=" John")
lens.link(dla)
display(dla)
lens"""

LIVE_DLA = ".aw-root[data-widget=dla]:not([data-snapshot])"


def cell_point(panel, row: int, col: int, rows: int):
    """Page coordinates of a grid cell's centre: the column from its label, the row from the canvas."""
    label = panel.locator(f"span.aw-token[data-col='{col}']").bounding_box()
    canvas = panel.locator("canvas.aw-grid").bounding_box()
    return label["x"] + label["width"] / 2, canvas["y"] + canvas["height"] * (row + 0.5) / rows


def test_dla_draws_hovers_and_follows_the_lens(widget_server, page):
    run_code_notebook(page, widget_server, "dla.ipynb", SETUP, height=1900)
    root = page.locator(LIVE_DLA)
    expect(root).to_have_attribute("data-status", "done", timeout=120_000)
    expect(root.locator(".aw-dla-sum")).to_have_text(
        "model +6.120 · sum of parts +6.120 · embedding −0.043 · final-norm bias 0.000")
    expect(root.locator(".aw-dla-what")).to_have_text("logit(' Mary') − logit(' John') at token 13 “␣to”")
    expect(root.locator(".aw-dla-tokens .aw-tok.aw-hl")).to_have_text(" to")
    strip, heads = root.locator(".aw-dla-strip"), root.locator(".aw-dla-heads")
    assert strip.locator("span.aw-token").all_text_contents() == ["attn", "mlp"]
    assert heads.locator("span.aw-token").all_text_contents() == [f"H{h}" for h in range(9)]
    # the two grids' rows line up: same top, same height (emb, then 30 layers)
    s, h = strip.locator("canvas.aw-grid").bounding_box(), heads.locator("canvas.aw-grid").bounding_box()
    assert abs(s["y"] - h["y"]) < 1 and abs(s["height"] - h["height"]) < 1 and s["height"] > 300

    # hover: L23 H3, the name mover, reads back its value
    page.mouse.move(*cell_point(heads, 24, 3, 31))
    tip = heads.locator("div.aw-tooltip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text("layer 23, head 3")
    expect(tip).to_contain_text("direct effect: +2.855")
    expect(tip).to_contain_text("at token 13 “␣to”")
    screenshot(page, "dla_ioi_hover")
    page.mouse.move(*cell_point(strip, 0, 0, 31))
    expect(strip.locator("div.aw-tooltip")).to_contain_text("embedding")

    # a click on a prompt token attributes there
    root.locator(".aw-dla-tokens .aw-tok[data-pos='10']").click()
    expect(root.locator(".aw-dla-what")).to_contain_text("at token 10 “␣gave”", timeout=60_000)
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    assert kernel_exec(page, "print(dla.position, dla.token_index)").split() == ["10", "10"]

    # a prompt typed in the box attributes at its own last token: the clicked position was the old prompt's
    box = root.locator("textarea.aw-prompt")
    box.fill("When Mary and John went out, John gave a drink to")  # token 10 is now ' drink'
    box.press("Enter")
    expect(root.locator(".aw-dla-what")).to_contain_text("at token 11 “␣to”", timeout=60_000)
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    assert kernel_exec(page, "print(dla.position, dla.token_index)").split() == ["-1", "11"]

    # a click on the lens (any layer of column 5, ' located') points the attribution there
    lens = page.locator(".aw-root[data-widget=lens]:not([data-snapshot])")
    expect(lens).to_have_attribute("data-status", "done", timeout=60_000)
    kernel_exec(page, "dla.wrong = ''")
    page.mouse.click(*cell_point(lens, 20, 5, 31))
    expect(root.locator(".aw-dla-what")).to_contain_text("at token 5 “␣located”", timeout=60_000)
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    out = kernel_exec(page, "print(repr(dla.prompt), dla.position, repr(dla.target), dla.status)")
    top1 = kernel_exec(page, "print(repr(model.tokenizer.decode([int(lens.data.topk_ids[-1, 5, 0])])))").strip()
    assert out.strip() == f"'The Eiffel Tower is located in the city of' 5 {top1} done", (out, top1)
    expect(root.locator(".aw-dla-sum")).to_contain_text("sum of parts")
    root.scroll_into_view_if_needed()
    screenshot(page, "dla_linked_to_lens")
