"""Traits shared by the grid widgets (Heatmap, LogitLens, PatchingGrid, Attention,
LogitAttribution), and linking: `a.link(b)` makes a click on a cell of `a` point `b` at it.

The grid's numbers travel as one float32 `values` buffer plus `shape`; the front-end
(`js/src/lib/grid.ts`) colours them between `vmin` and `vmax`. See js/WIRE.md.
"""
from __future__ import annotations

import numpy as np
import traitlets as t

from . import _figure
from ._base import JobWidget
from ._traits import Array, Prompt


class GridWidget(JobWidget):
    links_to: tuple[str, ...] = ()  # the widget classes `link` accepts; `_point` says what a click does
    prompt = Prompt()
    tokens = t.List(t.Unicode()).tag(sync=True)
    row_labels = t.List(t.Unicode()).tag(sync=True)
    shape = t.List(t.Int(), default_value=[0, 0]).tag(sync=True)
    values = Array()
    vmin = t.Float(0.0).tag(sync=True)
    vmax = t.Float(1.0).tag(sync=True)
    colormap = t.Unicode("viridis").tag(sync=True)
    scale = t.Unicode("linear").tag(sync=True)
    value_label = t.Unicode("").tag(sync=True)
    aux = Array("<i4")
    aux_label = t.Unicode("").tag(sync=True)
    selected = t.Dict().tag(sync=True)

    def __init__(self, model, **kwargs) -> None:
        self._linked: list = []  # before the base init, which may refuse a keyword (close() then still works)
        super().__init__(model, **kwargs)
        self.observe(self._point_linked, "selected")

    def link(self, view) -> "GridWidget":
        """Clicking a cell of this grid points `view` at it (what that means: `_point`); returns self."""
        if type(view).__name__ not in self.links_to:
            accepted = " or ".join(self.links_to) or "no other widget"
            raise TypeError(f"{type(self).__name__}.link takes {accepted}, not {type(view).__name__}.")
        self._linked.append(view)
        return self

    def close(self) -> None:
        if hasattr(self, "_linked"):  # ipywidgets also closes in __del__ a widget whose __init__ never ran
            self._linked.clear()
        super().close()

    def _point_linked(self, _change=None) -> None:
        self._linked = [view for view in self._linked if view.comm is not None]  # a closed view is let go
        cell = self.selection
        for view in list(self._linked) if cell else ():
            with view.hold_trait_notifications():  # one re-run, with every input new
                self._point(view, cell)

    def _point(self, view, cell: dict) -> None:
        """Point a linked `view` at the clicked `cell` (a `selection`)."""

    @t.validate("selected")
    def _a_cell_or_nothing(self, proposal):
        cell = proposal["value"]
        whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
        if cell and not (whole(cell.get("row")) and whole(cell.get("col"))):
            raise t.TraitError(f"selected must be {{}} or a cell {{'row': int, 'col': int}}, not {cell!r}.")
        return cell

    def set_grid(self, tokens, rows, values: np.ndarray, *, label: str, colormap: str = "viridis",
                 aux: np.ndarray | None = None, aux_label: str = "", vmin=None, vmax=None, log: bool = False) -> None:
        """Write one consistent grid (call inside hold_sync)."""
        finite = values[np.isfinite(values)]
        if log:  # a log scale starts at the smallest positive value
            finite = finite[finite > 0]
        low = float(finite.min()) if finite.size else 0.0
        high = float(finite.max()) if finite.size else 1.0
        if colormap == "rdbu":  # diverging scales are centred on 0
            low, high = -max(abs(low), abs(high)), max(abs(low), abs(high))
        self.tokens, self.row_labels = list(tokens), list(rows)
        self.shape = list(values.shape)
        self.values = values
        self.vmin = low if vmin is None else vmin
        self.vmax = (high if high > low else low + 1.0) if vmax is None else vmax
        self.colormap, self.value_label = colormap, label
        self.scale = "log" if log and finite.size else "linear"
        self.aux = b"" if aux is None else aux
        self.aux_label = aux_label if aux is not None else ""
        if self.selected and not self._in_grid(self.selected):
            self.selected = {}

    def _in_grid(self, cell: dict) -> bool:
        rows, cols = self.shape
        return 0 <= cell.get("row", -1) < rows and 0 <= cell.get("col", -1) < cols

    def draw(self, state: dict):
        return _figure.grid_figure(state, self.describe())

    @property
    def selection(self) -> dict | None:
        """The clicked cell as {'layer': label, 'row', 'col', 'token'}, or None."""
        cell = self.selected
        if not cell or not self._in_grid(cell):
            return None
        row, col = cell["row"], cell["col"]
        return {"row": row, "col": col, "layer": self.row_labels[row], "token": self.tokens[col]}
