"""Every method of actwidgets.methods run through the NDIF test server (nnsight's real remote
client, tests/remote/ndif_server.py) gives the same numbers as the local run of the same tiny
Llama, at the request count each costs, counted at the server:

  attribution patching, RelP      1 (the two prompts as two rows of one trace, gradient included)
  measure_kl, measure_kl_strengths 1 (unsteered and steered rows in one trace)
  logit_attribution               1 (every part read and projected inside one trace)
  Attention, attention_patterns   0: refused here with one sentence (eager attention cannot be
                                  switched on NDIF's copy)
  PatchingGrid(method="relp")     1 for RelP, then the exact grid (2 + one per chunk, chunks as
                                  the remote plan cuts them)

Tolerances: the same float32 traces run on both sides (on this CPU the scores agree to the
bit), so rtol 1e-4 / atol 1e-5 for scores, as the exact grid's test in test_requests.py, only
leaves room for another machine's summation order; rtol 1e-4 for KL, where a local run also
reuses a prefix key/value cache under positions="last" and casts to float32 (last bits differ).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.errors import InputError
from actwidgets.methods.attention import attention_patterns
from actwidgets.methods.dla import logit_attribution
from actwidgets.methods.patching import attribution_patching, iter_exact, prepare
from actwidgets.methods.steering import measure_kl, measure_kl_strengths

PROMPT = "The Eiffel Tower is located in the city of"
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")
CONTINUATION = " Paris, the capital of France"
SCORES = dict(rtol=1e-4, atol=1e-5)


def requests(ndif) -> int:
    return ndif.stats()["requests"]


def assert_same_patching(remote, local) -> None:
    assert (remote.rows, remote.cols, remote.method) == (local.rows, local.cols, local.method)
    np.testing.assert_allclose(remote.patched_ld, local.patched_ld, **SCORES)
    np.testing.assert_allclose([remote.ld_clean, remote.ld_corrupted], [local.ld_clean, local.ld_corrupted], **SCORES)


@pytest.fixture(scope="module")
def vector(local_model) -> torch.Tensor:
    return torch.randn(local_model.d_model, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def continuation(local_model) -> torch.Tensor:
    return local_model.encode(CONTINUATION)[0]


# --- attribution patching and RelP -------------------------------------------------------

@pytest.mark.parametrize("relp", [False, True], ids=["attribution", "relp"])
def test_attribution_patching_through_the_server_equals_the_local_run(remote_model, local_model, ndif, relp):
    remote = attribution_patching(remote_model, CLEAN, CORRUPTED, ANSWER, relp=relp)
    assert requests(ndif) == 1
    local = attribution_patching(local_model, CLEAN, CORRUPTED, ANSWER, relp=relp)
    assert_same_patching(remote, local)
    assert np.ptp(local.patched_ld) > 1e-3  # the estimates differ cell to cell: equal grids say something


def test_relp_differs_from_plain_attribution_on_the_server(remote_model, ndif):
    """So the RelP test above is not plain attribution twice: the rules ran on the server."""
    plain = attribution_patching(remote_model, CLEAN, CORRUPTED, ANSWER)
    relp = attribution_patching(remote_model, CLEAN, CORRUPTED, ANSWER, relp=True)
    assert not np.allclose(plain.patched_ld, relp.patched_ld, **SCORES)
    assert requests(ndif) == 2


# --- measured KL -----------------------------------------------------------------------

@pytest.mark.parametrize("positions", ["last", "all"])
def test_measured_kl_through_the_server_equals_the_local_run(remote_model, local_model, ndif, vector,
                                                             continuation, positions):
    remote = measure_kl(remote_model, PROMPT, continuation, vector, 1, 4.0, positions=positions)
    assert requests(ndif) == 1
    local = measure_kl(local_model, PROMPT, continuation, vector, 1, 4.0, positions=positions)
    assert remote.kl_per_token.shape == (len(continuation),)
    assert local.mean_kl > 1e-4  # a steer that moves the distribution: 0 == 0 would prove nothing
    np.testing.assert_allclose(remote.kl_per_token, local.kl_per_token, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(remote.entropy_unsteered, local.entropy_unsteered, rtol=1e-4)
    np.testing.assert_allclose(remote.entropy_steered, local.entropy_steered, rtol=1e-4)


def test_kl_at_several_strengths_is_one_request_and_equals_the_local_run(remote_model, local_model, ndif,
                                                                        vector, continuation):
    strengths = [0.0, 2.0, 8.0]
    remote = measure_kl_strengths(remote_model, PROMPT, continuation, vector, [0, 2], strengths)
    assert requests(ndif) == 1
    local = measure_kl_strengths(local_model, PROMPT, continuation, vector, [0, 2], strengths)
    assert len(remote) == len(strengths)
    assert remote[0].mean_kl == pytest.approx(0.0, abs=1e-9)  # strength 0 is the unsteered row itself
    assert remote[1].mean_kl < remote[2].mean_kl
    for r, l in zip(remote, local):
        np.testing.assert_allclose(r.kl_per_token, l.kl_per_token, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(r.entropy_steered, l.entropy_steered, rtol=1e-4)


# --- direct logit attribution ------------------------------------------------------------

@pytest.mark.parametrize("wrong", [None, " John"], ids=["logit", "logit difference"])
def test_logit_attribution_through_the_server_equals_the_local_run(remote_model, local_model, ndif, wrong):
    remote = logit_attribution(remote_model, CLEAN, " Mary", wrong=wrong)
    assert requests(ndif) == 1
    local = logit_attribution(local_model, CLEAN, " Mary", wrong=wrong)
    assert remote.tokens == local.tokens and (remote.target_id, remote.wrong_id) == (local.target_id, local.wrong_id)
    for name in ("attn", "mlp", "heads", "attn_bias"):
        np.testing.assert_allclose(getattr(remote, name), getattr(local, name), **SCORES)
    np.testing.assert_allclose([remote.embed, remote.norm_bias, remote.logit],
                               [local.embed, local.norm_bias, local.logit], **SCORES)
    assert remote.total == pytest.approx(remote.logit, rel=1e-4, abs=1e-4)  # the parts add up on the server too
    np.testing.assert_allclose(remote.heads.sum(axis=1) + remote.attn_bias, remote.attn, rtol=1e-4, atol=1e-5)


# --- attention: refused before anything is sent -------------------------------------------

def test_attention_on_a_remote_model_is_refused_and_sends_nothing(remote_model, ndif):
    with pytest.raises(InputError) as refused:
        attention_patterns(remote_model, PROMPT)
    sentence = str(refused.value)
    assert sentence.startswith("Attention patterns need the attention switched to eager")
    assert "cannot be done to NDIF's copy" in sentence and sentence.endswith("to see its attention.")
    assert "\n" not in sentence
    widget = aw.Attention(remote_model, PROMPT).wait()
    assert widget.status == "error" and widget.error == sentence
    assert requests(ndif) == 0


# --- the widgets ------------------------------------------------------------------------

def test_a_logit_attribution_widget_through_the_server_equals_a_local_one(remote_model, local_model, ndif):
    remote = aw.LogitAttribution(remote_model, CLEAN, " Mary", wrong=" John").wait()
    assert remote.status == "done", remote.error
    assert requests(ndif) == 1
    local = aw.LogitAttribution(local_model, CLEAN, " Mary", wrong=" John").wait()
    assert local.status == "done", local.error
    for name in ("attn", "mlp", "heads", "attn_bias"):  # the arrays the widget draws (its traits hold bytes)
        np.testing.assert_allclose(getattr(remote.data, name), getattr(local.data, name), **SCORES)
    assert remote.total == pytest.approx(local.logit, rel=1e-4, abs=1e-4)
    assert remote.tokens == local.tokens and remote.metric_label == local.metric_label


def test_a_relp_patching_grid_through_the_server_equals_a_local_one(remote_model, local_model, ndif):
    # The exact grid's chunks are planned by cost, and a local model (which reuses the target's
    # key/value prefix) cuts them differently: count what the exact grid alone costs remotely.
    chunks = sum(1 for _ in iter_exact(remote_model, prepare(remote_model, CLEAN, CORRUPTED, ANSWER)))
    exact_requests = requests(ndif)
    assert exact_requests == 2 + chunks  # the clean and corrupted runs cached, then one per chunk
    ndif.reset()
    remote = aw.PatchingGrid(remote_model, CLEAN, CORRUPTED, ANSWER, method="relp").wait()
    assert remote.status == "done", remote.error
    assert requests(ndif) == 1 + exact_requests  # RelP first, then the exact grid beside it
    local = aw.PatchingGrid(local_model, CLEAN, CORRUPTED, ANSWER, method="relp").wait()
    assert local.status == "done", local.error
    assert_same_patching(remote.result, local.result)
    assert remote.result.method == "relp"
    assert_same_patching(remote.exact, local.exact)
    assert remote.correlation == pytest.approx(local.correlation, abs=1e-4)


def test_steering_measures_a_bf16_remote_model_in_its_own_dtype(tiny_dir, vector):
    """NDIF serves bf16 weights, which cannot be cast to float32 from here as a local model
    is: the vector joins the residual stream in the model's dtype (it was float32, and every
    KL, curvature and calibration failed with "expected scalar type BFloat16 but found Float")."""
    from actwidgets.methods.steering import calibrate_strength, estimate_curvature

    shipped = aw.load(tiny_dir, dtype="bfloat16", remote="local")  # nnsight's remote path, in-process
    here = aw.load(tiny_dir, dtype="bfloat16")
    cont = here.encode(CONTINUATION)[0]
    for mode, strength in (("add", 0.01), ("ablate", 1.0)):
        kl = measure_kl(shipped, PROMPT, cont, vector, 1, strength, mode=mode).mean_kl
        assert kl == pytest.approx(measure_kl(here, PROMPT, cont, vector, 1, strength, mode=mode).mean_kl, rel=0.05)
    curvature = estimate_curvature(shipped, vector, 1, [PROMPT])
    assert np.isfinite([curvature.a, curvature.lipschitz]).all()
    assert np.isfinite(calibrate_strength(shipped, vector, 1, [PROMPT], 0.05, n_tokens=4).strength)
