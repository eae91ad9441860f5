"""The teaching notebooks are committed executed (`make notebooks`), so GitHub shows their figures.

Fast: nothing runs, the committed files are read. tests/test_notebooks.py executes them fresh.
Fails when a notebook's code cells were edited after its outputs were produced (re-run
`make notebooks`), when a cell was not executed, or when a live widget view, which shows
"model not found" without a kernel, was committed.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SNAPSHOT_MIME = "application/vnd.actwidgets.snapshot+json"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
MAX_BYTES = 1024 * 1024


def _tool():
    spec = importlib.util.spec_from_file_location("execute_notebooks", REPO / "tools" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _tool()


def test_every_notebook_is_checked():
    assert len(NOTEBOOKS) >= 6, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_is_executed_from_its_code(path):
    assert path.stat().st_size < MAX_BYTES, f"{path.name} is {path.stat().st_size / 1024:.0f} KiB"
    nb = nbformat.read(path, as_version=4)
    recorded = nb.metadata.get(tool.META_KEY, {}).get("code_sha256")
    assert recorded, f"{path.name} was not written by `make notebooks`"
    assert recorded == tool.code_hash(nb), (
        f"{path.name}: its code cells changed since its outputs were produced; run `make notebooks`")

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not executed top to bottom: {counts}"
    assert "widgets" not in nb.metadata, "widget state saved: it only works with a kernel"

    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if WIDGET_MIME in o.get("data", {})], (
        f"{path.name} holds a live widget view, which shows 'model not found' on GitHub")
    figures = [o.data for o in outputs if SNAPSHOT_MIME in o.get("data", {})]
    assert figures, f"{path.name} shows no figure"
    for data in figures:
        assert {"image/png", "text/plain"} <= set(data)
        assert data[SNAPSHOT_MIME]["format"] == "actwidgets.snapshot"
        # the final figure, not one caught while its widget was still running
        assert data[SNAPSHOT_MIME]["state"]["status"] in ("done", "idle"), data["text/plain"]


def test_code_hash_sees_code_and_ignores_outputs():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# a"), nbformat.v4.new_code_cell("x = 1")])
    before = tool.code_hash(nb)
    nb.cells[0].source = "# b"
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1")]
    assert tool.code_hash(nb) == before
    nb.cells[1].source = "x = 2"
    assert tool.code_hash(nb) != before


def test_stripping_keeps_the_saved_figure_and_drops_the_live_view():
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    figure = nbformat.v4.new_output("display_data", data={WIDGET_MIME: view, SNAPSHOT_MIME: {}, "image/png": "",
                                                          "text/plain": "a figure"})
    only_view = nbformat.v4.new_output("display_data", data={WIDGET_MIME: view})
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("w", outputs=[figure, only_view])])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    tool.strip_live_views(nb)
    assert "widgets" not in nb.metadata
    assert [set(o.data) for o in nb.cells[0].outputs] == [{SNAPSHOT_MIME, "image/png", "text/plain"}]
