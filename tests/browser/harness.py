"""Browser-test helpers: a private JupyterLab server and Playwright page helpers.

Fixtures live in conftest.py (jupyter_server, browser, page, lab_page); the
helpers here are plain functions so tests can import them:

    from .harness import open_notebook, run_all_cells, save_notebook, screenshot
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

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
LIGHT_DIR = Path(__file__).resolve().parent / "light"
LIGHT_PAGE = "static/aw_light.html"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}


# ----------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterServer:
    """A running `jupyter lab` with private config/runtime/workspace dirs."""

    port: int
    token: str
    root_dir: Path
    home: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    startup_s: float = 0.0
    # light: a bare `jupyter server` (no JupyterLab, no server extensions) that serves
    # tests/browser/light/aw_light.html, a page that draws widgets live from a kernel.
    light: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "", **query: str) -> str:
        q = "&".join(f"{k}={urllib.parse.quote(str(v))}" if v is not None else k for k, v in query.items())
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}" + (f"{sep}{q}" if q else "")

    def api(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 10):
        req = urllib.request.Request(
            f"{self.base_url}/api/{path.lstrip('/')}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    # -- notebooks -----------------------------------------------------------
    def add_notebook(self, nb_or_path, name: str | None = None, kernel: str = "python3") -> str:
        """Put a notebook (nbformat node or a path) into root_dir; return its path relative to root_dir.

        A python3 kernelspec is added when missing, so JupyterLab starts the kernel
        without asking. Files next to a source notebook are not copied (use add_file).
        """
        import nbformat

        if isinstance(nb_or_path, (str, os.PathLike)):
            src = Path(nb_or_path)
            nb = nbformat.read(src, as_version=4)
            name = name or src.name
        else:
            nb = nb_or_path
            name = name or f"nb_{secrets.token_hex(4)}.ipynb"
        nb.metadata.setdefault(
            "kernelspec", {"name": kernel, "display_name": "Python 3 (ipykernel)", "language": "python"}
        )
        nb.metadata.setdefault("language_info", {"name": "python"})
        dest = self.root_dir / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest)
        return dest.relative_to(self.root_dir).as_posix()

    def add_file(self, src, name: str | None = None) -> str:
        src = Path(src)
        dest = self.root_dir / (name or src.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest)
        return dest.relative_to(self.root_dir).as_posix()

    def read_notebook(self, path: str):
        import nbformat

        return nbformat.read(self.root_dir / path, as_version=4)

    # -- lifecycle -----------------------------------------------------------
    def start(self, timeout: float = 90.0) -> "JupyterServer":
        cfg = self.home / "config"
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
        for d in ("runtime", "workspaces", "data", "ipython"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(cfg),
            JUPYTER_RUNTIME_DIR=str(self.home / "runtime"),
            JUPYTER_DATA_DIR=str(self.home / "data"),
            JUPYTERLAB_WORKSPACES_DIR=str(self.home / "workspaces"),
            JUPYTERLAB_SETTINGS_DIR=str(cfg / "lab" / "user-settings"),
            IPYTHONDIR=str(self.home / "ipython"),
            JUPYTER_PLATFORM_DIRS="1",
            JUPYTER_PREFER_ENV_PATH="1",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        )
        if self.light:
            # no server extensions at all (the env enables jupyterlab, notebook, lsp, ...)
            (cfg / "jupyter_server_config.json").write_text(json.dumps({"ServerApp": {"jpserver_extensions": {
                name: False for name in ("jupyterlab", "notebook", "notebook_shim", "jupyter_lsp", "jupyter_server_terminals")
            }}}))
        app = "server" if self.light else "lab"
        cmd = [
            sys.executable, "-m", "jupyter", app,
            "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
        ]
        if self.light:
            cmd.append(f"--ServerApp.extra_static_paths={LIGHT_DIR}")
        else:
            cmd += [
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.news_url=None",
                "--LabApp.extension_manager=readonly",
                "--LabApp.expose_app_in_browser=True",
            ]
        ready_path = LIGHT_PAGE if self.light else "lab"
        t0 = time.monotonic()
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            cmd, cwd=self.root_dir, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        deadline = t0 + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"jupyter {app} exited with code {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                self.api("status", timeout=2)
                # The lab page itself (served by jupyterlab), or the light page, must be up too.
                with urllib.request.urlopen(self.url(ready_path, token=self.token), timeout=5) as r:
                    if r.status == 200:
                        self.startup_s = time.monotonic() - t0
                        return self
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                last = e
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"jupyter {app} not ready after {timeout:.0f}s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        # Kernels run in their own sessions: collect every descendant first.
        try:
            import psutil

            children = psutil.Process(proc.pid).children(recursive=True)
        except Exception:
            children = []
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server shuts its kernels down on SIGTERM
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        for c in children:
            try:
                c.kill()
            except Exception:
                pass


def start_jupyter_server(home: Path, light: bool = False) -> JupyterServer:
    """A private `jupyter lab`; light=True: a bare `jupyter server` for the light widget page."""
    home.mkdir(parents=True, exist_ok=True)
    server = JupyterServer(
        port=free_port(),
        token=secrets.token_hex(16),
        root_dir=home / "root",
        home=home,
        log_path=ARTIFACTS / ("widget-server.log" if light else "jupyter-server.log"),
        light=light,
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


def output_locator(page, text: str | None = None):
    """Locator of notebook output areas (optionally those containing `text`)."""
    loc = page.locator(".jp-OutputArea-output")
    return loc.filter(has_text=text) if text else loc


def kernel_exec(page, code: str, timeout: float = 60.0) -> str:
    """Run `code` in the open notebook's kernel (not in a cell) and return its stdout."""
    if getattr(page, "aw_light", False):
        return page.evaluate("(code) => window.awLight.exec(code)", code)
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


def open_widget_page(page, server: JupyterServer, timeout: float = 120.0) -> None:
    """Open the light widget page of a light server and start a fresh kernel for it."""
    assert server.light, "open_widget_page needs the light server (the widget_server fixture)"
    page.aw_light = True
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


def run_code_notebook(page, server: JupyterServer, name: str, *cells: str, height: int = 1000) -> None:
    """Write a notebook of code cells, open it in JupyterLab and run it; fail on any error output.

    With the light server (widget_server) there is no notebook: the cells run on the light
    widget page instead, with the same live widgets and kernel_exec.
    """
    t0 = time.monotonic()
    if server.light:
        page.set_viewport_size({"width": 1400, "height": height})
        open_widget_page(page, server)
        t_open = time.monotonic() - t0
        errors = run_widget_cells(page, *cells)
        print(f"\n{name}: light page+kernel ready {t_open:.1f}s, cells run {time.monotonic() - t0 - t_open:.1f}s")
        assert errors == [], errors
        return
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path = server.add_notebook(nb, name)
    page.set_viewport_size({"width": 1400, "height": height})
    open_notebook(page, server, path)
    t_open = time.monotonic() - t0
    errors = run_all_cells(page)
    print(f"\n{name}: notebook open+kernel idle {t_open:.1f}s, cells run {time.monotonic() - t0 - t_open:.1f}s")
    assert errors == [], errors
