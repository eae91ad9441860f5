"""The logit lens: read every layer's residual stream through the final norm and
the unembedding, as if the model stopped there.

`logits_l = post(W_U final(h_l))`, with the model's own modules: `final` is what runs
between the last block and the unembedding (the final norm; OPT-350m's `project_out`; nothing
on a model without one) and `post` what the model does to logits afterwards (Gemma-2's
soft-capping, Cohere's and Granite's scaling). The last block's row therefore equals the
model's output logits.

Memory and time on long prompts: the trace stops after the last block read, so the model's
own [tokens, vocab] logits are never made, and the reduction (top-k, entropy, target) runs
one layer and at most `CHUNK_LOGITS` logits (positions x vocab) at a time, so no run ever
holds a [tokens, vocab] tensor larger than that: 2**24 float32 logits, 64 MB (341 positions
of a 49k vocabulary), whatever the prompt's length. Unembedding every layer x token is most
of the lens's cost, so on a local model `iter_lens` reduces the first `first` positions (what
a widget shows first) from the saved residual states before the rest, and yields as it goes.
A remote model does it all in one trace (one request), reduced on the server.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import nnsight
import numpy as np
import torch

from .._adapter import apply_head
from ..errors import Cancelled
from ..model import Model
from ._checks import whole
from ._trace import after_each_block, residual, row_labels

CHUNK_LOGITS = 2**24  # the most logits (positions x vocab) that exist at once


@dataclass
class LensResult:
    """Columns not computed yet (a partial result of `iter_lens`) hold NaN and id / rank -1."""

    tokens: list[str]
    rows: list[str]
    topk_ids: np.ndarray  # [R, T, k] int64, best first
    topk_prob: np.ndarray  # [R, T, k] float32
    entropy: np.ndarray  # [R, T] nats
    target_id: int | None
    target_prob: np.ndarray | None  # [R, T]
    target_rank: np.ndarray | None  # [R, T] int32, 0 = top token


def logit_lens(model: Model, prompt: str, *, target: str | int | None = None, k: int = 5,
               layers=None, with_embeddings: bool | None = None) -> LensResult:
    """Top-k tokens, entropy and the target's probability and rank per layer x token."""
    for result, _fraction in iter_lens(model, prompt, target=target, k=k, layers=layers,
                                       with_embeddings=with_embeddings):
        pass
    return result


def iter_lens(model: Model, prompt: str, *, target: str | int | None = None, k: int = 5, layers=None,
              with_embeddings: bool | None = None, first: int = 0,
              should_stop: Callable[[], bool] | None = None,
              focus: Callable[[], tuple[int, int] | None] | None = None,
              progress: Callable[[float], None] | None = None) -> Iterator[tuple[LensResult, float]]:
    """`logit_lens`, yielding (result so far, fraction done) after the first `first` positions
    and after each chunk of positions; the last yield is complete. Holds the model's lock
    until exhausted or closed; `should_stop()` is checked after each block of the forward and
    before each layer's chunk (a long lens answers a cancel, or the kernel's exit, within one
    block or chunk, not at its end). `focus()`, checked before each chunk after the first
    positions, names the columns [start, end) the user is looking at: the chunks there come
    next (a scroll to the middle of a long prompt fills in there first, not in order).
    `progress(fraction of the forward)` is called after each block of the forward, before the
    first yield (an 8,192-token forward alone takes a minute on 2 cores)."""
    k = whole(k, "k", 1, 50)
    ids = model.encode(prompt)
    chosen = model.check_layers(layers)
    with_embeddings = layers is None if with_embeddings is None else with_embeddings
    target_id = None if target in (None, "") else model.single_token(target, "target")
    n_rows, n_tokens = int(with_embeddings) + len(chosen), ids.shape[1]
    out = _Arrays(n_rows, n_tokens, k, target_id is not None)
    head, step = model.head, max(1, CHUNK_LOGITS // len(model.tokenizer))

    def stop_if_asked() -> None:
        if should_stop is not None and should_stop():
            raise Cancelled

    def after_block(fraction: float) -> None:
        stop_if_asked()
        if progress is not None:
            progress(fraction)

    def result() -> LensResult:
        return LensResult(tokens=model.token_texts(ids[0]), rows=row_labels(chosen, with_embeddings),
                          target_id=target_id, **out.arrays())

    with model.lock, torch.no_grad():
        if model.remote:
            out.fill(slice(None), _remote(model, ids, chosen, with_embeddings, head, step, k, target_id))
            yield result(), 1.0
            return
        with after_each_block(model, after_block if should_stop or progress else None), model.trace(ids.to(model.device)) as tracer:
            states = [model.blocks[0].input[0]] if with_embeddings else []
            states += [residual(model.blocks[layer].output)[0] for layer in chosen]
            states = nnsight.save(states)
            tracer.stop()  # nothing after the last block read is needed: no [T, vocab] logits

        def reduce(start: int, end: int) -> None:
            for s in range(start, end, step):
                parts = []
                for h in states:
                    stop_if_asked()
                    parts.append(_reduce(h[s:min(s + step, end)], head, k, target_id))
                out.fill(slice(s, min(s + step, end)), [torch.stack(x) for x in zip(*parts)])

        first = min(max(0, int(first)), n_tokens)
        pending = [(s, min(s + step, n_tokens)) for s in range(first, n_tokens, step)]
        if first:
            reduce(0, first)
            yield result(), first / n_tokens
        done = first
        while pending:
            start, end = _next_span(pending, focus() if focus is not None else None)
            pending.remove((start, end))
            reduce(start, end)
            done += end - start
            yield result(), done / n_tokens


def _next_span(pending: list[tuple[int, int]], window: tuple[int, int] | None) -> tuple[int, int]:
    """The first pending span that overlaps `window` (the columns on screen), else the first."""
    if window is not None:
        for span in pending:
            if span[0] < window[1] and span[1] > window[0]:
                return span
    return pending[0]


def _reduce(h: torch.Tensor, head: tuple, k: int, target_id: int | None) -> list[torch.Tensor]:
    """One layer's positions h [n, d] -> [top-k prob, top-k id, entropy(, target prob, rank)].
    The one reduction, in a remote trace body (plain torch, see `_trace.py`) or here."""
    logp = torch.log_softmax(apply_head(h, head).float(), dim=-1)  # [n, V]
    p, i = logp.topk(k, dim=-1)
    parts = [p.exp(), i, None]
    if target_id is not None:
        tgt = logp[:, target_id]
        parts += [tgt.exp(), (logp > tgt[:, None]).sum(dim=-1, dtype=torch.int32)]  # int32: ~40% faster than int64
    parts[2] = -logp.exp().mul_(logp).sum(dim=-1)  # in place: two [n, V] tensors at a time, not three
    return parts


def _remote(model, ids, chosen, with_embeddings, head, step, k, target_id) -> list[torch.Tensor]:
    """Every layer x position reduced inside one trace: only the reductions come back."""
    n_tokens, blocks = ids.shape[1], model.blocks
    chunks = [(start, min(start + step, n_tokens)) for start in range(0, n_tokens, step)]
    with model.trace(ids.to(model.device)) as tracer:
        states = [blocks[0].input[0]] if with_embeddings else []
        states += [residual(blocks[layer].output)[0] for layer in chosen]
        rows = []
        for h in states:
            parts = [_reduce(h[start:end], head, k, target_id) for start, end in chunks]  # Python ints: fine remotely
            rows.append([torch.cat(x) for x in zip(*parts)])
        saved = nnsight.save([torch.stack(x) for x in zip(*rows)])
        tracer.stop()
    return saved


class _Arrays:
    """The result's arrays, filled column span by column span; NaN / -1 where not yet."""

    def __init__(self, rows: int, tokens: int, k: int, with_target: bool) -> None:
        self.topk_prob = np.full((rows, tokens, k), np.nan, np.float32)
        self.topk_ids = np.full((rows, tokens, k), -1, np.int64)
        self.entropy = np.full((rows, tokens), np.nan, np.float32)
        self.target_prob = np.full((rows, tokens), np.nan, np.float32) if with_target else None
        self.target_rank = np.full((rows, tokens), -1, np.int32) if with_target else None

    def fill(self, cols: slice, parts: list[torch.Tensor]) -> None:
        names = ["topk_prob", "topk_ids", "entropy", "target_prob", "target_rank"]
        for name, part in zip(names, parts):
            getattr(self, name)[:, cols] = part.cpu().numpy()

    def arrays(self) -> dict:
        copy = lambda a: None if a is None else a.copy()  # noqa: E731 - a yielded result must not change later
        return {name: copy(getattr(self, name))
                for name in ("topk_ids", "topk_prob", "entropy", "target_prob", "target_rank")}
