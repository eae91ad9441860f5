"""Position skipping in exact patching: a cell at (layer l, position p) runs the target's
tokens from p on, over the target run's keys and values before p; where that cannot hold (a
head is patched at every position, a sliding window shorter than the prompt) whole prompts
run; a long prompt's chunk is cut to `_prefix.CHUNK_BYTES`. Each gives the naive loop's grid."""
import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.methods import patching as P

from .test_patching import ANSWER, CLEAN, CORRUPTED, naive_cell


def input_lengths(model, fn):
    """fn()'s result and the token count of every forward the model ran meanwhile."""
    lengths = []
    hook = model.hf.register_forward_pre_hook(
        lambda m, args, kwargs: lengths.append((args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True)
    try:
        return fn(), lengths
    finally:
        hook.remove()


def full_prompt_grid(model, site, monkeypatch, **kwargs):
    """The grid on the path without position skipping (every chunk runs the whole prompt)."""
    with monkeypatch.context() as m:
        m.setattr(P, "prefix_keys", lambda *args: None)
        return P.exact_patching(model, CLEAN, CORRUPTED, ANSWER, site, **kwargs)


@pytest.mark.parametrize("site", ["resid", "attn", "mlp"])
def test_position_skipping_runs_only_the_tail_and_changes_nothing(tiny_llama, site, monkeypatch):
    """Chunks run the corrupted tokens from their first patched position on (two runs cache
    the whole prompt), and the grid is the one the whole-prompt path and the naive loop give."""
    result, lengths = input_lengths(tiny_llama, lambda: P.exact_patching(tiny_llama, CLEAN, CORRUPTED, ANSWER, site,
                                                                        chunk_size=4))
    assert lengths[:2] == [14, 14] and max(lengths[2:]) <= 14 - 9 and min(lengths[2:]) == 1, lengths
    np.testing.assert_allclose(result.patched_ld, full_prompt_grid(tiny_llama, site, monkeypatch, chunk_size=4).patched_ld,
                               atol=1e-5)
    problem = P.prepare(tiny_llama, CLEAN, CORRUPTED, ANSWER)
    for layer, col in [(0, 9), (1, 11), (2, 13), (2, 10)]:
        assert result.patched_ld[layer, col] == pytest.approx(naive_cell(tiny_llama, problem, layer, col, site), abs=1e-4)


def test_heads_and_short_sliding_windows_run_the_whole_prompt(tokenizer):
    """A head is patched at every position, and a sliding window shorter than the prompt has
    dropped keys the prefix would need: both run whole prompts, and still equal the naive loop."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=8)
    windowed = aw.wrap(MistralForCausalLM(config), tokenizer, name="tiny-mistral-window-8")
    problem = P.prepare(windowed, CLEAN, CORRUPTED, ANSWER)
    for site in ("resid", "heads"):
        result, lengths = input_lengths(windowed, lambda: P.exact_patching(windowed, CLEAN, CORRUPTED, ANSWER, site,
                                                                          chunk_size=4))
        assert set(lengths) == {14}, (site, lengths)
        naive = [[naive_cell(windowed, problem, layer, col, site) for col in range(len(result.cols))] for layer in range(2)]
        np.testing.assert_allclose(result.patched_ld, naive, atol=1e-4)


@pytest.mark.parametrize("site", ["resid", "heads"])
def test_a_long_prompt_runs_fewer_rows_at_once_and_the_same_grid(tiny_llama, site, monkeypatch):
    """A patched row holds every layer's keys and values over the prompt: on a long prompt
    64 rows at once took 3.4 GB (default model, 1,026 tokens), so a chunk is cut to what
    `_prefix.CHUNK_BYTES` holds, with the same values."""
    from actwidgets.methods import _prefix

    filler = " ".join(["The old keeper counted the boats at dawn."] * 8)
    clean, corrupted = f"{filler} {CLEAN}", f"{filler} {CORRUPTED}"
    whole = P.exact_patching(tiny_llama, clean, corrupted, ANSWER, site, chunk_size=64)
    monkeypatch.setattr(_prefix, "CHUNK_BYTES", 400_000)
    widths = []
    batch = P._patched_batch
    monkeypatch.setattr(P, "_patched_batch", lambda *a: widths.append(len(a[2])) or batch(*a))
    cut = P.exact_patching(tiny_llama, clean, corrupted, ANSWER, site, chunk_size=64)
    n_tokens = tiny_llama.encode(clean).shape[1]
    assert n_tokens > 80 and 1 <= max(widths) <= 4 and len(widths) > 10, (n_tokens, widths)
    np.testing.assert_allclose(cut.patched_ld, whole.patched_ld, atol=1e-5)
