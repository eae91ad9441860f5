"""Hatch build hook: bundle js/ into actwidgets/static/ and build the JupyterLab
extension into actwidgets/labextension/ before packaging.

Runs for the wheel (standard and editable) and the sdist. Each output is rebuilt
when it is missing or older than its sources:

    actwidgets/static/        js/src/**, js/package*.json, js/tsconfig.json
        cd js && (npm ci if node_modules is missing) && npm run build
    actwidgets/labextension/  js/src/**, js/labextension/src/**, js/labextension/
                              {package*.json, build.mjs, tsconfig.json}
        cd js/labextension && (npm ci if node_modules is missing) && npm run build

Both are gitignored: the wheel lists the bundles as `artifacts` and standard
wheels ship the extension as shared data (share/jupyter/labextensions/<name>, not
inside the package; the sdist carries it as an artifact), so users need no Node; editable installs get it from `make js`, which links it into
the venv. The extension build needs Node only (no Python JupyterLab): the core
metadata comes from the npm package @jupyterlab/core-meta.

Environment:
    ACTWIDGETS_SKIP_JS=1   never run npm (use whatever bundles exist)
    ACTWIDGETS_FORCE_JS=1  always rebuild
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

# Sources whose change makes the bundles stale (besides everything in js/src).
_JS_INPUTS = ("package.json", "package-lock.json", "tsconfig.json")
# ... and the extension (besides js/src and js/labextension/src).
_LABEXT_INPUTS = ("package.json", "package-lock.json", "build.mjs", "tsconfig.json")


def _log(msg: str) -> None:
    print(f"[actwidgets build] {msg}", file=sys.stderr, flush=True)


def _newest_mtime(paths) -> float:
    newest = 0.0
    for p in paths:
        try:
            newest = max(newest, p.stat().st_mtime)
        except OSError:
            pass
    return newest


class JsBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    # ------------------------------------------------------------------ paths
    @property
    def _root(self) -> Path:
        return Path(self.root)

    @property
    def _js(self) -> Path:
        return self._root / "js"

    @property
    def _static(self) -> Path:
        return self._root / "actwidgets" / "static"

    @property
    def _labext_js(self) -> Path:
        return self._js / "labextension"

    @property
    def _labext(self) -> Path:
        return self._root / "actwidgets" / "labextension"

    def _labext_entry(self) -> list[Path]:
        static = self._labext / "static"
        return sorted(static.glob("remoteEntry.*.js")) if static.is_dir() else []

    def _labext_sources(self) -> list[Path]:
        files = []
        for src in (self._js / "src", self._labext_js / "src"):
            if src.is_dir():
                files += [p for p in src.rglob("*") if p.is_file()]
        files += [self._labext_js / n for n in _LABEXT_INPUTS if (self._labext_js / n).is_file()]
        return files

    def _labext_stale_reason(self) -> str | None:
        pkg = self._labext / "package.json"
        if not pkg.is_file() or not self._labext_entry():
            return "no JupyterLab extension in actwidgets/labextension/"
        if _newest_mtime(self._labext_sources()) > pkg.stat().st_mtime:
            return "its sources are newer than actwidgets/labextension/"
        return None

    def _bundles(self) -> list[Path]:
        return sorted(self._static.glob("*.js")) if self._static.is_dir() else []

    def _sources(self) -> list[Path]:
        src = self._js / "src"
        files = [p for p in src.rglob("*") if p.is_file()] if src.is_dir() else []
        files += [self._js / n for n in _JS_INPUTS if (self._js / n).is_file()]
        return files

    def _stale_reason(self) -> str | None:
        bundles = self._bundles()
        if not bundles:
            return "no bundles in actwidgets/static/"
        oldest_bundle = min(b.stat().st_mtime for b in bundles)
        newest_source = _newest_mtime(self._sources())
        if newest_source > oldest_bundle:
            return "js sources are newer than the bundles"
        return None

    # ------------------------------------------------------------------ build
    def _npm(self, *args: str, cwd: Path | None = None) -> None:
        npm = shutil.which("npm")
        assert npm is not None
        cwd = cwd or self._js
        _log(f"$ (cd {cwd.relative_to(self._root)} && npm {' '.join(args)})")
        subprocess.run([npm, *args], cwd=cwd, check=True)

    def _npm_install(self, cwd: Path | None = None) -> None:
        # `npm ci` when the lock allows it. A registry mirror that lacks other
        # platforms' optional packages (e.g. @rollup/rollup-android-*) makes npm
        # write a lock that `npm ci` rejects as out of sync; `npm install` then
        # installs the same versions (and leaves the lock unchanged).
        cwd = cwd or self._js
        if (cwd / "package-lock.json").is_file():
            _log(f"$ (cd {cwd.relative_to(self._root)} && npm ci --no-audit --no-fund)")
            r = subprocess.run(
                [shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund"],
                cwd=cwd, capture_output=True, text=True,
            )
            if r.returncode == 0:
                return
            why = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.startswith("npm error")][:3]
            _log("`npm ci` failed; falling back to `npm install`:\n    " + "\n    ".join(why))
        self._npm("install", "--no-audit", "--no-fund", cwd=cwd)

    def _build_js(self, editable: bool) -> None:
        if os.environ.get("ACTWIDGETS_SKIP_JS"):
            _log("ACTWIDGETS_SKIP_JS is set: not building js/")
            return
        reason = "ACTWIDGETS_FORCE_JS is set" if os.environ.get("ACTWIDGETS_FORCE_JS") else self._stale_reason()
        if reason is None:
            _log("bundles in actwidgets/static/ are up to date")
            return

        have_bundles = bool(self._bundles())
        if not (self._js / "package.json").is_file():
            msg = f"{reason}, and js/package.json does not exist, so the front-end cannot be built"
            if have_bundles or editable:
                # An editable install is still useful for Python work; say so loudly.
                _log(f"WARNING: {msg}. Widgets will not render until `make js` has run.")
                return
            raise RuntimeError(f"actwidgets: {msg}.")
        if shutil.which("npm") is None:
            msg = f"{reason}, but npm is not on PATH (install Node.js >= 20)"
            if have_bundles:
                _log(f"WARNING: {msg}; shipping the existing bundles.")
                return
            if editable:
                _log(f"WARNING: {msg}. Widgets will not render until `make js` has run.")
                return
            raise RuntimeError(f"actwidgets: {msg}.")

        _log(f"building the front-end: {reason}")
        if not (self._js / "node_modules").is_dir():
            self._npm_install()
        self._npm("run", "build")
        if not self._bundles():
            raise RuntimeError("actwidgets: `npm run build` produced no actwidgets/static/*.js")

    def _build_labext(self, editable: bool) -> None:
        """Build the prebuilt JupyterLab extension when stale (same rules as the bundles)."""
        if os.environ.get("ACTWIDGETS_SKIP_JS"):
            return
        reason = "ACTWIDGETS_FORCE_JS is set" if os.environ.get("ACTWIDGETS_FORCE_JS") else self._labext_stale_reason()
        if reason is None:
            _log("the JupyterLab extension in actwidgets/labextension/ is up to date")
            return
        have = bool(self._labext_entry())
        problem = None
        if not (self._labext_js / "package.json").is_file():
            problem = f"{reason}, and js/labextension/package.json does not exist"
        elif shutil.which("npm") is None:
            problem = f"{reason}, but npm is not on PATH (install Node.js >= 20)"
        if problem:
            if have:
                _log(f"WARNING: {problem}; shipping the existing extension.")
                return
            if editable:
                _log(f"WARNING: {problem}. Saved notebooks will not draw snapshots until `make js` has run.")
                return
            raise RuntimeError(f"actwidgets: {problem}, so the JupyterLab extension cannot be built.")

        _log(f"building the JupyterLab extension: {reason}")
        if not (self._labext_js / "node_modules").is_dir():
            self._npm_install(cwd=self._labext_js)
        self._npm("run", "build", cwd=self._labext_js)
        if not self._labext_entry():
            raise RuntimeError("actwidgets: the extension build produced no actwidgets/labextension/static/remoteEntry.*.js")

    # ------------------------------------------------------------------ hook
    def initialize(self, version: str, build_data: dict) -> None:
        editable = version == "editable"
        self._build_js(editable=editable)
        self._build_labext(editable=editable)

        if self.target_name == "wheel" and not editable:
            if not self._bundles():
                raise RuntimeError("actwidgets: no bundles in actwidgets/static/ to ship in the wheel")
            # The prebuilt JupyterLab extension: users need no Node.
            pkg = self._labext / "package.json"
            if not pkg.is_file() or not self._labext_entry():
                raise RuntimeError("actwidgets: no JupyterLab extension in actwidgets/labextension/ to ship in the wheel")
            name = json.loads(pkg.read_text(encoding="utf-8"))["name"]
            build_data.setdefault("shared_data", {})[str(self._labext)] = f"share/jupyter/labextensions/{name}"
            _log(f"shipping the JupyterLab extension {name}")
