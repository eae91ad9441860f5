"""`widget.to_html()` writes one file that draws the figure in a browser with the
network switched off: no server, no kernel, no CDN."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

import actwidgets as aw

from .harness import screenshot
from .test_quickstart import CANVAS_PIXELS

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to", (" Mary", " John"))


@pytest.fixture
def offline_page(browser):
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
    page = context.new_page()
    requests, problems = [], []
    context.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.aw_requests, page.aw_problems = requests, problems
    try:
        yield page
    finally:
        context.close()


@pytest.mark.parametrize("kind", ["heatmap", "lens", "patching"])
def test_exported_html_draws_offline(default_model, offline_page, tmp_path, kind):
    prompt = "The Eiffel Tower is located in the city of"
    widget = {
        "heatmap": lambda: aw.Heatmap(default_model, prompt),
        "lens": lambda: aw.LogitLens(default_model, prompt, target=" Paris"),
        "patching": lambda: aw.PatchingGrid(default_model, *IOI, method="attribution"),
    }[kind]().wait()
    path = widget.to_html(tmp_path / f"{kind}.html")

    page = offline_page
    page.goto(path.as_uri())
    root = page.locator(f".aw-snapshot .aw-root[data-widget={kind}]")
    expect(root).to_have_attribute("data-snapshot", "true")
    expect(page.locator(".aw-snapshot-badge")).to_contain_text("Snapshot")
    canvas = root.locator("canvas.aw-grid").first
    expect(canvas).to_be_visible()
    pixels = canvas.evaluate(CANVAS_PIXELS)
    assert pixels["painted"] > 0.5, pixels
    # read-only: every control is disabled, the prompt keeps its text
    for control in root.locator("textarea, input, select, button").all():
        expect(control).to_be_disabled()
    if kind != "patching":
        expect(root.locator("textarea.aw-prompt")).to_have_value(prompt)
    # hovering still explains a cell: a snapshot is read-only, not dead
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.9)
    expect(root.locator(".aw-tooltip").first).to_be_visible()
    shot = screenshot(page, f"export-{kind}")
    assert shot.stat().st_size > 10_000
    assert page.aw_requests == [path.as_uri()], page.aw_requests
    assert page.aw_problems == [], page.aw_problems


def test_exported_steering_html_shows_both_continuations(default_model, offline_page, tmp_path):
    import torch

    torch.manual_seed(0)
    vector = torch.randn(default_model.hf.config.hidden_size)
    steer = aw.Steering(default_model, "Tell me about cats.", vector=vector / vector.norm(), layer=10,
                        strength=1.0, max_new_tokens=8).wait()
    path = steer.to_html(tmp_path / "steering.html")
    page = offline_page
    page.goto(path.as_uri())
    root = page.locator(".aw-snapshot .aw-root[data-widget=steering]")
    expect(root).to_have_attribute("data-snapshot", "true")
    text = root.inner_text()
    assert "".join(steer.steered_tokens).strip()[:10] in text
    screenshot(page, "export-steering")
    assert page.aw_requests == [path.as_uri()], page.aw_requests
    assert page.aw_problems == [], page.aw_problems


def test_exported_html_survives_text_that_would_change_how_the_page_parses(default_model, offline_page, tmp_path):
    """`<!--<script>` in a prompt once left a blank page: the figure draws, and the prompt box
    shows the text exactly, U+2028 included."""
    prompt = "<!--<script> a </script> b <!-- c & d \u2028 e"
    path = aw.Heatmap(default_model, prompt).wait().to_html(tmp_path / "untrusted.html")
    page = offline_page
    page.goto(path.as_uri())
    root = page.locator(".aw-snapshot .aw-root[data-widget=heatmap]")
    expect(root).to_have_attribute("data-snapshot", "true")
    assert root.locator("canvas.aw-grid").first.evaluate(CANVAS_PIXELS)["painted"] > 0.5
    expect(root.locator("textarea.aw-prompt")).to_have_value(prompt)
    screenshot(page, "export-untrusted")
    assert page.aw_problems == [], page.aw_problems


def test_exported_error_state_dims_the_previous_figure(default_model, offline_page, tmp_path):
    """After a failed run the kept figure is the previous input's: dimmed, and a note says so.
    With no previous figure there is nothing to dim."""
    widget = aw.Heatmap(default_model, "The Eiffel Tower is located in the city of").wait()
    widget.prompt = "   "
    assert widget.wait().status == "error"
    page = offline_page
    page.goto(widget.to_html(tmp_path / "error.html").as_uri())
    root = page.locator(".aw-snapshot .aw-root[data-widget=heatmap]")
    expect(root.locator(".aw-error")).to_have_text(widget.error)
    expect(root.locator(".aw-stale-note")).to_be_visible()
    expect(root.locator(".aw-stale-note")).to_have_text("Figure from the previous input")
    body = root.locator(".aw-body")
    expect(body).to_have_class("aw-body aw-stale")
    page.mouse.move(0, 0)  # hovering brightens it: measure it at rest
    page.wait_for_timeout(300)
    assert float(body.evaluate("el => getComputedStyle(el).opacity")) < 0.5
    assert root.locator("canvas.aw-grid").first.evaluate(CANVAS_PIXELS)["painted"] > 0.5  # still drawn
    screenshot(page, "error-state")
    assert page.aw_problems == [], page.aw_problems

    page.goto(aw.Heatmap(default_model, "").wait().to_html(tmp_path / "error-first.html").as_uri())
    root = page.locator(".aw-snapshot .aw-root[data-widget=heatmap]")
    expect(root).to_have_attribute("data-status", "error")
    expect(root.locator(".aw-stale-note")).to_be_hidden()
    assert float(root.locator(".aw-body").evaluate("el => getComputedStyle(el).opacity")) == 1


def test_exported_cancel_before_the_run_drew_dims_the_previous_figure(default_model, offline_page, tmp_path):
    """Cancelled while queued behind another widget's job: the page shows the earlier prompt's
    figure dimmed, says whose it is, and shows no error."""
    import threading

    from actwidgets.widgets import _runner

    widget = aw.Heatmap(default_model, "The Eiffel Tower is located in the city of").wait()
    release = threading.Event()
    gate = _runner.Runner(widget._runner._worker)
    gate.submit(lambda _current: release.wait(30))
    try:
        widget.prompt = "A completely different prompt about the sea"
        assert widget.status == "queued"
        widget.cancel()
    finally:
        release.set()
    assert widget.wait().status == "cancelled" and widget.stale
    page = offline_page
    page.goto(widget.to_html(tmp_path / "cancelled.html").as_uri())
    root = page.locator(".aw-snapshot .aw-root[data-widget=heatmap]")
    expect(root).to_have_attribute("data-status", "cancelled")
    expect(root.locator(".aw-stale-note")).to_have_text("Figure from the previous input")
    expect(root.locator(".aw-error")).to_be_hidden()
    expect(root.locator(".aw-body")).to_have_class("aw-body aw-stale")
    screenshot(page, "cancelled-stale")
    assert page.aw_problems == [], page.aw_problems
