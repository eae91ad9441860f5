"""Hatch build hook: bundle js/ into actwidgets/static/ before packaging.

Runs for the wheel (standard and editable) and the sdist. It rebuilds when a
bundle is missing or older than anything under js/src (or js/package*.json):

    cd js && (npm ci if node_modules is missing) && npm run build

The bundles are gitignored, so the wheel config lists them as `artifacts`.
If the JupyterLab extension has been built into actwidgets/labextension/, it is
shipped as shared data (share/jupyter/labextensions/<name>) in standard wheels.

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
    def _npm(self, *args: str) -> None:
        npm = shutil.which("npm")
        assert npm is not None
        _log(f"$ (cd js && npm {' '.join(args)})")
        subprocess.run([npm, *args], cwd=self._js, check=True)

    def _npm_install(self) -> None:
        # `npm ci` when the lock allows it. A registry mirror that lacks other
        # platforms' optional packages (e.g. @rollup/rollup-android-*) makes npm
        # write a lock that `npm ci` rejects as out of sync; `npm install` then
        # installs the same versions (and leaves the lock unchanged).
        if (self._js / "package-lock.json").is_file():
            _log("$ (cd js && npm ci --no-audit --no-fund)")
            r = subprocess.run(
                [shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund"],
                cwd=self._js, capture_output=True, text=True,
            )
            if r.returncode == 0:
                return
            why = [ln for ln in (r.stderr + r.stdout).splitlines() if ln.startswith("npm error")][:3]
            _log("`npm ci` failed; falling back to `npm install`:\n    " + "\n    ".join(why))
        self._npm("install", "--no-audit", "--no-fund")

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

    # ------------------------------------------------------------------ hook
    def initialize(self, version: str, build_data: dict) -> None:
        editable = version == "editable"
        self._build_js(editable=editable)

        if self.target_name == "wheel" and not editable:
            if not self._bundles():
                raise RuntimeError("actwidgets: no bundles in actwidgets/static/ to ship in the wheel")
            # Prebuilt JupyterLab extension, if the JS build produced one.
            labext = self._root / "actwidgets" / "labextension"
            pkg = labext / "package.json"
            if pkg.is_file():
                name = json.loads(pkg.read_text(encoding="utf-8"))["name"]
                build_data.setdefault("shared_data", {})[str(labext)] = f"share/jupyter/labextensions/{name}"
                _log(f"shipping the JupyterLab extension {name}")
