"""Reliability: kernel memory under re-executed cells, exit during a job, fuzzed inputs.

- rss_growth_mb_lens_100 / rss_growth_mb_heatmap_300: a real kernel (jupyter_client) runs
  one cell that makes and shows a LogitLens 100 times (a Heatmap 300 times) under one
  cell id, as JupyterLab re-running that cell sends it; growth of the kernel's RSS from
  after the 5th run to the end. Baseline in the same run: the same cell sent WITHOUT a
  cell id (a front-end that says nothing, so no widget is released): `*_no_cell_id`.
  Target: <= 50 MB each.
- exit_code_during_job: the worst exit code of 10 scripts that exit while a widget job
  runs (lens, patching grid, steering); target 0 (it was 134: an abort in torch teardown).
- fuzz_examples / fuzz_failures: the widget-surface fuzz of tests/widgets/test_fuzz.py with more
  examples than CI runs.

`--quick` runs a tenth of everything (a smoke test of the bench itself).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
from jupyter_client.manager import start_new_kernel

from _util import report

ROOT = Path(__file__).resolve().parent.parent
QUICK = "--quick" in sys.argv
SETUP = """
import os; os.environ["HF_HUB_OFFLINE"] = "1"
import actwidgets as aw
m = aw.load()
PROMPT = "The Eiffel Tower is in the city of Paris, and the Colosseum is in the city of"
"""
CELLS = {
    "lens": "w = aw.LogitLens(m, PROMPT, target=' Rome'); w.wait(); w",
    "heatmap": "w = aw.Heatmap(m, PROMPT); w.wait(); w",
}


def _execute(client, code: str, cell_id: str | None) -> None:
    """One execute_request, with the cellId a notebook front-end sends in its metadata."""
    metadata = {"cellId": cell_id} if cell_id else {}
    msg = client.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                                "user_expressions": {}, "allow_stdin": False,
                                                "stop_on_error": True}, metadata=metadata)
    client.shell_channel.send(msg)
    while True:
        reply = client.get_shell_msg(timeout=600)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
    if reply["content"]["status"] != "ok":
        raise RuntimeError(f"cell failed: {reply['content'].get('evalue')}")
    while client.iopub_channel.msg_ready():  # drop outputs: the bench has no screen
        client.get_iopub_msg(timeout=1)


def rss_growth_mb(cell: str, runs: int, with_cell_id: bool) -> float:
    manager, client = start_new_kernel(kernel_name="python3", extra_arguments=[],
                                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        process = psutil.Process(manager.provisioner.process.pid)
        _execute(client, SETUP, None)
        cell_id = uuid.uuid4().hex if with_cell_id else None
        warm = 5
        for run in range(runs):
            _execute(client, CELLS[cell], cell_id)
            if run == warm - 1:
                start = process.memory_info().rss
        return (process.memory_info().rss - start) / 2**20
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


EXIT_SCRIPT = """
import os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import actwidgets as aw
m = aw.load()
kind = sys.argv[1]
if kind == "lens":
    w = aw.LogitLens(m, "The Eiffel Tower is in the city of Paris, and the Colosseum is in " * 4)
elif kind == "grid":
    w = aw.PatchingGrid(m, "When Mary and John went to the store, John gave a drink to",
                        "When Mary and John went to the store, Mary gave a drink to", (" Mary", " John"))
else:
    import torch
    w = aw.Steering(m, "I think that", vector=torch.randn(m.d_model), layer=10)
time.sleep(0.5)
assert not w.idle, "the job finished before the script exited: nothing was tested"
"""


def worst_exit_code(runs: int) -> tuple[int, str]:
    worst, stderr = 0, ""
    for run in range(runs):
        kind = ("lens", "grid", "steering")[run % 3]
        done = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, kind], capture_output=True, text=True,
                              cwd=ROOT, timeout=300)
        if done.returncode != 0 and abs(done.returncode) >= abs(worst):
            worst, stderr = done.returncode, done.stderr.strip().splitlines()[-1:]
    return worst, stderr


def fuzz(examples: int) -> tuple[int, int]:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "widgets")]
    from test_fuzz import run_fuzz  # noqa: E402

    return run_fuzz(examples)


def main() -> None:
    scale = 0.1 if QUICK else 1.0
    figures = {}
    for cell, runs in (("lens", 100), ("heatmap", 300)):
        n = max(10, int(runs * scale))
        figures[f"rss_growth_mb_{cell}_{runs}"] = rss_growth_mb(cell, n, with_cell_id=True)
        figures[f"rss_growth_mb_{cell}_{runs}_no_cell_id"] = rss_growth_mb(cell, n, with_cell_id=False)
    figures["exit_code_during_job"], last = worst_exit_code(max(3, int(10 * scale)))
    if last:
        print(textwrap.indent("\n".join(last), "  exit stderr: "), file=sys.stderr)
    figures["fuzz_examples"], figures["fuzz_failures"] = fuzz(max(50, int(1000 * scale)))
    figures["quick"] = QUICK
    report(figures)


if __name__ == "__main__":
    main()
