"""aw.PatchingGrid: activation patching that re-runs on change and fills in as it goes."""
from __future__ import annotations

from contextlib import closing
from typing import NamedTuple

import numpy as np
import traitlets as t

from ..methods._checks import choice
from ..methods.patching import (METHODS, SITES, PatchingResult, attribution_patching, check_site, iter_exact, pearson,
                                prepare)
from ._base import bundle, finite_or_none, quoted
from ._traits import Array, Prompt, PromptText, Token
from ._grid import GridWidget



class PatchingGrid(GridWidget):
    """Patch activations from the clean run into the corrupted one, cell by cell.

    Rows are layers; columns are token positions (or heads for `site="heads"`). Cells
    show the normalized logit difference or the raw one. Denoising (`denoise=True`, the
    default): 0 = no effect, 1 = clean answer restored; noising (`denoise=False`, corrupted
    activations into the clean run): 1 = no effect, 0 = clean answer destroyed. The colour
    bar's label says which. `method="attribution"` or `"relp"` draws the fast approximation first, then
    the exact grid beside it with their correlation. Editing a prompt, the answer pair,
    the site or the method re-runs; the cancel button stops within one batch.
    """

    _esm = bundle("patching")
    snapshot_kind = "patching"
    clean = Prompt()
    corrupted = Prompt()
    answer = t.List(Token(what="each answer"), default_value=["", ""]).tag(sync=True)
    site = t.Unicode("resid").tag(sync=True)
    site_options = t.List(t.Unicode(), default_value=list(SITES)).tag(sync=True)
    method = t.Unicode("exact").tag(sync=True)
    method_options = t.List(t.Unicode(), default_value=list(METHODS)).tag(sync=True)
    normalized = t.Bool(True).tag(sync=True)
    ld_clean = t.Float(None, allow_none=True).tag(sync=True)  # None until known: JSON has no NaN
    ld_corrupted = t.Float(None, allow_none=True).tag(sync=True)
    reference_values = Array()
    correlation = t.Float(None, allow_none=True).tag(sync=True)
    col_label = t.Unicode("token").tag(sync=True)
    denoise = t.Bool(True)
    chunk_size = t.Int(64)

    def __init__(self, model, clean: PromptText = "", corrupted: PromptText = "", answer=("", ""), *, site: str = "resid",
                 method: str = "exact", normalized: bool = True, denoise: bool = True, chunk_size: int = 64,
                 **kwargs):
        super().__init__(model, clean=clean, corrupted=corrupted, answer=list(answer), site=site, method=method,
                         normalized=normalized, denoise=denoise, chunk_size=chunk_size, **kwargs)
        self.observe(self.schedule, ["clean", "corrupted", "answer", "site", "method", "normalized", "denoise",
                                     "chunk_size"])
        self.schedule()

    # --- results -------------------------------------------------------------
    @property
    def result(self) -> PatchingResult | None:
        """The shown method's result for the current inputs (waits for a run in progress)."""
        self.wait_unless_worker()
        return self.memo.get(self._inputs().key(self.method))

    @property
    def data(self) -> PatchingResult | None:
        """`result`, by the name every widget gives its numbers."""
        return self.result

    @property
    def exact(self) -> PatchingResult | None:
        self.wait_unless_worker()
        return self.memo.get(self._inputs().key("exact"))

    def describe(self) -> str:
        good, bad = (list(self.answer) + ["", ""])[:2]
        return (f"Activation patching ({self.method}, {self.site}), {good!r} vs {bad!r}: "
                f"{quoted(self.clean, 40)} -> {quoted(self.corrupted, 40)}")

    def _inputs(self) -> "_Inputs":
        return _Inputs(self.clean, self.corrupted, tuple(self.answer), self.site, self.denoise, self.method,
                       self.normalized)

    # --- the job ---------------------------------------------------------------
    def compute(self):
        inputs = self._inputs()  # read once: the user may edit them while the grid runs
        choice(inputs.method, METHODS, "method")
        problem = prepare(self.model, inputs.clean, inputs.corrupted, inputs.answer)
        check_site(inputs.site)
        approx = None
        if inputs.method != "exact":
            approx = self.memo.get(inputs.key(inputs.method))
            if approx is None:
                approx = attribution_patching(self.model, inputs.clean, inputs.corrupted, inputs.answer, inputs.site,
                                              relp=inputs.method == "relp", denoise=inputs.denoise)
                self.memo.put(inputs.key(inputs.method), approx)
            with self.drawing():
                self._show(inputs, approx, None)
        exact = self.memo.get(inputs.key("exact"))
        if exact is None:
            chunks = iter_exact(self.model, problem, inputs.site, denoise=inputs.denoise,
                                chunk_size=self.chunk_size, should_stop=lambda: not self._current())
            with closing(chunks):  # a cancel closes the generator now, releasing the model's lock
                for exact, fraction in chunks:
                    self.check()
                    with self.drawing():
                        self._show(inputs, approx or exact, exact if approx else None)
                        self.progress = fraction
            if exact.done.all():  # a grid with holes is never remembered as the answer
                self.memo.put(inputs.key("exact"), exact)
        return inputs, approx, exact

    def apply(self, result) -> None:
        inputs, approx, exact = result
        self._show(inputs, approx or exact, exact if approx else None)

    def _show(self, inputs: "_Inputs", shown: PatchingResult, reference: PatchingResult | None) -> None:
        def cells(result: PatchingResult) -> np.ndarray:
            values = result.normalized if inputs.normalized else result.patched_ld
            return np.where(result.done, values, np.nan)

        values = cells(shown)
        label = (f"normalized score ({shown.score_meaning})" if inputs.normalized
                 else "logit difference after patching")
        bound = _symmetric_bound(values, reference and cells(reference), inputs.normalized)
        self.set_grid(shown.cols, shown.rows, values, label=label, colormap="rdbu", vmin=-bound, vmax=bound)
        self.col_label = shown.col_label
        self.ld_clean, self.ld_corrupted = finite_or_none(shown.ld_clean), finite_or_none(shown.ld_corrupted)
        self.reference_values = cells(reference) if reference is not None else b""
        complete = reference is not None and reference.done.all()
        self.correlation = finite_or_none(pearson(shown.patched_ld, reference.patched_ld)) if complete else None

    # --- linked views ----------------------------------------------------------------
    links_to = ("Heatmap", "LogitLens", "Attention")

    def _point(self, view, cell: dict) -> None:
        """A Heatmap or LogitLens selects the same (layer, token) of the clean prompt; an
        Attention shows the clicked head (heads grid) or where the clicked token looks."""
        layer, col = cell["row"], cell["col"]
        if type(view).__name__ == "Attention":
            view.prompt = self.clean
            if self.col_label == "head":
                view.head = [layer, col]
            else:
                view.query = col
        elif self.col_label == "token":
            shown = view.layers  # None: the embedding row, then every layer
            rows = list(range(-1, self.model.n_layers)) if shown is None else list(self.model.check_layers(shown))
            if layer in rows:
                view.prompt = self.clean
                view.selected = {"row": rows.index(layer), "col": col}


class _Inputs(NamedTuple):
    clean: str
    corrupted: str
    answer: tuple
    site: str
    denoise: bool
    method: str
    normalized: bool

    def key(self, method: str) -> tuple:
        """Which cached result these inputs show for `method` (normalized is only a view)."""
        return (self.clean, self.corrupted, self.answer, self.site, self.denoise, method)


def _symmetric_bound(values: np.ndarray, reference: np.ndarray | None, normalized: bool) -> float:
    """A colour scale centred on 0 that covers both grids (at least [-1, 1] when normalized)."""
    finite = [v[np.isfinite(v)] for v in (values, reference) if v is not None]
    largest = max((float(np.abs(v).max()) for v in finite if v.size), default=1.0)
    return max(largest, 1.0) if normalized else max(largest, 1e-6)
