"""Patching: the batched, layer- and position-skipping grid equals a naive one-forward-per-cell
loop written in plain torch hooks; approximations correlate with it; bad input is explained."""
import threading

import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.errors import Cancelled
from actwidgets.methods import patching as P

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")


def site_module(model, layer, site):
    block = model.blocks[layer]._module
    return {"resid": block, "attn": model.part(model.blocks[layer], "attn")._module,
            "mlp": model.part(model.blocks[layer], "mlp")._module,
            "heads": model.part(model.blocks[layer], "attn_out")._module}[site]


def first(x):
    return x[0] if isinstance(x, tuple) else x


def naive_cell(model, problem, layer, col, site):
    """LD of the corrupted run with one cell patched from the clean run (plain torch)."""
    module = site_module(model, layer, site)
    grab = {}
    head = model.d_model // model.n_heads
    span = slice(col * head, (col + 1) * head)
    def keep_in(m, args):
        grab["v"] = args[0].clone()

    def keep_out(m, i, o):
        grab["v"] = first(o).clone()

    h = module.register_forward_pre_hook(keep_in) if site == "heads" else module.register_forward_hook(keep_out)
    with torch.no_grad():
        model.hf(problem.clean_ids)
    h.remove()

    def patch_out(m, i, o):
        first(o)[:, col] = grab["v"][:, col]
        return o

    def patch_in(m, args):
        args[0][:, :, span] = grab["v"][:, :, span]

    h = module.register_forward_pre_hook(patch_in) if site == "heads" else module.register_forward_hook(patch_out)
    with torch.no_grad():
        logits = model.hf(problem.corrupted_ids).logits[0, -1]
    h.remove()
    return float(logits[problem.correct_id] - logits[problem.wrong_id])


@pytest.mark.parametrize("site", P.SITES)
def test_exact_grid_equals_naive_loop_on_tiny_models(tiny_model, site):
    result = P.exact_patching(tiny_model, CLEAN, CORRUPTED, ANSWER, site, chunk_size=5)
    problem = P.prepare(tiny_model, CLEAN, CORRUPTED, ANSWER)
    naive = np.array([[naive_cell(tiny_model, problem, l, c, site) for c in range(len(result.cols))]
                      for l in range(tiny_model.n_layers)])
    np.testing.assert_allclose(result.patched_ld, naive, atol=1e-4)
    assert result.done.all()


@pytest.fixture(scope="module")
def exact_default(default_model):
    """The default model's exact grid for a site, computed once for every test that reads it."""
    grids = {}

    def grid(site):
        if site not in grids:
            grids[site] = P.exact_patching(default_model, CLEAN, CORRUPTED, ANSWER, site)
        return grids[site]
    return grid


@pytest.mark.parametrize("site", P.SITES)
def test_exact_grid_equals_naive_cells_on_the_default_model(default_model, exact_default, site):
    result = exact_default(site)
    problem = P.prepare(default_model, CLEAN, CORRUPTED, ANSWER)
    rng = np.random.default_rng(0)
    cells = [(0, 9 % len(result.cols)), (29, len(result.cols) - 1)] + [
        (int(rng.integers(30)), int(rng.integers(len(result.cols)))) for _ in range(4)]
    for layer, col in cells:
        assert result.patched_ld[layer, col] == pytest.approx(naive_cell(default_model, problem, layer, col, site), abs=1e-4)


def test_normalized_score_sanity_on_ioi(exact_default):
    result = exact_default("resid")
    assert result.ld_clean == pytest.approx(6.12, abs=0.05) and result.ld_corrupted == pytest.approx(-5.49, abs=0.05)
    norm = result.normalized
    assert norm[-1, -1] == pytest.approx(1.0, abs=1e-4)  # last layer, last position: the clean logits
    assert norm[0, 9] == pytest.approx(1.0, abs=0.05)  # first layer, the position that differs
    assert np.abs(norm[0, :9]).max() < 1e-4  # identical tokens before it: nothing to restore
    # the name information moves from S2 (position 9) to the last position by the late layers
    assert norm[24:, -1].min() > 0.8 and norm[24:, 9].max() < 0.2


def test_approximations_correlate_with_exact(default_model, exact_default):
    exact = exact_default("resid")
    report = {}
    for method in ("attribution", "relp"):
        approx = P.run(default_model, CLEAN, CORRUPTED, ANSWER, "resid", method)
        assert approx.patched_ld.shape == exact.patched_ld.shape == (30, 14)
        report[method] = P.pearson(approx.patched_ld, exact.patched_ld)
        assert report[method] > 0.5, report
    exact_mlp = exact_default("mlp")
    for method in ("attribution", "relp"):
        report[f"{method}_mlp"] = P.pearson(P.run(default_model, CLEAN, CORRUPTED, ANSWER, "mlp", method).patched_ld,
                                            exact_mlp.patched_ld)
    print("\ncorrelation with exact patching (IOI, default model):", {k: round(v, 3) for k, v in report.items()})
    assert report["relp_mlp"] > report["attribution_mlp"] > 0


def test_attribution_from_a_shared_start_equals_plain_torch(default_model):
    """A long opening both prompts share runs once (one row, no graph), and is reused by the
    next method; attribution and RelP scores equal a plain-torch forward and backward of the
    whole prompts."""
    from families import attribution_reference

    from actwidgets.methods import prefix_cache

    opening = "It was a quiet morning in the small town by the river, and most of the people were still asleep. "
    clean, corrupted = opening + CLEAN, opening + CORRUPTED
    problem = P.prepare(default_model, clean, corrupted, ANSWER)
    n, common = problem.clean_ids.shape[1], int((problem.clean_ids == problem.corrupted_ids).cumprod(1).sum())
    embedding = default_model.hf.get_input_embeddings()
    prefix_cache.clear(default_model)
    for relp, inputs_seen, layers in ((False, [(1, common), (2, n - common)], (0, 29)), (True, [(2, n - common)], (15,))):
        inputs = []
        hook = embedding.register_forward_hook(lambda m, args, out: inputs.append(tuple(args[0].shape)))
        try:
            result = P.attribution_patching(default_model, clean, corrupted, ANSWER, "resid", relp=relp)
        finally:
            hook.remove()
        assert inputs == inputs_seen
        assert (result.patched_ld[:, :common] == np.float32(result.ld_corrupted)).all()  # the shared start: no effect
        for layer in layers:
            score, ld = attribution_reference(default_model, default_model.blocks[layer]._module, "resid",
                                              problem.clean_ids, problem.corrupted_ids, problem.correct_id,
                                              problem.wrong_id, relp=relp)
            assert result.ld_corrupted == pytest.approx(ld, abs=1e-4)
            np.testing.assert_allclose(result.patched_ld[layer] - result.ld_corrupted, score.numpy(),
                                       atol=1e-4 * max(1.0, float(score.abs().max())))


@pytest.mark.parametrize("method", P.METHODS)
def test_the_default_metric_unembeds_its_two_tokens_only(tiny_llama, method):
    """The logit difference reads two logits, so the model's logits hold those two columns;
    any other metric gets the whole vocabulary, and the same metric both ways gives the
    same grid."""
    problem = P.prepare(tiny_llama, CLEAN, CORRUPTED, ANSWER)
    widths = []
    hook = tiny_llama.hf.register_forward_hook(lambda m, args, out: widths.append(out.logits.shape[-1]))
    try:
        narrow = P.run(tiny_llama, CLEAN, CORRUPTED, ANSWER, "resid", method)
        assert widths and set(widths) == {2}
        widths.clear()
        whole = P.run(tiny_llama, CLEAN, CORRUPTED, ANSWER, "resid", method,
                      metric=lambda last: last[:, problem.correct_id] - last[:, problem.wrong_id])
        assert widths and set(widths) == {tiny_llama.hf.config.vocab_size}
    finally:
        hook.remove()
    assert narrow.ld_corrupted == pytest.approx(whole.ld_corrupted, abs=1e-5)
    np.testing.assert_allclose(narrow.patched_ld, whole.patched_ld, atol=1e-5)


def test_cells_before_the_first_differing_token_are_not_run_when_rounding_differs(tiny_llama, monkeypatch):
    """A mixture of experts rounds the shared start differently in the two runs (the later
    tokens change its experts' matmul shapes), so no activation there compares identical;
    those cells are still the target run's, and no chunk runs them."""
    monkeypatch.setattr(P, "_same_cells", lambda src, tgt, site, n_heads: np.zeros((len(src), len(src[0])), bool))
    lengths = []
    hook = tiny_llama.hf.register_forward_pre_hook(lambda m, args, kwargs: lengths.append(
        (args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True)
    try:
        result = P.exact_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "resid", chunk_size=3)
    finally:
        hook.remove()
    assert max(lengths[2:]) == 14 - 9, lengths  # after the two cached runs: from " John"/" Mary" on
    assert (result.patched_ld[:, :9] == np.float32(result.ld_corrupted)).all() and result.done.all()


def test_noising_starts_from_the_clean_run(tiny_llama):
    result = P.exact_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "resid", denoise=False)
    assert result.normalized[-1, -1] == pytest.approx(0.0, abs=1e-4)  # corrupted logits in the clean run


@pytest.mark.parametrize("corrupted, answer, message", [
    ("When Mary and John went to the store, Mary gave a drink", ANSWER, "same number of tokens.*clean has 14"),
    (CORRUPTED, (" Mary", " Johnathan"), "2 tokens"),
    (CORRUPTED, (" Mary",), "must be a pair"),
    (CORRUPTED, (" Mary", " Mary"), "same token"),
])
def test_bad_input(default_model, corrupted, answer, message):
    with pytest.raises(aw.InputError, match=message):
        P.prepare(default_model, CLEAN, corrupted, answer)


def test_cancel_stops_within_one_chunk(default_model):
    problem = P.prepare(default_model, CLEAN, CORRUPTED, ANSWER)
    seen = []
    with pytest.raises(Cancelled):
        for _, fraction in P.iter_exact(default_model, problem, "resid", chunk_size=14, should_stop=lambda: len(seen) >= 2):
            seen.append(fraction)
    assert len(seen) == 2


def test_remote_local_runs_exact_and_attribution(default_model, exact_default):
    remote = aw.Model(default_model.lm, default_model.tokenizer, default_model.adapter, "remote-local", remote="local")
    problem = P.prepare(remote, CLEAN, CORRUPTED, ANSWER)
    partial_remote = next(P.iter_exact(remote, problem, "resid"))[0]
    done = partial_remote.done & ~np.isclose(partial_remote.patched_ld, partial_remote.ld_corrupted)
    assert done.any()  # cells the remote path computed (its cache stays there: whole prompts)
    np.testing.assert_allclose(partial_remote.patched_ld[done], exact_default("resid").patched_ld[done], atol=1e-4)
    attr_remote = P.attribution_patching(remote, CLEAN, CORRUPTED, ANSWER, "resid")
    attr_here = P.attribution_patching(default_model, CLEAN, CORRUPTED, ANSWER, "resid")
    np.testing.assert_allclose(attr_remote.patched_ld, attr_here.patched_ld, atol=1e-4)


def test_patching_grid_widget(default_model):
    grid = aw.PatchingGrid(default_model, CLEAN, CORRUPTED, ANSWER, chunk_size=14)
    frames = []
    grid.observe(lambda c: frames.append(np.frombuffer(c["new"], "<f4").copy()), "values")
    grid.wait(300)
    assert grid.status == "done" and grid.shape == [30, 14] and grid.colormap == "rdbu"
    assert np.isnan(frames[0]).sum() > 0 and not np.isnan(frames[-1]).any(), "cells must fill in progressively"
    assert grid.ld_clean == pytest.approx(6.12, abs=0.05)
    grid.method = "attribution"
    grid.wait(300)
    assert len(grid.reference_values) == 30 * 14 * 4 and 0.5 < grid.correlation <= 1
    grid.corrupted = "When Mary and John went to the store, Mary gave a drink"
    grid.wait()
    assert grid.status == "error" and "clean has 14" in grid.error
    grid.corrupted = CORRUPTED
    grid.wait(300)
    assert grid.status == "done"


def test_patching_grid_cancel_and_link(default_model):
    grid = aw.PatchingGrid(default_model, CLEAN, CORRUPTED, ANSWER, site="mlp", chunk_size=7)
    started = threading.Event()
    grid.observe(lambda c: started.set() if c["new"] > 0 else None, "progress")
    assert started.wait(120)
    grid._on_front_end_message(grid, {"type": "cancel"}, [])
    grid.wait(120)
    assert grid.status == "cancelled" and np.isnan(np.frombuffer(grid.values, "<f4")).any()
    assert not grid.stale  # the cells filled in so far are this input's
    lens = aw.LogitLens(default_model, "placeholder")
    grid.link(lens)
    grid.selected = {"row": 4, "col": 9}
    lens.wait()
    assert lens.prompt == CLEAN and lens.selection["layer"] == "4" and lens.selection["token"] == " John"


def test_identical_prompts_have_no_normalized_score(tiny_llama):
    result = P.exact_patching(tiny_llama, CLEAN, CLEAN, ANSWER, "resid")
    assert np.allclose(result.patched_ld, result.ld_clean)  # every patch copies an identical activation
    with pytest.raises(aw.InputError, match="nothing to restore"):
        result.normalized


@pytest.mark.parametrize("site", ["resid", "mlp", "heads"])
def test_relp_runs_on_both_families(tiny_model, site):
    """The LRP rules find the norms and MLP parts of Llama- and GPT-2-style blocks, and they
    only change the backward pass: the forward logit differences stay those of the model."""
    relp = P.attribution_patching(tiny_model, CLEAN, CORRUPTED, ANSWER, site, relp=True)
    plain = P.attribution_patching(tiny_model, CLEAN, CORRUPTED, ANSWER, site)
    assert relp.patched_ld.shape == plain.patched_ld.shape and np.isfinite(relp.patched_ld).all()
    assert relp.ld_clean == pytest.approx(plain.ld_clean, abs=1e-5)
    assert relp.ld_corrupted == pytest.approx(plain.ld_corrupted, abs=1e-5)


def test_relp_rules_are_made_once_per_model_and_site_and_give_the_same_scores(tiny_llama):
    """The rules (norm probes) are kept per model and site: a second run reuses them, and
    rules made afresh give the same scores."""
    from actwidgets.methods.relp import _RULES, lrp_rules

    _RULES.pop(tiny_llama.lm, None)
    first = P.attribution_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "mlp", relp=True).patched_ld
    rules = lrp_rules(tiny_llama, "mlp")
    assert lrp_rules(tiny_llama, "mlp") is rules and lrp_rules(tiny_llama, "resid") is not rules
    np.testing.assert_array_equal(P.attribution_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "mlp",
                                                         relp=True).patched_ld, first)
    _RULES.pop(tiny_llama.lm)  # made afresh: the same scores
    np.testing.assert_array_equal(P.attribution_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "mlp",
                                                         relp=True).patched_ld, first)


def test_relp_keeps_gemma_norms_forward_values(tokenizer):
    """Gemma's RMSNorm multiplies by (1 + w), not w: the LN-rule reads the gain off the norm
    itself, so the rewritten forward pass still gives the model's own logit differences."""
    from transformers import GemmaConfig, GemmaForCausalLM

    torch.manual_seed(0)
    config = GemmaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=256)
    hf = GemmaForCausalLM(config)
    with torch.no_grad():  # Gemma initialises norm weights to 0 (gain 1); make (1 + w) matter
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.5)
    gemma = aw.wrap(hf, tokenizer, name="tiny-gemma")
    relp = P.attribution_patching(gemma, CLEAN, CORRUPTED, ANSWER, "resid", relp=True)
    plain = P.attribution_patching(gemma, CLEAN, CORRUPTED, ANSWER, "resid")
    assert relp.ld_clean == pytest.approx(plain.ld_clean, abs=1e-4)
    assert relp.ld_corrupted == pytest.approx(plain.ld_corrupted, abs=1e-4)
    assert np.isfinite(relp.patched_ld).all()


def test_normalized_score_reads_the_same_in_both_directions(tiny_llama):
    """1 is the clean behaviour, 0 the corrupted one, whichever run is patched: denoising the
    last layer's last position restores the clean LD (1), noising it destroys it (0), and a
    cell before the first differing token changes nothing (0 when denoising, 1 when noising)."""
    for denoise, untouched, last in ((True, 0.0, 1.0), (False, 1.0, 0.0)):
        result = P.exact_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "resid", denoise=denoise)
        norm = result.normalized
        assert norm[0, 0] == pytest.approx(untouched, abs=1e-5)
        assert norm[-1, -1] == pytest.approx(last, abs=1e-4)
        assert result.score_meaning.startswith("0: no effect" if denoise else "1: no effect")
    grid = aw.PatchingGrid(tiny_llama, clean=CLEAN, corrupted=CORRUPTED, answer=ANSWER, denoise=False).wait(300)
    assert grid.status == "done", grid.error
    assert "1: no effect, 0: clean answer destroyed" in grid.value_label


def test_relp_through_the_remote_path_equals_local(tiny_llama):
    """RelP's trace reads each norm's weight inside the body, so it runs where the weights are."""
    remote = aw.Model(tiny_llama.lm, tiny_llama.tokenizer, tiny_llama.adapter, "remote-local", remote="local")
    here = P.attribution_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "mlp", relp=True)
    there = P.attribution_patching(remote, CLEAN, CORRUPTED, ANSWER, "mlp", relp=True)
    np.testing.assert_allclose(there.patched_ld, here.patched_ld, atol=1e-5)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_approximations_take_their_gradient_inside_a_callers_no_grad(tiny_llama, context):
    """A notebook may run everything under torch.no_grad or inference_mode: the gradient the
    approximations need is theirs to turn on (nnsight said "This tensor does not require grad")."""
    for relp in (False, True):
        outside = P.attribution_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "resid", relp=relp)
        with context():
            inside = P.attribution_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, "resid", relp=relp)
        np.testing.assert_array_equal(inside.patched_ld, outside.patched_ld)
