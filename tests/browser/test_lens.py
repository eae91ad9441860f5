"""A long prompt's logit lens, live on the light widget page (a real kernel, the real
front-end module; no JupyterLab): its first screen is drawn while the rest is still being
computed, the cells not reached yet say so, the cancel button stops it before the end, and the
widget then runs a new prompt as usual."""
from __future__ import annotations

import time

from playwright.sync_api import expect

from .harness import kernel_exec, run_code_notebook, screenshot

# ~1,600 tokens: the first screen (256 positions) in seconds, the whole lens in about a
# minute on 2 cores, so the test acts while the rest is still being computed.
SETUP = """import actwidgets as aw
model = aw.load()
prompt = " ".join(f"Line {i}: the quick brown fox jumps over the lazy dog." for i in range(110))
lens = aw.LogitLens(model, prompt)
lens"""

LIVE_LENS = ".aw-root[data-widget=lens]:not([data-snapshot])"
COMPUTED = ("import numpy as np; e = np.frombuffer(lens.entropy, '<f4').reshape(lens.shape) if lens.entropy else None;"
            "print(-1 if e is None else int((~np.isnan(e[0])).sum()), lens.shape[1], lens.status)")


def computed_columns(page) -> tuple[int, int, str]:
    done, total, status = kernel_exec(page, COMPUTED).split()
    return int(done), int(total), status


def painted(root) -> float:
    """The fraction of the grid canvas's pixels that are drawn (not transparent)."""
    return root.locator("canvas.aw-grid").evaluate("""(canvas) => {
        const {data} = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
        let drawn = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) drawn++;
        return drawn / (data.length / 4);
    }""")


def hover(page, root, end: bool, height: float = 0.5) -> tuple[int, str]:
    """Scroll the grid to its start or its end, hover the cell at that edge of the view and at
    `height` of the layers (0 the first row, 1 the last); return the column the tooltip
    names and the tooltip's text."""
    root.locator("div.aw-scroll").evaluate(f"el => {{ el.scrollLeft = {'el.scrollWidth' if end else 0}; }}")
    canvas = root.locator("canvas.aw-grid").bounding_box()
    x = canvas["x"] + (canvas["width"] - 4 if end else 44)
    y = canvas["y"] + canvas["height"] * height
    page.mouse.move(x - 20, y)  # a move, so the hover is fresh
    page.mouse.move(x, y)
    tip = root.locator("div.aw-tooltip")
    expect(tip).to_be_visible()
    text = tip.inner_text()
    return int(text.split("token ", 1)[1].split(":", 1)[0]), text


def test_a_long_lens_shows_its_first_screen_and_stops_on_cancel(widget_server, page):
    run_code_notebook(page, widget_server, "lens.ipynb", SETUP, height=1100)
    root = page.locator(LIVE_LENS)
    expect(root).to_have_attribute("data-status", "running", timeout=60_000)

    deadline = time.monotonic() + 180
    done, total, status = computed_columns(page)
    while done < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
        done, total, status = computed_columns(page)
    assert status == "running" and 256 <= done < total > 1500, (done, total, status)
    cancel = root.locator("button.aw-cancel")
    expect(cancel).to_be_enabled()
    col, text = hover(page, root, end=False)
    assert col < 256 and "1. " in text, text  # a first-screen cell lists its top tokens
    col, text = hover(page, root, end=True)
    assert col > done and "computing…" in text, (done, text)
    assert painted(root) < 0.05  # the view's columns are all still to come: nothing drawn there
    hover(page, root, end=False)
    assert painted(root) > 0.5
    screenshot(page, "lens_first_screen")

    cancel.click()
    expect(root).to_have_attribute("data-status", "cancelled", timeout=30_000)
    done, total, status = computed_columns(page)
    assert status == "cancelled" and done < total, (done, total, status)
    expect(cancel).to_be_disabled()
    col, text = hover(page, root, end=True)
    assert col > done and "not computed: the run was stopped" in text, (done, text)
    screenshot(page, "lens_cancelled")

    # still usable: a short prompt runs to the end
    box = root.locator("textarea.aw-prompt")
    box.fill("The Eiffel Tower is located in the city of")
    box.press("Enter")
    expect(root).to_have_attribute("data-status", "done", timeout=60_000)
    assert computed_columns(page) == (10, 10, "done")
    col, text = hover(page, root, end=True, height=0.99)  # the last layer: the model's own prediction
    assert col == 9 and "Paris" in text, text
    screenshot(page, "lens_after_cancel")
