"""A private Jupyter server process for the browser tests: its own port, token and
config/runtime/data dirs, so nothing of the machine's Jupyter setup leaks in or out.

Which app runs, and with what settings, is a subclass's: harness.JupyterServer
(JupyterLab) and light.LightServer (a bare `jupyter server` for the light widget page).
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
from typing import ClassVar


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class JupyterProcess:
    """A running `jupyter <APP>` with private config/runtime/workspace dirs under home."""

    port: int
    token: str
    root_dir: Path
    home: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    startup_s: float = 0.0
    APP: ClassVar[str]  # the `jupyter` subcommand
    READY_PATH: ClassVar[str]  # a page the app serves once it is up
    LOG_NAME: ClassVar[str]  # the log's file name, beside the test artifacts

    def configure(self, cfg: Path) -> list[str]:
        """Write the app's settings under the private config dir cfg; return its extra arguments."""
        return []

    def run_cells(self, page, name: str, cells) -> list[str]:
        """Run code cells on the app's page (for harness.run_code_notebook); return the error texts."""
        raise NotImplementedError

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
    def start(self, timeout: float = 90.0) -> "JupyterProcess":
        cfg = self.home / "config"
        cfg.mkdir(parents=True, exist_ok=True)
        extra_args = self.configure(cfg)
        for d in ("runtime", "workspaces", "data", "ipython"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)

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
        app = self.APP
        cmd = [
            sys.executable, "-m", "jupyter", app,
            "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            *extra_args,
        ]
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
                # The app's own page (the lab page is served by jupyterlab) must be up too.
                with urllib.request.urlopen(self.url(self.READY_PATH, token=self.token), timeout=5) as r:
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
