"""The marimo quickstart (notebooks/quickstart_marimo.py) live in real marimo and headless Chromium.

`marimo edit --headless --no-token` serves the notebook on 127.0.0.1 (its kernel is a separate
process, so every result a widget's worker thread computes has to cross marimo's own pipe to
reach the page). The test checks that both widgets draw, that editing the heatmap's prompt in
the page re-runs the model and redraws, that a click reaches Python (marimo re-runs the cell
that reads `heatmap.selection`), and that the page asks nothing of the network.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from .harness import ARTIFACTS, REPO, assert_only_local_requests, screenshot
from .server import free_port
from .test_quickstart import CANVAS_PIXELS, edit_prompt, hover_cell, wait_done, widget

NOTEBOOK = REPO / "notebooks" / "quickstart_marimo.py"
LOG = ARTIFACTS / "marimo-server.log"
START_TIMEOUT_S = 60


class MarimoServer:
    """`marimo edit` on a copy of the notebook (edit mode may save the file it serves)."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "MarimoServer":
        self.home.mkdir(parents=True, exist_ok=True)
        notebook = self.home / NOTEBOOK.name
        shutil.copy2(NOTEBOOK, notebook)
        # marimo reads a .marimo.toml from its working directory first; edit mode runs no cell
        # on open unless told to.
        (self.home / ".marimo.toml").write_text("[runtime]\nauto_instantiate = true\n")
        env = dict(
            os.environ,
            XDG_CONFIG_HOME=str(self.home / "config"),  # no user marimo.toml leaks in
            MARIMO_SKIP_UPDATE_CHECK="1",  # it would ask PyPI
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        cmd = [sys.executable, "-m", "marimo", "-y", "edit", str(notebook), "--headless", "--no-token",
               "--host", "127.0.0.1", "--port", str(self.port), "--no-sandbox"]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with open(LOG, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.home, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"marimo exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"marimo not ready after {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(LOG.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:  # its own session: the kernel process goes with the server
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass


@pytest.fixture
def marimo_server(tmp_path):
    server = MarimoServer(tmp_path / "marimo").start()
    try:
        yield server
    finally:
        server.stop()


def test_marimo_quickstart_is_live(marimo_server, page):
    t0 = time.monotonic()
    page.set_viewport_size({"width": 1400, "height": 2400})  # both widgets on screen at once
    page.goto(marimo_server.url, wait_until="domcontentloaded")

    # Playwright's CSS selectors reach into the shadow root marimo draws each anywidget in.
    heat, lens = widget(page, "heatmap"), widget(page, "lens")
    wait_done(heat)
    wait_done(lens)
    heat_canvas = heat.locator("canvas.aw-grid")
    before = heat_canvas.evaluate(CANVAS_PIXELS)
    assert before["painted"] > 0.5, before
    assert lens.locator("canvas.aw-grid").evaluate(CANVAS_PIXELS)["painted"] > 0.5
    expect(heat.locator("span.aw-token[data-col='1']")).to_contain_text("Mary")
    print(f"\nmarimo: both widgets drawn {time.monotonic() - t0:.1f}s after opening the page")
    screenshot(page, "marimo_quickstart")

    # A click sets `selected` in Python, and marimo re-runs the cell that reads `heatmap.selection`.
    x, y = hover_cell(page, heat, col=3)
    page.mouse.click(x, y)
    selection = page.locator(".output-area").filter(has_text='"token"')  # None (empty) until a click
    expect(selection).to_contain_text('"col":3', timeout=30_000)
    expect(selection).to_contain_text("John")

    # Editing the prompt in the page re-runs the model on the worker thread and redraws.
    edit_prompt(heat, "The quick brown fox jumps over the lazy dog", 1, "quick")
    after = heat_canvas.evaluate(CANVAS_PIXELS)
    assert after["painted"] > 0.5 and after["hash"] != before["hash"], (before, after)
    screenshot(page, "marimo_quickstart_after_edit")
    assert_only_local_requests(page)
    print(f"marimo: test body {time.monotonic() - t0:.1f}s")
