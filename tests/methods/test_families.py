"""The architecture matrix: every method on a tiny random model of every supported family,
against plain torch. fp32 everywhere; bf16 on Llama, Gemma-2, Qwen2 and GPT-2 agrees with
fp32 within the tolerances stated below."""
import numpy as np
import pytest
import torch

from actwidgets.methods import _prefix
from actwidgets.methods import patching as P
from actwidgets.methods import steering as S
from actwidgets.methods.activations import residual_stats
from actwidgets.methods.lens import logit_lens

from families import BF16, FAMILIES, attribution_reference, block_outputs, first, run_with_hooks, tiny

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")
PROMPT = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module", params=list(FAMILIES))
def model(request, tokenizer):
    return tiny(request.param, tokenizer)


def test_heatmap_statistics_equal_plain_torch(model):
    progress = []  # after each block (the trace stops inside the last one, once it is read)
    stats = residual_stats(model, PROMPT, progress=progress.append)
    assert progress == [1 / model.n_layers]
    ref = block_outputs(model.hf, model.blocks._module, model.encode(PROMPT))
    np.testing.assert_allclose(stats.norm, ref.norm(dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(stats.max_abs, ref.abs().amax(-1).numpy(), rtol=1e-5)


def test_lens_last_layer_is_the_model_output(model):
    ids = model.encode(PROMPT)
    target = model.single_token(" Paris")
    lens = logit_lens(model, PROMPT, target=" Paris", k=5)
    with torch.no_grad():
        logp = torch.log_softmax(model.hf(ids).logits[0].float(), -1)
    top_p, _ = logp.exp().topk(5, dim=-1)
    np.testing.assert_allclose(np.log(lens.topk_prob[-1]), np.log(top_p.numpy()), atol=1e-5)
    np.testing.assert_allclose(lens.entropy[-1], -(logp.exp() * logp).sum(-1).numpy(), atol=1e-5)
    np.testing.assert_allclose(np.log(lens.target_prob[-1]), logp[:, target].numpy(), atol=1e-5)


def site_module(model, layer, site):
    block = model.blocks[layer]
    return block._module if site == "resid" else model.part(block, "attn_out" if site == "heads" else site)._module


def naive_cell(model, problem, site, layer, col):
    """LD of the corrupted run with one cell patched from the clean run: one hook, one forward."""
    module = site_module(model, layer, site)
    head = slice(col * model.head_dim, (col + 1) * model.head_dim)
    grab = {}

    def keep_in(m, args):
        grab["v"] = args[0].clone()

    def keep_out(m, i, o):
        grab["v"] = first(o).clone()

    def patch_in(m, args):
        args[0][..., head] = grab["v"][..., head]

    def patch_out(m, i, o):
        value = first(o)
        if value.dim() == 2:
            value[col] = grab["v"][col]
        else:
            value[:, col] = grab["v"][:, col]
        return o

    kind = "pre" if site == "heads" else "post"
    with torch.no_grad():
        run_with_hooks([(module, kind, keep_in if site == "heads" else keep_out)], lambda: model.hf(problem.clean_ids))
        logits = run_with_hooks([(module, kind, patch_in if site == "heads" else patch_out)],
                                lambda: model.hf(problem.corrupted_ids).logits[0, -1])
    return float(logits[problem.correct_id] - logits[problem.wrong_id])


@pytest.mark.parametrize("site", P.SITES)
def test_exact_patching_equals_a_naive_loop(model, site):
    """Chunks of 3 start at different positions and layers (position skipping reuses the
    target run's keys and values on every family here: none falls back to whole prompts)."""
    problem = P.prepare(model, CLEAN, CORRUPTED, ANSWER)
    lengths = []
    hook = model.hf.register_forward_pre_hook(lambda m, args, kwargs: lengths.append(
        (args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True)
    try:
        result = P.exact_patching(model, CLEAN, CORRUPTED, ANSWER, site, chunk_size=3)
    finally:
        hook.remove()
    assert result.done.all() and result.patched_ld.shape[0] == model.n_layers
    tails = lengths[2:]  # after the two runs that cache source and target
    assert set(tails) == {14} if site == "heads" else (max(tails) == 14 - 9 and min(tails) < 14 - 9), lengths
    n_cols = result.patched_ld.shape[1]
    cells = ([(0, 9 % n_cols), (1, 9 % n_cols), (1, n_cols - 1), (0, n_cols - 1)] if site == "heads" else
             [(layer, col) for layer in range(2) for col in range(9, n_cols)] + [(1, 3)])
    naive = [naive_cell(model, problem, site, layer, col) for layer, col in cells]
    got = [result.patched_ld[layer, col] for layer, col in cells]
    np.testing.assert_allclose(got, naive, atol=1e-4 * max(1.0, np.abs(naive).max()))


# the IOI pair after a shared opening long enough to run once (`prefix_cache.shared_start`)
OPENING = "It was a quiet morning in the small town by the river, and most of the people were still asleep. "
PAIRS = {"ioi": (CLEAN, CORRUPTED), "long_start": (OPENING + CLEAN, OPENING + CORRUPTED)}


@pytest.mark.parametrize("pair, site", [("ioi", site) for site in P.SITES] + [("long_start", "resid"),
                                                                              ("long_start", "heads")])
@pytest.mark.parametrize("relp", [False, True], ids=["attribution", "relp"])
def test_attribution_and_relp_equal_plain_torch(model, site, relp, pair):
    """On the long pair, where the family's cache can be reused, the shared start runs once
    (one row, no graph) and the two rows' forward and backward cover the rest only (every site
    but `heads` pads the start's scores back in the same way: `resid` stands for them)."""
    from actwidgets.methods import prefix_cache

    clean, corrupted = PAIRS[pair]
    problem = P.prepare(model, clean, corrupted, ANSWER)
    prefix_cache.clear(model)
    inputs = []
    hooks = [(model.hf.get_input_embeddings(), "post", lambda m, args, out: inputs.append(tuple(args[0].shape)))]
    result = run_with_hooks(hooks, lambda: P.attribution_patching(model, clean, corrupted, ANSWER, site, relp=relp))
    n, common = problem.clean_ids.shape[1], int((problem.clean_ids == problem.corrupted_ids).cumprod(1).sum())
    shared = pair == "long_start" and _prefix.plain_cache(model.hf)
    assert inputs == ([(1, common), (2, n - common)] if shared else [(2, n)])
    scores = []
    for layer in range(model.n_layers):
        module = site_module(model, layer, site)
        score, ld = attribution_reference(model, module, site, problem.clean_ids, problem.corrupted_ids,
                                          problem.correct_id, problem.wrong_id, relp=relp)
        scores.append(score.numpy())
    scores = np.stack(scores)
    assert result.ld_corrupted == pytest.approx(ld, abs=1e-4)
    if relp:  # its rules route the gradient only: the forward pass is the model's to the last bit
        plain = P.attribution_patching(model, clean, corrupted, ANSWER, site)
        assert (result.ld_clean, result.ld_corrupted) == (plain.ld_clean, plain.ld_corrupted)
    np.testing.assert_allclose(result.patched_ld - result.ld_corrupted, scores,
                               atol=1e-4 * max(1.0, np.abs(scores).max()))


def test_steering_add_and_ablate_run(model):
    v = np.random.default_rng(0).normal(size=model.d_model).astype(np.float32)
    for mode, strength in (("add", 4.0), ("ablate", 1.0)):
        out = S.steer_generate(model, "The cat sat on the", v, 1, strength, max_new_tokens=3, min_new_tokens=3,
                               mode=mode)
        assert len(out.token_ids) == 3
        kl = S.measure_kl(model, "The cat sat on the", out.token_ids, v, 1, strength, mode=mode)
        assert np.isfinite(kl.kl_per_token).all() and kl.mean_kl > 0


# prompts that begin alike (as a chat template's do), for the steering vectors
START = PROMPT + " Paris. It is a tall iron tower, built for a world fair, and"
ENDS = [" tourists", " it is", " many people come to see it", " at night", " the lights shine", " it was"]
POSITIVE, NEGATIVE = [START + e for e in ENDS], [START + e + " every single year" for e in ENDS]
ACTIONS = [" left", " right"]


def test_steering_vectors_run_a_shared_start_once_and_equal_plain_torch(model):
    """ASC's and EAST's vectors on prompts that begin alike (as a chat template's do) equal
    each prompt's own plain forward; where the family's cache can be reused the shared start
    runs once for every batch, and only the rows' last tokens are unembedded."""
    from actwidgets.methods import prefix_cache

    positive, negative, actions = POSITIVE, NEGATIVE, ACTIONS
    encoded = [model.encode(p)[0] for p in positive + negative]
    common = next(i for i in range(len(encoded[0])) if len({int(x[i]) for x in encoded}) > 1)
    inputs, unembedded = [], []
    prefix_cache.clear(model)
    hooks = [(model.hf.get_input_embeddings(), "post", lambda m, args, out: inputs.append(tuple(args[0].shape))),
             (model.hf.get_output_embeddings(), "pre", lambda m, args: unembedded.append(args[0].shape[:2]))]
    v, u = run_with_hooks(hooks, lambda: (S.mean_difference(model, positive, negative, 0),
                                          S.entropy_weighted(model, [positive, negative], 0, actions)))

    wp, wn = (max(len(x) for x in xs) for xs in (encoded[:6], encoded[6:]))
    if _prefix.plain_cache(model.hf):
        assert inputs == [(1, common), (6, wp - common), (6, wn - common), (12, wn - common)]
    else:
        assert inputs == [(6, wp), (6, wn), (12, wn)]
    assert unembedded[-1] == (12, len({len(x) for x in encoded}))
    ids = [model.tokenizer.convert_tokens_to_ids(model.tokenizer.tokenize(a))[0] for a in actions]
    states, entropy = [], []
    for x in encoded:
        states.append(block_outputs(model.hf, model.blocks._module, x[None])[1, -1].double())
        with torch.no_grad():
            logp = torch.log_softmax(model.hf(x[None]).logits[0, -1, ids].double(), -1)
        entropy.append(-(logp.exp() * logp).sum())
    z, h = torch.stack(states), torch.stack(entropy)
    np.testing.assert_allclose(v.numpy(), (z[:6] - z[6:]).mean(0).numpy(), rtol=1e-4, atol=1e-5)
    centred = torch.cat([z[:6] - z[:6].mean(0), z[6:] - z[6:].mean(0)])
    np.testing.assert_allclose(u.numpy(), ((h[:, None] * centred).sum(0) / h.sum()).numpy(), rtol=1e-4, atol=1e-5)


def _search_then_fresh(model, positions: str):
    """A search's second KL evaluation (the unsteered row and the blocks below the edited
    one reused from the first) next to a fresh measurement, and the calls block 0 got."""
    from actwidgets.methods._trace import float32
    from actwidgets.methods.steering.kl import _kl_rows

    v = torch.tensor(np.random.default_rng(2).normal(size=model.d_model), dtype=torch.float32)
    cont = S.steer_generate(model, PROMPT, v, 1, 0.0, max_new_tokens=4, min_new_tokens=4).token_ids
    ids = model.encode(PROMPT)
    full, reference, calls = torch.cat([ids[0], torch.tensor(cont)])[None], {}, []
    with model.lock, torch.no_grad(), float32(model):
        _kl_rows(model, full, ids.shape[1], v, [1], [0.5], positions, "add", reference)
        # a skipped block is still called (nnsight hands back the given output): watch its parts
        inner = [m for m in model.blocks._module[0].modules() if not list(m.children())]
        handles = [m.register_forward_hook(lambda *args: calls.append(1)) for m in inner]
        try:
            reused = _kl_rows(model, full, ids.shape[1], v, [1], [2.0], positions, "add", reference)
        finally:
            for handle in handles:
                handle.remove()
    fresh = S.measure_kl(model, PROMPT, cont, v, 1, 2.0, positions=positions)
    return reused, fresh, calls


@pytest.mark.parametrize("positions", ["last", "all"])
def test_a_kl_search_reuses_the_unsteered_row_and_the_blocks_below(model, positions):
    (kl, ent0, ent), fresh, calls = _search_then_fresh(model, positions)
    assert not calls, "block 0's modules ran again: its output is the unsteered row's"
    np.testing.assert_allclose(kl[0], fresh.kl_per_token, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(ent[0], fresh.entropy_steered, rtol=1e-5)
    np.testing.assert_allclose(ent0, fresh.entropy_unsteered, rtol=1e-5)
    assert fresh.mean_kl > 0


# --- bf16 --------------------------------------------------------------------------
# Tolerances (measured on these tiny models, with margin): statistics 2% relative; lens
# log-probabilities 0.05 nats; patching and attribution scores 5% of the clean-corrupted
# span plus 0.02; measured KL and curvature, computed in float32 on the bf16 weights, 5%.

@pytest.fixture(scope="module", params=BF16)
def pair(request, tokenizer):
    return tiny(request.param, tokenizer), tiny(request.param, tokenizer, torch.bfloat16)


def test_bf16_statistics_and_lens_agree_with_fp32(pair):
    fp32, bf16 = pair
    assert bf16.hf.dtype == torch.bfloat16
    np.testing.assert_allclose(residual_stats(bf16, PROMPT).norm, residual_stats(fp32, PROMPT).norm, rtol=2e-2)
    a, b = logit_lens(fp32, PROMPT, target=" Paris"), logit_lens(bf16, PROMPT, target=" Paris")
    np.testing.assert_allclose(np.log(b.target_prob), np.log(a.target_prob), atol=0.05)
    np.testing.assert_allclose(b.entropy, a.entropy, atol=0.05)


def test_bf16_steering_vectors_agree_with_fp32(pair):
    """The shared-start path in bf16 (the start's keys and values cached in bf16) gives the
    fp32 vectors' direction and length (measured: cosine >= 0.999, length within 1%)."""
    for vectors in ([S.mean_difference(m, POSITIVE, NEGATIVE, 0) for m in pair],
                    [S.entropy_weighted(m, [POSITIVE, NEGATIVE], 0, ACTIONS) for m in pair]):
        a, b = (v.double() for v in vectors)
        assert float(a @ b / (a.norm() * b.norm())) > 0.995
        assert float(b.norm() / a.norm()) == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("method", P.METHODS)
@pytest.mark.parametrize("site", ["resid", "mlp", "heads"])
def test_bf16_patching_agrees_with_fp32(pair, method, site):
    fp32, bf16 = pair
    a = P.run(fp32, CLEAN, CORRUPTED, ANSWER, site, method)
    b = P.run(bf16, CLEAN, CORRUPTED, ANSWER, site, method)
    span = abs(a.ld_clean - a.ld_corrupted)
    np.testing.assert_allclose(b.patched_ld, a.patched_ld, atol=0.05 * span + 0.02)


@pytest.mark.parametrize("site", ["resid", "mlp", "heads"])
def test_bf16_relp_keeps_the_models_forward_to_the_last_bit(pair, site):
    """RelP's rules route the gradient only, in bf16 too, where a rule that recomputed a norm
    or an activation in another order would round differently."""
    _, bf16 = pair
    relp = P.attribution_patching(bf16, CLEAN, CORRUPTED, ANSWER, site, relp=True)
    plain = P.attribution_patching(bf16, CLEAN, CORRUPTED, ANSWER, site)
    assert (relp.ld_clean, relp.ld_corrupted) == (plain.ld_clean, plain.ld_corrupted)
    assert np.isfinite(relp.patched_ld).all()


def test_bf16_attribution_from_a_shared_start_agrees_with_fp32(pair):
    """The shared start run once and cached in bf16, then reused by the next method: the
    scores agree with fp32's as the IOI pair's do. The logit difference itself is bf16's
    (measured up to 0.037 from fp32 here)."""
    from actwidgets.methods import prefix_cache

    clean, corrupted = PAIRS["long_start"]
    fp32, bf16 = pair
    prefix_cache.clear(bf16)
    for method, rows in (("attribution", [1, 2]), ("relp", [2])):  # the start alone, then both rows
        inputs = []
        hooks = [(bf16.hf.get_input_embeddings(), "post", lambda m, args, out: inputs.append(args[0].shape[0]))]
        b = run_with_hooks(hooks, lambda: P.run(bf16, clean, corrupted, ANSWER, "resid", method))
        a = P.run(fp32, clean, corrupted, ANSWER, "resid", method)
        assert inputs == rows, method
        span = abs(a.ld_clean - a.ld_corrupted)
        np.testing.assert_allclose(b.patched_ld - b.ld_corrupted, a.patched_ld - a.ld_corrupted,
                                   atol=0.05 * span + 0.02)
        assert b.ld_corrupted == pytest.approx(a.ld_corrupted, abs=0.06)


def test_bf16_position_skipping_gives_the_whole_prompt_numbers(pair, monkeypatch):
    for model in pair:
        fast = P.exact_patching(model, CLEAN, CORRUPTED, ANSWER, "resid", chunk_size=3).patched_ld
        monkeypatch.setattr(P, "prefix_keys", lambda *args: None)
        whole = P.exact_patching(model, CLEAN, CORRUPTED, ANSWER, "resid", chunk_size=3).patched_ld
        monkeypatch.undo()
        np.testing.assert_allclose(fast, whole, atol=1e-4)


def test_bf16_kl_and_curvature_are_not_rounding_noise(pair):
    fp32, bf16 = pair
    v = np.random.default_rng(1).normal(size=fp32.d_model).astype(np.float32)
    cont = S.steer_generate(fp32, PROMPT, v, 1, 0.0, max_new_tokens=4, min_new_tokens=4).token_ids
    for strength in (1e-3, 1.0):
        kl32 = S.measure_kl(fp32, PROMPT, cont, v, 1, strength).mean_kl
        kl16 = S.measure_kl(bf16, PROMPT, cont, v, 1, strength).mean_kl
        assert kl16 == pytest.approx(kl32, rel=0.05), strength
    c32 = S.estimate_curvature(fp32, v, 1, [PROMPT, CLEAN])
    c16 = S.estimate_curvature(bf16, v, 1, [PROMPT, CLEAN])
    assert c16.a == pytest.approx(c32.a, rel=0.05)
    assert c16.lipschitz == pytest.approx(c32.lipschitz, rel=0.05)
    assert bf16.hf.dtype == torch.bfloat16  # the float32 computation gave the weights back as they were
    (kl, _, _), fresh, calls = _search_then_fresh(bf16, "last")
    assert not calls
    np.testing.assert_allclose(kl[0], fresh.kl_per_token, rtol=1e-5, atol=1e-9)


def test_bf16_default_model_calibrates_within_2x_of_fp32_and_runs_relp(default_model):
    """The default model cast to bf16: a bf16 vector is accepted, calibration lands within 2x
    of fp32's (it was 850x too small when KL was measured in bf16), RelP runs."""
    import copy

    import actwidgets as aw
    from actwidgets.methods.steering_examples import ASC_CONCISE, ASC_LAYER, ASC_VERBOSE

    bf16 = aw.wrap(copy.deepcopy(default_model.hf), default_model.tokenizer, name="smollm2-bf16", dtype=torch.bfloat16)
    v = S.mean_difference(default_model, ASC_CONCISE[:4], ASC_VERBOSE[:4], ASC_LAYER)
    prompt = "Q: What is 9 + 8?\nA:"
    c32 = S.calibrate_strength(default_model, v, ASC_LAYER, [prompt], 0.05, n_tokens=8)
    c16 = S.calibrate_strength(bf16, v.to(torch.bfloat16), ASC_LAYER, [prompt], 0.05, n_tokens=8)
    assert c32.converged and c16.converged
    assert 0.5 < c16.strength / c32.strength < 2
    relp = P.attribution_patching(bf16, CLEAN, CORRUPTED, ANSWER, "mlp", relp=True)
    assert np.isfinite(relp.patched_ld).all()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_adapter_of_a_remote_models_meta_copy_is_the_same(family, tokenizer):
    """A remote model's local copy has no weights (meta device): its parts are found too,
    on the meta device or, where the family cannot run there (GPT-2, Mixtral), on a miniature."""
    import transformers

    from actwidgets._adapter import Adapter

    name, kwargs = FAMILIES[family]
    config = getattr(transformers, name)(vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0, pad_token_id=0,
                                         **kwargs)
    with torch.device("meta"):
        meta = transformers.AutoModelForCausalLM.from_config(config)
    assert Adapter.for_model(meta) == tiny(family, tokenizer).adapter


@pytest.mark.parametrize("family", ["falcon", "opt_350m", "mixtral", "gemma2"])
def test_every_widget_draws_on_unusual_families(family, tokenizer):
    import actwidgets as aw

    model = tiny(family, tokenizer)
    v = np.random.default_rng(0).normal(size=model.d_model).astype(np.float32)
    widgets = [aw.Heatmap(model, PROMPT), aw.LogitLens(model, PROMPT, target=" Paris"),
               aw.PatchingGrid(model, clean=CLEAN, corrupted=CORRUPTED, answer=ANSWER, site="mlp", method="relp"),
               aw.Steering(model, "The cat sat on the", vector=v, layer=1, kl_budget=0.05, max_new_tokens=3)]
    for widget in widgets:
        widget.wait(300)
        assert widget.status == "done", (type(widget).__name__, widget.error)
