"""Generation while steering: a forward hook on the user's own model (plain ``generate``
speed, streamed token by token), or one nnsight generation where the model runs remotely.
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import nnsight
import torch

from ...errors import Cancelled
from ...model import Model
from .._checks import choice, real, whole
from .._trace import residual
from .. import prefix_cache
from .edit import (MAX_NEW_TOKENS, MODES, POSITIONS, _block_module, _edit_vector, _layers, check_room, coefficients,
                   edit_hook, steer)


@dataclass
class GenerationResult:
    """The generated continuation (prompt excluded; an end-of-text token is kept)."""

    token_ids: list[int]
    tokens: list[str]  # one decoded string per generated token
    text: str  # the continuation, special tokens skipped
    prompt_ids: list[int] = field(default_factory=list)


def steer_generate(model: Model, prompt: str, vector, layer: int | list[int], strength: float, *,
                   max_new_tokens: int = 32, min_new_tokens: int = 0, positions: str = "last",
                   mode: str = "add", do_sample: bool = False, seed: int | None = None,
                   temperature: float = 1.0, should_stop: Callable[[], bool] | None = None,
                   on_token: Callable[[int, str], None] | None = None) -> GenerationResult:
    """Generate from `prompt` while editing the output of block `layer` (or of each block
    in a list of them, as a directional ablation usually does).

    The edit (see the module docstring: ``add`` or ``ablate``, scaled by `strength`) is
    applied at the last prompt position during prefill and at every generated token, with
    the KV cache on (``output[:, -1, :]`` at each step); ``positions="all"`` also edits
    every prompt position. Greedy unless ``do_sample``; sampling is plain temperature
    sampling (no top-k / top-p), seeded by `seed` without touching the global RNG.

    Two paths, same result:
    - local models: ``model.hf.generate`` with a forward hook on block `layer` — no
      per-step trace, so it runs at plain ``generate`` speed; `on_token(index, text)` is
      called as each token is made and `should_stop()` is checked between tokens
      (True -> `Cancelled`).
    - remote models (``remote=True`` or ``"local"``): one nnsight generation with
      ``tracer.iter[:max_new_tokens]`` doing the edit; the whole run happens before the
      tokens come back, so `on_token` is then called for each in turn, and `should_stop`
      is checked before the run and between those calls.

    With ``positions="last"`` the local path reuses the prompt's keys and values up to its
    last token (see `methods/prefix_cache.py`): a slider move runs only the last prompt position and the
    new tokens. Strength 0 reproduces ``model.hf.generate(ids, do_sample=False)`` token for token.
    """
    ids = model.encode(prompt)
    max_new_tokens = whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
    min_new_tokens = whole(min_new_tokens, "min_new_tokens", 0, max_new_tokens)
    check_room(model, ids.shape[1], max_new_tokens)
    layers = _layers(model, layer)
    strength = real(strength, "strength")
    choice(positions, POSITIONS, "positions")
    choice(mode, MODES, "mode")
    temperature = real(temperature, "temperature", above=0) if do_sample else real(temperature, "temperature")
    vec = _edit_vector(model, vector, mode)
    if should_stop is not None and should_stop():
        raise Cancelled("generation cancelled before it started")

    gen_kwargs = dict(max_new_tokens=max_new_tokens, do_sample=bool(do_sample))
    if min_new_tokens:
        gen_kwargs["min_new_tokens"] = min_new_tokens
    if do_sample:
        gen_kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else model.tokenizer.eos_token_id
    if pad is not None:
        gen_kwargs["pad_token_id"] = pad
    rng = torch.random.fork_rng(devices=[] if model.device.type == "cpu" else [model.device]) \
        if seed is not None else nullcontext()

    with model.lock, torch.no_grad(), rng:
        if seed is not None:
            torch.manual_seed(seed)
        if model.remote:
            with warnings.catch_warnings():
                # an early end-of-text leaves the bounded loop short; nnsight warns, the result is fine
                warnings.filterwarnings("ignore", message=".*was never reached.*")
                new = _generate_nnsight(model, ids, vec, layers, strength, positions, mode, gen_kwargs)
            tokens = []
            for i, tid in enumerate(new):
                if i and should_stop is not None and should_stop():
                    raise Cancelled("generation cancelled")
                tokens.append(model.token_texts([tid])[0])
                if on_token is not None:
                    on_token(i, tokens[-1])
        else:
            new, tokens = _generate_local(model, ids, vec, layers, strength, positions, mode, gen_kwargs,
                                          should_stop, on_token)
    return GenerationResult(token_ids=new, tokens=tokens,
                            text=model.tokenizer.decode(new, skip_special_tokens=True),
                            prompt_ids=ids[0].tolist())


def _generate_local(model, ids, vec, layers, strength, positions, mode, gen_kwargs, should_stop, on_token):
    tokens: list[str] = []
    hook = edit_hook(vec, *coefficients(strength, mode), positions)
    # "last" leaves the prompt before its last token unedited: its keys and values are reused
    past = prefix_cache.reusable(model, ids) if positions == "last" else None
    if past is not None:
        gen_kwargs = {**gen_kwargs, prefix_cache.cache_keyword(model.hf): past}

    class Streamer:  # transformers' streamer protocol: put(prompt ids) first, then each new token
        started = False

        def put(self, value):
            if not self.started:
                self.started = True
                return
            text = model.token_texts(value.flatten()[:1])[0]
            tokens.append(text)
            if on_token is not None:
                on_token(len(tokens) - 1, text)
            if should_stop is not None and should_stop():  # before the next token is computed
                raise Cancelled("generation cancelled")

        def end(self):
            pass

    model.check_eval()
    handles = [_block_module(model, layer).register_forward_hook(hook) for layer in layers]
    try:
        out = model.hf.generate(ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device),
                                streamer=Streamer(), **gen_kwargs)
    finally:
        for handle in handles:
            handle.remove()
    new = out[0, ids.shape[1]:].tolist()
    return new, tokens[:len(new)]


def _generate_nnsight(model, ids, vec, layers, strength, positions, mode, gen_kwargs) -> list[int]:
    """nnsight generation with the edit in a bounded ``tracer.iter`` loop (remote-safe:
    see the rule in `_trace.py`); blocks in execution order, as a trace requires."""
    blocks = [model.blocks[layer] for layer in layers]
    n = gen_kwargs["max_new_tokens"]
    kwargs = dict(gen_kwargs)
    ids = ids.to(model.device)
    first = -1 if positions == "last" else 0  # during decoding both are the one new position
    shift, project = coefficients(strength, mode)
    with model.lm.generate(**model.where(**kwargs)) as tracer:
        with tracer.invoke(ids):
            for _ in tracer.iter[:n]:
                for block in blocks:
                    o = residual(block.output)
                    o[:, first:, :] = steer(o[:, first:, :], vec, shift, project)
        with tracer.invoke():  # after the loop, in its own invoke, so an early stop still gets here
            out = nnsight.save(tracer.result)
    return out[0, ids.shape[1]:].tolist()
