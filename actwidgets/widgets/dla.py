"""aw.LogitAttribution: which layers and heads write one token's logit (direct logit attribution)."""
from __future__ import annotations

import numpy as np
import traitlets as t

from ..methods.dla import DLAResult, logit_attribution
from ._base import bundle, finite_or_none, quoted
from ._figure_dla import dla_figure
from ._grid import GridWidget
from ._traits import Array, PromptText, Token


class LogitAttribution(GridWidget):
    """Direct logit attribution (as in TransformerLens): how much the embedding, each layer's
    attention and MLP output, and each head add to `target`'s logit at `position` (default: the
    last token), or to the logit difference `target` - `wrong`.

    A strip shows the embedding and every layer's attention and MLP output; beside it a layer x
    head grid shows each head's share of its layer's attention output (the output projection's
    bias is the rest). One colour scale, centred on 0: red raises the logit, blue lowers it.
    The final norm's scale (and any post-sublayer norm's) is frozen at the run's value, so the
    parts add up to the model's own logit, shown beside their sum. Models that soft-cap or
    scale their logits (Gemma-2, Cohere, Granite) are attributed before that step, as the note
    says. Click a token of the prompt to attribute at that position; editing the prompt, the
    target or the wrong token re-runs.
    """

    _esm = bundle("dla")
    snapshot_kind = "dla"
    target = Token(" Paris")
    wrong = Token()
    position = t.Int(-1).tag(sync=True)
    token_index = t.Int(-1).tag(sync=True)  # the attributed token, 0-based; -1 before a run
    metric_label = t.Unicode("").tag(sync=True)
    components = Array()  # [layers, 2]: attention, MLP
    attn_bias = Array()  # [layers]
    embed = t.Float(None, allow_none=True).tag(sync=True)
    norm_bias = t.Float(None, allow_none=True).tag(sync=True)
    logit = t.Float(None, allow_none=True).tag(sync=True)
    total = t.Float(None, allow_none=True).tag(sync=True)
    note = t.Unicode("").tag(sync=True)

    def __init__(self, model, prompt: PromptText = "", target: str | int = " Paris", *, wrong: str | int | None = None,
                 position: int = -1, **kwargs):
        super().__init__(model, prompt=prompt, target=target, wrong="" if wrong is None else wrong, position=position, **kwargs)
        self.observe(self.schedule, ["prompt", "target", "wrong", "position"])
        self.schedule()

    @property
    def data(self) -> DLAResult | None:
        """The attribution of the current inputs, waiting for a run in progress; None when the
        current inputs have no result (an error)."""
        self.wait_unless_worker()
        return self.memo.get(self._key())

    @property
    def selection(self) -> dict | None:
        """The clicked head as {'row', 'col', 'layer', 'head'}, or None."""
        cell = self.selected
        if not cell or not self._in_grid(cell):
            return None
        return {"row": cell["row"], "col": cell["col"], "layer": cell["row"], "head": cell["col"]}

    links_to = ("Attention",)

    def _point(self, view, cell: dict) -> None:
        """An Attention shows the clicked head's pattern, and where the attributed token looks."""
        view.prompt, view.head = self.prompt, [cell["layer"], cell["head"]]
        if self.token_index >= 0:
            view.query = self.token_index

    def describe(self) -> str:
        i = self.token_index
        at = f" at token {i} {self.tokens[i]!r}" if 0 <= i < len(self.tokens) else ""
        what = self.metric_label or f"logit({self.target!r})"
        return f"Direct logit attribution of {what}{at}: {quoted(self.prompt)}"

    def _key(self) -> tuple:
        return (self.prompt, self.target, self.wrong, self.position)

    def compute(self):
        key = self._key()  # read once: the user may edit the inputs while the trace runs
        result = self.memo.get(key)
        if result is None:
            prompt, target, wrong, position = key
            result = self.memo.put(key, logit_attribution(self.model, prompt, target, wrong=wrong or None,
                                                          position=position))
        return result

    def apply(self, r: DLAResult) -> None:
        components = np.stack([r.attn, r.mlp], axis=1)
        bound = float(max(np.abs(components).max(initial=0.0), np.abs(r.heads).max(initial=0.0), abs(r.embed), 1e-6))
        self.set_grid(r.tokens, [str(layer) for layer in range(len(r.attn))], r.heads,
                      label=f"direct effect on {r.label}", colormap="rdbu", vmin=-bound, vmax=bound)
        self.token_index, self.metric_label, self.note = r.position, r.label, r.note
        self.components, self.attn_bias = components, r.attn_bias
        self.embed, self.norm_bias = finite_or_none(r.embed), finite_or_none(r.norm_bias)
        self.logit, self.total = finite_or_none(r.logit), finite_or_none(r.total)

    def draw(self, state: dict):
        return dla_figure(state, self.describe())
