"""Steering vectors from the model's own states: ASC's mean difference and EAST's
entropy-weighted average, and the action entropy EAST plots against strength.

Everything reads the output of block L (``model.blocks[L].output``), the site the edits
write (see the package docstring).
"""
from __future__ import annotations

from typing import Sequence

import nnsight
import torch

from ...errors import InputError
from ...model import Model
from .._checks import real
from .._trace import residual, unembed_only
from .. import prefix_cache
from .edit import _edit_vector, _layer, _prompts, steer


BATCH_TOKENS = 4096  # prompts share a trace up to this many (padded) tokens


def _last_states(model: Model, prompts: list[str], layer: int, action_ids: list[int] | None = None):
    """Output of block `layer` at each prompt's last token [n, d] (float32, cpu), and, when
    `action_ids` is given, the next-token log-probabilities over those ids [n, A].

    Prompts run in batches, padded on the RIGHT: in a causal model no position reads a later
    one, so every real token's states are those of the prompt alone (no mask, no shifted
    positions), and each row is read at its own last real token. The tokens every prompt of
    a batch begins with run once (`prefix_cache.shared_start`), and only the rows' last real tokens are
    unembedded (``logits_to_keep``), into the actions' columns alone (`unembed_only`).
    """
    block, lm, unembed = model.blocks[layer], model.lm, model.unembed  # trace bodies must not name `model`
    wanted = list(action_ids or [])
    encoded = [model.encode(prompt)[0] for prompt in prompts]
    states, action_logits = [], []
    with model.lock, torch.no_grad():
        for batch in _batches(encoded):
            width = max(len(ids) for ids in batch)
            ids = torch.stack([torch.cat([x, x.new_full((width - len(x),), int(x[-1]))]) for x in batch])
            # a prompt start that runs once spares the other rows' copies of it
            skip, kwargs = prefix_cache.shared_start(model, batch, width, saved=len(batch) - 1)
            ids, rows = ids[:, skip:].to(model.device), torch.arange(len(batch))
            last = torch.tensor([len(x) - 1 - skip for x in batch])
            if action_ids is None:  # only the block's output: stop there (fewer blocks, no unembedding)
                with model.trace(ids, **kwargs) as tracer:
                    saved = nnsight.save([residual(block.output)[rows, last].float()])
                    tracer.stop()
            else:
                keep = torch.unique(last)  # sorted: row i's logits are at slot[i]
                slot = torch.searchsorted(keep, last)
                with model.trace(ids, logits_to_keep=keep.to(model.device), **kwargs):
                    z = residual(block.output)[rows, last].float()
                    unembed_only(unembed, wanted)
                    saved = nnsight.save([z, lm.output.logits[rows, slot].float()])
            states.append(saved[0].cpu())
            action_logits.append(saved[-1].cpu())
    return torch.cat(states), (torch.cat(action_logits) if action_ids is not None else None)


def _batches(encoded: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Consecutive prompts, as many per batch as fit BATCH_TOKENS once padded."""
    batches, width = [[]], 0
    for ids in encoded:
        width = max(width, len(ids))
        if batches[-1] and width * (len(batches[-1]) + 1) > BATCH_TOKENS:
            batches.append([])
            width = len(ids)
        batches[-1].append(ids)
    return batches


def mean_difference(model: Model, positive: Sequence[str], negative: Sequence[str], layer: int) -> torch.Tensor:
    """ASC's steering vector: ``mean_i [h_L(positive_i)[-1] - h_L(negative_i)[-1]]``.

    ``h_L`` is the output of block `layer` (``model.blocks[layer].output``), read at the
    last token of each prompt. In ASC, positive_i = question_i + concise CoT and
    negative_i = question_i + verbose CoT, paired by index: the lists must have the same
    length. The vector is not normalised (use it with ``strength`` as in ASC's gamma).
    Returns float32 [d_model] on the cpu.
    """
    positive, negative = _prompts(positive, "positive prompts"), _prompts(negative, "negative prompts")
    if len(positive) != len(negative):
        raise InputError(f"The prompts are paired (positive i with negative i): got {len(positive)} "
                         f"positive and {len(negative)} negative. Give the same number of each.")
    layer = _layer(model, layer)
    pos, _ = _last_states(model, positive, layer)
    neg, _ = _last_states(model, negative, layer)
    return (pos - neg).mean(dim=0)


def action_ids(model: Model, actions) -> list[int]:
    """EAST's actions as token ids: at least two, each one token, no two the same."""
    if isinstance(actions, (str, bytes)):
        raise InputError(f"actions must be a list of single-token actions, e.g. [' left', ' right'], "
                         f"not the text {actions!r}.")
    actions = list(actions or [])
    if len(actions) < 2:
        raise InputError(f"actions must be at least two single-token actions, e.g. [' left', ' right'], "
                         f"not {actions!r}.")
    ids = [model.single_token(a, "each action") for a in actions]
    if len(set(ids)) != len(ids):
        raise InputError("Two of the actions are the same token: each action needs its own token.")
    return ids


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.double(), dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def entropy_weighted(model: Model, episodes: Sequence[Sequence[str]], layer: int, actions) -> torch.Tensor:
    """EAST's steering vector (Rahn et al. 2024, as read in METHODS.md).

    For episode k, step t (prompt ``episodes[k][t]``): ``z_t^k`` is the output of block
    `layer` (``model.blocks[layer].output``) at the prompt's last token; ``h_t^k`` is the
    entropy (nats) of the model's action distribution there: the next-token
    distribution restricted to the action tokens and renormalised over them (each action
    must be a single token). Then

        u = (1/Z) sum_k sum_t h_t^k (z_t^k - mean_t' z_t'^k)

    (states centred per episode) with **Z = sum_k sum_t h_t^k**, the sum of the weights,
    so u is an entropy-weighted average of centred states. An episode with one step
    contributes nothing (its centred state is zero). Returns float32 [d_model] on the cpu.
    """
    episodes = [list(ep) if not isinstance(ep, str) else [ep] for ep in (episodes or [])]
    if not episodes or not any(episodes):
        raise InputError("No episodes: give a list of episodes, each a list of prompts (one per step).")
    if any(not ep for ep in episodes):
        raise InputError("An episode is empty: each episode needs at least one prompt.")
    if all(len(ep) < 2 for ep in episodes):
        raise InputError("Every episode has a single step, so every centred state is zero: "
                         "give episodes of two or more steps.")
    layer = _layer(model, layer)
    chosen = action_ids(model, actions)
    flat = [p for ep in episodes for p in ep]
    z, logits = _last_states(model, flat, layer, chosen)
    h = _entropy(logits).float()  # [N]
    total = torch.zeros(z.shape[1])
    start = 0
    for ep in episodes:
        zk, hk = z[start:start + len(ep)], h[start:start + len(ep)]
        total += (hk[:, None] * (zk - zk.mean(dim=0))).sum(dim=0)
        start += len(ep)
    weight = float(h.sum())
    if weight <= 0:
        raise InputError("The model is certain of its action at every step (all entropies are 0): "
                         "there is nothing to weight by.")
    return total / weight


def action_entropy(model: Model, prompt: str, actions, vector=None, layer: int | None = None,
                   strength: float = 0.0, temperature: float = 1.0) -> float:
    """Entropy (nats) of the action distribution after `prompt`, for EAST's plots.

    The next-token logits restricted to the action tokens, divided by `temperature`,
    renormalised. With a `vector`, ``strength * vector`` is added to the output of block
    `layer` at the last prompt position first (EAST's ``z <- z + beta u``). Plot this
    against strength (beta) and against temperature.
    """
    temperature = real(temperature, "temperature", above=0)
    return float(_entropy(_action_logits(model, prompt, actions, vector, layer, strength) / temperature))


def entropy_by_temperature(model: Model, prompt: str, actions, temperatures: Sequence[float]) -> list[float]:
    """`action_entropy` without steering at each of `temperatures`: one forward for them all, as
    a temperature only divides the same logits."""
    temperatures = [real(t, "temperature", above=0) for t in temperatures]
    logits = _action_logits(model, prompt, actions)
    return [float(_entropy(logits / t)) for t in temperatures]


def _action_logits(model: Model, prompt: str, actions, vector=None, layer: int | None = None,
                   strength: float = 0.0) -> torch.Tensor:
    """Next-token logits over the action tokens [A] (float32, cpu), the last prompt position
    steered by ``strength * vector`` at block `layer` when a vector is given."""
    chosen = action_ids(model, actions)
    ids = model.encode(prompt).to(model.device)
    strength = real(strength, "strength")
    if vector is not None and strength != 0:
        if layer is None:
            raise InputError("Steering needs a layer: pass layer=<block index>.")
        layer = _layer(model, layer)
        vec = _edit_vector(model, vector, "add")
    else:
        layer, vec, strength = 0, torch.zeros(model.d_model, dtype=model.hf.dtype, device=model.device), 0.0
    block, lm, unembed = model.blocks[layer], model.lm, model.unembed
    with model.lock, torch.no_grad():
        skip, kwargs = prefix_cache.resume(model, ids)  # every strength and temperature edits the last position only
        with model.trace(ids[:, skip:], logits_to_keep=1, **kwargs):
            o = residual(block.output)
            o[:, -1, :] = steer(o[:, -1, :], vec, strength, 0.0)
            unembed_only(unembed, chosen)
            logits = nnsight.save(lm.output.logits[0, -1].float())
    return logits.cpu()
