"""The strength whose measured KL meets a budget: a search on log strength, each step
one teacher-forced forward per calibration prompt (the unsteered row, and every row's
blocks below the edited one, are computed once, in the first step, and kept: later steps
run the edited row from the edited block on; the prompts' unsteered continuations are
generated as one batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ...model import Model
from .._checks import choice, real, whole
from .._trace import check_vector, float32, float32_dtype
from .edit import MAX_NEW_TOKENS, MODES, POSITIONS, _edit_vector, _layer, _prompts, check_room
from .batch import steer_generate_batch
from .kl import _kl_rows


@dataclass
class Calibration:
    """A strength whose measured mean KL is within `tolerance` of the budget (if converged)."""

    strength: float
    measured_kl: float
    evaluations: int  # KL evaluations (each: one forward per prompt, the first two rows)
    kl_budget: float
    converged: bool
    history: list[tuple[float, float]]  # (strength, measured KL) in the order tried
    forward_equivalents: int  # incl. generating the unsteered continuations


def calibrate_strength(model: Model, vector, layer: int, prompts: Sequence[str], kl_budget: float, *,
                       positions: str = "last", mode: str = "add", n_tokens: int = 8, start: float | None = None,
                       tolerance: float = 0.05, max_evaluations: int = 16) -> Calibration:
    """The strength whose MEASURED mean KL equals `kl_budget` (nats) within `tolerance`.

    Each prompt's unsteered greedy continuation (`n_tokens`, made once) is the teacher-
    forced text; the KL at a strength is `measure_kl`'s per-position KL pooled over all
    prompts' positions and averaged. The search is on log strength: an initial guess
    (`start`, default one unit of activation, ``1 / ||v||``, when adding; 0.1 of the
    projection when ablating), then steps assuming
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
    tolerance = real(tolerance, "tolerance", above=0, below=1)
    g = real(start, "start", above=0) if start is not None else (1.0 / norm if mode == "add" else 0.1)
    n_tokens = whole(n_tokens, "n_tokens", 1, MAX_NEW_TOKENS)
    check_room(model, max(model.encode(p).shape[1] for p in prompts), n_tokens, "The longest prompt", "n_tokens")

    continuations = steer_generate_batch(model, prompts, vec, layer, 0.0, max_new_tokens=n_tokens,
                                         min_new_tokens=1, mode=mode)
    rows = []  # (full ids, prompt length, row 0's log-probabilities once measured)
    for cont in continuations:
        ids = torch.tensor(cont.prompt_ids)
        rows.append((torch.cat([ids, torch.tensor(cont.token_ids)])[None], len(ids), {} if not model.remote else None))

    kl_vec = _edit_vector(model, vector, mode, float32_dtype(model))

    def kl_at(g: float) -> float:
        kls = [_kl_rows(model, full, n, kl_vec, [layer], [g], positions, mode, reference)[0][0]
               for full, n, reference in rows]
        return float(np.concatenate(kls).mean())

    target = math.log(kl_budget)
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
    # rows x forwards: the unsteered row once and one edited row per evaluation, per prompt
    # (counted whole, though later ones start at the edited block); each continuation: ~one forward
    return Calibration(strength=g, measured_kl=kl, evaluations=len(history), kl_budget=kl_budget,
                       converged=converged, history=history,
                       forward_equivalents=len(prompts) * (len(history) + 2))
