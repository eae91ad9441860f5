"""aw.Steering without a browser: bounds, streaming, latest-wins on a slider burst, bad input."""
import numpy as np
import pytest

import actwidgets as aw
from actwidgets.methods.steering_examples import ASC_CONCISE, ASC_LAYER, ASC_VERBOSE, EAST_ACTIONS, EAST_EPISODES

PROMPT = "Q: Tom has 3 apples and buys 5 more. How many apples does he have?\nA:"


@pytest.fixture(scope="module")
def asc_vector(default_model):
    return aw.steering.mean_difference(default_model, ASC_CONCISE, ASC_VERBOSE, ASC_LAYER)


@pytest.fixture(scope="module")
def widget(default_model, asc_vector):
    return aw.Steering(default_model, PROMPT, vector=asc_vector, layer=ASC_LAYER, kl_budget=0.05,
                       max_new_tokens=12).wait(600)


def test_bounds_and_unsteered_text(widget):
    assert widget.status == "done", widget.error
    assert widget.gamma_max > 0 and widget.calibrated > 0
    assert widget.strength_min < 0 < widget.calibrated < widget.strength_max
    assert len(widget.unsteered_tokens) == 12 and widget.steered_tokens == widget.unsteered_tokens
    assert widget.measured_kl == pytest.approx(0.0, abs=1e-6)


def test_strength_streams_steered_text_and_measures_kl(widget):
    frames = []
    widget.observe(lambda c: frames.append(len(c["new"])), "steered_tokens")
    widget.strength = widget.calibrated
    widget.wait(600)
    assert widget.status == "done" and widget.shown_strength == widget.calibrated
    assert max(frames) == 12 and len(set(frames)) > 3, "tokens must arrive one by one"
    kl = np.frombuffer(widget.kl_per_token, "<f4")
    assert kl.shape == (12,) and widget.measured_kl == pytest.approx(float(kl.mean()), rel=1e-5)
    assert widget.measured_kl == pytest.approx(widget.kl_budget, rel=0.05)  # the calibration's tolerance
    data = widget.data  # the same numbers, unrounded, as a researcher reads them
    assert data.strength == widget.calibrated and data.steered.tokens == widget.steered_tokens
    assert data.unsteered.tokens == widget.unsteered_tokens and data.kl.mean_kl == pytest.approx(widget.measured_kl)
    np.testing.assert_allclose(data.kl.kl_per_token, kl, rtol=1e-6)


def test_at_the_calibrated_strength_the_kl_shown_is_the_budget(default_model, asc_vector):
    """The calibration measures the KL the readout shows: over the whole continuation
    (max_new_tokens), so the slider at the marker reads the budget within the search's 5%.
    Calibrated on its first 16 tokens, 32 read 0.0417 for a budget of 0.05."""
    w = aw.Steering(default_model, "Q: What is 9 + 8?\nA:", vector=asc_vector, layer=ASC_LAYER, kl_budget=0.05,
                    max_new_tokens=32).wait(600)
    for max_new_tokens in (32, 8):
        w.max_new_tokens = max_new_tokens
        w.wait(600)
        w.strength = w.calibrated
        w.wait(600)
        assert w.status == "done", w.error
        scored = np.frombuffer(w.kl_per_token, "<f4").size  # the continuation may stop early, at its end
        assert scored > 16 if max_new_tokens == 32 else scored <= 8
        assert w.measured_kl == pytest.approx(w.kl_budget, rel=0.05), max_new_tokens


def test_slider_burst_runs_few_generations_and_ends_on_the_last_value(widget):
    before = widget.generations
    values = np.linspace(0.2, 1.0, 20) * widget.calibrated
    for value in values:
        widget.strength = float(value)
    widget.wait(600)
    assert widget.generations - before <= 3
    assert widget.shown_strength == float(values[-1]) and widget.status == "done"


@pytest.mark.parametrize("change, message", [
    (dict(vector=np.ones(7)), "has 7 entries"),
    (dict(vector=np.full(576, np.nan)), "NaN"),
    (dict(layer=40), "out of range"),
    (dict(kl_budget=0.0), "above 0"),
    (dict(prompt=""), "empty"),
])
def test_bad_input_is_a_message(widget, asc_vector, change, message):
    for name, value in change.items():
        setattr(widget, name, value)
    widget.wait(600)
    assert widget.status == "error" and message in widget.error and widget.data is None
    widget.vector, widget.layer, widget.kl_budget, widget.prompt = asc_vector, ASC_LAYER, 0.05, PROMPT
    widget.wait(600)
    assert widget.status == "done"


def test_empty_prompt_lists_are_refused(default_model):
    with pytest.raises(aw.InputError, match="empty|at least"):
        aw.steering.mean_difference(default_model, [], [], ASC_LAYER)


def test_east_method_draws_both_curves(default_model):
    vector = aw.steering.entropy_weighted(default_model, EAST_EPISODES, 15, EAST_ACTIONS)
    # round 2 of an episode (46 tokens, not round 4's 74): the curves are what is checked, on any prompt
    w = aw.Steering(default_model, EAST_EPISODES[0][1], vector=vector, layer=15, method="east",
                    actions=EAST_ACTIONS, max_new_tokens=4).wait(600)
    assert w.status == "done", w.error
    by_beta = np.frombuffer(w.curve_entropy_beta, "<f4")
    by_temp = np.frombuffer(w.curve_entropy_temperature, "<f4")
    assert by_beta.shape == by_temp.shape == (9,) and np.isfinite(by_beta).all()
    assert (by_beta <= np.log(2) + 1e-5).all() and (by_temp <= np.log(2) + 1e-5).all()
    # the temperature curve comes from one forward; each point is the entropy at that temperature
    temperatures = np.frombuffer(w.curve_temperature, "<f4")
    each = [aw.steering.action_entropy(default_model, EAST_EPISODES[0][1], EAST_ACTIONS, temperature=float(t))
            for t in temperatures]
    np.testing.assert_allclose(by_temp, each, atol=1e-5)
    assert by_temp[0] < by_temp[-1]  # colder is more certain


def test_a_budget_the_kl_never_reaches_says_so_instead_of_a_huge_calibrated_strength(tiny_llama):
    """Past some strength the final norm sees only the vector: the KL levels off (a few nats
    on a tiny model), so a budget of 1,000 nats is never met. The widget says so, marks no
    calibrated strength and keeps the slider on the bound's scale."""
    v = np.random.default_rng(0).normal(size=tiny_llama.d_model).astype(np.float32)
    w = aw.Steering(tiny_llama, "The cat sat on the", vector=v, layer=1, kl_budget=1000.0, max_new_tokens=4).wait(300)
    assert w.status == "done", w.error
    assert w.calibrated is None
    assert "No strength met the KL budget of 1e+03 nats" in w.calibration_note
    assert w.strength_max == pytest.approx(3 * w.gamma_max)


def test_ablation_removes_the_direction_at_every_block_and_measures_the_kl(default_model, asc_vector):
    """operation="ablate" with no layers ablates at every block, strength 1 by default; the
    continuation and KL are the methods' for the same edit, and the range is 0..1 with no bound."""
    w = aw.Steering(default_model, PROMPT, vector=asc_vector, operation="ablate", max_new_tokens=8).wait(600)
    assert w.status == "done", w.error
    every = list(range(default_model.n_layers))
    assert w.strength == 1.0 and (w.strength_min, w.strength_max) == (0.0, 1.0) and w.gamma_max is None
    direct = aw.steering.steer_generate(default_model, PROMPT, asc_vector, every, 1.0, max_new_tokens=8,
                                        mode="ablate")
    assert w.steered_tokens == direct.tokens
    unsteered = aw.steering.steer_generate(default_model, PROMPT, asc_vector, 0, 0.0, max_new_tokens=8)
    kl = aw.steering.measure_kl(default_model, PROMPT, unsteered.token_ids, asc_vector, every, 1.0, mode="ablate")
    assert w.measured_kl == pytest.approx(kl.mean_kl, rel=1e-5) and w.measured_kl > 0
    assert "Ablating the direction at layers 0-29" in w.describe()
    w.strength = 0.0  # nothing removed: the two continuations agree and the KL is 0
    w.wait(600)
    assert w.steered_tokens == w.unsteered_tokens and w.measured_kl == pytest.approx(0.0, abs=1e-9)


def test_the_old_mode_keyword_says_what_it_became(default_model, asc_vector):
    with pytest.raises(TypeError, match="method='asc' \\| 'east'"):
        aw.Steering(default_model, PROMPT, vector=asc_vector, layer=ASC_LAYER, mode="entropy")
