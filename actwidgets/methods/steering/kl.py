"""The measured effect of steering: KL(unsteered || steered) of the next-token
distributions, teacher-forced on the unsteered continuation (float64 log-softmax, in a
float32 model: the KL subtracts nearly equal log-probabilities).
"""
from __future__ import annotations

from dataclasses import dataclass

import nnsight
import numpy as np
import torch

from ...errors import InputError
from ...model import Model
from .._checks import choice, real
from .._trace import float32, residual
from .edit import MODES, POSITIONS, _edit_vector, _layers, coefficients, steer


@dataclass
class KLResult:
    """Per generated position: KL(unsteered || steered) in nats and both entropies."""

    kl_per_token: np.ndarray  # [n] float64, nats
    mean_kl: float
    entropy_unsteered: np.ndarray  # [n] nats
    entropy_steered: np.ndarray  # [n] nats


def _kl_trace(model: Model, ids: torch.Tensor, n_prompt: int, vec, layers: list[int], strength: float,
              positions: str, mode: str):
    """One forward of two identical rows over prompt + continuation; row 1 is edited.

    Returns per-position KL(row0 || row1), entropies of both, at the positions that
    predict the continuation tokens (n_prompt - 1 .. T - 2).
    """
    start = n_prompt - 1 if positions == "last" else 0
    T = ids.shape[1]
    blocks, lm = [model.blocks[layer] for layer in layers], model.lm
    shift, project = coefficients(strength, mode)
    with model.trace(ids.repeat(2, 1).to(model.device)):
        for block in blocks:  # in execution order
            o = residual(block.output)
            o[1, start:, :] = steer(o[1, start:, :], vec, shift, project)
        logp = torch.log_softmax(lm.output.logits[:, n_prompt - 1:T - 1].double(), dim=-1)  # KL subtracts near-equal log-probs
        p0, p1 = logp[0].exp(), logp[1].exp()
        kl = (p0 * (logp[0] - logp[1])).sum(dim=-1).clamp(min=0)
        ent0 = -(p0 * logp[0]).sum(dim=-1)
        ent1 = -(p1 * logp[1]).sum(dim=-1)
        saved = nnsight.save([kl, ent0, ent1])
    return [x.double().cpu().numpy() for x in saved]


def _continuation(model: Model, continuation_ids) -> torch.Tensor:
    cont = torch.as_tensor(continuation_ids if not torch.is_tensor(continuation_ids) else continuation_ids.cpu(),
                           dtype=torch.long).flatten()
    if cont.numel() == 0:
        raise InputError("The continuation is empty: KL is measured at generated tokens, so give at least one.")
    if (cont < 0).any() or (cont >= len(model.tokenizer)).any():
        raise InputError("The continuation holds token ids outside the vocabulary.")
    return cont


def measure_kl(model: Model, prompt: str, continuation_ids, vector, layer: int | list[int], strength: float, *,
               positions: str = "last", mode: str = "add") -> KLResult:
    """Measured effect of steering, teacher-forced on the UNSTEERED continuation.

    One forward over prompt + continuation without the edit and one with it (batched as
    two rows of one trace), the edit on the output of block `layer` (or of each listed
    block) at the same positions generation would edit (``"last"``: the last prompt position and every continuation
    position; ``"all"``: every position). At each position that predicts a continuation
    token: ``KL(p_unsteered || p_steered)`` in nats; `mean_kl` is their mean.
    """
    ids = model.encode(prompt)
    cont = _continuation(model, continuation_ids)
    layers = _layers(model, layer)
    strength = real(strength, "strength")
    choice(positions, POSITIONS, "positions")
    choice(mode, MODES, "mode")
    vec = _edit_vector(model, vector, mode, torch.float32)
    full = torch.cat([ids[0], cont])[None]
    limit = model.max_tokens
    if limit and full.shape[1] > limit:
        raise InputError(f"Prompt plus continuation is {full.shape[1]:,} tokens; {model.name} reads at most {limit:,}.")
    with model.lock, torch.no_grad(), float32(model):
        kl, ent0, ent1 = _kl_trace(model, full, ids.shape[1], vec, layers, strength, positions, mode)
    return KLResult(kl_per_token=kl, mean_kl=float(kl.mean()), entropy_unsteered=ent0, entropy_steered=ent1)
