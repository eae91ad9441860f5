"""One fresh venv, a pip user's, shared by the pip user's and the Binder tests of tests/test_install.py.

A venv with torch and ~130 other packages takes minutes to build, so the two tests share one,
built once per pytest session (memoized here: they live in two modules). `pip_user()` does,
with Node off PATH throughout:

1. builds the wheel from this checkout (its bundles are current, so hatch-jupyter-builder
   must skip npm: a release build needs no Node);
2. makes a fresh venv and runs the README's "Install (pip)" commands in it, in order:
   `pip install actwidgets` (the wheel just built, not byte-compiled, with torch pinned to the
   Makefile's release, which lies in pip's find-links here, instead of PyPI's CUDA build), then
   `aw.load()` is asked for the default model before it is installed (the message must name
   the README's command), then the model command itself, then `jupyter labextension list`;
3. executes notebooks/01_quickstart.ipynb on a kernel of that venv, with the hub offline.

Everything step 2 and 3 saw is recorded in a `PipUser` before the Binder test reinstalls
actwidgets and the model into the same venv from binder/ alone, so the two tests pass or fail
whatever their order. The venv (1.6 GB) is removed when the session ends, unless a test failed.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/01_quickstart.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
NODE_NAMES = {"node", "nodejs", "npm", "npx", "corepack", "yarn", "yarnpkg", "pnpm"}

# Appended to the quickstart: what ran, where, and the numbers the two widgets produced.
PROBE_CELL = """\
import json, os, pathlib, shutil, sys, torch, actwidgets
heatmap.wait(); lens.wait()
print("PROBE " + json.dumps({
    "prefix": sys.prefix, "actwidgets": actwidgets.__file__, "torch": torch.__version__,
    "node": shutil.which("node"), "hub_offline": os.environ.get("HF_HUB_OFFLINE"),
    "bundles": sorted(p.name for p in (pathlib.Path(actwidgets.__file__).parent / "static").glob("*.js")),
    "layers": model.n_layers,
    "heatmap": [heatmap.status, heatmap.error, list(heatmap.data.norm.shape)],
    "lens": [lens.status, lens.error, list(lens.data.target_prob.shape),
             model.tokenizer.decode(int(lens.data.topk_ids[-1, -1, 0]))],
}))
"""


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
    """Run one step, its output appended to `log`; a failure ends the test with the log's tail."""
    start = time.perf_counter()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(args)}\n".encode())
        out.flush()
        done = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    timings[step] = time.perf_counter() - start
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        pytest.fail(f"{step} failed with exit code {done.returncode}; end of {log}:\n{tail}")


def path_without_node(shadow_root: Path) -> str:
    """This PATH minus Node and minus the test's own venv: a directory holding node or npm
    (/usr/bin here) is replaced by a folder of links to everything else in it."""
    node = shutil.which("node")
    node_real = os.path.realpath(node) if node else None
    own_bin = str(Path(sys.prefix) / "bin")
    kept: list[str] = []
    for i, folder in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        if not folder or not os.path.isdir(folder) or os.path.realpath(folder) == os.path.realpath(own_bin):
            continue
        names = os.listdir(folder)
        if not NODE_NAMES & set(names):
            kept.append(folder)
            continue
        shadow = shadow_root / str(i)
        shadow.mkdir(parents=True)
        for name in names:
            real = os.path.realpath(os.path.join(folder, name))
            if name not in NODE_NAMES and real != node_real and "node_modules" not in real:
                os.symlink(os.path.join(folder, name), shadow / name)
        kept.append(str(shadow))
    path = os.pathsep.join(kept)
    assert not any(shutil.which(name, path=path) for name in NODE_NAMES), path
    return path


def readme_install_commands() -> list[str]:
    """The commands of the README's "Install (pip)" block, comments dropped."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Install \(pip\)\n(.*?)(?=^## )", text, re.S | re.M)
    block = section and re.search(r"```bash\n(.*?)```", section.group(1), re.S)
    if not block:
        pytest.fail("README.md has no ```bash block under \"## Install (pip)\"", pytrace=False)
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.split("#")[0].strip()]


def execute_quickstart(py: str, env: dict, workdir: Path, kernels: Path, timings: dict) -> tuple:
    """Run the quickstart (from `workdir`/NOTEBOOK) on a kernel of `py`, with PROBE_CELL appended.
    Returns the executed notebook and the probe's dict."""
    (kernels / "venv").mkdir(parents=True)
    (kernels / "venv" / "kernel.json").write_text(json.dumps({
        "argv": [py, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python",
        "env": {k: env[k] for k in ("PATH", "VIRTUAL_ENV", "HF_HUB_OFFLINE", "ACTWIDGETS_CACHE")},
    }))
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="venv", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    notebook = workdir / NOTEBOOK
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PROBE_CELL))
    start = time.perf_counter()
    NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(notebook.parent)}}).execute()
    timings["quickstart notebook"] = time.perf_counter() - start
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    probe = [json.loads(line[6:]) for line in printed.splitlines() if line.startswith("PROBE ")]
    return nb, (probe[0] if probe else {"printed": printed})


def notebook_errors(nb) -> list:
    return [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]


def shows_a_widget(nb) -> bool:
    return any(WIDGET_VIEW in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@dataclass
class PipUser:
    tmp: Path
    venv: Path
    env: dict  # the venv's environment: its bin first, no Node, hub offline
    log: Path
    wheel: str
    readme: list[str]  # the README's install commands
    missing_model: dict  # aw.load() before the model is installed: exit code and message
    labextension_list: str
    notebook: object
    probe: dict
    timings: dict = field(default_factory=dict)

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


_shared: dict = {}


def pip_user(tmp_path_factory, request) -> PipUser:
    """The pip user's venv, built on the first call of the session (see the module's docstring)."""
    if "env" not in _shared:
        try:
            _shared["env"] = _build(tmp_path_factory.mktemp("pip-user"))
        except BaseException as exc:  # noqa: BLE001 -- the second test reports it without a second build
            _shared["env"] = exc
            raise
        venv = _shared["env"].venv

        def remove_venv() -> None:
            if request.session.testsfailed == 0:
                shutil.rmtree(venv, ignore_errors=True)
        request.session.addfinalizer(remove_venv)
    built = _shared["env"]
    if isinstance(built, BaseException):
        pytest.fail(f"building the shared pip-user venv failed earlier in this session: {built}", pytrace=False)
    return built


def _build(tmp: Path) -> PipUser:
    venv, log, dist, timings = tmp / "env", tmp / "build.log", tmp / "dist", {}
    no_node = path_without_node(tmp / "path")
    commands = readme_install_commands()
    if "pip install actwidgets" not in commands:  # the step the wheel stands in for
        pytest.fail(f"README's Install (pip) block does not say `pip install actwidgets`: {commands}", pytrace=False)
    torch_pin = re.search(r"^TORCH\s*:=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)

    build_env = {k: v for k, v in os.environ.items() if k not in ("HATCH_JUPYTER_BUILDER_SKIP_NPM", "VIRTUAL_ENV")}
    build_env["PATH"] = no_node
    run("build the wheel without Node",
        [sys.executable, "-c", "import sys, hatchling.build as b; print(b.build_wheel(sys.argv[1]))", str(dist)],
        ROOT, build_env, log, timings)
    wheels = sorted(dist.glob("actwidgets-*.whl"))
    assert len(wheels) == 1, wheels

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "JUPYTER_PATH", "HATCH_JUPYTER_BUILDER_SKIP_NPM")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{no_node}", VIRTUAL_ENV=str(venv), HF_HUB_OFFLINE="1",
        ACTWIDGETS_CACHE=str(tmp / "cache"),  # a first load, as a new user's: it converts the GGUF file
        # The user's own Jupyter folders could hold another copy of the extension.
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter" / "config"), JUPYTER_DATA_DIR=str(tmp / "jupyter" / "data"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    py = str(venv / "bin" / "python")
    run("venv", [sys.executable, "-m", "venv", str(venv)], tmp, env, log, timings)

    missing, labext = {}, ""
    for command in commands:
        if command == "pip install actwidgets":  # not on PyPI yet: the wheel stands in for it
            # --no-compile: byte-compiling torch's and transformers' ~10,000 files tests nothing,
            # and without it installing, and deleting the venv afterwards, take minutes longer.
            run(command, [py, "-m", "pip", "install", "--no-compile", str(wheels[0]), torch_pin],
                tmp, env, log, timings)
            start = time.perf_counter()
            said = subprocess.run(
                [py, "-c", "import actwidgets as aw\ntry:\n    aw.load()\nexcept aw.ModelLoadError as e:\n"
                           "    print(e)\nelse:\n    print('loaded')"],
                cwd=tmp, env=env, capture_output=True, text=True)
            missing = {"returncode": said.returncode, "message": said.stdout.strip(), "stderr": said.stderr[-2000:]}
            timings["aw.load() without the model"] = time.perf_counter() - start
        elif command.startswith("jupyter labextension list"):
            start = time.perf_counter()
            listed = subprocess.run(["bash", "-c", command], cwd=tmp, env=env, capture_output=True, text=True)
            labext = ANSI.sub("", listed.stdout + listed.stderr) + f"\n(exit code {listed.returncode})"
            timings[command] = time.perf_counter() - start
        else:
            run(command, ["bash", "-c", command], tmp, env, log, timings)

    workdir = tmp / "work"
    (workdir / NOTEBOOK).parent.mkdir(parents=True)
    shutil.copy2(ROOT / NOTEBOOK, workdir / NOTEBOOK)  # it writes lens.png and lens.html beside itself
    nb, probe = execute_quickstart(py, env, workdir, tmp / "kernels", timings)
    return PipUser(tmp=tmp, venv=venv, env=env, log=log, wheel=wheels[0].name, readme=commands,
                   missing_model=missing, labextension_list=labext, notebook=nb, probe=probe, timings=timings)
