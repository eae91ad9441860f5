"""Steering experiments in batches: greedy generation for many prompts in one left-padded
``generate`` call (the same forward hook and `steer` edit as `steer_generate`), and the
measured KL of one continuation at several strengths in one trace (`measure_kl`'s, with
the unsteered row computed once instead of once per strength).

Why: a decode step reads every weight once however many rows it holds, so on a CPU 24
rows cost a few times one row, not 24 times: notebook 03's 24 answers of up to 100 tokens
take ~20 s batched against ~2 minutes one by one (2-core CPU).

Left padding keeps each prompt's last token at position -1, so ``positions="last"`` edits
the same token in every row, and the attention mask gives each row the positions of its
unpadded run; the pads are masked as keys, so editing them (``positions="all"``) changes
nothing. Each row's result is cut at its first end-of-text token (kept, as in
`steer_generate`). The greedy tokens equal `steer_generate`'s one prompt at a time (the
tests check it); padded float sums can differ in the last bits, which could only flip a
near-tie between two top tokens.

`measure_kl_strengths` is `measure_kl` with rows [unsteered, strength 1, strength 2, ...]
over the same ids (the same trace, `kl._kl_rows`): at k strengths it runs k + 1 rows instead of 2k.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ...errors import InputError
from ...model import Model
from .._checks import choice, real, whole
from .._trace import float32
from .edit import (MAX_NEW_TOKENS, MODES, POSITIONS, _block_module, _edit_vector, _layers, _prompts, check_room,
                   coefficients, edit_hook)
from .generation import GenerationResult, steer_generate
from .kl import KLResult, _kl_inputs, _kl_rows


def steer_generate_batch(model: Model, prompts: Sequence[str], vector, layer: int | list[int],
                         strength: float | Sequence[float], *, max_new_tokens: int = 32, min_new_tokens: int = 0,
                         mode: str = "add", positions: str = "last", batch_size: int = 32) -> list[GenerationResult]:
    """`steer_generate` (greedy) for each prompt, in padded batches of `batch_size` rows.

    `strength` is one number for every prompt, or one per prompt (so several strengths of
    one experiment share a batch: repeat the prompts). `vector`, `layer` (one block or a
    list), `min_new_tokens`, `mode` and `positions` are as in `steer_generate`. Returns one
    `GenerationResult` per prompt, in order. A remote model runs the prompts one by one
    (one nnsight generation each): batching is a local speed-up.
    """
    prompts = _prompts(prompts)
    strengths = _strengths(strength, len(prompts))
    max_new_tokens = whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
    min_new_tokens = whole(min_new_tokens, "min_new_tokens", 0, max_new_tokens)
    batch_size = whole(batch_size, "batch_size", 1)
    layers = _layers(model, layer)
    choice(positions, POSITIONS, "positions")
    choice(mode, MODES, "mode")
    if model.remote:
        return [steer_generate(model, p, vector, layers, g, max_new_tokens=max_new_tokens,
                               min_new_tokens=min_new_tokens, mode=mode, positions=positions)
                for p, g in zip(prompts, strengths)]
    encoded = [model.encode(p)[0] for p in prompts]
    check_room(model, max(len(ids) for ids in encoded), max_new_tokens, "The longest prompt")
    vec = _edit_vector(model, vector, mode)
    results: list[GenerationResult] = []
    with model.lock, torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            rows = slice(start, start + batch_size)
            results += _generate_rows(model, encoded[rows], vec, layers, strengths[rows], positions, mode,
                                      max_new_tokens, min_new_tokens)
    return results


def _strengths(strength, n: int) -> list[float]:
    if np.ndim(strength) == 0:  # a number (numpy and 0-d torch too), or something `real` refuses
        return [real(strength, "strength")] * n
    values = [real(g, "strength") for g in strength]
    if len(values) != n:
        raise InputError(f"Give one strength, or one per prompt: got {len(values)} strengths for {n} prompts.")
    return values


def _stop_ids(model: Model) -> set[int]:
    """The token ids that end a row (those `generate` stops on)."""
    eos = model.hf.generation_config.eos_token_id
    if eos is None:
        eos = model.tokenizer.eos_token_id
    return set() if eos is None else {int(e) for e in np.atleast_1d(eos)}


def _generate_rows(model: Model, encoded: list[torch.Tensor], vec, layers: list[int], strengths: list[float],
                   positions: str, mode: str, max_new_tokens: int, min_new_tokens: int) -> list[GenerationResult]:
    tok = model.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    pad = 0 if pad is None else pad  # masked out, so any id will do
    width = max(len(ids) for ids in encoded)
    ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt_ids in enumerate(encoded):
        ids[row, width - len(prompt_ids):] = prompt_ids
        mask[row, width - len(prompt_ids):] = 1
    coeffs = torch.tensor([coefficients(g, mode) for g in strengths], dtype=vec.dtype, device=model.device)
    hook = edit_hook(vec, coeffs[:, 0, None, None], coeffs[:, 1, None, None], positions)  # one strength per row

    model.check_eval()
    handles = [_block_module(model, layer).register_forward_hook(hook) for layer in layers]
    try:
        out = model.hf.generate(ids.to(model.device), attention_mask=mask.to(model.device), do_sample=False,
                                max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, pad_token_id=pad)
    finally:
        for handle in handles:
            handle.remove()
    stop = _stop_ids(model)
    results = []
    for row, prompt_ids in enumerate(encoded):
        new = out[row, width:].tolist()
        end = next((i for i, t in enumerate(new) if t in stop), None)
        new = new if end is None else new[:end + 1]  # a finished row is padded after its end-of-text
        results.append(GenerationResult(token_ids=new, tokens=model.token_texts(new),
                                        text=tok.decode(new, skip_special_tokens=True),
                                        prompt_ids=prompt_ids.tolist()))
    return results


def measure_kl_strengths(model: Model, prompt: str, continuation_ids, vector, layer: int | list[int],
                         strengths: Sequence[float], *, positions: str = "last", mode: str = "add") -> list[KLResult]:
    """`measure_kl` at each of `strengths`, teacher-forced on the same (unsteered)
    continuation: one trace whose row 0 is unsteered and row i + 1 is edited at
    ``strengths[i]``. Returns one `KLResult` per strength, in order."""
    ids, full, layers, vec = _kl_inputs(model, prompt, continuation_ids, vector, layer, positions, mode)
    strengths = [real(g, "strength") for g in strengths]
    if not strengths:
        raise InputError("The list of strengths is empty: give at least one.")
    with model.lock, torch.no_grad(), float32(model):
        kl, ent0, ent = _kl_rows(model, full, ids.shape[1], vec, layers, strengths, positions, mode)
    return [KLResult(kl_per_token=kl[i], mean_kl=float(kl[i].mean()), entropy_unsteered=ent0, entropy_steered=ent[i])
            for i in range(len(strengths))]
