"""aw.Steering: a strength slider bounded by a KL budget, with the KL measured and shown.

Each run: (once per prompt, vector and budget) the closed-form bound gamma_max and the
calibrated strength whose measured KL meets the budget; (once per prompt) the
unsteered continuation; then the steered continuation, streamed token by token, and
the KL between the two next-token distributions, teacher-forced on the unsteered text.
A slider move with ``positions="last"`` reuses the prompt's keys and values up to its
last token (methods/prefix_cache.py), so it costs the new tokens, not the prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import traitlets as t

from ..errors import InputError
from ..methods import steering as S
from ..methods._checks import choice, interval, real, whole
from ..methods.steering_examples import CALIBRATION_PROMPTS
from . import _figure
from ._base import JobWidget, bundle, finite_or_none, quoted
from ._traits import Array, Prompt, PromptText


METHODS = ("asc", "east")  # EAST adds the action-entropy curves
SANE_MULTIPLE = 100.0  # the slider spans 3x the calibrated strength; beyond 100x is noise


@dataclass(frozen=True)
class SteeringData:
    """One finished run's numbers."""

    strength: float
    unsteered: S.GenerationResult
    steered: S.GenerationResult
    kl: S.KLResult  # per generated position: KL(unsteered || steered) in nats, both entropies


class Steering(JobWidget):
    """Steer generation by editing the residual stream with `vector`, and measure the KL.

    `operation="add"`: h + strength * v at the output of block `layers` (one block index,
    as an int or a one-item list; `layer=` is accepted as the same thing); the slider is
    bounded by the KL budget (closed-form γ_max and the calibrated strength).
    `operation="ablate"`: directional ablation, h - strength * (h . v̂) v̂ at the output of
    each block in `layers` (default: every block, as abliteration does); strength is the
    fraction of the direction removed, 0 to 1 (default 1), with the same measured-KL readout.
    `method="asc"` (ASC-style adding) or `"east"` (EAST: the same edit, plus the
    action-entropy curves against strength and against sampling temperature, for
    `actions`). `positions="last"` edits the last prompt position and every generated
    token, as ASC does; `"all"` edits every prompt position too.
    """

    _esm = bundle("steering")
    snapshot_kind = "steering"
    prompt = Prompt()
    strength = t.Float(0.0).tag(sync=True)
    strength_min = t.Float(-1.0).tag(sync=True)
    strength_max = t.Float(1.0).tag(sync=True)
    strength_step = t.Float(0.01).tag(sync=True)
    # None until known: JSON has no NaN
    gamma_max = t.Float(None, allow_none=True).tag(sync=True)
    calibrated = t.Float(None, allow_none=True).tag(sync=True)
    calibration_note = t.Unicode("").tag(sync=True)  # why there is no calibrated strength
    kl_budget = t.Float(0.05).tag(sync=True)
    unsteered_tokens = t.List(t.Unicode()).tag(sync=True)
    steered_tokens = t.List(t.Unicode()).tag(sync=True)
    kl_per_token = Array()
    entropy_unsteered = Array()
    entropy_steered = Array()
    measured_kl = t.Float(None, allow_none=True).tag(sync=True)
    method = t.Unicode("asc").tag(sync=True)
    operation = t.Unicode("add").tag(sync=True)
    curve_beta = Array()
    curve_entropy_beta = Array()
    curve_temperature = Array()
    curve_entropy_temperature = Array()
    vector = t.Any(None)
    layers = t.Any(None)
    positions = t.Unicode("last")
    max_new_tokens = t.Int(32)
    actions = t.List(t.Unicode())

    def __init__(self, model, prompt: PromptText = "", *, vector, layers=None, kl_budget: float = 0.05,
                 strength: float | None = None, method: str = "asc", operation: str = "add", actions=(),
                 positions: str = "last", max_new_tokens: int = 32,
                 strength_range: tuple[float, float] | None = None, layer=None, **kwargs):
        layers = layer if layers is None else layers  # `layer=`: the spelling before `layers` everywhere
        if "mode" in kwargs:  # renamed: "add" collided with the edits' own add/ablate
            raise TypeError("Steering's mode= is now method='asc' | 'east' (mode='entropy' is method='east'); "
                            "operation='add' | 'ablate' chooses the edit.")
        if strength is None:
            strength = 1.0 if operation == "ablate" else 0.0  # ablation's 1 removes the direction
        super().__init__(model, prompt=prompt, vector=vector, layers=layers, kl_budget=kl_budget, strength=strength,
                         method=method, operation=operation, positions=positions,
                         actions=[actions] if isinstance(actions, str) else list(actions),
                         max_new_tokens=max_new_tokens, **kwargs)
        self._fixed_range = None if strength_range is None else interval(strength_range, "strength_range")
        self.shown_strength: float | None = None  # the strength the steered text on screen was made with
        self._finished: SteeringData | None = None
        self.generations = 0  # steered generations started (tests count them)
        self.observe(self.schedule, ["prompt", "strength", "kl_budget", "vector", "layers", "positions", "method",
                                     "operation", "max_new_tokens", "actions"])
        self.schedule()

    @property
    def layer(self) -> int:
        """The one block steered (`layers` resolved); InputError if `layers` is not one block."""
        if self.layers is None:
            raise InputError("Steering needs a block: pass layers=<block index>.")
        chosen = self.model.check_layers(self.layers)
        if len(chosen) != 1:
            raise InputError(f"Steering edits one block: layers must be one block index, not {self.layers!r}. "
                             "(operation='ablate' takes several.)")
        return chosen[0]

    @property
    def edited_layers(self) -> list[int]:
        """The blocks edited: the one steered block, or every ablated one."""
        if self.operation == "ablate":
            return self.model.check_layers(self.layers)  # None: every block
        return [self.layer]

    @layer.setter
    def layer(self, value) -> None:
        self.layers = value

    def describe(self) -> str:
        kl = f"{self.measured_kl:.3g}" if self.measured_kl is not None else "?"
        try:
            where = _blocks_text(self.edited_layers)
        except InputError:
            where = f"layers {self.layers!r}"
        what = (f"Ablating the direction at {where}, strength {self.strength:.3g}" if self.operation == "ablate"
                else f"Steering at {where}, strength {self.strength:+.3g}")
        return f"{what}: KL {kl} nats (budget {self.kl_budget:.3g}): {quoted(self.prompt)}"

    def draw(self, state: dict):
        return _figure.steering_figure(state, self.describe())

    # --- the job -----------------------------------------------------------------
    def compute(self):
        choice(self.operation, S.MODES, "operation")
        choice(self.method, METHODS, "method")
        run = _Run(self.prompt, float(self.strength), float(self.kl_budget), self.vector,
                   tuple(self.edited_layers), self.positions, self.method, self.operation, int(self.max_new_tokens),
                   tuple(self.actions))  # read once
        real(run.kl_budget, "kl_budget", above=0, unit=" nats")
        real(run.strength, "strength")
        whole(run.max_new_tokens, "max_new_tokens", 1, S.MAX_NEW_TOKENS)
        if run.method == "east" and not run.actions:
            raise InputError("method='east' needs actions=[...]: the single-token actions whose entropy EAST raises.")
        if run.method == "east" and run.operation == "ablate":
            raise InputError("method='east' steers by adding the vector; with operation='ablate' use method='asc'.")
        if run.method == "east":
            S.action_ids(self.model, run.actions)  # before any work
        vector = S.check_vector(self.model, run.vector)
        # an empty or too long prompt says so before any work
        S.check_room(self.model, self.model.encode(run.prompt).shape[1], run.max_new_tokens)
        if run.operation == "ablate":
            self._ablation_range(run)
        else:
            self._check_strength(run, *self._update_bounds(run, vector))
        unsteered = self._unsteered_continuation(run, vector)
        steered = self._steered_continuation(run, vector, unsteered)
        self.check()
        kl = S.measure_kl(self.model, run.prompt, unsteered.token_ids, vector, list(run.layers), run.strength,
                          positions=run.positions, mode=run.operation)
        self.check()
        if run.method == "east":
            self._update_curves(run, vector)
        return run, unsteered, steered, kl

    @property
    def data(self) -> SteeringData | None:
        """The numbers of the current inputs' run, waiting for a run in progress; None when they
        have none (an error, a cancel)."""
        self.wait_unless_worker()
        return self._finished if self.status == "done" else None

    def apply(self, result) -> None:
        run, unsteered, steered, kl = result
        self._finished = SteeringData(run.strength, unsteered, steered, kl)
        self.steered_tokens = list(steered.tokens)
        self.kl_per_token = kl.kl_per_token
        self.entropy_unsteered = kl.entropy_unsteered
        self.entropy_steered = kl.entropy_steered
        self.measured_kl = finite_or_none(kl.mean_kl)
        self.shown_strength = run.strength

    def _ablation_range(self, run: "_Run") -> None:
        """Ablation's strength is the fraction of the direction removed: 0 to 1, no bound to compute."""
        low, high = self._fixed_range or (0.0, 1.0)
        if not low <= run.strength <= high:
            raise InputError(f"strength for operation='ablate' is the fraction of the direction removed, from "
                             f"{low:g} to {high:g}, not {run.strength:.3g}; pass strength_range=(low, high) to allow more.")
        with self.hold_sync():
            self.gamma_max = self.calibrated = None
            self.calibration_note = ""
            self.strength_min, self.strength_max, self.strength_step = float(low), float(high), 0.01

    def _update_bounds(self, run: "_Run", vector) -> tuple[float, float | None]:
        key = ("bounds", run.prompt, vector.numpy().tobytes(), run.layer, run.kl_budget, run.positions,
               run.max_new_tokens)
        closed, calibrated, note = self.memo.get(key) or self.memo.put(key, self._bounds(run, vector))
        with self.hold_sync():
            self.gamma_max, self.calibrated = finite_or_none(closed), finite_or_none(calibrated)
            self.calibration_note = note
            self._set_range(closed if calibrated is None else max(calibrated, closed))
            self.progress = 0.3
        return closed, calibrated

    def _bounds(self, run: "_Run", vector) -> tuple[float, float | None, str]:
        """gamma_max, the calibrated strength (None if none met the budget) and why not."""
        curvature = S.estimate_curvature(self.model, vector, run.layer, [run.prompt, *CALIBRATION_PROMPTS])
        self.report(0.15)
        closed = S.gamma_max(run.kl_budget, curvature.a, curvature.lipschitz)
        calibration = S.calibrate_strength(self.model, vector, run.layer, [run.prompt], run.kl_budget,
                                           positions=run.positions, n_tokens=run.max_new_tokens)
        self.check()
        calibrated = calibration.strength if calibration.converged else None
        note = "" if calibration.converged else (
            f"No strength met the KL budget of {run.kl_budget:.3g} nats: the closest, "
            f"{calibration.strength:.3g}, measured {calibration.measured_kl:.3g} nats after "
            f"{calibration.evaluations} tries, so the slider's range follows the bound γ_max instead.")
        return closed, calibrated, note

    def _check_strength(self, run: "_Run", closed: float, calibrated: float | None) -> None:
        """A strength far beyond the calibrated one makes noise, not steering: say so instead."""
        reference = calibrated if calibrated is not None else closed
        limit = SANE_MULTIPLE * reference
        which = "calibrated strength" if calibrated is not None else "bound γ_max"
        within = f"±{limit:.3g} ({SANE_MULTIPLE:g}x the {which}), or pass strength_range=(low, high) to allow more"
        if self._fixed_range and max(map(abs, self._fixed_range)) > limit:
            limit = max(map(abs, self._fixed_range))
            within = f"±{limit:.3g} (strength_range), or widen strength_range"
        if np.isfinite(limit) and abs(run.strength) > limit:
            raise InputError(
                f"strength {run.strength:.3g} is {abs(run.strength) / reference:.3g} times the {which} "
                f"({reference:.3g}): the steered text would be noise. Choose a strength within {within}.")

    def _set_range(self, reference: float) -> None:
        low, high = self._fixed_range or (-3 * reference, 3 * reference)
        if not np.isfinite([low, high]).all() or high <= low:
            low, high = -1.0, 1.0
        self.strength_min, self.strength_max = float(low), float(high)
        self.strength_step = float(10 ** np.floor(np.log10((high - low) / 200)))

    def _unsteered_continuation(self, run: "_Run", vector) -> S.GenerationResult:
        key = ("unsteered", run.prompt, run.max_new_tokens)
        result = self.memo.get(key)
        if result is None:
            result = S.steer_generate(self.model, run.prompt, vector, run.layer, 0.0,
                                      max_new_tokens=run.max_new_tokens, should_stop=lambda: not self._current())
            self.check()
            self.memo.put(key, result)
        with self.writing():  # not yet the figure of these inputs: the KL is still the last run's
            self.unsteered_tokens = list(result.tokens)
        return result

    def _steered_continuation(self, run: "_Run", vector, unsteered: S.GenerationResult) -> S.GenerationResult:
        if run.strength == 0:
            return unsteered
        self.generations += 1
        self.steered_tokens = []
        streamed: list[str] = []

        def on_token(index: int, text: str) -> None:
            streamed.append(text)
            with self.writing():  # a superseded run must not stream into the newer one's panel
                self.steered_tokens = list(streamed)
                self.progress = 0.3 + 0.6 * (index + 1) / run.max_new_tokens

        return S.steer_generate(self.model, run.prompt, vector, list(run.layers), run.strength,
                                max_new_tokens=run.max_new_tokens, positions=run.positions, mode=run.operation,
                                should_stop=lambda: not self._current(), on_token=on_token)

    def _update_curves(self, run: "_Run", vector) -> None:
        """EAST: action entropy against steering strength, and against temperature."""
        betas = np.linspace(self.strength_min, self.strength_max, 9)
        key = ("curves", run.prompt, vector.numpy().tobytes(), run.layer, run.actions, betas.tobytes())
        curves = self.memo.get(key) or self.memo.put(key, self._curves(run, vector, betas))
        with self.hold_sync():
            self.curve_beta, self.curve_entropy_beta, self.curve_temperature, self.curve_entropy_temperature = curves

    def _curves(self, run: "_Run", vector, betas: np.ndarray) -> tuple:
        by_beta = []
        for beta in betas:
            self.check()
            by_beta.append(S.action_entropy(self.model, run.prompt, list(run.actions), vector, run.layer, float(beta)))
        temperatures = np.geomspace(0.25, 4.0, 9)
        return betas, by_beta, temperatures, S.entropy_by_temperature(self.model, run.prompt, list(run.actions),
                                                                       temperatures)


class _Run(NamedTuple):
    """The inputs of one run, read once at its start."""

    prompt: str
    strength: float
    kl_budget: float
    vector: object
    layers: tuple  # the blocks edited: one when adding
    positions: str
    method: str
    operation: str
    max_new_tokens: int
    actions: tuple

    @property
    def layer(self) -> int:
        return self.layers[0]


def _blocks_text(layers: list[int]) -> str:
    """"layer 7", "layers 0-29", "layers 3, 5"."""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"layers {layers[0]}-{layers[-1]}"
    return "layers " + ", ".join(map(str, layers))
