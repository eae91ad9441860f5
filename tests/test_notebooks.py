"""Every teaching notebook runs top to bottom on the default model, within Binder's memory."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
BINDER_RSS_LIMIT = 2 * 1024**3
SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"


class PeakRSS:
    """Samples the kernel's process tree every 50 ms and keeps the largest RSS."""

    def __init__(self, pid: int) -> None:
        self.process, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                procs = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


@pytest.mark.slow
@pytest.mark.timeout(900)  # generous: the longest, steering (24 answers of up to 100 tokens), takes ~85 s
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_within_binder_memory(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    with client.setup_kernel():
        sampler = PeakRSS(client.km.provisioner.process.pid)
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        finally:
            peak = sampler.stop()
    elapsed = time.perf_counter() - start
    line = f"{path.name}: {elapsed:.1f} s, peak kernel RSS {peak / 1024**3:.2f} GB"
    print(f"\n{line}")
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / "notebook-measurements.txt", "a", encoding="utf-8") as log:  # read by the issue notes
        log.write(line + "\n")
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    widgets = [o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert widgets, "the notebook displayed no widget"
    # Every actwidgets figure is saved with what outlives the kernel: snapshot, PNG, text.
    figures = [o["data"] for o in widgets if SNAPSHOT_MIME in o["data"]]
    assert figures, "no actwidgets figure carries a snapshot"
    for data in figures:
        assert {"image/png", "text/plain"} <= set(data)
        assert data[SNAPSHOT_MIME]["format"] == "actwidgets.snapshot"
        # run headless, as nbconvert --execute and papermill do: each figure is saved finished
        assert data[SNAPSHOT_MIME]["state"]["status"] == "done", data["text/plain"]
    # The committed, executed copy (`make notebooks`) shows a figure in every cell this run did.
    assert set(_figure_cells(nb)) <= set(_figure_cells(nbformat.read(path, as_version=4))), "run `make notebooks`"
    assert 0 < peak < BINDER_RSS_LIMIT


def _figure_cells(nb) -> list[int]:
    return [i for i, cell in enumerate(nb.cells) if any(SNAPSHOT_MIME in o.get("data", {}) for o in cell.get("outputs", []))]


GRID = """grid = aw.PatchingGrid(model, "When Mary and John went to the store, John gave a drink to",
                        "When Mary and John went to the store, Mary gave a drink to", answer=(" Mary", " John"), site="heads")
grid"""


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("last", ["grid.wait(600).status", "aw.settle()"], ids=["wait", "settle"])
def test_a_figure_finished_after_its_cell_is_saved_finished_when_run_headless(last, tmp_path):
    """nbclient (nbconvert --execute, papermill) records a cell's messages only while that cell
    runs, and nothing after the last. A heads grid (seconds) outlives the cell that shows it; its
    final figure is saved by the cell that waits for it (sent when that cell ends, not a moment
    later), or by `aw.settle()` at the end. Before, both saved a grid "cancelled", part empty."""
    cells = ["import actwidgets as aw\nmodel = aw.load()", GRID, last]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (saved,) = [o["data"] for o in nb.cells[1].outputs if SNAPSHOT_MIME in o.get("data", {})]
    state = saved[SNAPSHOT_MIME]["state"]
    assert (state["status"], state["shape"]) == ("done", [30, 9]), saved["text/plain"]
    assert "cancelled" not in saved["text/plain"]
