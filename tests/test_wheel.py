"""pip users: the built wheel, installed with the README's "Install (pip)" commands into a
fresh venv where Node is not on PATH, loads the default model offline, runs the quickstart
and has its JupyterLab extension enabled.

The venv is tests/fresh_venv.py's, built once per session and shared with tests/test_binder.py;
these tests read what it recorded right after the pip user's install.
"""
from __future__ import annotations

import re

import pytest

from fresh_venv import notebook_errors, pip_user, shows_a_widget

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
    assert {"heatmap.js", "lens.js", "snapshot.iife.js"} <= set(probe["bundles"]), probe
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
