"""ASC's closed-form bound on the KL a steering strength can cause (`gamma_max`), and
the curvature of the logits along the vector it needs (`estimate_curvature`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import nnsight
import numpy as np
import torch

from ...errors import InputError
from ...model import Model
from .._checks import real, shown
from .._trace import check_vector, float32, float32_dtype, residual
from .edit import _layer, _prompts, steer


@dataclass
class Curvature:
    """ASC's first- and second-order sensitivities of the logits along the vector.

    ``a`` and ``lipschitz`` are in units of the vector as given (the scale convention of
    `methods/steering/__init__.py`); the ``*_unit`` values are for the unit vector. Unpacks as ``(a, lipschitz)``.
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


def _non_negative(value, name: str) -> float:
    try:
        number = real(value, name)
    except InputError:
        number = -1.0
    if number < 0:
        raise InputError(f"{name} must be a finite number >= 0, not {shown(value)}.")
    return number


def gamma_max(eps: float, a: float, lipschitz: float) -> float:
    """Largest steering strength whose ASC KL bound stays within `eps` (nats).

    ASC's bound (Appendix A.1), ``KL <= a^2 g^2/4 + L a g^3/4 + L^2 g^4/16`` with
    ``a = ||J v||`` and ``L`` the Lipschitz constant of J along v, is a perfect square,
    ``(a g/2 + L g^2/4)^2``; its largest allowed g is the positive root of
    ``L g^2/4 + a g/2 = sqrt(eps)``, written without cancellation:

        gamma_max = 4 sqrt(eps) / (a + sqrt(a^2 + 4 L sqrt(eps)))

    Continuous and decreasing in a and L: L = 0 gives ``2 sqrt(eps) / a``, a = 0 gives
    ``(16 eps)^(1/4) / sqrt(L)``, a = L = 0 (no effect at all) gives inf. (The paper's
    recipe, a cubic root times a correction factor, is slightly smaller and falls to 0
    as the factor turns negative; METHODS.md.) Units: those of a and L (see
    `estimate_curvature`: the vector as given).
    """
    eps, a, lip = (_non_negative(value, name) for value, name in ((eps, "eps"), (a, "a"), (lipschitz, "lipschitz")))
    if eps == 0:
        return 0.0
    if a == 0 and lip == 0:
        return math.inf
    root_eps = math.sqrt(eps)
    return 4.0 * root_eps / (a + math.sqrt(a * a + 4.0 * lip * root_eps))


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
    unit = (vec / norm).to(device=model.device, dtype=float32_dtype(model))
    block, lm = model.blocks[layer], model.lm
    jvp, hvp = [], []
    with model.lock, torch.no_grad(), float32(model):
        for prompt in prompts:
            ids = model.encode(prompt).to(model.device)
            with model.trace(ids.repeat(3, 1)):
                o = residual(block.output)
                d = step * o[0, -1].float().norm()
                o[1, -1, :] = steer(o[1, -1, :], unit, d, 0.0)
                o[2, -1, :] = steer(o[2, -1, :], unit, -d, 0.0)
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
