"""Long prompts in real JupyterLab and headless Chromium. The logit lens: its first screen is drawn while the rest is still being
computed, a scroll to the end fills the end in next (not in order), the cells not reached
yet say so, the cancel button stops the run before the end, and the widget then runs a new
prompt as usual. The heatmap: its bar moves through the one long forward, and its cancel
button stops it there."""
from __future__ import annotations

import time

from playwright.sync_api import expect

from .harness import kernel_exec, run_code_notebook, screenshot
from .test_quickstart import CANVAS_PIXELS

# ~1,650 tokens: the first screen (256 positions) in seconds, the whole lens in a minute or
# two on 2 cores, so the test acts while the rest is still being computed.
SETUP = """import actwidgets as aw
model = aw.load()
prompt = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(110))
lens = aw.LogitLens(model, prompt)
lens"""

LIVE_LENS = ".aw-root[data-widget=lens]:not([data-snapshot])"
# the status, then per column (layer 0): 1 if computed
COMPUTED = ("import numpy as np; e = np.frombuffer(lens.entropy, '<f4').reshape(lens.shape) if lens.entropy else None;"
            "print(lens.status, ''.join('0' if np.isnan(x) else '1' for x in (e[0] if e is not None else [])))")


def computed(page) -> tuple[str, str]:
    """('1' or '0' per column: computed yet, the widget's status)."""
    status, columns = (kernel_exec(page, COMPUTED).split() + [""])[:2]
    return columns, status


def until(page, ready, timeout: float = 180.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    state = computed(page)
    while not ready(*state) and time.monotonic() < deadline:
        time.sleep(0.5)
        state = computed(page)
    return state


def painted(root) -> float:
    """The fraction of the grid canvas's pixels that are drawn (not transparent)."""
    return root.locator("canvas.aw-grid").evaluate(CANVAS_PIXELS)["painted"]


def hover(page, root, at: float, height: float = 0.5) -> tuple[int, str]:
    """Scroll the grid to `at` of its width (0 its start, 1 its end), hover the cell at that
    place in the view and at `height` of the layers (0 the first row, 1 the last); return the
    column the tooltip names and the tooltip's text."""
    root.locator("div.aw-scroll").evaluate(f"el => {{ el.scrollLeft = (el.scrollWidth - el.clientWidth) * {at}; }}")
    canvas = root.locator("canvas.aw-grid").bounding_box()
    x, y = canvas["x"] + 44 + at * (canvas["width"] - 48), canvas["y"] + canvas["height"] * height
    page.mouse.move(x - 20, y)  # a move, so the hover is fresh
    page.mouse.move(x, y)
    tip = root.locator("div.aw-tooltip")
    expect(tip).to_be_visible()
    text = tip.inner_text()
    return int(text.split("token ", 1)[1].split(":", 1)[0]), text


def test_a_long_lens_fills_in_where_the_user_looks_and_stops_on_cancel(jupyter_server, page):
    run_code_notebook(page, jupyter_server, "long_lens.ipynb", SETUP, height=1100)
    root = page.locator(LIVE_LENS)
    root.scroll_into_view_if_needed()
    expect(root).to_have_attribute("data-status", "running", timeout=60_000)

    # the first screen: drawn while the rest runs
    columns, status = until(page, lambda c, s: "1" in c or s != "running")
    total = len(columns)
    assert status == "running" and columns.index("0") >= 256 and total > 1500, (columns.count("1"), total, status)
    cancel = root.locator("button.aw-cancel")
    expect(cancel).to_be_enabled()
    col, text = hover(page, root, at=0)
    assert col < 256 and "1. " in text, text  # a first-screen cell lists its top tokens
    assert painted(root) > 0.5
    screenshot(page, "lens_first_screen")

    # a scroll to the end: those columns come next, before the middle
    col, text = hover(page, root, at=1)
    assert col == total - 1 and "computing…" in text, text
    assert painted(root) < 0.05  # nothing there yet
    columns, status = until(page, lambda c, s: c.endswith("1" * 20) or s != "running")
    assert status == "running" and columns.endswith("1" * 20) and columns[total // 2] == "0", (columns, status)
    assert painted(root) > 0.5  # drawn at once, not at the next redraw
    col, text = hover(page, root, at=1)
    assert "1. " in text, text
    screenshot(page, "lens_end_first")

    # cancel: the middle is never computed, and says so
    cancel.click()
    expect(root).to_have_attribute("data-status", "cancelled", timeout=30_000)
    columns, status = computed(page)
    assert status == "cancelled" and columns[total // 2] == "0", (columns, status)
    expect(cancel).to_be_disabled()
    col, text = hover(page, root, at=0.5)
    assert columns[col] == "0" and "not computed: the run was stopped" in text, (col, text)
    screenshot(page, "lens_cancelled")

    # still usable: a short prompt runs to the end
    box = root.locator("textarea.aw-prompt")
    box.fill("The Eiffel Tower is located in the city of")
    box.press("Enter")
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    assert computed(page) == ("1" * 10, "done")
    col, text = hover(page, root, at=1, height=0.99)  # the last layer: the model's own prediction
    assert col == 9 and "Paris" in text, text
    screenshot(page, "lens_after_cancel")


HEATMAP = """import actwidgets as aw
model = aw.load()
prompt = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(500))
small = aw.Heatmap(model, "The cat sat")
display(small)
heat = aw.Heatmap(model, prompt)
heat"""


def test_a_long_heatmap_shows_progress_and_stops_on_cancel(jupyter_server, page):
    """~7,900 tokens (the model reads 8,192): one forward of a minute or so on 2 cores."""
    run_code_notebook(page, jupyter_server, "long_heatmap.ipynb", HEATMAP, height=1000)
    small, root = page.locator(".aw-root[data-widget=heatmap]:not([data-snapshot])").all()
    root.scroll_into_view_if_needed()
    expect(root).to_have_attribute("data-status", "running", timeout=60_000)
    bar = root.locator("progress.aw-progress")
    page.wait_for_function("(bar) => bar.value > 0", arg=bar.element_handle(), timeout=120_000)  # mid-forward
    assert kernel_exec(page, "print(heat.status)").strip() == "running"
    screenshot(page, "heatmap_long_running")

    # another widget of the same model, edited now, waits for the model and says so
    small_box = small.locator("textarea.aw-prompt")
    small_box.fill("The dog sat down")
    small_box.press("Enter")
    expect(small).to_have_attribute("data-status", "queued", timeout=10_000)
    expect(small.locator(".aw-status")).to_have_text("queued: the model is busy")
    expect(small.locator("button.aw-cancel")).to_be_enabled()
    assert kernel_exec(page, "print(small.status, heat.status)").split() == ["queued", "running"]
    small.scroll_into_view_if_needed()
    screenshot(page, "heatmap_queued")

    root.locator("button.aw-cancel").click()
    expect(root).to_have_attribute("data-status", "cancelled", timeout=30_000)
    expect(small).to_have_attribute("data-status", "done", timeout=60_000)  # the model is free: its turn
    assert kernel_exec(page, "print(list(small.shape))").strip() == "[31, 4]"
    expect(root.locator("button.aw-cancel")).to_be_disabled()
    assert kernel_exec(page, "print(heat.status, list(heat.shape))").strip() == "cancelled [0, 0]"  # stopped mid-way: nothing drawn
    box = root.locator("textarea.aw-prompt")
    box.fill("The Eiffel Tower is located in the city of")
    box.press("Enter")
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    assert kernel_exec(page, "print(heat.status, list(heat.shape))").strip() == "done [31, 10]"
    screenshot(page, "heatmap_after_cancel")
