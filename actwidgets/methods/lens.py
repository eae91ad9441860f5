"""The logit lens: read every layer's residual stream through the final norm and
the unembedding, as if the model stopped there.

`logits_l = post(W_U final(h_l))`, with the model's own modules: `final` is what runs
between the last block and the unembedding (the final norm; OPT-350m's `project_out`; nothing
on a model without one) and `post` what the model does to logits afterwards (Gemma-2's
soft-capping, Cohere's and Granite's scaling). The last block's row therefore equals the
model's output logits. The reduction (top-k, entropy, target) happens inside the
trace, one layer and at most `CHUNK_LOGITS` logits (positions x vocab) at a time, so no
run ever holds a [tokens, vocab] tensor larger than that: 2**24 float32 logits, 64 MB
(341 positions of a 49k vocabulary), whatever the prompt's length.
"""
from __future__ import annotations

from dataclasses import dataclass

import nnsight
import numpy as np
import torch

from .._adapter import apply_head
from ..model import Model
from ._checks import whole
from ._trace import residual, row_labels

CHUNK_LOGITS = 2**24  # the most logits (positions x vocab) that exist at once


@dataclass
class LensResult:
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
    k = whole(k, "k", 1, 50)
    ids = model.encode(prompt)
    chosen = model.check_layers(layers)
    with_embeddings = layers is None if with_embeddings is None else with_embeddings
    target_id = None if target in (None, "") else model.single_token(target)
    blocks, head = model.blocks, model.head
    n_tokens = ids.shape[1]
    step = max(1, CHUNK_LOGITS // len(model.tokenizer))
    chunks = [(start, min(start + step, n_tokens)) for start in range(0, n_tokens, step)]

    with model.lock, torch.no_grad():
        with model.trace(ids.to(model.device)):
            states = [blocks[0].input[0]] if with_embeddings else []
            states += [residual(blocks[layer].output)[0] for layer in chosen]
            top_p, top_i, ent, tgt_p, tgt_r = [], [], [], [], []
            for h in states:
                for start, end in chunks:  # a plain Python loop over ints: fine in a remote body
                    logp = torch.log_softmax(apply_head(h[start:end], head).float(), dim=-1)  # [chunk, V]
                    p, i = logp.topk(k, dim=-1)
                    top_p.append(p.exp())
                    top_i.append(i)
                    ent.append(-(logp.exp() * logp).sum(dim=-1))
                    if target_id is not None:
                        tgt = logp[:, target_id]
                        tgt_p.append(tgt.exp())
                        tgt_r.append((logp > tgt[:, None]).sum(dim=-1))
            saved = nnsight.save([top_p, top_i, ent, tgt_p, tgt_r])

    rows = int(with_embeddings) + len(chosen)  # per row its chunks, in order: put its positions back together
    top_p, top_i, ent, tgt_p, tgt_r = (
        torch.stack([torch.cat(x[r * len(chunks):(r + 1) * len(chunks)]) for r in range(rows)]).cpu().numpy()
        if x else None for x in saved)
    return LensResult(
        tokens=model.token_texts(ids[0]),
        rows=row_labels(chosen, with_embeddings),
        topk_ids=top_i,
        topk_prob=top_p.astype(np.float32),
        entropy=ent.astype(np.float32),
        target_id=target_id,
        target_prob=None if tgt_p is None else tgt_p.astype(np.float32),
        target_rank=None if tgt_r is None else tgt_r.astype(np.int32),
    )

