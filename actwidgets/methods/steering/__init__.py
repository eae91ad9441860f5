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
position. Under ``"last"`` the prompt before its last token is the same at every strength,
so a local model computes its keys and values once per prompt and reuses them for every
generation and KL measurement (`methods/prefix_cache.py`).

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

from .._trace import check_vector
from .batch import measure_kl_strengths, steer_generate_batch
from .bound import Curvature, estimate_curvature, gamma_max
from .calibration import Calibration, calibrate_strength
from .edit import MAX_NEW_TOKENS, MODES, POSITIONS, ablate_direction, add, check_room, steer
from .generation import GenerationResult, steer_generate
from .kl import KLResult, measure_kl
from .vectors import action_entropy, action_ids, entropy_by_temperature, entropy_weighted, mean_difference

__all__ = [
    "MAX_NEW_TOKENS", "MODES", "POSITIONS", "Calibration", "Curvature", "GenerationResult", "KLResult",
    "ablate_direction", "action_entropy", "action_ids", "add", "calibrate_strength", "check_room", "check_vector",
    "entropy_by_temperature", "entropy_weighted",
    "estimate_curvature", "gamma_max", "mean_difference", "measure_kl", "steer", "steer_generate",
    "measure_kl_strengths", "steer_generate_batch",
]
