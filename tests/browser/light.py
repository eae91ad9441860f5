"""The light widget page: a bare `jupyter server` (no JupyterLab, no server extensions)
serving light/aw_light.html, which draws widgets live (their real _esm modules) from a
real kernel. It starts in a fraction of JupyterLab's time, for widget-only checks.

conftest.py's widget_server is a LightServer; on it harness.run_code_notebook and
harness.kernel_exec work as in JupyterLab, and tests can drive the page directly:

    from .light import open_widget_page, run_widget_cells
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .server import JupyterProcess

LIGHT_DIR = Path(__file__).resolve().parent / "light"
LIGHT_PAGE = "static/aw_light.html"
# The env enables these server extensions; the light page needs none of them.
SERVER_EXTENSIONS = ("jupyterlab", "notebook", "notebook_shim", "jupyter_lsp", "jupyter_server_terminals")


class LightServer(JupyterProcess):
    """A bare `jupyter server` that serves LIGHT_DIR as static files."""

    APP = "server"
    READY_PATH = LIGHT_PAGE
    LOG_NAME = "widget-server.log"

    def configure(self, cfg: Path) -> list[str]:
        (cfg / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": {
            name: False for name in SERVER_EXTENSIONS
        }}}))
        return [f"--ServerApp.extra_static_paths={LIGHT_DIR}"]

    def run_cells(self, page, name: str, cells) -> list[str]:
        """No notebook: run the code cells on the light page; return the error texts."""
        t0 = time.monotonic()
        open_widget_page(page, self)
        t_open = time.monotonic() - t0
        errors = run_widget_cells(page, *cells)
        print(f"\n{name}: light page+kernel ready {t_open:.1f}s, cells run {time.monotonic() - t0 - t_open:.1f}s")
        return errors


def open_widget_page(page, server: LightServer, timeout: float = 120.0) -> None:
    """Open the light widget page of a light server and start a fresh kernel for it."""
    assert isinstance(server, LightServer), "open_widget_page needs the light server (the widget_server fixture)"
    # harness.kernel_exec runs code through this page's own kernel client.
    page.aw_kernel_exec = lambda code: page.evaluate("(code) => window.awLight.exec(code)", code)
    page.goto(server.url(LIGHT_PAGE, token=server.token), wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_function("() => !!window.awLight", timeout=timeout * 1000)
    page.evaluate("() => window.awLight.start()")


def run_widget_cells(page, *cells: str) -> list[str]:
    """On the light page: run each code cell in turn, drawing its widgets live; return error texts."""
    errors = []
    for code in cells:
        errors += page.evaluate("(code) => window.awLight.run(code)", code)
        if errors:
            break
    return errors
