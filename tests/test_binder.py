"""Binder: an environment built from binder/ alone runs the quickstart.

repo2docker (what mybinder.org runs) reads only binder/ when that folder exists. For this
repository it runs, from the repository root, after copying the whole repository (the
requirements name "." so it cannot install them from a partial copy):

    pip install --no-cache-dir -r binder/requirements.txt
    chmod +x binder/postBuild && ./binder/postBuild

(repo2docker/buildpacks/python/__init__.py and base.py). This test does the same in a fresh
venv, on a copy of the repository (building the wheel writes js/node_modules and the
bundles into the source tree), then executes notebooks/01_quickstart.ipynb on a kernel
running that venv's Python, with the hub offline.

It takes a few minutes: most of it is installing torch and ~130 other packages, building
the front-end with npm, and converting the default model once (postBuild does that).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/01_quickstart.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def copy_repository(dest: Path) -> None:
    """The files a clone would have: tracked ones, plus new files git does not ignore."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an sdist, say)
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv", "node_modules", "static", "labextension", "__pycache__", "artifacts", "*.egg-info"))
        return
    for name in filter(None, listed.split(b"\0")):
        src = ROOT / os.fsdecode(name)
        if src.is_file():  # a file deleted in the work tree is listed but gone
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def run(step: str, args: list[str], cwd: Path, env: dict, log: Path, timings: dict) -> None:
    start = time.perf_counter()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(args)}\n".encode())
        out.flush()
        done = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    timings[step] = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{step} failed with exit code {done.returncode}; end of {log}:\n{tail}")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_binder_environment_runs_the_quickstart(tmp_path):
    repo, venv, cache, log = tmp_path / "repo", tmp_path / "env", tmp_path / "cache", tmp_path / "build.log"
    timings: dict[str, float] = {}
    copy_repository(repo)
    for name in ("requirements.txt", "postBuild"):
        assert (repo / "binder" / name).is_file(), f"binder/{name} is missing"

    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",  # what postBuild's `python` is, as on Binder
        VIRTUAL_ENV=str(venv),
        HF_HUB_OFFLINE="1",
        ACTWIDGETS_CACHE=str(cache),  # postBuild converts the default model into it
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # Binder reaches PyTorch's CPU index; where it is unreachable (these build machines), pip
        # would retry it for every package. The pinned torch then comes from the configured indexes.
        PIP_RETRIES="0",
    )
    py = str(bin_dir / "python")
    run("venv", [sys.executable, "-m", "venv", str(venv)], tmp_path, env, log, timings)
    run("pip install -r binder/requirements.txt",
        [py, "-m", "pip", "install", "--no-cache-dir", "-r", "binder/requirements.txt"], repo, env, log, timings)
    (repo / "binder" / "postBuild").chmod(0o755)
    run("binder/postBuild", ["./binder/postBuild"], repo, env, log, timings)

    # What got installed: CPU torch only, and actwidgets with its bundles, from site-packages.
    probe = subprocess.run(
        [py, "-c", "import json, pathlib, importlib.metadata as md, torch, actwidgets;"
                   "static = pathlib.Path(actwidgets.__file__).parent / 'static';"
                   "print(json.dumps({'torch': torch.__version__, 'actwidgets': actwidgets.__file__,"
                   " 'bundles': sorted(p.name for p in static.glob('*.js')),"
                   " 'cuda': sorted(d.metadata['Name'] for d in md.distributions()"
                   " if d.metadata['Name'].lower().startswith('nvidia'))}))"],
        cwd=repo / "notebooks", env=env, capture_output=True, text=True, check=True)
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["torch"].endswith("+cpu") and not found["cuda"], found
    assert str(venv) in found["actwidgets"] and "site-packages" in found["actwidgets"], found
    assert {"heatmap.js", "lens.js"} <= set(found["bundles"]), found
    labext = repo / "js" / "labextension" / "package.json"
    if labext.is_file():  # a regular install ships the prebuilt JupyterLab extension as shared data
        name = json.loads(labext.read_text())["name"]
        assert (venv / "share" / "jupyter" / "labextensions" / name / "package.json").is_file(), \
            f"the JupyterLab extension {name} was not installed into the Binder venv"

    # The quickstart, on a kernel that runs the Binder venv's Python.
    kernels = tmp_path / "kernels"
    (kernels / "binder").mkdir(parents=True)
    (kernels / "binder" / "kernel.json").write_text(json.dumps({
        "argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Binder venv", "language": "python",
        "env": {k: env[k] for k in ("PATH", "VIRTUAL_ENV", "HF_HUB_OFFLINE", "ACTWIDGETS_CACHE")},
    }))
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="binder", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    nb = nbformat.read(repo / NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys, actwidgets; print(sys.prefix); print(actwidgets.__file__)"))
    start = time.perf_counter()
    NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(repo / "notebooks")}}).execute()
    timings["notebook"] = time.perf_counter() - start

    print("\nBinder environment: " + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items())
          + f"; total {sum(timings.values()):.0f} s")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    assert any(WIDGET_VIEW in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])), \
        "the quickstart displayed no widget"
    where = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert str(venv) in where and "site-packages" in where, where
    shutil.rmtree(venv, ignore_errors=True)  # 1.6 GB; kept only when the test fails
