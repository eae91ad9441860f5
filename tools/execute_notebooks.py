"""`make notebooks`: re-execute the teaching notebooks on the default model and write them back.

The notebooks are committed executed so GitHub and nbviewer show every figure. Each figure's
output keeps what outlives the kernel (the actwidgets snapshot, the PNG, the text) and loses
the live widget view, which only says "model not found" without a kernel; the widget state is
dropped too. The hash of the code cells that produced the outputs goes into the notebook's
metadata, so tests/test_executed_notebooks.py notices code edited without re-executing.

    python tools/execute_notebooks.py                      # every notebooks/*.ipynb
    python tools/execute_notebooks.py notebooks/01_*.ipynb # some
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"
META_KEY = "actwidgets"

# Run after the last cell, then removed, for a notebook that does not end with `aw.settle()`:
# nbclient records nothing after the last cell, so a widget still running then would be saved
# unfinished (see actwidgets/widgets/_snapshot.py).
_SETTLE = "import actwidgets as _aw\n_aw.settle()"


def code_hash(nb) -> str:
    """sha256 of the code cells' sources, in order: what the outputs were produced from."""
    sources = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    return hashlib.sha256(json.dumps(sources, ensure_ascii=False).encode("utf-8")).hexdigest()


def strip_live_views(nb) -> None:
    """Drop the live widget view from every output and the widget state from the metadata."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data")
            if data is not None:
                data.pop(WIDGET_MIME, None)
                output.get("metadata", {}).pop(WIDGET_MIME, None)
                if not data:
                    continue
            kept.append(output)
        cell.outputs = kept


def execute(path: Path, timeout: int = 900):
    """The notebook at `path`, executed in a scratch directory (notebook 01 writes files)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    digest = code_hash(nb)
    settle = nbformat.v4.new_code_cell(_SETTLE)
    nb.cells.append(settle)
    with tempfile.TemporaryDirectory() as cwd:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": cwd}}).execute()
    nb.cells.remove(settle)  # a cell that fails raised above (nbclient's CellExecutionError)
    strip_live_views(nb)
    nb.metadata[META_KEY] = {"code_sha256": digest}
    return nb


def main(paths: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the default model is embedded: never the hub
    targets = [Path(p) for p in paths] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for path in targets:
        start = time.perf_counter()
        nb = execute(path)
        nbformat.write(nb, path)
        print(f"{path}: {time.perf_counter() - start:.0f} s, {path.stat().st_size / 1024:.0f} KiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
