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
from .._trace import float32, float32_dtype, residual
from .. import prefix_cache
from .edit import MODES, POSITIONS, _edit_vector, _layers, coefficients, steer


@dataclass
class KLResult:
    """Per generated position: KL(unsteered || steered) in nats and both entropies."""

    kl_per_token: np.ndarray  # [n] float64, nats
    mean_kl: float
    entropy_unsteered: np.ndarray  # [n] nats
    entropy_steered: np.ndarray  # [n] nats


def _continuation(model: Model, continuation_ids) -> torch.Tensor:
    cont = torch.as_tensor(continuation_ids if not torch.is_tensor(continuation_ids) else continuation_ids.cpu(),
                           dtype=torch.long).flatten()
    if cont.numel() == 0:
        raise InputError("The continuation is empty: KL is measured at generated tokens, so give at least one.")
    if (cont < 0).any() or (cont >= len(model.tokenizer)).any():
        raise InputError("The continuation holds token ids outside the vocabulary.")
    return cont


def _kl_inputs(model: Model, prompt: str, continuation_ids, vector, layer, positions: str, mode: str):
    """The checks `measure_kl` and `measure_kl_strengths` share: (prompt ids [1, n],
    prompt + continuation [1, T], blocks, float32 vector)."""
    ids = model.encode(prompt)
    cont = _continuation(model, continuation_ids)
    layers = _layers(model, layer)
    choice(positions, POSITIONS, "positions")
    choice(mode, MODES, "mode")
    vec = _edit_vector(model, vector, mode, float32_dtype(model))
    full = torch.cat([ids[0], cont])[None]
    limit = model.max_tokens
    if limit and full.shape[1] > limit:
        raise InputError(f"Prompt plus continuation is {full.shape[1]:,} tokens; {model.name} reads at most {limit:,}.")
    return ids, full, layers, vec


REFERENCE_BYTES = 64 * 2**20  # row 0's block outputs kept for a search: beyond this, only its log-probabilities


def _kl_rows(model: Model, full: torch.Tensor, n_prompt: int, vec, layers: list[int], strengths: list[float],
             positions: str, mode: str, reference: dict | None = None):
    """One forward of k + 1 identical rows over prompt + continuation: row 0 unsteered, row
    i + 1 edited at ``strengths[i]``. Returns KL(row 0 || row i + 1) [k, n], the unsteered
    entropy [n] and the steered ones [k, n], at the positions that predict the continuation
    (n_prompt - 1 .. T - 2). Hold ``model.lock``, in `float32`.

    With ``positions="last"`` every row shares the unedited prompt before its last token:
    a local model reads its keys and values from `prefix` and runs only the rest.
    `reference`, a dict the caller keeps across calls on the same ids (a search over
    strengths), holds row 0's log-probabilities and the outputs of the blocks below the
    first edited one after the first call (every row computes the same there), so later
    calls run only the edited rows, from the first edited block on."""
    logp0, below = (reference or {}).get("logp0"), (reference or {}).get("below")
    first = 1 if logp0 is None else 0  # the first edited row
    rows = len(strengths) + first
    skip, kwargs = prefix_cache.resume(model, full[:, :n_prompt], rows, full.shape[1]) if positions == "last" else (0, {})
    start = n_prompt - 1 - skip if positions == "last" else 0
    lowest = min(layers)
    keep = reference is not None and first and lowest * (full.shape[1] - skip) * model.d_model * 4 <= REFERENCE_BYTES
    coeffs = torch.tensor([coefficients(g, mode) for g in strengths], dtype=vec.dtype, device=model.device)
    shift, project = coeffs[:, 0, None, None], coeffs[:, 1, None, None]  # [k, 1, 1]: one strength per edited row
    stack, lm, as_tuple = list(model.blocks), model.lm, model.adapter.block_tuple  # trace bodies must not name `model`
    with model.trace(full[:, skip:].repeat(rows, 1).to(model.device), **kwargs):
        for index, out in enumerate(below or []):  # what these blocks would compute again
            out = out.expand(rows, -1, -1)
            stack[index].skip((out, None) if as_tuple else out)  # callers read [0] of a tuple
        if keep:
            kept = nnsight.save([residual(stack[index].output)[0].clone() for index in range(lowest)])
        for layer in layers:  # in execution order, after the blocks read above
            o = residual(stack[layer].output)
            o[first:, start:, :] = steer(o[first:, start:, :], vec, shift, project)
        logits = lm.output.logits[:, n_prompt - 1 - skip:-1]
        if first:
            logp0 = torch.log_softmax(logits[0].double(), dim=-1)  # KL subtracts near-equal log-probs
        p0 = logp0.exp()
        kls, ents = [], []
        for row in range(first, rows):  # one [n, vocab] float64 row at a time: memory, not speed
            logp = torch.log_softmax(logits[row].double(), dim=-1)
            kls.append((p0 * (logp0 - logp)).sum(dim=-1).clamp(min=0))
            ents.append(-(logp.exp() * logp).sum(dim=-1))
        saved = nnsight.save([torch.stack(kls), -(p0 * logp0).sum(dim=-1), torch.stack(ents)]
                             + ([logp0] if first and reference is not None else []))
    if len(saved) == 4:
        reference["logp0"] = saved.pop()
        reference["below"] = list(kept) if keep else None
    return [x.double().cpu().numpy() for x in saved]


def measure_kl(model: Model, prompt: str, continuation_ids, vector, layer: int | list[int], strength: float, *,
               positions: str = "last", mode: str = "add") -> KLResult:
    """Measured effect of steering, teacher-forced on the UNSTEERED continuation.

    One forward over prompt + continuation without the edit and one with it (batched as
    two rows of one trace; with ``positions="last"`` a local model reuses the prompt's
    keys and values up to its last token, see `methods/prefix_cache.py`), the edit on the output of block `layer` (or of each listed
    block) at the same positions generation would edit (``"last"``: the last prompt position and every continuation
    position; ``"all"``: every position). At each position that predicts a continuation
    token: ``KL(p_unsteered || p_steered)`` in nats; `mean_kl` is their mean.
    """
    ids, full, layers, vec = _kl_inputs(model, prompt, continuation_ids, vector, layer, positions, mode)
    strength = real(strength, "strength")
    with model.lock, torch.no_grad(), float32(model):
        kl, ent0, ent1 = _kl_rows(model, full, ids.shape[1], vec, layers, [strength], positions, mode)
    return KLResult(kl_per_token=kl[0], mean_kl=float(kl[0].mean()), entropy_unsteered=ent0, entropy_steered=ent1[0])
