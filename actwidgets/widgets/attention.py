"""aw.Attention: every head's attention pattern, one head large, and where one token looks.

Three views of one trace (`methods/attention.py`): the overview (layers x heads, each head's
pattern pooled to at most 32 x 32), the selected head (`head` = [layer, head]) cell by cell,
and "from this token": each head of the selected head's layer, weights from token `query` to
every key (the grid traits of GridWidget: rows are heads, columns key tokens). A new head
reuses what the trace kept (every head, for prompts short enough) or re-traces up to that
head's layer only; a new prompt, `layers` or `query` runs the trace again.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import traitlets as t

from ..methods.attention import (KEEP_ALL_BYTES, AttentionResult, HeadPattern, attention_patterns, check_head,
                                 head_pattern)
from ._figure_attention import attention_figure
from ._base import Memo, bundle, quoted
from ._grid import GridWidget
from ._traits import Array, PromptText

EVERY_HEAD_KEPT = 2  # results whose every head is kept (up to 64 MB each, see KEEP_ALL_BYTES)


def _future_empty(values: np.ndarray) -> np.ndarray:
    """Cells whose key bin lies wholly after the query bin as NaN (drawn empty: the causal
    mask). Bins are the same on both axes and contiguous, so those are the cells above the diagonal."""
    n = values.shape[-1]
    return np.where(np.triu(np.ones((n, n), bool), 1), np.float32(np.nan), values)


class Attention(GridWidget):
    """Attention patterns per layer x head.

    `head`: [layer, head] shown large (default: the first layer shown, head 0; clicking a head in
    the overview or a row of the "from this token" grid selects it). `query`: the token whose
    attention the "from this token" grid shows (None: the last; negative counts from the end;
    clicking a row of the large pattern sets it). `layers`: block indices shown (default all).
    Rows sum to 1; keys after the query are drawn empty (the causal mask). The large view is
    cell by cell up to 512 tokens and pooled above (each bin's first token is in
    `pattern_bins`); the overview is pooled to at most 32 x 32 per head.
    """

    _esm = bundle("attention")
    snapshot_kind = "attention"
    keep_bytes = KEEP_ALL_BYTES  # every head of a trace kept up to this (0: re-trace each new head)
    head = t.List().tag(sync=True)
    query = t.Int(None, allow_none=True).tag(sync=True)
    query_index = t.Int(0).tag(sync=True)
    n_heads = t.Int(0).tag(sync=True)
    layer_labels = t.List(t.Unicode()).tag(sync=True)
    overview = Array()
    overview_size = t.Int(0).tag(sync=True)
    overview_bins = Array("<i4")
    pattern = Array()
    pattern_size = t.Int(0).tag(sync=True)
    pattern_bins = Array("<i4")
    pattern_head = t.List(t.Int()).tag(sync=True)
    layers = t.Any(None)

    def __init__(self, model, prompt: PromptText = "", *, layers=None, head=None, query: int | None = None, **kwargs):
        head = [] if head is None else list(head) if isinstance(head, (list, tuple, np.ndarray)) else [head]
        self._every = Memo(EVERY_HEAD_KEPT)
        super().__init__(model, prompt=prompt, layers=layers, head=head, query=query, **kwargs)
        self.observe(self.schedule, ["prompt", "layers", "head", "query"])
        self.observe(self._head_from_row, "selected")
        self.schedule()

    @property
    def data(self) -> AttentionResult | None:
        """The patterns of the current inputs (`pattern` = the current head), waiting for a run in
        progress; None when the current inputs have no result (an error)."""
        self.wait_unless_worker()
        base = self.memo.get(self._key())
        if base is None:
            return None
        try:
            head = check_head(self.model, list(self.head) or None, base.layers)
        except ValueError:
            return None
        found = self._kept(self._key(), base, head)
        return None if found is None else replace(base, head=found.head, pattern=found.pattern,
                                                   pattern_bins=found.bins)

    def describe(self) -> str:
        layer, index = self.pattern_head or (None, None)
        shown = f"; layer {layer} head {index} large" if layer is not None else ""
        return (f"Attention patterns, {len(self.layer_labels)} layers x {self.n_heads} heads{shown}: "
                f"{quoted(self.prompt)}")

    def close(self) -> None:
        if hasattr(self, "_every"):
            self._every.close()  # up to 64 MB a pattern set: a job ending after this keeps none
        super().close()

    def _reopen(self) -> None:
        super()._reopen()
        self._every.reopen()

    def _key(self) -> tuple:
        return (self.prompt, repr(self.layers), self.query)

    def _kept(self, key: tuple, base: AttentionResult, head: tuple[int, int]) -> HeadPattern | None:
        """A head's pattern without a trace: the one traced, every head kept, or one traced before."""
        return (replace(base, patterns=self._every.get(key)).pattern_of(head)
                or self.memo.get(("head", key[0], head)))

    def compute(self):
        # Inputs are read once: the user may edit them while the trace runs.
        prompt, layers, query, head, key = self.prompt, self.layers, self.query, list(self.head), self._key()
        chosen = self.model.check_layers(layers)
        selected = check_head(self.model, head or None, chosen)
        base = self.memo.get(key)
        if base is None:
            self.report(0.05)
            result = attention_patterns(self.model, prompt, layers=layers, head=selected, query=query,
                                        keep_bytes=self.keep_bytes,
                                        progress=self.reporter(0.05, 0.45))
            if result.patterns is not None:
                self._every.put(key, result.patterns)
            base = self.memo.put(key, replace(result, patterns=None))
        found = self._kept(key, base, selected)
        if found is None:
            self.report(0.5)
            found = self.memo.put(("head", prompt, selected), head_pattern(self.model, prompt, selected))
        return base, found

    def apply(self, result) -> None:
        base, found = result
        layer, index = found.head
        q = base.query
        heads = [f"head {h}" for h in range(base.n_heads)]
        from_query = base.from_query[base.layers.index(layer)].copy()
        from_query[:, q + 1:] = np.nan  # keys after the query: the causal mask, drawn empty
        self.set_grid(base.tokens, heads, from_query, label=f"attention from token {q}", vmin=0.0, vmax=1.0)
        self.n_heads, self.layer_labels, self.query_index = base.n_heads, base.rows, q
        self.overview = _future_empty(base.overview)
        self.overview_size, self.overview_bins = len(base.overview_bins), base.overview_bins
        self.pattern = _future_empty(found.pattern)
        self.pattern_size, self.pattern_bins = len(found.bins), found.bins
        self.pattern_head = [layer, index]
        self.selected = {"row": index, "col": q}
        self.head = [layer, index]  # the default or a negative layer, resolved

    def _head_from_row(self, change) -> None:
        """A click on a row of the "from this token" grid selects that head of the same layer."""
        cell, shown = change["new"], self.pattern_head
        if cell and len(shown) == 2 and 0 <= cell.get("row", -1) < self.n_heads and cell["row"] != shown[1]:
            self.head = [shown[0], cell["row"]]

    def draw(self, state: dict):
        return attention_figure(state, self.describe())
