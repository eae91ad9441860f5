"""Activation steering: build a vector, add it (or ablate it) while the model generates,
and measure what it did to the next-token distributions.

Which activation. Everything here reads and writes **the output of block L**, i.e.
``model.blocks[L].output`` (the residual stream after decoder layer L, before the next
layer; ``hidden_states[L + 1]`` of ``output_hidden_states`` for ``L < n_layers - 1``).
Extraction (`mean_difference`, `entropy_weighted`) and injection (`steer_generate`,
`measure_kl`, `estimate_curvature`, `calibrate_strength`, `action_entropy`) use the
same site, so a vector is added where it was measured (ASC's released code reads
``hidden_states[20]`` but writes ``layers[20]``: one block apart; we do not).

Edits (`add`, `ablate_direction`):
- ``mode="add"``:    ``h <- h + strength * v`` (v as given, NOT normalised);
- ``mode="ablate"``: ``h <- h - strength * (h . r_hat) r_hat`` (strength 1 removes the
  direction; 0 leaves h alone).

Where (`positions`): ``"last"`` (ASC's default) edits the last prompt position during
prefill and every generated token (each decode step sees one new position; the KV cache
keeps the earlier, already edited keys and values); ``"all"`` also edits every prompt
position.

Scale convention. ``strength`` always multiplies the vector *as given*. The KL bound of
ASC assumes a unit vector; `estimate_curvature` unit-normalises internally and returns
``a`` and ``lipschitz`` rescaled to the given vector (``a = ||v|| a_unit``,
``L = ||v||^2 L_unit``); the bound is invariant under that rescaling, so
``gamma_max(eps, a, L)`` is directly a ``strength`` for ``steer_generate(vector=v)``.

KL. ``KL(unsteered || steered)`` of the next-token distributions, teacher-forced on the
*unsteered* continuation, at each position that predicts a continuation token, averaged
over those positions (and pooled over prompts in `calibrate_strength`).
"""
from __future__ import annotations

import math
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Sequence

import nnsight
import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..model import Model
from .._adapter import get_path
from ._checks import choice, real, shown, whole
from ._trace import check_vector, float32, residual

MODES = ("add", "ablate")
POSITIONS = ("last", "all")
MAX_NEW_TOKENS = 2048


# --- results ---------------------------------------------------------------

@dataclass
class GenerationResult:
    """The generated continuation (prompt excluded; an end-of-text token is kept)."""

    token_ids: list[int]
    tokens: list[str]  # one decoded string per generated token
    text: str  # the continuation, special tokens skipped
    prompt_ids: list[int] = field(default_factory=list)


@dataclass
class KLResult:
    """Per generated position: KL(unsteered || steered) in nats and both entropies."""

    kl_per_token: np.ndarray  # [n] float64, nats
    mean_kl: float
    entropy_unsteered: np.ndarray  # [n] nats
    entropy_steered: np.ndarray  # [n] nats


@dataclass
class Curvature:
    """ASC's first- and second-order sensitivities of the logits along the vector.

    ``a`` and ``lipschitz`` are in units of the vector as given (see the module
    docstring); the ``*_unit`` values are for the unit vector. Unpacks as ``(a, lipschitz)``.
    """

    a: float
    lipschitz: float
    a_unit: float
    lipschitz_unit: float
    vector_norm: float
    jvp_norms: np.ndarray  # ||J v_hat|| per calibration state
    hvp_norms: np.ndarray  # ||d2F[v_hat, v_hat]|| per calibration state
    forward_equivalents: int  # batch rows x forward passes spent

    def __iter__(self):
        return iter((self.a, self.lipschitz))


@dataclass
class Calibration:
    """A strength whose measured mean KL is within `tolerance` of the budget (if converged)."""

    strength: float
    measured_kl: float
    evaluations: int  # KL evaluations (each: one two-row forward per prompt)
    kl_budget: float
    converged: bool
    history: list[tuple[float, float]]  # (strength, measured KL) in the order tried
    forward_equivalents: int  # incl. generating the unsteered continuations


# --- checks ----------------------------------------------------------------

def _layer(model: Model, layer) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise InputError(f"layer must be one block index (a whole number), not {shown(layer)}.")
    return model.check_layers(int(layer))[0]


def _prompts(prompts, what="prompts") -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts or [])
    if not prompts:
        raise InputError(f"The list of {what} is empty: give at least one prompt.")
    return prompts


# --- the two edits -----------------------------------------------------------

def add(h: torch.Tensor, v: torch.Tensor, gamma: float) -> torch.Tensor:
    """ASC / EAST edit: ``h + gamma * v`` (v broadcast over the leading dimensions)."""
    return h + gamma * v.to(h.dtype)


def ablate_direction(h: torch.Tensor, r: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Directional ablation: ``h - scale * (h . r_hat) r_hat``; scale 1 removes the direction."""
    r_hat = (r / r.norm()).to(h.dtype)
    return h - scale * (h @ r_hat)[..., None] * r_hat


def _edit(h, vec, strength: float, mode: str):
    """The edit as plain torch ops (inlined shape so it also runs inside an nnsight trace)."""
    if mode == "add":
        return h + strength * vec
    return h - strength * (h @ vec)[..., None] * vec


def _edit_vector(model: Model, vector, mode: str, dtype=None) -> torch.Tensor:
    """The vector on the model's device, in `dtype` (default: the model's); unit length for ablation."""
    vec = check_vector(model, vector)
    if mode == "ablate":
        vec = vec / vec.norm()
    return vec.to(device=model.device, dtype=dtype or model.hf.dtype)


def _block_module(model: Model, layer: int) -> torch.nn.Module:
    """The torch module of block `layer` (for the local fast path's forward hook)."""
    return get_path(model.hf, model.adapter.blocks)[layer]


# --- extraction ----------------------------------------------------------------

def _last_states(model: Model, prompts: list[str], layer: int, action_ids: list[int] | None = None):
    """Output of block `layer` at each prompt's last token [n, d] (float32, cpu), and, when
    `action_ids` is given, the next-token log-probabilities over those ids [n, A].

    One unpadded trace per prompt, so "last token" is always the last real token.
    """
    block, lm = model.blocks[layer], model.lm  # trace bodies must not name `model` (it holds a lock)
    states, action_logits = [], []
    wanted = list(action_ids) if action_ids is not None else [0]  # no branches inside trace bodies (remote)
    with model.lock, torch.no_grad():
        for prompt in prompts:
            ids = model.encode(prompt).to(model.device)
            with model.trace(ids):
                o = block.output
                o = o[0] if isinstance(o, tuple) else o  # `residual` inlined: remote bodies import nothing of ours
                z = o[0, -1].float()
                logits = lm.output.logits[0, -1, wanted].float()
                saved = nnsight.save([z, logits])
            states.append(saved[0].cpu())
            action_logits.append(saved[1].cpu())
    states = torch.stack(states)
    return states, (torch.stack(action_logits) if action_ids is not None else None)


def mean_difference(model: Model, positive: Sequence[str], negative: Sequence[str], layer: int,
                    position: str = "last") -> torch.Tensor:
    """ASC's steering vector: ``mean_i [h_L(positive_i)[-1] - h_L(negative_i)[-1]]``.

    ``h_L`` is the output of block `layer` (``model.blocks[layer].output``), read at the
    last token of each prompt. In ASC, positive_i = question_i + concise CoT and
    negative_i = question_i + verbose CoT, paired by index: the lists must have the same
    length. The vector is not normalised (use it with ``strength`` as in ASC's gamma).
    Returns float32 [d_model] on the cpu.
    """
    choice(position, ("last",), "position")
    positive, negative = _prompts(positive, "positive prompts"), _prompts(negative, "negative prompts")
    if len(positive) != len(negative):
        raise InputError(f"The prompts are paired (positive i with negative i): got {len(positive)} "
                         f"positive and {len(negative)} negative. Give the same number of each.")
    layer = _layer(model, layer)
    pos, _ = _last_states(model, positive, layer)
    neg, _ = _last_states(model, negative, layer)
    return (pos - neg).mean(dim=0)


def _action_ids(model: Model, actions) -> list[int]:
    actions = list(actions or [])
    if len(actions) < 2:
        raise InputError("Give at least two actions (each a single token, e.g. [' left', ' right']).")
    ids = [model.single_token(a) for a in actions]
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
    action_ids = _action_ids(model, actions)
    flat = [p for ep in episodes for p in ep]
    z, logits = _last_states(model, flat, layer, action_ids)
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
    action_ids = _action_ids(model, actions)
    ids = model.encode(prompt).to(model.device)
    strength = real(strength, "strength")
    steer = vector is not None and strength != 0
    if steer:
        if layer is None:
            raise InputError("Steering needs a layer: pass layer=<block index>.")
        layer = _layer(model, layer)
        vec = _edit_vector(model, vector, "add")
    else:
        layer, vec, strength = 0, torch.zeros(model.d_model, dtype=model.hf.dtype, device=model.device), 0.0
    block, lm = model.blocks[layer], model.lm
    with model.lock, torch.no_grad():
        with model.trace(ids):
            o = block.output
            o = o[0] if isinstance(o, tuple) else o
            o[:, -1, :] += strength * vec
            logits = nnsight.save(lm.output.logits[0, -1, action_ids].float())
    return float(_entropy(logits.cpu() / temperature))


# --- generation ----------------------------------------------------------------

def steer_generate(model: Model, prompt: str, vector, layer: int, strength: float, *,
                   max_new_tokens: int = 32, min_new_tokens: int = 0, positions: str = "last",
                   mode: str = "add", do_sample: bool = False, seed: int | None = None,
                   temperature: float = 1.0, should_stop: Callable[[], bool] | None = None,
                   on_token: Callable[[int, str], None] | None = None) -> GenerationResult:
    """Generate from `prompt` while editing the output of block `layer`.

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

    Strength 0 reproduces ``model.hf.generate(ids, do_sample=False)`` token for token.
    """
    ids = model.encode(prompt)
    max_new_tokens = whole(max_new_tokens, "max_new_tokens", 1, MAX_NEW_TOKENS)
    min_new_tokens = whole(min_new_tokens, "min_new_tokens", 0, max_new_tokens)
    limit = model.max_tokens
    if limit and ids.shape[1] + max_new_tokens > limit:
        raise InputError(f"The prompt ({ids.shape[1]:,} tokens) plus {max_new_tokens} new tokens is more "
                         f"than {model.name} reads ({limit:,}).")
    layer = _layer(model, layer)
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
                new = _generate_nnsight(model, ids, vec, layer, strength, positions, mode, gen_kwargs)
            tokens = []
            for i, tid in enumerate(new):
                if i and should_stop is not None and should_stop():
                    raise Cancelled("generation cancelled")
                tokens.append(model.token_texts([tid])[0])
                if on_token is not None:
                    on_token(i, tokens[-1])
        else:
            new, tokens = _generate_local(model, ids, vec, layer, strength, positions, mode, gen_kwargs,
                                          should_stop, on_token)
    return GenerationResult(token_ids=new, tokens=tokens,
                            text=model.tokenizer.decode(new, skip_special_tokens=True),
                            prompt_ids=ids[0].tolist())


def _generate_local(model, ids, vec, layer, strength, positions, mode, gen_kwargs, should_stop, on_token):
    tokens: list[str] = []

    def hook(module, args, output):
        h = residual(output)
        if positions == "last":
            h = h.clone()
            h[:, -1, :] = _edit(h[:, -1, :], vec, strength, mode)
        else:
            h = _edit(h, vec, strength, mode)
        return h if torch.is_tensor(output) else (h,) + tuple(output[1:])

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

    handle = _block_module(model, layer).register_forward_hook(hook)
    try:
        out = model.hf.generate(ids.to(model.device), attention_mask=torch.ones_like(ids).to(model.device),
                                streamer=Streamer(), **gen_kwargs)
    finally:
        handle.remove()
    new = out[0, ids.shape[1]:].tolist()
    return new, tokens[:len(new)]


def _generate_nnsight(model, ids, vec, layer, strength, positions, mode, gen_kwargs) -> list[int]:
    """nnsight generation with the edit in a bounded ``tracer.iter`` loop (remote-safe:
    the trace body uses only torch and plain values, no branches, nothing of ours)."""
    block = model.blocks[layer]
    n = gen_kwargs["max_new_tokens"]
    kwargs = dict(gen_kwargs)
    if model.remote:
        kwargs["remote"] = model.remote
    ids = ids.to(model.device)
    first = -1 if positions == "last" else 0  # during decoding both are the one new position
    shift, project = (strength, 0.0) if mode == "add" else (0.0, strength)
    with model.lm.generate(**kwargs) as tracer:
        with tracer.invoke(ids):
            for _ in tracer.iter[:n]:
                o = block.output
                o = o[0] if isinstance(o, tuple) else o
                o[:, first:, :] += (shift - project * (o[:, first:, :] @ vec)[..., None]) * vec
        with tracer.invoke():  # after the loop, in its own invoke, so an early stop still gets here
            out = nnsight.save(tracer.result)
    return out[0, ids.shape[1]:].tolist()


# --- measuring the effect ------------------------------------------------------

def _kl_trace(model: Model, ids: torch.Tensor, n_prompt: int, vec, layer: int, strength: float,
              positions: str, mode: str):
    """One forward of two identical rows over prompt + continuation; row 1 is edited.

    Returns per-position KL(row0 || row1), entropies of both, at the positions that
    predict the continuation tokens (n_prompt - 1 .. T - 2).
    """
    start = n_prompt - 1 if positions == "last" else 0
    T = ids.shape[1]
    block, lm = model.blocks[layer], model.lm
    shift, project = (strength, 0.0) if mode == "add" else (0.0, strength)
    with model.trace(ids.repeat(2, 1).to(model.device)):
        o = block.output
        o = o[0] if isinstance(o, tuple) else o
        o[1, start:, :] += (shift - project * (o[1, start:, :] @ vec)[..., None]) * vec
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


def measure_kl(model: Model, prompt: str, continuation_ids, vector, layer: int, strength: float, *,
               positions: str = "last", mode: str = "add") -> KLResult:
    """Measured effect of steering, teacher-forced on the UNSTEERED continuation.

    One forward over prompt + continuation without the edit and one with it (batched as
    two rows of one trace), the edit on the output of block `layer` at the same positions
    generation would edit (``"last"``: the last prompt position and every continuation
    position; ``"all"``: every position). At each position that predicts a continuation
    token: ``KL(p_unsteered || p_steered)`` in nats; `mean_kl` is their mean.
    """
    ids = model.encode(prompt)
    cont = _continuation(model, continuation_ids)
    layer = _layer(model, layer)
    strength = real(strength, "strength")
    choice(positions, POSITIONS, "positions")
    choice(mode, MODES, "mode")
    vec = _edit_vector(model, vector, mode, torch.float32)
    full = torch.cat([ids[0], cont])[None]
    limit = model.max_tokens
    if limit and full.shape[1] > limit:
        raise InputError(f"Prompt plus continuation is {full.shape[1]:,} tokens; {model.name} reads at most {limit:,}.")
    with model.lock, torch.no_grad(), float32(model):
        kl, ent0, ent1 = _kl_trace(model, full, ids.shape[1], vec, layer, strength, positions, mode)
    return KLResult(kl_per_token=kl, mean_kl=float(kl.mean()), entropy_unsteered=ent0, entropy_steered=ent1)


# --- the ASC bound ---------------------------------------------------------------

def _positive_cubic_root(s: float) -> float:
    """The root y in (0, 1] of ``s y^3 + y^2 - 1 = 0`` (s >= 0), by Newton from the right.

    f is increasing and convex for y > 0 and f(y0) >= 0 at y0 = min(1, s^(-1/3)), so the
    iteration decreases monotonically onto the root: no complex arithmetic, no NaN.
    """
    if s == 0:
        return 1.0
    y = min(1.0, s ** (-1.0 / 3.0))
    for _ in range(100):
        f = s * y ** 3 + y * y - 1.0
        step = f / (3.0 * s * y * y + 2.0 * y)
        y_new = y - step
        if not y_new < y:  # monotone: stop when it no longer decreases
            break
        y = y_new
        if step <= 1e-16 * y:
            break
    return y


def gamma_max(eps: float, a: float, lipschitz: float, *, method: str = "paper") -> float:
    """Largest steering strength whose ASC KL bound stays within `eps` (nats).

    The bound (ASC, Appendix A.1): ``KL <= a^2 g^2/4 + L a g^3/4 + L^2 g^4/16`` with
    ``a = ||J v||`` and ``L`` the Lipschitz constant of J along v.

    ``method="paper"`` (default) is ASC's recipe: x = L g / a is the positive real root of
    ``x^3 + x^2 - beta = 0`` with ``beta = 4 eps L^2 / a^4``, ``g_raw = (a / L) x`` and
    ``gamma_max = (1 - L g_raw / (4 a)) g_raw``. The root is found as ``x = sqrt(beta) y``
    with ``s y^3 + y^2 = 1``, ``s = sqrt(beta)``, by monotone Newton (the paper's Cardano
    form is NaN for 0 < beta < 4/27). So ``g_raw = 2 sqrt(eps) y / a``: L -> 0 gives
    ``2 sqrt(eps) / a``. The recipe drops the ``L^2 g^4`` term and its correction factor
    falls to 0 as a -> 0; where that factor is below 1/2 (x > 2), and at a = 0, the exact
    root of the full bound is returned instead:
    ``g = (sqrt(a^2 + 4 L sqrt(eps)) - a) / L`` (``method="exact"`` always returns it),
    which at a = 0 is ``(16 eps)^(1/4) / sqrt(L)``. Both are never above the exact root,
    so the bound holds. a = L = 0 (no effect at all) gives inf. Never NaN.

    Units: those of a and L (see `estimate_curvature`: the vector as given).
    """
    choice(method, ("paper", "exact"), "method")
    values = []
    for name, value in (("eps", eps), ("a", a), ("lipschitz", lipschitz)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be a number, not {value!r}.") from None
        if math.isnan(value) or value < 0 or math.isinf(value):
            raise InputError(f"{name} must be a finite number >= 0, not {value!r}.")
        values.append(value)
    eps, a, lip = values
    if eps == 0:
        return 0.0
    root_eps = math.sqrt(eps)
    if a == 0 and lip == 0:
        return math.inf
    if lip == 0:
        return 2.0 * root_eps / a
    # exact root of sqrt(KL) bound: L g^2/4 + a g/2 = sqrt(eps), in the cancellation-free form
    exact = 4.0 * root_eps / (a + math.sqrt(a * a + 4.0 * lip * root_eps))
    if method == "exact" or a == 0:
        return exact
    s = 2.0 * root_eps * lip / (a * a) if a * a > 0 else math.inf  # = sqrt(beta)
    if not math.isfinite(s):
        return exact
    y = _positive_cubic_root(s)
    x = s * y
    if x > 2.0:
        return exact
    g_raw = 2.0 * root_eps * y / a
    return max(0.0, (1.0 - x / 4.0) * g_raw)


def estimate_curvature(model: Model, vector, layer: int, prompts: Sequence[str], *,
                       step: float = 0.01, percentile: float = 95.0) -> Curvature:
    """ASC's ``a`` and ``L`` for the map F: output of block `layer` at the last prompt
    position -> next-token logits at that position.

    Per calibration state (the last token of each prompt) one trace of three identical
    rows whose block-`layer` output at the last position is ``h``, ``h + d v_hat``,
    ``h - d v_hat`` (``d = step * ||h||``, v_hat the unit vector) gives by central
    differences ``J v_hat ~ (F+ - F-) / 2d`` and ``d2F[v_hat, v_hat] ~ (F+ - 2F0 + F-) / d^2``
    (the second directional derivative along v, which the Lipschitz constant of J along
    v bounds from below). ``a_unit`` = median of ``||J v_hat||``, ``L_unit`` = the
    `percentile` of ``||d2F||`` over the states, as in ASC. Returned ``a``/``lipschitz``
    are rescaled to the vector as given (``a = ||v|| a_unit``, ``L = ||v||^2 L_unit``), so
    ``gamma_max(eps, a, lipschitz)`` is a `strength` for that vector.

    Cost: 3 forward-pass equivalents (batch rows) per prompt (``forward_equivalents``).
    """
    vec = check_vector(model, vector)
    prompts = _prompts(prompts, "calibration prompts")
    layer = _layer(model, layer)
    step = real(step, "step", above=0)
    norm = float(vec.norm())
    unit = (vec / norm).to(device=model.device, dtype=torch.float32)
    block, lm = model.blocks[layer], model.lm
    jvp, hvp = [], []
    with model.lock, torch.no_grad(), float32(model):
        for prompt in prompts:
            ids = model.encode(prompt).to(model.device)
            with model.trace(ids.repeat(3, 1)):
                o = block.output
                o = o[0] if isinstance(o, tuple) else o
                d = step * o[0, -1].float().norm()
                o[1, -1, :] += d * unit
                o[2, -1, :] -= d * unit
                f = lm.output.logits[:, -1].double()
                j = ((f[1] - f[2]) / (2 * d)).norm()
                h2 = ((f[1] - 2 * f[0] + f[2]) / (d * d)).norm()
                saved = nnsight.save([j, h2])
            jvp.append(float(saved[0]))
            hvp.append(float(saved[1]))
    jvp, hvp = np.array(jvp), np.array(hvp)
    a_unit, l_unit = float(np.median(jvp)), float(np.percentile(hvp, percentile))
    return Curvature(a=a_unit * norm, lipschitz=l_unit * norm * norm, a_unit=a_unit, lipschitz_unit=l_unit,
                     vector_norm=norm, jvp_norms=jvp, hvp_norms=hvp, forward_equivalents=3 * len(prompts))


# --- calibration on measured KL ----------------------------------------------------

def calibrate_strength(model: Model, vector, layer: int, prompts: Sequence[str], kl_budget: float, *,
                       positions: str = "last", mode: str = "add", n_tokens: int = 8, start: float | None = None,
                       tolerance: float = 0.05, max_evaluations: int = 16) -> Calibration:
    """The strength whose MEASURED mean KL equals `kl_budget` (nats) within `tolerance`.

    Each prompt's unsteered greedy continuation (`n_tokens`, made once) is the teacher-
    forced text; the KL at a strength is `measure_kl`'s per-position KL pooled over all
    prompts' positions and averaged. The search is on log strength: an initial guess
    (`start`, default one unit of activation: ``1 / ||v||``), then steps assuming
    ``KL ~ g^p`` (p from the last two points, clamped to [0.5, 4]; p = 2 at first, the
    small-strength behaviour), kept inside the bracket once the budget is bracketed
    (geometric bisection when a step would leave it). Positive strengths only: to go the
    other way, negate the vector. Returns the last point tried if it converged, else the
    closest, with ``converged=False``.
    """
    vec = _edit_vector(model, vector, mode)
    norm = float(check_vector(model, vector).norm())
    prompts = _prompts(prompts, "calibration prompts")
    layer = _layer(model, layer)
    choice(positions, POSITIONS, "positions")
    choice(mode, MODES, "mode")
    kl_budget = real(kl_budget, "kl_budget", above=0, unit=" nats")
    if not 0 < tolerance < 1:
        raise InputError(f"tolerance must be between 0 and 1, not {tolerance!r}.")

    rows = []  # (full ids, prompt length)
    gen_forwards = 0
    for prompt in prompts:
        cont = steer_generate(model, prompt, vec, layer, 0.0, max_new_tokens=n_tokens, min_new_tokens=1,
                              mode=mode).token_ids
        ids = model.encode(prompt)
        rows.append((torch.cat([ids[0], torch.tensor(cont)])[None], ids.shape[1]))
        gen_forwards += len(cont)

    kl_vec = _edit_vector(model, vector, mode, torch.float32)

    def kl_at(g: float) -> float:
        kls = [_kl_trace(model, full, n, kl_vec, layer, g, positions, mode)[0] for full, n in rows]
        return float(np.concatenate(kls).mean())

    target = math.log(kl_budget)
    g = float(start) if start is not None else (1.0 / norm if mode == "add" else 0.1)
    if not math.isfinite(g) or g <= 0:
        raise InputError(f"start must be a strength above 0, not {start!r}.")
    history: list[tuple[float, float]] = []
    lo = hi = None  # (log g, log kl) below / above the budget
    power = 2.0
    converged = False
    with model.lock, torch.no_grad(), float32(model):  # cast once for the whole search
        for _ in range(max_evaluations):
            kl = kl_at(g)
            history.append((g, kl))
            if kl > 0 and abs(kl / kl_budget - 1) <= tolerance:
                converged = True
                break
            lg = math.log(g)
            if kl <= 0:  # below float resolution: step up a lot
                lo = (lg, -math.inf)
                g *= 10.0
                continue
            lk = math.log(kl)
            if lk < target:
                lo = (lg, lk) if lo is None or lg > lo[0] else lo
            else:
                hi = (lg, lk) if hi is None or lg < hi[0] else hi
            if len(history) >= 2 and history[-2][1] > 0:
                g0, k0 = history[-2]
                if g0 != g and k0 != kl:
                    power = min(4.0, max(0.5, (lk - math.log(k0)) / (lg - math.log(g0))))
            nxt = lg + (target - lk) / power
            if lo is not None and hi is not None:
                if not lo[0] < nxt < hi[0]:
                    nxt = 0.5 * (lo[0] + hi[0])
            else:
                nxt = min(max(nxt, lg - 3 * math.log(10)), lg + 3 * math.log(10))  # at most 1000x a step
            g = math.exp(nxt)
    if not converged:
        g, kl = min((h for h in history if h[1] > 0), key=lambda h: abs(math.log(h[1] / kl_budget)),
                    default=history[-1])
    else:
        g, kl = history[-1]
    # each evaluation: two rows x one forward per prompt; each continuation: ~one forward
    return Calibration(strength=g, measured_kl=kl, evaluations=len(history), kl_budget=kl_budget,
                       converged=converged, history=history,
                       forward_equivalents=2 * len(prompts) * len(history) + len(prompts))
