"""Browser-test helpers: a private JupyterLab server and Playwright page helpers.

Fixtures live in conftest.py (jupyter_server, browser, page, lab_page); the
helpers here are plain functions so tests can import them:

    from .harness import open_notebook, run_all_cells, save_notebook, screenshot

The server process itself is server.py's; the light widget page (a bare `jupyter server`,
no JupyterLab) is light.py's.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.parse
from pathlib import Path

from .server import JupyterProcess, free_port

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = os.environ.get("AW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}


# ----------------------------------------------------------------------------- server
class JupyterServer(JupyterProcess):
    """A private `jupyter lab`: a fresh workspace, no news/update checks, every cell rendered."""

    APP = "lab"
    READY_PATH = "lab"
    LOG_NAME = "jupyter-server.log"

    def configure(self, cfg: Path) -> list[str]:
        (cfg / "labconfig").mkdir(parents=True, exist_ok=True)
        # No news / announcement toast over the page.
        (cfg / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        # User settings (the user-settings dir lives in the private config dir):
        # render every cell (no virtual scrolling), no update/news checks.
        us = cfg / "lab" / "user-settings" / "@jupyterlab"
        (us / "notebook-extension").mkdir(parents=True, exist_ok=True)
        (us / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
            json.dumps({"windowingMode": "none"})
        )
        (us / "apputils-extension").mkdir(parents=True, exist_ok=True)
        (us / "apputils-extension" / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False})
        )
        return [
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly",
            "--LabApp.expose_app_in_browser=True",
        ]

    def run_cells(self, page, name: str, cells) -> list[str]:
        """Open the code cells as notebook `name` and run them all; return the error outputs."""
        import nbformat

        t0 = time.monotonic()
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        open_notebook(page, self, self.add_notebook(nb, name))
        t_open = time.monotonic() - t0
        errors = run_all_cells(page)
        print(f"\n{name}: notebook open+kernel idle {t_open:.1f}s, cells run {time.monotonic() - t0 - t_open:.1f}s")
        return errors


def worker_prefixed(name: str) -> str:
    """`name`, prefixed with the pytest-xdist worker's id when tests run in several processes."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"{worker}-{name}" if worker else name


def start_jupyter_server(home: Path, server_class: type[JupyterProcess] = JupyterServer) -> JupyterProcess:
    """A private `jupyter lab`, or a server_class app (light.LightServer: the light widget page)."""
    home.mkdir(parents=True, exist_ok=True)
    server = server_class(
        port=free_port(),
        token=secrets.token_hex(16),
        root_dir=home / "root",
        home=home,
        log_path=ARTIFACTS / worker_prefixed(server_class.LOG_NAME),
    )
    return server.start()


# ----------------------------------------------------------------------------- requests
def is_local_url(url: str) -> bool:
    p = urllib.parse.urlsplit(url)
    if p.scheme in LOCAL_SCHEMES:
        return True
    return (p.hostname or "") in LOCAL_HOSTS


def non_local(urls) -> list[str]:
    return sorted({u for u in urls if not is_local_url(u)})


def assert_only_local_requests(page) -> None:
    """Every request (and websocket) the page made went to 127.0.0.1/localhost."""
    bad = non_local(getattr(page, "aw_requests", []))
    assert not bad, f"the page made {len(bad)} non-local request(s): {bad[:20]}"


# ----------------------------------------------------------------------------- page helpers
# JS that finds the notebook panel for a path (or the current widget).
_JS_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  const isNb = (w) => w && w.sessionContext && w.content && w.content.model !== undefined && w.context;
  if (path) {
    for (const w of app.shell.widgets('main')) if (isNb(w) && w.context.path === path) return w;
    return null;
  }
  const w = app.shell.currentWidget;
  return isNb(w) ? w : null;
}
"""

_JS_KERNEL_IDLE = (
    "(path) => { const find = " + _JS_PANEL + "; const p = find(path);"
    " if (!p || !p.content.model) return false;"
    " const sc = p.sessionContext; const k = sc.session && sc.session.kernel;"
    " return !!(k && sc.isReady && k.status === 'idle' && k.connectionStatus === 'connected'"
    "   && p.context.isReady && p.content.widgets.length > 0); }"
)

_JS_BUSY_PROMPTS = (
    "() => Array.from(document.querySelectorAll('.jp-InputArea-prompt'))"
    ".filter(e => (e.textContent || '').includes('[*]')).length"
)

_JS_ERRORS = (
    "(path) => { const find = " + _JS_PANEL + "; const p = find(path); if (!p) return ['no notebook panel'];"
    " const out = []; const cells = p.content.model.cells;"
    " for (let i = 0; i < cells.length; i++) { const c = cells.get(i);"
    "   if (c.type !== 'code') continue; const o = c.outputs;"
    "   for (let j = 0; j < o.length; j++) { const x = o.get(j).toJSON();"
    "     if (x.output_type === 'error') out.push(`cell ${i}: ${x.ename}: ${x.evalue}`); } }"
    " return out; }"
)


def open_notebook(page, server: JupyterServer, path: str, timeout: float = 120.0) -> None:
    """Open root_dir/path in JupyterLab (fresh workspace) and wait for an idle kernel."""
    page.aw_path = path
    url = server.url(f"lab/tree/{urllib.parse.quote(path)}", reset=None, token=server.token)
    page.goto(url, wait_until="domcontentloaded", timeout=timeout * 1000)
    page.wait_for_function("() => !!(window.jupyterapp && window.jupyterapp.shell)", timeout=timeout * 1000)
    page.wait_for_function(_JS_KERNEL_IDLE, arg=path, timeout=timeout * 1000, polling=200)


def wait_kernel_idle(page, path: str | None = None, timeout: float = 300.0) -> None:
    path = path if path is not None else getattr(page, "aw_path", None)
    page.wait_for_function(_JS_KERNEL_IDLE, arg=path, timeout=timeout * 1000, polling=250)
    page.wait_for_function(f"() => ({_JS_BUSY_PROMPTS})() === 0", timeout=timeout * 1000, polling=250)


def notebook_errors(page, path: str | None = None) -> list[str]:
    """`cell i: Ename: evalue` for every error output in the open notebook."""
    path = path if path is not None else getattr(page, "aw_path", None)
    return page.evaluate(_JS_ERRORS, path)


def run_all_cells(page, timeout: float = 300.0, settle_s: float = 0.5) -> list[str]:
    """Run every cell, wait for the kernel to be idle with no `[*]` prompt; return error outputs."""
    path = getattr(page, "aw_path", None)
    page.evaluate(
        "async (path) => { const find = " + _JS_PANEL + "; const p = find(path);"
        " if (p) window.jupyterapp.shell.activateById(p.id);"
        " await window.jupyterapp.commands.execute('notebook:run-all-cells'); }",
        path,
    )
    # run-all resolves when the last execute_reply arrives; check twice so that a
    # brief idle between cells (or a late comm message) is not mistaken for the end.
    wait_kernel_idle(page, path, timeout)
    page.wait_for_timeout(settle_s * 1000)
    wait_kernel_idle(page, path, timeout)
    return notebook_errors(page, path)


def run_cell(page, index: int, timeout: float = 300.0) -> list[str]:
    """Select cell `index` and run it (notebook:run-cell)."""
    path = getattr(page, "aw_path", None)
    page.evaluate(
        "async ([path, i]) => { const find = " + _JS_PANEL + "; const p = find(path);"
        " window.jupyterapp.shell.activateById(p.id); p.content.activeCellIndex = i;"
        " await window.jupyterapp.commands.execute('notebook:run-cell'); }",
        [path, index],
    )
    wait_kernel_idle(page, path, timeout)
    return notebook_errors(page, path)


def save_notebook(page, timeout: float = 30.0) -> None:
    """Save the open notebook and wait until the model is clean."""
    path = getattr(page, "aw_path", None)
    page.evaluate(
        "async (path) => { const find = " + _JS_PANEL + "; const p = find(path);"
        " window.jupyterapp.shell.activateById(p.id); await p.context.save(); }",
        path,
    )
    page.wait_for_function(
        "(path) => { const find = " + _JS_PANEL + "; const p = find(path); return p && !p.context.model.dirty; }",
        arg=path,
        timeout=timeout * 1000,
    )


def screenshot(page, name: str, **kwargs) -> Path:
    """Save a PNG of the page to tests/artifacts/<name>.png and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    path = ARTIFACTS / (safe if safe.endswith(".png") else f"{safe}.png")
    page.screenshot(path=str(path), **kwargs)
    return path


def kernel_exec(page, code: str, timeout: float = 60.0) -> str:
    """Run `code` in the open notebook's kernel (not in a cell) and return its stdout."""
    own_exec = getattr(page, "aw_kernel_exec", None)  # a page with its own kernel client (light.py)
    if own_exec is not None:
        return own_exec(code)
    path = getattr(page, "aw_path", None)
    return page.evaluate(
        "async ([path, code]) => { const find = " + _JS_PANEL + "; const p = find(path);"
        " const kernel = p.sessionContext.session.kernel; let out = '';"
        " const future = kernel.requestExecute({code, silent: false, store_history: false});"
        " future.onIOPub = (msg) => { const c = msg.content;"
        "   if (msg.header.msg_type === 'stream') out += c.text;"
        "   if (msg.header.msg_type === 'error') out += `${c.ename}: ${c.evalue}`; };"
        " await future.done; return out; }",
        [path, code],
    )


def run_code_notebook(page, server: JupyterProcess, name: str, *cells: str, height: int = 1000) -> None:
    """Write a notebook of code cells, open it in JupyterLab and run it; fail on any error output.

    With the light server (widget_server) there is no notebook: the cells run on the light
    widget page instead, with the same live widgets and kernel_exec.
    """
    page.set_viewport_size({"width": 1400, "height": height})
    errors = server.run_cells(page, name, cells)
    assert errors == [], errors
