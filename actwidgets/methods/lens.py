"""The logit lens: read every layer's residual stream through the final norm and
the unembedding, as if the model stopped there.

`logits_l = post(W_U final(h_l))`, with the model's own modules: `final` is what runs
between the last block and the unembedding (the final norm; OPT-350m's `project_out`; nothing
on a model without one) and `post` what the model does to logits afterwards (Gemma-2's
soft-capping, Cohere's and Granite's scaling). The last block's row therefore equals the
model's output logits. The reduction (top-k, entropy, target) happens inside the
trace, one layer at a time, so neither a remote run nor a 2,048-token prompt ever
holds a [layers, tokens, vocab] tensor.
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

    with model.lock, torch.no_grad():
        with model.trace(ids.to(model.device)):
            states = [blocks[0].input[0]] if with_embeddings else []
            states += [residual(blocks[layer].output)[0] for layer in chosen]
            top_p, top_i, ent, tgt_p, tgt_r = [], [], [], [], []
            for h in states:
                logp = torch.log_softmax(apply_head(h, head).float(), dim=-1)  # [T, V]
                p, i = logp.topk(k, dim=-1)
                top_p.append(p.exp())
                top_i.append(i)
                ent.append(-(logp.exp() * logp).sum(dim=-1))
                if target_id is not None:
                    tgt = logp[:, target_id]
                    tgt_p.append(tgt.exp())
                    tgt_r.append((logp > tgt[:, None]).sum(dim=-1))
            saved = nnsight.save([top_p, top_i, ent, tgt_p, tgt_r])

    top_p, top_i, ent, tgt_p, tgt_r = (torch.stack(x).cpu().numpy() if x else None for x in saved)
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

