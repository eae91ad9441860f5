"""aw.Heatmap: a live layer x token grid of a residual-stream statistic."""
from __future__ import annotations

import numpy as np
import torch
import traitlets as t

from ..methods.activations import (STAT_LABELS, STATS, ResidualStats, difference, residual_stats,
                                  residual_stats_pair)
from ._base import bundle, quoted
from ._grid import GridWidget
from ._traits import Prompt, PromptText


class Heatmap(GridWidget):
    """Residual-stream statistics per layer (rows) and token (columns).

    `stat`: "norm" (L2 norm), "max_abs" (largest |activation|, with its channel),
    "delta" (how much each block changed the stream, relative), or "direction"
    (projection on `direction`). Positive statistics are coloured on a log scale by
    default (`log_scale=None`): massive activations make the first token's vector
    ~100x longer than the rest in mid-to-late layers. Editing the prompt in the widget re-runs the model;
    switching the statistic redraws without re-running.

    `compare="another prompt"` of the same token length shows prompt minus compare, token
    by token, on a diverging scale centred on 0 (e.g. the IOI pair: where the name swap
    changes the stream).
    """

    _esm = bundle("heatmap")
    snapshot_kind = "heatmap"
    stat = t.Unicode("norm").tag(sync=True)
    compare = Prompt()
    stat_options = t.List(t.Unicode(), default_value=list(STATS)).tag(sync=True)
    layers = t.Any(None)
    direction = t.Any(None)
    log_scale = t.Bool(None, allow_none=True)

    def __init__(self, model, prompt: PromptText = "", *, stat: str = "norm", compare: PromptText = "", layers=None,
                 direction=None, log_scale: bool | None = None, **kwargs):
        super().__init__(model, prompt=prompt, stat=stat, compare=compare or "", layers=layers, direction=direction,
                         log_scale=log_scale, **kwargs)
        self.observe(self.schedule, ["prompt", "compare", "stat", "layers", "direction", "log_scale"])
        self.observe(self._offer_stats, ["direction", "stat"])
        self._offer_stats()
        self.schedule()

    def _offer_stats(self, _change=None) -> None:
        """The stat select offers "direction" only with a direction to project on (or chosen)."""
        offered = self.direction is not None or self.stat == "direction"
        self.stat_options = [s for s in STATS if s != "direction" or offered]

    @property
    def data(self) -> ResidualStats | None:
        """The statistics (numpy arrays) of the current inputs (prompt minus compare when
        comparing), waiting for a run in progress; None when the inputs have no result (an error)."""
        self.wait_unless_worker()
        stats = self.memo.get(self._key(self.prompt))
        if not self.compare or stats is None:
            return stats
        other = self.memo.get(self._key(self.compare))
        return None if other is None or len(other.tokens) != len(stats.tokens) else difference(stats, other)

    def describe(self) -> str:
        rows, cols = self.shape
        what = STAT_LABELS.get(self.stat, self.stat)
        if self.compare:
            return (f"Heatmap of the difference in the residual stream's {what}, {rows} layers x {cols} tokens: "
                    f"{quoted(self.prompt, 40)} minus {quoted(self.compare, 40)}")
        return f"Heatmap of the residual stream's {what}, {rows} layers x {cols} tokens: {quoted(self.prompt)}"

    def _key(self, prompt: str) -> tuple:
        direction = self.direction
        if torch.is_tensor(direction):  # on any device: its values, not its (abridged) repr
            direction = direction.detach().cpu().double()
        try:
            direction = None if direction is None else np.asarray(direction, dtype=np.float64).tobytes()
        except (TypeError, ValueError):  # not numbers: `compute` says so; the key only has to differ
            direction = repr(direction)
        return (prompt, repr(self.layers), direction)

    def compute(self):
        # Inputs are read once: the user may edit them while the trace runs.
        prompt, compare, layers, direction, stat = self.prompt, self.compare, self.layers, self.direction, self.stat

        def stats_of(text: str, start: float, share: float) -> ResidualStats:
            # block by block: a long prompt's one forward moves the bar, and a cancel stops it
            key = self._key(text)
            return self.memo.get(key) or self.memo.put(key, residual_stats(
                self.model, text, layers=layers, direction=direction, progress=self.reporter(start, share)))

        if compare and self.memo.get(self._key(prompt)) is None and self.memo.get(self._key(compare)) is None:
            # Both at once: one session, so a remote comparison is one NDIF job.
            pair = residual_stats_pair(self.model, prompt, compare, layers=layers, direction=direction,
                                       progress=self.reporter())
            for text, stats in zip((prompt, compare), pair):
                self.memo.put(self._key(text), stats)
        stats = stats_of(prompt, 0.0, 0.5 if compare else 1.0)
        stats.stat(stat)  # validates the statistic before anything is drawn
        if compare:
            self.report(0.5)
            stats = difference(stats, stats_of(compare, 0.5, 0.5))
        return stat, stats, bool(compare)

    def apply(self, result) -> None:
        stat, stats, compared = result
        diverging = compared or stat == "direction"
        self.set_grid(
            stats.tokens, stats.rows, stats.stat(stat),
            label=f"{STAT_LABELS[stat]}: prompt − compare" if compared else STAT_LABELS[stat],
            colormap="rdbu" if diverging else "viridis",
            aux=stats.channel if stat == "max_abs" and not compared else None,
            aux_label="channel",
            log=(not diverging) if self.log_scale is None else (self.log_scale and not compared),
        )
