"""The prebuilt JupyterLab extension: installed in the venv, and shipped in the wheel.

Built by `make js` (`npm run build` in js/, also run by the wheel build) from js/labextension into
actwidgets/labextension/; the browser behaviour is tested in
tests/browser/test_labextension.py.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: hatchling, which builds the wheel, brings tomli
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
BUILT = REPO / "actwidgets" / "labextension"
NAME = json.loads((REPO / "js" / "labextension" / "package.json").read_text())["name"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _require_built() -> dict:
    pkg = BUILT / "package.json"
    if not pkg.is_file() or not list((BUILT / "static").glob("remoteEntry.*.js")):
        pytest.fail("the JupyterLab extension is not built in actwidgets/labextension/: run `make js`", pytrace=False)
    return json.loads(pkg.read_text())


def test_labextension_list_shows_it_enabled_and_ok(tmp_path):
    built = _require_built()
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        JUPYTER_PREFER_ENV_PATH="1",
        PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
    )
    run = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    text = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode == 0, text
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(f"{NAME} v")]
    assert lines, f"{NAME} is not listed:\n{text}"
    assert len(lines) == 1, f"{NAME} is installed more than once:\n{text}"
    line = lines[0]
    assert " enabled " in f" {line} " and " OK" in line, line
    assert "(python, actwidgets)" in line, line  # install.json names the Python package
    assert line.startswith(f"{NAME} v{version('actwidgets')} "), line  # build.mjs stamps pyproject's version
    assert built["version"] == version("actwidgets")
    assert built["jupyterlab"]["_build"]["mimeExtension"] == "./mimeExtension", built
    assert built["jupyterlab"]["_build"]["extension"] == "./extension", built


@pytest.mark.slow
def test_standard_wheel_ships_the_prebuilt_extension(tmp_path):
    """A standard wheel carries the extension as shared data (no Node needed to install it).

    Reuses the already-built JS (HATCH_JUPYTER_BUILDER_SKIP_NPM=1): this checks the packaging, not npm.
    """
    built = _require_built()
    env = dict(os.environ, HATCH_JUPYTER_BUILDER_SKIP_NPM="1")
    run = subprocess.run(
        [sys.executable, "-c", "import sys, hatchling.build as b; print(b.build_wheel(sys.argv[1]))", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    wheel = tmp_path / run.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        prefix = f"actwidgets-{version('actwidgets')}.data/data/share/jupyter/labextensions/{NAME}/"
        shipped = [n[len(prefix):] for n in names if n.startswith(prefix)]
        assert "package.json" in shipped, names
        assert "install.json" in shipped, shipped
        entries = [n for n in shipped if re.fullmatch(r"static/remoteEntry\.[0-9a-f]+\.js", n)]
        assert len(entries) == 1, shipped
        pkg = json.loads(zf.read(prefix + "package.json"))
        assert pkg["name"] == NAME
        assert pkg["jupyterlab"]["_build"]["load"] == entries[0], pkg["jupyterlab"]["_build"]
        assert pkg == built
        # the chunks it loads are there too
        assert sorted(shipped) == sorted(p.relative_to(BUILT).as_posix() for p in BUILT.rglob("*") if p.is_file())
        # not a second copy inside the package
        assert not [n for n in names if n.startswith("actwidgets/labextension/")], names
        assert sorted(n for n in names if n.startswith("actwidgets/static/")) == sorted(
            p.relative_to(REPO).as_posix() for p in (REPO / "actwidgets" / "static").glob("*.js")), names


def test_the_build_hook_checks_every_bundle_the_build_makes():
    """The wheel build skips npm when the files the hook names exist, and fails when they are
    missing after it: naming fewer than js/build.mjs makes would ship a wheel without some
    widget's front-end whenever those few were left over from an older build."""
    hook = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]
    built = {p.relative_to(REPO).as_posix() for p in (REPO / "actwidgets" / "static").glob("*.js")}
    assert len(built) >= 7, built  # six widgets and the snapshot page's script: run `make js`
    expected = built | {"actwidgets/labextension/package.json"}
    assert set(hook["ensured-targets"]) == expected, hook["ensured-targets"]
    assert set(hook["skip-if-exists"]) == expected, hook["skip-if-exists"]
