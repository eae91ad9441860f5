"""methods/steering.py: the ASC bound, steered generation, measured KL, calibration,
and the ASC / EAST vectors against plain-torch computations."""
import math

import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets._adapter import get_path
from actwidgets.errors import Cancelled, InputError
from actwidgets.methods import steering as st
from actwidgets.methods import steering_examples as ex

PROMPT = "Q: What is 9 + 8?\nA:"
LAYER = ex.ASC_LAYER


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These are many small forwards; on 2 shared cores, 2 torch threads spin-wait each
    other and run ~10x slower than one. Restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the bound -----------------------------------------------------------------

def test_gamma_max_checks_and_limits():
    # the exact root of ASC's bound (METHODS.md's check values)
    assert st.gamma_max(1e-3, 1, 1) == pytest.approx(0.061363, abs=1e-6)
    assert st.gamma_max(1e-2, 1, 0.1) == pytest.approx(0.198039, abs=1e-6)
    # a = 0: only the L^2 g^4 / 16 term is left
    assert st.gamma_max(1e-3, 0, 2) == pytest.approx((16e-3) ** 0.25 / math.sqrt(2), rel=1e-12)
    # L -> 0: 2 sqrt(eps) / a, continuously
    for lip in (0.0, 1e-300, 1e-12):
        assert st.gamma_max(1e-3, 2, lip) == pytest.approx(math.sqrt(1e-3), rel=1e-9)
    assert st.gamma_max(0, 1, 1) == 0
    assert st.gamma_max(1e-3, 0, 0) == math.inf


def test_gamma_max_is_the_bounds_root_and_never_nan():
    rng = np.random.default_rng(0)
    for _ in range(300):
        eps, a, lip = 10 ** rng.uniform(-30, 0), 10 ** rng.uniform(-8, 3), 10 ** rng.uniform(-8, 3)
        g = st.gamma_max(eps, a, lip)
        assert math.isfinite(g) and g > 0, (eps, a, lip, g)
        bound = a * a * g * g / 4 + lip * a * g ** 3 / 4 + lip * lip * g ** 4 / 16
        assert bound == pytest.approx(eps, rel=1e-9), (eps, a, lip, g, bound)  # on the bound, not below it
    assert st.gamma_max(1e-30, 1, 1) == pytest.approx(2e-15, rel=1e-6)


def test_gamma_max_falls_continuously_as_curvature_grows():
    # the old switch between the paper's recipe and the exact root jumped upward as L grew
    for a in (0.0, 0.3, 1.0, 5.0):
        lips = np.geomspace(1e-6, 1e4, 400)
        g = np.array([st.gamma_max(1e-3, a, lip) for lip in lips])
        assert (np.diff(g) <= 0).all(), a
        assert (np.abs(np.diff(np.log(g))) < 0.1).all(), a  # no jump between neighbours
    a = np.geomspace(1e-4, 1e3, 400)
    assert (np.diff([st.gamma_max(1e-3, x, 0.5) for x in a]) < 0).all()


def test_gamma_max_rejects_bad_numbers():
    for args in ((-1e-3, 1, 1), (1e-3, float("nan"), 1), (1e-3, 1, -2), (1e-3, 1, float("inf"))):
        with pytest.raises(InputError, match=">= 0"):
            st.gamma_max(*args)


# --- edits and checks ---------------------------------------------------------------

def test_edits():
    h = torch.tensor([[1.0, 2.0, 3.0]])
    r = torch.tensor([0.0, 2.0, 0.0])
    assert torch.equal(st.add(h, r, 0.5), torch.tensor([[1.0, 3.0, 3.0]]))
    assert torch.allclose(st.ablate_direction(h, r), torch.tensor([[1.0, 0.0, 3.0]]))


def test_bad_inputs(default_model):
    m = default_model
    v = torch.ones(m.d_model)
    with pytest.raises(InputError, match="has 3 entries; .* needs 576"):
        st.check_vector(m, [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="NaN"):
        st.check_vector(m, torch.full((576,), float("nan")))
    with pytest.raises(InputError, match="all zeros"):
        st.check_vector(m, torch.zeros(576))
    with pytest.raises(InputError, match="out of range"):
        st.steer_generate(m, PROMPT, v, 30, 1.0)
    with pytest.raises(InputError, match="above 0 nats"):
        st.calibrate_strength(m, v, LAYER, [PROMPT], 0.0)
    with pytest.raises(InputError, match="empty"):
        st.calibrate_strength(m, v, LAYER, [], 0.1)
    for tolerance in ("5%", 1.0, float("nan")):
        with pytest.raises(InputError, match=r"^tolerance must be a finite number between 0 and 1, not "):
            st.calibrate_strength(m, v, LAYER, [PROMPT], 0.1, tolerance=tolerance)
    for start in ("big", -1.0, float("inf")):
        with pytest.raises(InputError, match=r"^start must be a finite number above 0, not "):
            st.calibrate_strength(m, v, LAYER, [PROMPT], 0.1, start=start)
    with pytest.raises(InputError, match="empty"):
        st.mean_difference(m, [], [], LAYER)
    with pytest.raises(InputError, match="same number"):
        st.mean_difference(m, ["a b", "c d"], ["e f"], LAYER)
    with pytest.raises(InputError, match="prompt is empty"):
        st.steer_generate(m, "  ", v, LAYER, 1.0)
    with pytest.raises(InputError, match="positions"):
        st.steer_generate(m, PROMPT, v, LAYER, 1.0, positions="first")
    with pytest.raises(InputError, match="single token"):
        st.entropy_weighted(m, ex.EAST_EPISODES, LAYER, [" left", " rightmost choice"])
    with pytest.raises(InputError, match="continuation is empty"):
        st.measure_kl(m, PROMPT, [], v, LAYER, 1.0)


# --- vectors against plain torch ------------------------------------------------------

def _hidden_last(model, prompt, layer):
    ids = model.encode(prompt)
    with torch.no_grad():
        hs = model.hf(ids, output_hidden_states=True).hidden_states
    return hs[layer + 1][0, -1].double()  # hidden_states[L + 1] is the output of block L


def test_mean_difference_matches_hidden_states(tiny_model):
    pos, neg = ["The cat sat on the mat", "One two"], ["A dog ran far away from home", "Three four five six"]
    for layer in (0, tiny_model.n_layers - 2):
        v = st.mean_difference(tiny_model, pos, neg, layer)
        ref = torch.stack([_hidden_last(tiny_model, p, layer) - _hidden_last(tiny_model, n, layer)
                           for p, n in zip(pos, neg)]).mean(0)
        assert v.shape == (tiny_model.d_model,)
        np.testing.assert_allclose(v.numpy(), ref.numpy(), rtol=1e-5, atol=1e-5)



def test_states_are_the_same_one_prompt_per_trace_or_right_padded_together(tiny_llama, monkeypatch):
    """_last_states pads prompts of different lengths on the right and reads each at its last
    real token: equal to a trace per prompt (BATCH_TOKENS=1 forces that), in one trace."""
    from actwidgets.methods.steering import vectors

    prompts, ids = ["The cat sat on the mat", "One two", "A dog ran far away from home today"], [3, 7, 11]
    together, logits = vectors._last_states(tiny_llama, prompts, 1, ids)
    assert len(vectors._batches([tiny_llama.encode(p)[0] for p in prompts])) == 1
    monkeypatch.setattr(vectors, "BATCH_TOKENS", 1)
    alone, logits_alone = vectors._last_states(tiny_llama, prompts, 1, ids)
    np.testing.assert_allclose(together.numpy(), alone.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits.numpy(), logits_alone.numpy(), rtol=1e-5, atol=1e-6)
    for p, z in zip(prompts, together):
        np.testing.assert_allclose(z.numpy(), _hidden_last(tiny_llama, p, 1).numpy(), rtol=1e-5, atol=1e-5)

def test_east_vector_matches_numpy(tiny_llama):
    m, layer = tiny_llama, 1
    episodes = [ep[:3] for ep in ex.EAST_EPISODES[:2]]
    action_ids = [m.single_token(a) for a in ex.EAST_ACTIONS]
    u = st.entropy_weighted(m, episodes, layer, ex.EAST_ACTIONS)
    total, weight = np.zeros(m.d_model), 0.0
    for ep in episodes:
        zs, hs = [], []
        for p in ep:
            with torch.no_grad():
                out = m.hf(m.encode(p), output_hidden_states=True)
            zs.append(out.hidden_states[layer + 1][0, -1].double().numpy())
            logits = out.logits[0, -1, action_ids].double().numpy()
            prob = np.exp(logits - logits.max())
            prob /= prob.sum()
            hs.append(-(prob * np.log(prob)).sum())
        zs, hs = np.array(zs), np.array(hs)
        total += (hs[:, None] * (zs - zs.mean(0))).sum(0)
        weight += hs.sum()
    np.testing.assert_allclose(u.numpy(), total / weight, rtol=1e-4, atol=1e-6)
    # EAST's readout: entropy of the action distribution, plain and steered
    h0 = st.action_entropy(m, episodes[0][-1], ex.EAST_ACTIONS)
    assert 0 <= h0 <= math.log(2) + 1e-9
    hot = st.action_entropy(m, episodes[0][-1], ex.EAST_ACTIONS, temperature=1e3)
    assert hot == pytest.approx(math.log(2), abs=1e-4)
    assert st.action_entropy(m, episodes[0][-1], ex.EAST_ACTIONS, u, layer, 50.0) != pytest.approx(h0, abs=1e-6)


# --- generation ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def asc_vector(default_model):
    pairs = ex.ASC_PAIRS[:3]
    return st.mean_difference(default_model, [q + s for q, s, _ in pairs], [q + lg for q, _, lg in pairs], LAYER)


def test_strength_zero_is_plain_greedy_generate(default_model, asc_vector):
    m = default_model
    ids = m.encode(PROMPT)
    with torch.no_grad():
        ref = m.hf.generate(ids, max_new_tokens=16, do_sample=False)[0, ids.shape[1]:].tolist()
    streamed = []
    out = st.steer_generate(m, PROMPT, asc_vector, LAYER, 0.0, max_new_tokens=16,
                            on_token=lambda i, t: streamed.append((i, t)))
    assert out.token_ids == ref
    assert [i for i, _ in streamed] == list(range(len(ref)))
    assert "".join(t for _, t in streamed) == "".join(out.tokens) == m.tokenizer.decode(ref)
    steered = st.steer_generate(m, PROMPT, asc_vector, LAYER, 8.0, max_new_tokens=16)
    assert steered.token_ids != ref


def test_kv_cached_steering_matches_teacher_forcing(tiny_llama):
    """The steered greedy tokens are the argmax of a full (no-cache) forward whose block-L
    output is edited at the last prompt position and every later one."""
    m, layer, strength = tiny_llama, 1, 3.0
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(0))
    ids = m.encode(PROMPT)
    out = st.steer_generate(m, PROMPT, v, layer, strength, max_new_tokens=8, min_new_tokens=8)
    full = torch.cat([ids[0], torch.tensor(out.token_ids)])[None]
    n = ids.shape[1]

    def hook(module, args, output):
        output = output.clone()
        output[:, n - 1:] += strength * v
        return output

    handle = get_path(m.hf, m.adapter.blocks)[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = m.hf(full).logits[0, n - 1:-1]
    finally:
        handle.remove()
    assert logits.argmax(-1).tolist() == out.token_ids


def test_remote_local_path_matches_local(tiny_llama):
    m = tiny_llama
    remote = aw.Model(m.lm, m.tokenizer, m.adapter, "x", remote="local")
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(1))
    for kwargs in (dict(), dict(positions="all", mode="ablate")):
        local = st.steer_generate(m, PROMPT, v, 1, 4.0, max_new_tokens=6, **kwargs)
        seen = []
        far = st.steer_generate(remote, PROMPT, v, 1, 4.0, max_new_tokens=6, on_token=lambda i, t: seen.append(t),
                                **kwargs)
        assert far.token_ids == local.token_ids and len(far.token_ids) == 6
        assert "".join(seen) == "".join(local.tokens)
    kl_local = st.measure_kl(m, PROMPT, local.token_ids, v, 1, 4.0)
    kl_far = st.measure_kl(remote, PROMPT, local.token_ids, v, 1, 4.0)
    np.testing.assert_allclose(kl_far.kl_per_token, kl_local.kl_per_token, rtol=1e-5, atol=1e-8)


def test_remote_local_path_stops_at_end_of_text(default_model, asc_vector):
    """The bounded nnsight loop asks for more steps than an early end-of-text makes: the
    result must still come back, equal to the local path's."""
    m = default_model
    remote = aw.Model(m.lm, m.tokenizer, m.adapter, "x", remote="local")
    prompt = "The Eiffel Tower is located in the city of"
    local = st.steer_generate(m, prompt, asc_vector, LAYER, 0.0, max_new_tokens=10)
    assert local.token_ids[-1] == m.tokenizer.eos_token_id and len(local.token_ids) < 10
    assert st.steer_generate(remote, prompt, asc_vector, LAYER, 0.0, max_new_tokens=10).token_ids == local.token_ids


def test_should_stop_cancels_between_tokens(tiny_llama):
    seen = []
    v = torch.ones(tiny_llama.d_model)
    with pytest.raises(Cancelled):
        st.steer_generate(tiny_llama, PROMPT, v, 1, 1.0, max_new_tokens=20, min_new_tokens=20,
                          on_token=lambda i, t: seen.append(i), should_stop=lambda: len(seen) >= 3)
    assert seen == [0, 1, 2]


def test_seeded_sampling_is_reproducible(tiny_llama):
    v = torch.ones(tiny_llama.d_model)
    a, b, c = (st.steer_generate(tiny_llama, PROMPT, v, 1, 1.0, max_new_tokens=8, min_new_tokens=8, do_sample=True,
                                 seed=s, temperature=2.0).token_ids for s in (3, 3, 4))
    assert a == b and a != c


# --- measured KL and calibration ---------------------------------------------------------

def test_kl_grows_with_strength(default_model, asc_vector):
    m = default_model
    cont = st.steer_generate(m, PROMPT, asc_vector, LAYER, 0.0, max_new_tokens=6).token_ids
    zero = st.measure_kl(m, PROMPT, cont, asc_vector, LAYER, 0.0)
    assert zero.mean_kl == pytest.approx(0, abs=1e-6)
    np.testing.assert_allclose(zero.entropy_steered, zero.entropy_unsteered, rtol=1e-5)
    kls = [st.measure_kl(m, PROMPT, cont, asc_vector, LAYER, g).mean_kl for g in (0.5, 2.0, 8.0)]
    assert 0 < kls[0] < kls[1] < kls[2], kls
    neg = [st.measure_kl(m, PROMPT, cont, asc_vector, LAYER, g).mean_kl for g in (-0.5, -8.0)]
    assert 0 < neg[0] < neg[1], neg


def test_calibration_and_closed_form(default_model, asc_vector):
    m, budget, prompts = default_model, 0.05, ex.CALIBRATION_PROMPTS[:2]
    cal = st.calibrate_strength(m, asc_vector, LAYER, prompts, budget, n_tokens=4)
    assert cal.converged and abs(cal.measured_kl / budget - 1) <= 0.1, cal.history
    assert cal.evaluations == len(cal.history) <= 16
    # re-measuring at the calibrated strength gives the same KL
    conts = [st.steer_generate(m, p, asc_vector, LAYER, 0.0, max_new_tokens=4, min_new_tokens=1).token_ids
             for p in prompts]
    kls = [st.measure_kl(m, p, c, asc_vector, LAYER, cal.strength).kl_per_token for p, c in zip(prompts, conts)]
    assert np.concatenate(kls).mean() == pytest.approx(cal.measured_kl, rel=1e-4)

    curv = st.estimate_curvature(m, asc_vector, LAYER, prompts)
    a, lip = curv
    assert a > 0 and lip > 0 and curv.forward_equivalents == 3 * len(prompts)
    assert a == pytest.approx(curv.a_unit * float(asc_vector.norm()), rel=1e-6)
    # the scale convention: the same bound for 10 v is a tenth of the strength
    a10, lip10 = st.estimate_curvature(m, 10 * asc_vector, LAYER, prompts)
    assert st.gamma_max(budget, a10, lip10) == pytest.approx(st.gamma_max(budget, a, lip) / 10, rel=1e-4)
    g = st.gamma_max(budget, a, lip)
    measured = np.concatenate([st.measure_kl(m, p, c, asc_vector, LAYER, g).kl_per_token
                               for p, c in zip(prompts, conts)]).mean()
    print(f"closed-form gamma_max {g:.4f} (calibrated {cal.strength:.4f}): measured KL {measured:.4g} "
          f"= {measured / budget:.3g} x budget")
    assert math.isfinite(measured) and measured >= 0


# --- batched generation ---------------------------------------------------------------

def _one_by_one(model, prompts, v, layer, strengths, **kwargs):
    return [st.steer_generate(model, p, v, layer, g, **kwargs) for p, g in zip(prompts, strengths)]


def _same(batched, single):
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]
    assert [(r.tokens, r.text, r.prompt_ids) for r in batched] == [(r.tokens, r.text, r.prompt_ids) for r in single]


def test_batched_generation_equals_one_prompt_at_a_time_tiny(tiny_model):
    """Prompts of different lengths (so rows are left-padded), a strength per row, both
    edits and both position rules, one block and several: the greedy tokens are
    `steer_generate`'s, row by row; batch_size splits the rows without changing them."""
    m = tiny_model
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(2))
    prompts = [PROMPT, "Hi", "The cat sat on the mat and then it ran away", PROMPT]
    strengths = [0.0, 3.0, -2.0, 5.0]
    for layer, kwargs in ((1, dict()), ([0, 1], dict(positions="all")), (1, dict(mode="ablate", positions="all"))):
        batched = st.steer_generate_batch(m, prompts, v, layer, strengths, max_new_tokens=6, **kwargs)
        _same(batched, _one_by_one(m, prompts, v, layer, strengths, max_new_tokens=6, **kwargs))
        assert all(len(r.token_ids) == 6 for r in batched)  # random weights: no end-of-text
    split = st.steer_generate_batch(m, prompts, v, 1, 3.0, max_new_tokens=6, batch_size=3)
    _same(split, _one_by_one(m, prompts, v, 1, [3.0] * 4, max_new_tokens=6))
    with pytest.raises(InputError, match="one per prompt"):
        st.steer_generate_batch(m, prompts, v, 1, [1.0, 2.0], max_new_tokens=6)
    with pytest.raises(InputError, match="empty"):
        st.steer_generate_batch(m, [], v, 1, 1.0)


def test_batched_generation_remote_runs_one_by_one(tiny_llama):
    m = tiny_llama
    remote = aw.Model(m.lm, m.tokenizer, m.adapter, "x", remote="local")
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(4))
    prompts, strengths = [PROMPT, "Hi there"], [2.0, -1.0]
    _same(st.steer_generate_batch(remote, prompts, v, 1, strengths, max_new_tokens=4),
          st.steer_generate_batch(m, prompts, v, 1, strengths, max_new_tokens=4))


def test_batched_generation_equals_one_prompt_at_a_time_default(default_model, asc_vector):
    """On the default model, in its chat template as notebook 03 runs it: rows that end
    early (end-of-text, then padding) are cut where `steer_generate` stops."""
    m = default_model
    prompts = [ex.chat(m.tokenizer, q) for q in ex.ASC_TEST_QUESTIONS[:2]] + ["The Eiffel Tower is located in the city of"]
    strengths = [0.0, -0.6, 0.0]
    batched = st.steer_generate_batch(m, prompts, asc_vector, LAYER, strengths, max_new_tokens=10)
    _same(batched, _one_by_one(m, prompts, asc_vector, LAYER, strengths, max_new_tokens=10))
    ends = [r.token_ids[-1] == m.tokenizer.eos_token_id for r in batched]
    assert ends[2] and len(batched[2].token_ids) < 10 and not all(ends)  # one row ended while others ran on


def test_kl_at_several_strengths_in_one_trace_equals_measure_kl(tiny_llama, default_model, asc_vector):
    """One trace with the unsteered row once gives `measure_kl`'s numbers at each strength,
    locally and through the remote path, on the tiny model and the default one."""
    m = tiny_llama
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(5))
    cont = st.steer_generate(m, PROMPT, v, 1, 0.0, max_new_tokens=6).token_ids
    remote = aw.Model(m.lm, m.tokenizer, m.adapter, "x", remote="local")
    cases = ((m, [0, 1], [0.5, -3.0, 0.0], dict()), (m, 1, [1.0, 0.3], dict(mode="ablate", positions="all")),
             (remote, 1, [2.0, -2.0], dict()))
    for model, layer, strengths, kwargs in cases:
        together = st.measure_kl_strengths(model, PROMPT, cont, v, layer, strengths, **kwargs)
        for g, got in zip(strengths, together):
            want = st.measure_kl(m, PROMPT, cont, v, layer, g, **kwargs)
            for field in ("kl_per_token", "entropy_unsteered", "entropy_steered"):
                np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-4, atol=1e-8)
            assert got.mean_kl == pytest.approx(want.mean_kl, rel=1e-4, abs=1e-8)
    m = default_model
    cont = st.steer_generate(m, PROMPT, asc_vector, LAYER, 0.0, max_new_tokens=6).token_ids
    together = st.measure_kl_strengths(m, PROMPT, cont, asc_vector, LAYER, [0.5, -2.0])
    for g, got in zip((0.5, -2.0), together):
        want = st.measure_kl(m, PROMPT, cont, asc_vector, LAYER, g)
        np.testing.assert_allclose(got.kl_per_token, want.kl_per_token, rtol=1e-4, atol=1e-8)
    with pytest.raises(InputError, match="strengths is empty"):
        st.measure_kl_strengths(m, PROMPT, cont, asc_vector, LAYER, [])
