"""aw.Attention live on the light widget page (a real kernel, the real front-end module; no
JupyterLab): a click on a head in the overview shows that head large (the kernel hears of it and
the large view is redrawn), and hovering the large pattern shows the query and key tokens as
text, a token that looks like markup included."""
from __future__ import annotations

from playwright.sync_api import expect

from .harness import kernel_exec, run_code_notebook, screenshot

PROMPT = "When Mary and John went to the store, John gave <img src=x onerror=alert(1)> a drink to"
SETUP = f"""import actwidgets as aw
model = aw.load()
att = aw.Attention(model, {PROMPT!r})
att"""
LIVE = ".aw-root[data-widget=attention]:not([data-snapshot])"
# js/src/lib/thumbnails.ts thumbLayout(30 layers, 9 heads): 16 px images 2 px apart, after a
# 28 px gutter and a 14 px band of head numbers.
THUMB_STEP, THUMB_LEFT, THUMB_TOP, THUMB_SIZE = 18, 28, 14, 16


def shown(token: str) -> str:
    """A token as the front-end's quoteToken writes it (spaces made visible)."""
    return "“" + token.replace(" ", "␣") + "”"


def test_attention_live(widget_server, page):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    run_code_notebook(page, widget_server, "attention.ipynb", SETUP, height=1300)
    root = page.locator(LIVE)
    expect(root).to_have_attribute("data-status", "done", timeout=120_000)
    expect(root.locator(".aw-pattern-title")).to_contain_text("layer 0 · head 0")
    pattern = root.locator("canvas.aw-pattern")
    before = pattern.evaluate("c => c.toDataURL()")

    # a click on layer 9, head 4 in the overview
    box = root.locator("canvas.aw-overview").bounding_box()
    page.mouse.click(box["x"] + THUMB_LEFT + 4 * THUMB_STEP + THUMB_SIZE / 2,
                     box["y"] + THUMB_TOP + 9 * THUMB_STEP + THUMB_SIZE / 2)
    expect(root.locator(".aw-pattern-title")).to_contain_text("layer 9 · head 4", timeout=60_000)
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    assert kernel_exec(page, "print(att.head, att.pattern_head)").strip() == "[9, 4] [9, 4]"
    assert pattern.evaluate("c => c.toDataURL()") != before, "the large view must be redrawn for the new head"
    expect(root.locator(".aw-from-title")).to_contain_text("each head of layer 9")

    # hover: the query token is a piece of the markup-like text, the key token " Mary"
    tokens = eval(kernel_exec(page, "print(repr(att.tokens))"))
    row = next(i for i, t in enumerate(tokens) if "<" in t)
    cell = min(28, 420 // len(tokens))
    grid = pattern.bounding_box()
    page.mouse.move(grid["x"] + 1 * cell + cell / 2, grid["y"] + row * cell + cell / 2)
    tip = root.locator(".aw-square .aw-tooltip")
    expect(tip).to_be_visible()
    expect(tip).to_contain_text(f"query {row}: {shown(tokens[row])}")
    expect(tip).to_contain_text(f"key 1: {shown(' Mary')}")
    expect(tip).to_contain_text("weight: ")
    assert root.locator("img").count() == 0 and dialogs == [], "token text must stay text"
    labels = root.locator(".aw-square-rows span.aw-token").all_text_contents()
    assert "".join(labels).replace("␣", " ") == "".join(tokens)
    screenshot(page, "attention_head_9_4")

    # a query typed in its box, then a new prompt typed: the query was the old prompt's, so it goes back to the last token
    query = root.locator("input.aw-query")
    query.fill("3")
    query.press("Enter")
    expect(root.locator(".aw-query-token")).to_have_text(shown(tokens[3]), timeout=60_000)
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    box = root.locator("textarea.aw-prompt")
    box.fill("The Eiffel Tower is in")
    box.press("Enter")
    expect(root.locator(".aw-query-token")).to_have_text(shown(" in"), timeout=60_000)
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    expect(query).to_have_value("")
    assert kernel_exec(page, "print(att.query, att.query_index)").split() == ["None", "5"]
