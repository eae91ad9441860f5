"""The steering slider, live on the light widget page (a real kernel, the real front-end
module; no JupyterLab): clicking and dragging it re-generates the
steered text, the KL readout follows, and a fast drag ends on its last value."""
from __future__ import annotations

from playwright.sync_api import expect

from .harness import kernel_exec, run_code_notebook, screenshot

SETUP = """import actwidgets as aw
from actwidgets.methods.steering_examples import ASC_CONCISE, ASC_VERBOSE, ASC_LAYER
model = aw.load()
v = aw.steering.mean_difference(model, ASC_CONCISE, ASC_VERBOSE, ASC_LAYER)
steer = aw.Steering(model, "Q: What is 9 + 8?\\nA:", vector=v, layer=ASC_LAYER, kl_budget=0.05, max_new_tokens=12)
steer"""


def slider_point(slider, fraction: float):
    box = slider.bounding_box()
    return box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2


def test_steering_slider_live(widget_server, page):
    run_code_notebook(page, widget_server, "steering.ipynb", SETUP, height=1000)
    root = page.locator(".aw-root[data-widget=steering]:not([data-snapshot])")  # not the snapshot copy
    expect(root).to_have_attribute("data-status", "done", timeout=180_000)
    expect(root.locator(".aw-gamma-marker").first).to_be_attached()
    readout = root.locator(".aw-kl")
    before_kl = readout.text_content()
    unsteered = "".join(root.locator(".aw-unsteered .aw-tok").all_text_contents())
    assert len(unsteered) > 0 and root.locator(".aw-steered .aw-diff").count() == 0

    # a real click near the right end of the slider: a strong push, over the budget
    slider = root.locator("input.aw-strength")
    page.mouse.click(*slider_point(slider, 0.95))
    expect(root.locator(".aw-steered .aw-diff").first).to_be_visible(timeout=120_000)
    expect(root).to_have_attribute("data-status", "done", timeout=120_000)
    expect(readout).not_to_have_text(before_kl)
    assert "aw-over-budget" in (readout.get_attribute("class") or "")
    screenshot(page, "steering_strong")

    # a fast drag across the slider ends on the value where the mouse let go
    x0, y = slider_point(slider, 0.9)
    x1, _ = slider_point(slider, 0.55)
    page.mouse.move(x0, y)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(x0 + (x1 - x0) * i / 20, y)
        page.wait_for_timeout(40)
    page.mouse.up()
    out = kernel_exec(page, "steer.wait(); print(steer.strength, steer.shown_strength, steer.status)").split()
    assert out[0] == out[1] and out[2] == "done", out
    assert abs(float(slider.input_value()) - float(out[0])) < 1e-6
    expect(root).to_have_attribute("data-status", "done")
    screenshot(page, "steering_after_drag")
