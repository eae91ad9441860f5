"""methods/prefix_cache.py: the prompt's prefix keys and values reused across strengths.

Greedy tokens with the cache (first run, which fills it, and later runs, which read it)
equal plain ``generate`` with a test-written hook and no cache, on the default model and
every tiny family (fp32, and bf16 on four); ``positions="all"`` never reads it; measured
KL with the cache equals a plain-torch teacher-forced KL; an edited weight, the memory
bound and a model going away each drop entries. Which forward ran how many positions is
watched with a hook on block 0: a run that reads the cache starts with one position.
"""
import contextlib
import copy
import gc

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, MistralConfig

import actwidgets as aw
from actwidgets.methods import steering as st
from actwidgets.methods import steering_examples as ex
from actwidgets.methods import prefix_cache

from families import BF16, FAMILIES, first, tiny

PROMPT = "Q: What is 9 + 8?\nA:"
LONG = "The cat sat on the mat, and then the dog ran all the way to the park to find a ball"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Many small forwards: one torch thread on shared cores (see test_steering_methods)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@contextlib.contextmanager
def widths(model):
    """The number of positions of each forward through block 0, in order."""
    seen = []
    handle = block(model, 0).register_forward_hook(lambda m, i, o: seen.append(first(o).shape[1]))
    try:
        yield seen
    finally:
        handle.remove()


def block(model, layer):
    return model.hf.get_submodule(f"{model.adapter.blocks}.{layer}")


def reference(model, prompt, v, layers, strength, n, positions="last", mode="add"):
    """Plain `generate`, no prefix cache, the edit in a hook written here."""
    ids = model.encode(prompt)
    vec = (v / v.norm() if mode == "ablate" else v).to(model.hf.dtype)
    shift, project = (strength, 0.0) if mode == "add" else (0.0, strength)
    cut = -1 if positions == "last" else 0

    def hook(module, args, output):
        h = first(output).clone()
        h[:, cut:] = st.steer(h[:, cut:], vec, shift, project)
        return h if torch.is_tensor(output) else (h,) + tuple(output[1:])

    handles = [block(model, layer).register_forward_hook(hook) for layer in layers]
    try:
        with torch.no_grad():
            out = model.hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                                    do_sample=False, pad_token_id=0)
    finally:
        for handle in handles:
            handle.remove()
    return out[0, ids.shape[1]:].tolist()


def check_generation(model, v, layers, strength, prompt=PROMPT, n=6, **kwargs):
    """Cached runs equal the reference; returns the block-0 widths of a run after the first."""
    want = reference(model, prompt, v, layers, strength, n, **kwargs)
    assert st.steer_generate(model, prompt, v, layers, strength, max_new_tokens=n, min_new_tokens=n,
                             **kwargs).token_ids == want
    with widths(model) as seen:
        got = st.steer_generate(model, prompt, v, layers, strength, max_new_tokens=n, min_new_tokens=n, **kwargs)
    assert got.token_ids == want
    return seen


def test_generation_reuses_the_prefix_default_model(default_model):
    m, layer = default_model, ex.ASC_LAYER
    v = st.mean_difference(m, ex.ASC_CONCISE[:3], ex.ASC_VERBOSE[:3], layer)
    n_prompt = m.encode(PROMPT).shape[1]
    for strength in (0.0, -0.6, 0.4):  # slider moves on one prompt
        seen = check_generation(m, v, [layer], strength, n=8)
        assert seen[0] == 1, seen  # the prompt before its last token came from the cache
    seen = check_generation(m, v, list(range(0, 30, 3)), 0.8, n=8, mode="ablate", positions="all")
    assert seen[0] == n_prompt  # "all" edits the prefix: run whole
    seen = check_generation(m, v, [layer, layer + 2], 0.8, n=8, mode="ablate")
    assert seen[0] == 1


@pytest.mark.parametrize("family,dtype", [(f, torch.float32) for f in FAMILIES] + [(f, torch.bfloat16) for f in BF16])
def test_generation_reuses_the_prefix_every_family(family, dtype, tokenizer):
    m = tiny(family, tokenizer, dtype)
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(7))
    for strength in (0.0, 3.0, -2.0):
        assert check_generation(m, v, [1], strength, prompt=LONG)[0] == 1
    assert check_generation(m, v, [0, 1], 0.7, prompt=LONG, mode="ablate", positions="all")[0] == \
        m.encode(LONG).shape[1]


def test_sliding_window_layers_are_forked_safely(tokenizer):
    """A window shorter than the prompt: the cached layers hold only its last positions."""
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=5, pad_token_id=0)
    torch.manual_seed(0)
    m = aw.wrap(AutoModelForCausalLM.from_config(config), tokenizer, name="tiny-mistral-window5")
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(8))
    for strength in (2.0, -1.0):
        assert check_generation(m, v, [1], strength, prompt=LONG, n=10)[0] == 1


# --- measured KL -------------------------------------------------------------------------

def kl_reference(model, prompt, cont, v, layer, strength):
    """Teacher-forced KL(unsteered || steered) per continuation token: plain float32
    forwards of the whole text, no cache, float64 log-softmax."""
    hf = copy.deepcopy(model.hf).float()
    n = model.encode(prompt).shape[1]
    ids = torch.cat([model.encode(prompt)[0], torch.tensor(cont)])[None]

    def hook(module, args, output):
        h = first(output).clone()
        h[:, n - 1:] += strength * v
        return h if torch.is_tensor(output) else (h,) + tuple(output[1:])

    with torch.no_grad():
        plain = torch.log_softmax(hf(ids).logits[0, n - 1:-1].double(), -1)
        handle = hf.get_submodule(f"{model.adapter.blocks}.{layer}").register_forward_hook(hook)
        steered = torch.log_softmax(hf(ids).logits[0, n - 1:-1].double(), -1)
        handle.remove()
    return (plain.exp() * (plain - steered)).sum(-1).numpy()


@pytest.mark.parametrize("which", ["default", "llama", "gemma2-bf16"])
def test_measured_kl_reuses_the_prefix(which, default_model, tokenizer):
    if which == "default":
        m, layer = default_model, ex.ASC_LAYER
        v = st.mean_difference(m, ex.ASC_CONCISE[:3], ex.ASC_VERBOSE[:3], layer)
        strengths = (0.5, -2.0)
    else:
        family = which.split("-")[0]
        m, layer = tiny(family, tokenizer, torch.bfloat16 if "bf16" in which else torch.float32), 1
        v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(9))
        strengths = (1.0, -3.0)
    cont = st.steer_generate(m, PROMPT, v, layer, 0.0, max_new_tokens=6, min_new_tokens=6).token_ids
    n_prompt = m.encode(PROMPT).shape[1]
    for strength in strengths:
        with widths(m) as seen:
            got = st.measure_kl(m, PROMPT, cont, v, layer, strength)
        # bf16 weights are measured in float32: another entry, filled by the first measurement
        fill = [n_prompt - 1] if "bf16" in which and strength == strengths[0] else []
        assert seen == fill + [len(cont) + 1]  # then the last prompt position and the continuation only
        # the prefix in its own forward moves float32 sums in the last bits: ~1e-5 nats at KL 0.4
        np.testing.assert_allclose(got.kl_per_token, kl_reference(m, PROMPT, cont, v, layer, strength),
                                   rtol=1e-4, atol=1e-7)
    together = st.measure_kl_strengths(m, PROMPT, cont, v, layer, list(strengths))
    for strength, one in zip(strengths, together):
        # a batch of strengths is another matmul shape: some CPUs' kernels round it differently
        np.testing.assert_allclose(one.kl_per_token, st.measure_kl(m, PROMPT, cont, v, layer, strength).kl_per_token,
                                   rtol=1e-4, atol=1e-7)
    with widths(m) as seen:
        st.measure_kl(m, PROMPT, cont, v, layer, 1.0, positions="all")
    assert seen == [n_prompt + len(cont)]  # the whole text: "all" edits the prompt too
    if which == "gemma2-bf16":  # measuring in float32 casts the weights and back: still one entry each
        with widths(m) as seen:
            st.steer_generate(m, PROMPT, v, layer, 1.0, max_new_tokens=2, min_new_tokens=2)
        assert seen[0] == 1


# --- keeping the store right --------------------------------------------------------------

def test_an_edited_weight_drops_the_entry(tokenizer):
    hf = copy.deepcopy(tiny("llama", tokenizer).hf)
    m = aw.wrap(hf, tokenizer, name="edited")
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(10))
    check_generation(m, v, [1], 2.0, prompt=LONG)
    with torch.no_grad():
        m.hf.model.layers[0].self_attn.k_proj.weight.mul_(1.5)  # the cached keys are now wrong
    n_prompt = m.encode(LONG).shape[1]
    with widths(m) as seen:
        st.steer_generate(m, LONG, v, [1], 2.0, max_new_tokens=2)
    assert seen[0] == n_prompt - 1  # recomputed, not read
    assert check_generation(m, v, [1], 2.0, prompt=LONG)[0] == 1  # and equal to a fresh run on the new weights
    prefix_cache.clear(m)
    with widths(m) as seen:
        st.steer_generate(m, LONG, v, [1], 2.0, max_new_tokens=2)
    assert seen[0] == n_prompt - 1


def test_the_store_stays_within_its_bound_and_follows_its_models(tokenizer, monkeypatch):
    m = aw.wrap(copy.deepcopy(tiny("gpt2", tokenizer).hf), tokenizer, name="bounded")
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(11))
    prompts = [f"Prompt number {i} is about {w}" for i, w in enumerate(("cats", "dogs", "birds"))]
    prefix_cache.clear()
    st.steer_generate(m, prompts[0], v, 1, 1.0, max_new_tokens=1)
    one = prefix_cache.cached_bytes()
    n = m.encode(prompts[0]).shape[1] - 1
    assert one == 2 * m.n_layers * n * m.d_model * 4  # keys and values, every layer, float32
    monkeypatch.setattr(prefix_cache, "MAX_BYTES", 2 * one)
    for p in prompts:
        st.steer_generate(m, p, v, 1, 1.0, max_new_tokens=1)
    assert prefix_cache.cached_bytes() == 2 * one  # the first prompt's went: least recently used
    with widths(m) as seen:
        st.steer_generate(m, prompts[0], v, 1, 1.0, max_new_tokens=1)
    assert seen[0] == n
    with widths(m) as seen:
        st.steer_generate(m, prompts[2], v, 1, 1.0, max_new_tokens=1)
    assert seen[0] == 1
    monkeypatch.setattr(prefix_cache, "MAX_BYTES", one - 1)  # nothing fits: computed each time, nothing kept
    prefix_cache.clear()
    st.steer_generate(m, prompts[1], v, 1, 1.0, max_new_tokens=1)
    assert prefix_cache.cached_bytes() == 0
    monkeypatch.setattr(prefix_cache, "MAX_BYTES", 2 * one)
    st.steer_generate(m, prompts[1], v, 1, 1.0, max_new_tokens=1)
    assert prefix_cache.cached_bytes() == one
    del m
    gc.collect()
    assert prefix_cache.cached_bytes() == 0  # the model went, and its entries with it


# --- action entropy (EAST's curves) ---------------------------------------------------------

@pytest.mark.parametrize("which", ["default", "llama", "gemma2-bf16"])
def test_action_entropy_reuses_the_prefix_and_equals_plain_torch(which, default_model, tokenizer):
    """Every strength and temperature of EAST's curves edits the last prompt position only: after
    the first, each runs that one position over the cached prefix, and gives plain torch's entropy."""
    if which == "default":
        m, layer = default_model, ex.EAST_LAYER
    else:
        m, layer = tiny(which.split("-")[0], tokenizer, torch.bfloat16 if "bf16" in which else torch.float32), 1
    v = torch.randn(m.d_model, generator=torch.Generator().manual_seed(11))
    prompt, actions = ex.EAST_EPISODES[1][3], ex.EAST_ACTIONS
    ids = m.encode(prompt)
    action_ids = [m.single_token(a) for a in actions]
    st.action_entropy(m, prompt, actions)  # fills the cache
    for strength, temperature in ((0.0, 1.0), (4.0, 1.0), (0.0, 3.0), (-2.0, 0.5)):
        with widths(m) as seen:
            got = st.action_entropy(m, prompt, actions, v, layer, strength, temperature)
        assert seen == [1]

        def hook(module, args, output):
            h = first(output).clone()
            h[:, -1] += strength * v.to(h.dtype)
            return h if torch.is_tensor(output) else (h,) + tuple(output[1:])

        handle = block(m, layer).register_forward_hook(hook)
        with torch.no_grad():
            logits = m.hf(ids).logits[0, -1, action_ids].float() / temperature
        handle.remove()
        logp = torch.log_softmax(logits, -1)
        want = float(-(logp.exp() * logp).sum())
        # bf16: the prefix in its own forward rounds differently from the whole prompt's
        assert got == pytest.approx(want, abs=2e-2 if "bf16" in which else 1e-5)
