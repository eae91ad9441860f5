"""Per layer x token statistics of the residual stream, from one nnsight trace.

Rows are residual-stream states: optionally the input to block 0 ("emb": token plus
position embeddings), then the output of each chosen block, before the final norm.
Statistics are reduced inside the trace, so a remote (NDIF) run sends back
[rows, tokens] arrays, never the [rows, tokens, d_model] activations.
"""
from __future__ import annotations

from dataclasses import dataclass

import nnsight
import numpy as np
import torch

from ..errors import InputError
from ..model import Model
from ._checks import choice
from ._trace import after_each_block, check_vector, residual, row_labels

STATS = ("norm", "max_abs", "delta", "direction")
STAT_LABELS = {
    "norm": "L2 norm",
    "max_abs": "max |activation|",
    "delta": "relative L2 change",
    "direction": "projection",
}


@dataclass
class ResidualStats:
    """Statistics per row (layer) x token; `delta` is NaN on the embedding row."""

    tokens: list[str]
    rows: list[str]
    norm: np.ndarray  # ||h||_2
    max_abs: np.ndarray  # max_i |h_i|
    channel: np.ndarray  # argmax_i |h_i| (int32): the "massive activation" channel
    delta: np.ndarray  # ||out_l - in_l|| / ||in_l||: how much block l changed the stream
    direction: np.ndarray | None  # h . u_hat, when a direction was given

    def stat(self, name: str) -> np.ndarray:
        choice(name, STATS, "stat")
        values = getattr(self, name)
        if values is None:
            raise InputError("The 'direction' statistic needs a direction: pass direction=<vector of size d_model>.")
        return values


def check_direction(model: Model, direction) -> torch.Tensor | None:
    """The direction as a float32 unit vector of size d_model, or None."""
    if direction is None:
        return None
    vec = check_vector(model, direction, "The direction")
    return vec / vec.norm()


def residual_stats(model: Model, prompt: str, *, layers=None, direction=None,
                   with_embeddings: bool | None = None, progress=None) -> ResidualStats:
    """Residual-stream statistics for every chosen layer and token, in one batched trace.

    `layers` are block indices (default: all, plus the embedding row); `direction`
    adds the projection h . u/||u||. `progress(fraction)`, if given, is called after each
    block and may raise to stop (`_trace.after_each_block`).
    """
    ids = model.encode(prompt)
    chosen = model.check_layers(layers)
    with_embeddings = layers is None if with_embeddings is None else with_embeddings
    unit = check_direction(model, direction)
    blocks = model.blocks

    with model.lock, torch.no_grad(), after_each_block(model, progress):
        with model.trace(ids.to(model.device)) as tracer:
            summary = _rows(blocks, chosen, with_embeddings, unit).save()
            tracer.stop()  # nothing after the last row is read: no [T, vocab] logits
    return _stats(model, ids, chosen, with_embeddings, unit, summary)


def residual_stats_pair(model: Model, prompt: str, compare: str, *, layers=None, direction=None,
                        progress=None) -> tuple[ResidualStats, ResidualStats]:
    """Both prompts' statistics, each from its own forward pass (the numbers of two calls), in
    one nnsight session: a comparison is one NDIF job, not two. Lengths are checked first;
    `progress` is as in `residual_stats`, over both passes."""
    ids, other = model.encode(prompt), model.encode(compare, "compare")
    same_length(ids.shape[1], other.shape[1])
    chosen = model.check_layers(layers)
    with_embeddings = layers is None
    unit = check_direction(model, direction)
    lm, blocks = model.lm, model.blocks
    a, b = ids.to(model.device), other.to(model.device)

    # The session body runs where the model runs, so its traces are written out here (not in a
    # helper: NDIF reads a nested trace's source from the session's) and never name the Model.
    with model.lock, torch.no_grad(), after_each_block(model, progress, passes=2):
        with lm.session(**model.where()):
            with lm.trace(a, use_cache=False) as tracer:
                first = _rows(blocks, chosen, with_embeddings, unit)
                tracer.stop()
            with lm.trace(b, use_cache=False) as tracer:
                second = _rows(blocks, chosen, with_embeddings, unit)
                tracer.stop()
            summaries = nnsight.save([first, second])
    return (_stats(model, ids, chosen, with_embeddings, unit, summaries[0]),
            _stats(model, other, chosen, with_embeddings, unit, summaries[1]))


def _rows(blocks, chosen: list[int], with_embeddings: bool, unit) -> torch.Tensor:
    """[stat, R, T] inside a trace: one `_summarize` per row."""
    rows = []
    if with_embeddings:
        rows.append(_summarize(blocks[0].input[0].float(), None, unit))
    for layer in chosen:
        before = blocks[layer].input[0].float()
        after = residual(blocks[layer].output)[0].float()
        rows.append(_summarize(after, before, unit))
    return torch.stack(rows, dim=1)


def _stats(model: Model, ids, chosen, with_embeddings: bool, unit, summary: torch.Tensor) -> ResidualStats:
    out = summary.cpu().numpy()
    return ResidualStats(
        tokens=model.token_texts(ids[0]),
        rows=row_labels(chosen, with_embeddings),
        norm=out[0],
        max_abs=out[1],
        channel=out[2].astype(np.int32),
        delta=out[3],
        direction=out[4] if unit is not None else None,
    )


def difference(a: ResidualStats, b: ResidualStats) -> ResidualStats:
    """`a` minus `b`, statistic by statistic, for two prompts of the same token length.

    Columns are positions: where the two prompts' tokens differ the label names both
    ("' John' vs ' Mary'"). `channel` is a's (a difference of channel indices means nothing).
    """
    same_length(len(a.tokens), len(b.tokens))
    if a.rows != b.rows:  # the same model and layers give the same rows; say so rather than misalign
        raise InputError(f"The two runs have different layers ({a.rows} and {b.rows}); compare needs the same.")
    tokens = [x if x == y else f"{x!r} vs {y!r}" for x, y in zip(a.tokens, b.tokens)]
    both = a.direction is not None and b.direction is not None
    return ResidualStats(tokens=tokens, rows=list(a.rows), norm=a.norm - b.norm, max_abs=a.max_abs - b.max_abs,
                         channel=a.channel, delta=a.delta - b.delta,
                         direction=a.direction - b.direction if both else None)


def same_length(prompt_tokens: int, compare_tokens: int) -> None:
    if prompt_tokens != compare_tokens:
        raise InputError(
            f"compare must have as many tokens as prompt, to be compared token by token: prompt is "
            f"{prompt_tokens} tokens, compare is {compare_tokens}. Edit one of them to the same length.")


def _summarize(h: torch.Tensor, before: torch.Tensor | None, unit: torch.Tensor | None) -> torch.Tensor:
    """[stat, T] for one residual state h [T, d]; `before` is the block's input."""
    absolute = h.abs()
    if before is None:
        delta = torch.full_like(h[:, 0], float("nan"))
    else:
        delta = (h - before).norm(dim=-1) / before.norm(dim=-1).clamp_min(1e-12)
    stats = [h.norm(dim=-1), absolute.amax(dim=-1), absolute.argmax(dim=-1).float(), delta]
    if unit is not None:
        stats.append(h @ unit.to(h.device))
    return torch.stack(stats)
