"""Attention patterns against `output_attentions=True` of a plain HF forward under eager attention
(switched by transformers itself, not by actwidgets; Falcon, which cannot switch, as a copy built
eager), on the default model and on every family's tiny model; bf16 models too. Also: rows sum to 1, the
causal mask, pooling, the user's attention implementation restored, memory bounded per layer,
and bad inputs as sentences."""
from __future__ import annotations

import copy
import dataclasses
import re
import weakref

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from actwidgets.errors import InputError
from actwidgets.methods import attention as A
from actwidgets.methods.attention import attention_patterns, head_pattern
from actwidgets.model import _cast

from families import BF16, FAMILIES, tiny

IOI = "When Mary and John went to the store, John gave a drink to"  # 14 tokens on the default model
PROMPT = "The Eiffel Tower is located in the city of"
# bf16 has 8 significant bits: one unit at a weight of 1.0 is 2**-8 = 0.0039. Both sides compute
# the same bf16 softmax, so they should agree far better; this bounds rounding of the read-out.
BF16_ATOL = 2**-8


def eager_reference(hf, ids) -> np.ndarray:
    """[L, H, T, T]: a plain HF forward with output_attentions=True under eager attention: the
    model switched by transformers' own `set_attn_implementation` (and back), or, for a class
    that cannot switch (Falcon), a fresh copy built eager from the same config and weights."""
    if type(hf)._can_set_attn_implementation():
        before = hf.config._attn_implementation
        hf.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                attentions = hf(ids, output_attentions=True).attentions
        finally:
            hf.set_attn_implementation(before)
    else:
        ref = AutoModelForCausalLM.from_config(copy.deepcopy(hf.config), attn_implementation="eager").eval()
        dtype = next(hf.parameters()).dtype
        if dtype != torch.float32:
            _cast(ref, dtype)
        ref.load_state_dict(hf.state_dict())
        assert ref.config._attn_implementation == "eager"
        with torch.no_grad():
            attentions = ref(ids, output_attentions=True).attentions
    return torch.stack([a[0] for a in attentions]).float().numpy()


def check_against(result, full: np.ndarray, atol: float) -> None:
    np.testing.assert_allclose(result.overview, full[result.layers], atol=atol)  # T < 32: not pooled
    np.testing.assert_allclose(result.patterns, full[result.layers], atol=atol)
    np.testing.assert_allclose(result.pattern, full[result.head[0], result.head[1]], atol=atol)
    np.testing.assert_allclose(result.from_query, full[result.layers][:, :, result.query, :], atol=atol)


def check_is_a_pattern(weights: np.ndarray, atol: float = 1e-5) -> None:
    """Rows sum to 1; nothing above the diagonal (a key after its query)."""
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=atol)
    above = np.triu(np.ones(weights.shape[-2:], bool), 1)
    assert np.all(weights[..., above] == 0)


def test_default_model_equals_eager_output_attentions(default_model):
    ids = default_model.encode(IOI)
    assert ids.shape[1] == 14
    result = attention_patterns(default_model, IOI, head=(9, 4), query=9)
    full = eager_reference(default_model.hf, ids)
    assert result.overview.shape == (30, 9, 14, 14) and result.n_heads == 9 and result.query == 9
    check_against(result, full, 1e-5)
    check_is_a_pattern(result.patterns)
    assert result.tokens[1] == " Mary" and result.rows[0] == "0"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_equals_eager_output_attentions(family, tokenizer):
    model = tiny(family, tokenizer)
    before = model.hf.config._attn_implementation
    result = attention_patterns(model, PROMPT, head=(1, 3), query=-3)
    assert model.hf.config._attn_implementation == before
    check_against(result, eager_reference(model.hf, model.encode(PROMPT)), 1e-5)
    check_is_a_pattern(result.patterns)
    one = head_pattern(model, PROMPT, (0, 2))
    np.testing.assert_array_equal(one.pattern, result.patterns[0, 2])


@pytest.mark.parametrize("family", BF16)
def test_bf16_equals_eager_output_attentions(family, tokenizer):
    model = tiny(family, tokenizer, torch.bfloat16)
    result = attention_patterns(model, PROMPT, head=(1, 0))
    check_against(result, eager_reference(model.hf, model.encode(PROMPT)), BF16_ATOL)
    check_is_a_pattern(result.patterns, atol=1e-2)  # a bf16 softmax's row sums carry its rounding


def naive_pool(full: np.ndarray, edges: list[int]) -> np.ndarray:
    """[..., T, T] -> [..., n, n]: the mean over each query bin of the sum over each key bin."""
    cells = [[full[..., edges[i]:edges[i + 1], edges[j]:edges[j + 1]].sum(-1).mean(-1)
              for j in range(len(edges) - 1)] for i in range(len(edges) - 1)]
    return np.moveaxis(np.array(cells), (0, 1), (-2, -1))


LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 4)


def queries_at_a_time(monkeypatch, model, prompt: str, step: int) -> None:
    """Make a layer's scores and weights for `step` queries all that CHUNK_BYTES allows."""
    n_tokens = model.encode(prompt).shape[1]
    monkeypatch.setattr(A, "CHUNK_BYTES", A.CELL_BYTES * model.n_heads * n_tokens * step)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_long_prompt_runs_in_parts_over_queries_and_equals_eager_output_attentions(family, tokenizer, monkeypatch):
    """7 queries per trace, each going on from the earlier ones' keys and values: the pooled
    overview, every head, the selected one and a query's row equal one whole eager forward
    (bins cross the parts' edges; GPT-Neo's local layer keeps only its last 8 keys)."""
    model = tiny(family, tokenizer)
    ids = model.encode(LONG)
    n = ids.shape[1]
    queries_at_a_time(monkeypatch, model, LONG, 7)
    runs = []
    hook = model.hf.get_input_embeddings().register_forward_hook(lambda m, args, out: runs.append(args[0].shape[1]))
    try:
        result = attention_patterns(model, LONG, overview_size=8, full_max=16, head=(1, 3), query=-3)
    finally:
        hook.remove()
    assert runs == [7] * (n // 7) + ([n % 7] if n % 7 else [])
    full = eager_reference(model.hf, ids)
    np.testing.assert_allclose(result.overview, naive_pool(full, [*result.overview_bins, n]), atol=1e-5)
    np.testing.assert_allclose(result.patterns, naive_pool(full, [*result.pattern_bins, n]), atol=1e-5)
    np.testing.assert_array_equal(result.pattern, result.patterns[1, 3])
    np.testing.assert_allclose(result.from_query, full[:, :, n - 3], atol=1e-5)
    np.testing.assert_array_equal(A.head_pattern(model, LONG, (1, 3), full_max=16).pattern, result.pattern)


@pytest.mark.parametrize("family", BF16)
def test_bf16_in_parts_equals_eager_output_attentions(family, tokenizer, monkeypatch):
    model = tiny(family, tokenizer, torch.bfloat16)
    queries_at_a_time(monkeypatch, model, PROMPT, 3)
    result = attention_patterns(model, PROMPT, head=(1, 0))
    check_against(result, eager_reference(model.hf, model.encode(PROMPT)), BF16_ATOL)


def test_the_default_model_in_parts_reads_queries_x_keys_a_layer_at_a_time(default_model, monkeypatch):
    """A layer's weights are [heads, queries of this part, keys so far], and the result is the
    whole forward's (64 tokens in parts of 16)."""
    prompt = " ".join([IOI] * 5)
    whole = attention_patterns(default_model, prompt, head=(9, 4))
    queries_at_a_time(monkeypatch, default_model, prompt, 16)
    shapes = []
    attn = default_model.part(default_model.blocks[0], "attn")._module
    hook = attn.register_forward_hook(lambda m, args, out: shapes.append(tuple(out[1].shape)))
    try:
        parts = attention_patterns(default_model, prompt, head=(9, 4))
    finally:
        hook.remove()
    n = default_model.encode(prompt).shape[1]
    assert n > 48 and shapes == [(1, 9, min(16, n - s), min(s + 16, n)) for s in range(0, n, 16)]
    for field in ("overview", "pattern", "from_query", "patterns"):
        np.testing.assert_allclose(getattr(parts, field), getattr(whole, field), atol=1e-5, err_msg=field)


def test_pooling_keeps_rows_summing_to_one_and_names_its_bins(tiny_llama):
    prompt = " ".join(["the quick brown fox jumps over the lazy dog"] * 8)
    ids = tiny_llama.encode(prompt)
    n = ids.shape[1]
    result = attention_patterns(tiny_llama, prompt, overview_size=8, full_max=16, head=(2, 1))
    width = -(-n // 8)
    assert n > 16 and result.overview.shape[-1] == len(result.overview_bins) == -(-n // width)
    np.testing.assert_array_equal(result.overview_bins, np.arange(0, n, width))
    np.testing.assert_allclose(result.overview.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(result.pattern.sum(-1), 1.0, atol=1e-5)
    full = eager_reference(tiny_llama.hf, ids)
    np.testing.assert_allclose(result.overview, naive_pool(full, [*result.overview_bins, n]), atol=1e-5)
    assert np.all(result.overview[..., np.triu(np.ones(result.overview.shape[-2:], bool), 1)] == 0)


@pytest.mark.parametrize("family", ["llama", "falcon"])  # set_attn_implementation, and the config switch
def test_the_users_attention_implementation_is_restored_even_after_an_error(family, tokenizer, monkeypatch):
    model = tiny(family, tokenizer)
    before = model.hf.config._attn_implementation
    assert before == "sdpa"
    seen = []
    real_key_bins = A.key_bins

    def failing_key_bins(weights, *args):
        seen.append(model.hf.config._attn_implementation)
        raise RuntimeError("boom inside the trace")

    monkeypatch.setattr(A, "key_bins", failing_key_bins)
    with pytest.raises(Exception, match="boom inside the trace"):
        attention_patterns(model, PROMPT)
    assert seen == ["eager"] and model.hf.config._attn_implementation == before
    monkeypatch.setattr(A, "key_bins", real_key_bins)
    attention_patterns(model, PROMPT)
    assert model.hf.config._attn_implementation == before


def test_an_eager_model_stays_eager(tokenizer):
    model = tiny("gemma2", tokenizer)  # transformers picks eager for Gemma-2 itself
    assert model.hf.config._attn_implementation == "eager"
    attention_patterns(model, PROMPT)
    assert model.hf.config._attn_implementation == "eager"


def test_remote_local_runs_and_remote_ndif_says_why_not(tiny_llama):
    here = attention_patterns(tiny_llama, PROMPT, head=(1, 1))
    local = attention_patterns(dataclasses.replace(tiny_llama, remote="local"), PROMPT, head=(1, 1))
    np.testing.assert_array_equal(local.overview, here.overview)
    np.testing.assert_array_equal(local.pattern, here.pattern)
    with pytest.raises(InputError, match="cannot be done to NDIF's copy of tiny-llama: load it locally"):
        attention_patterns(dataclasses.replace(tiny_llama, remote=True), PROMPT)


@pytest.mark.parametrize("kwargs, message", [
    (dict(head=(3, 0)), "head's layer must be a whole number from -3 to 2, not 3."),
    (dict(head=(0, 4)), "head's index must be a whole number from 0 to 3, not 4."),
    (dict(head="0,1"), "head must be a pair (layer, head), e.g. (0, 0), not '0,1'."),
    (dict(head=(0, 1.5)), "head's index must be a whole number from 0 to 3, not 1.5."),
    (dict(layers=[1, 2], head=(0, 0)), "head's layer 0 is not among the layers shown (1, 2)."),
    (dict(query=10), "query must be a whole number from -10 to 9, not 10."),
    (dict(query=True), "query must be a whole number from -10 to 9, not True."),
    (dict(layers=[5]), "Layer 5 is out of range: tiny-llama has 3 layers (0..2)."),
    (dict(overview_size=0), "overview_size must be a whole number from 1 to 256, not 0."),
])
def test_bad_inputs_are_sentences(tiny_llama, kwargs, message):
    assert tiny_llama.encode(PROMPT).shape[1] == 10
    with pytest.raises(InputError, match=re.escape(message)):
        attention_patterns(tiny_llama, PROMPT, **kwargs)


def test_an_empty_prompt_is_a_sentence(tiny_llama):
    with pytest.raises(InputError, match="prompt is empty"):
        attention_patterns(tiny_llama, "  ")


def test_one_layer_of_weights_alive_at_a_time(tokenizer):
    """Each layer's [H, T, T] is reduced as it runs and let go: when a layer's attention
    finishes, at most the previous layer's weights are still referenced (the trace body's
    loop variable), never all of them (as a view kept in a list would do)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import actwidgets as aw

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                         num_attention_heads=4, num_key_value_heads=2)
    model = aw.wrap(LlamaForCausalLM(config), tokenizer, name="tiny-6")
    refs, alive = [], []

    def hook(module, args, output):
        alive.append(sum(ref() is not None for ref in refs))
        refs.append(weakref.ref(output[1]))

    handles = [model.part(block, "attn")._module.register_forward_hook(hook) for block in model.blocks]
    try:
        attention_patterns(model, PROMPT, keep_bytes=0)
    finally:
        for h in handles:
            h.remove()
    assert len(alive) >= 5 and max(alive) <= 1, alive  # the trace stops inside the last layer it reads


def test_a_prompt_too_long_for_eager_attention_is_a_sentence_before_any_trace(tiny_llama, monkeypatch):
    """Where the prompt must run whole (its model cannot go on from a cache), above EAGER_BYTES
    of [heads, T, T] weights the view refuses, naming the most it reads, and runs nothing (a
    trace would take the kernel past its memory); below it, it runs."""
    import actwidgets.methods.attention as attention

    prompt = "When Mary and John went to the store, John gave a drink to"
    n_tokens, heads = tiny_llama.encode(prompt).shape[1], tiny_llama.n_heads
    monkeypatch.setattr(attention, "plain_cache", lambda hf: False)
    queries_at_a_time(monkeypatch, tiny_llama, prompt, 2)
    monkeypatch.setattr(attention, "EAGER_BYTES", attention.CELL_BYTES * heads * (n_tokens - 1) ** 2)
    monkeypatch.setattr(type(tiny_llama), "trace", lambda *a, **k: pytest.fail("traced"))
    for run in (lambda: attention.attention_patterns(tiny_llama, prompt),
                lambda: attention.head_pattern(tiny_llama, prompt, (0, 0))):
        with pytest.raises(InputError, match=f"{n_tokens}-token prompt need .* at most {n_tokens - 1} tokens"):
            run()
    monkeypatch.undo()
    monkeypatch.setattr(attention, "EAGER_BYTES", attention.CELL_BYTES * heads * n_tokens ** 2)
    assert attention.attention_patterns(tiny_llama, prompt).overview.shape[1] == heads
