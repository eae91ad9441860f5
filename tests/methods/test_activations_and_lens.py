"""methods/: the statistics and the lens equal a plain-torch computation."""
import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.methods.activations import residual_stats
from actwidgets.methods.lens import logit_lens

IOI = "When Mary and John went to the store, John gave a drink to"
PARIS = "The Eiffel Tower is located in the city of"


def reference_states(model, prompt):
    """[n_layers + 1, T, d]: embeddings then every block's raw (pre-final-norm) output."""
    ids = model.encode(prompt)
    blocks = model.blocks._module if hasattr(model.blocks, "_module") else model.blocks
    outputs = []
    hooks = [b.register_forward_hook(lambda m, i, o: outputs.append(o[0] if isinstance(o, tuple) else o))
             for b in blocks]
    try:
        with torch.no_grad():
            hidden = model.hf(ids, output_hidden_states=True).hidden_states
    finally:
        for h in hooks:
            h.remove()
    # output_hidden_states gives emb + blocks 0..n-2 raw; its last entry is final-normed.
    assert all(torch.equal(hidden[i + 1], outputs[i]) for i in range(model.n_layers - 1))
    return torch.stack([hidden[0]] + outputs)[:, 0].float()


# The default model once, and each tiny family once (crossing them ran the default twice).
def test_residual_stats_match_plain_torch_on_the_default_model(default_model):
    check_residual_stats(default_model)


def test_residual_stats_match_plain_torch_on_tiny_models(tiny_model):
    check_residual_stats(tiny_model)


def check_residual_stats(model):
    stats = residual_stats(model, IOI)
    ref = reference_states(model, IOI)
    np.testing.assert_allclose(stats.norm, ref.norm(dim=-1).numpy(), rtol=1e-5)
    np.testing.assert_allclose(stats.max_abs, ref.abs().amax(-1).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(stats.channel, ref.abs().argmax(-1).numpy())
    delta = ((ref[1:] - ref[:-1]).norm(dim=-1) / ref[:-1].norm(dim=-1)).numpy()
    np.testing.assert_allclose(stats.delta[1:], delta, rtol=1e-4)
    assert np.isnan(stats.delta[0]).all()
    assert stats.rows[0] == "emb" and stats.rows[-1] == str(model.n_layers - 1)
    assert stats.tokens == model.token_texts(model.encode(IOI))


def test_direction_projection_and_layer_subset(default_model):
    direction = torch.randn(576, generator=torch.Generator().manual_seed(1))
    stats = residual_stats(default_model, IOI, layers=[3, 10], direction=direction)
    ref = reference_states(default_model, IOI)
    unit = direction / direction.norm()
    np.testing.assert_allclose(stats.direction, (ref[[4, 11]] @ unit).numpy(), rtol=1e-4, atol=1e-4)
    assert stats.rows == ["3", "10"]
    # a block's change is measured against its own input, whichever layers are shown
    np.testing.assert_allclose(stats.delta[1], ((ref[11] - ref[10]).norm(dim=-1) / ref[10].norm(dim=-1)).numpy(), rtol=1e-4)


@pytest.mark.parametrize("bad, message", [
    (dict(layers=[99]), "out of range"),
    (dict(direction=np.ones(3)), "has 3 entries"),
    (dict(direction=np.full(576, np.nan)), "NaN"),
])
def test_residual_stats_bad_input(default_model, bad, message):
    with pytest.raises(aw.InputError, match=message):
        residual_stats(default_model, IOI, **bad)


def reference_lens(model, prompt, target_id):
    states = reference_states(model, prompt)
    with torch.no_grad():
        logp = torch.log_softmax(model.hf.get_output_embeddings()(model.final[0]._module(states)), -1)
    return logp


def test_lens_matches_plain_torch_on_the_default_model(default_model):
    check_lens(default_model)


def test_lens_matches_plain_torch_on_tiny_models(tiny_model):
    check_lens(tiny_model)


def check_lens(model):
    target = model.single_token(" Paris")
    lens = logit_lens(model, PARIS, target=" Paris", k=3)
    logp = reference_lens(model, PARIS, target)
    top = logp.topk(3, dim=-1)
    np.testing.assert_allclose(lens.topk_prob, top.values.exp().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(lens.topk_ids[..., 0], top.indices[..., 0].numpy())
    np.testing.assert_allclose(lens.entropy, -(logp.exp() * logp).sum(-1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(lens.target_prob, logp[..., target].exp().numpy(), rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(lens.target_rank, (logp > logp[..., target:target + 1]).sum(-1).numpy())


def test_last_layer_lens_equals_model_logits(default_model):
    lens = logit_lens(default_model, PARIS, target=" Paris")
    with torch.no_grad():
        probs = default_model.hf(default_model.encode(PARIS)).logits[0].softmax(-1)
    np.testing.assert_allclose(lens.topk_prob[-1], probs.topk(5).values.numpy(), rtol=1e-5, atol=1e-7)
    assert lens.target_rank[-1, -1] == 0 and lens.target_prob[-1, -1] > 0.5


def test_remote_local_gives_the_same_arrays(default_model):
    remote = aw.Model(default_model.lm, default_model.tokenizer, default_model.adapter, "remote-local",
                      remote="local")
    here, there = residual_stats(default_model, IOI), residual_stats(remote, IOI)
    np.testing.assert_array_equal(here.norm, there.norm)
    np.testing.assert_array_equal(here.channel, there.channel)
    lens_here, lens_there = logit_lens(default_model, PARIS, target=" Paris"), logit_lens(remote, PARIS, target=" Paris")
    np.testing.assert_array_equal(lens_here.topk_ids, lens_there.topk_ids)
    np.testing.assert_allclose(lens_here.target_prob, lens_there.target_prob)


def test_the_lens_in_chunks_of_positions_equals_the_lens_in_one_piece(default_model, monkeypatch):
    """No [tokens, vocab] tensor beyond lens.CHUNK_LOGITS: here 3 positions at a time (5 chunks of
    a 14-token prompt, the last one short), remote path included, the same arrays as one piece."""
    import actwidgets.methods.lens as lens_module

    whole = logit_lens(default_model, IOI, target=" Mary", layers=[5, 29])
    monkeypatch.setattr(lens_module, "CHUNK_LOGITS", 3 * len(default_model.tokenizer))
    remote = aw.Model(default_model.lm, default_model.tokenizer, default_model.adapter, "x", remote="local")
    for model in (default_model, remote):
        chunked = logit_lens(model, IOI, target=" Mary", layers=[5, 29])
        np.testing.assert_array_equal(chunked.topk_ids, whole.topk_ids)
        for name in ("topk_prob", "entropy", "target_prob", "target_rank"):
            # float32 matmuls of another height round differently (BLAS blocking): ~3e-5 relative
            np.testing.assert_allclose(getattr(chunked, name), getattr(whole, name), rtol=2e-4, atol=1e-6)
        assert chunked.topk_ids.shape == (2, 14, 5)


def test_layers_in_any_order_negative_or_repeated_are_sorted_and_deduplicated(tiny_llama):
    assert tiny_llama.n_layers == 3
    stats = residual_stats(tiny_llama, IOI, layers=[2, 0, -1, 0])
    assert stats.rows == ["0", "2"]
    lens = logit_lens(tiny_llama, PARIS, layers=np.array([1, 0]))
    assert lens.rows == ["0", "1"]
    with pytest.raises(aw.InputError, match="not the text 'abc'"):
        residual_stats(tiny_llama, IOI, layers="abc")


def test_a_family_without_attention_is_refused_at_load_naming_it():
    from transformers import MambaConfig, MambaForCausalLM

    hf = MambaForCausalLM(MambaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, state_size=4))
    with pytest.raises(aw.ModelLoadError, match=r"cannot find the attention module .*model_type='mamba'"):
        aw.wrap(hf, None)


def test_the_first_positions_come_first_then_the_rest(default_model, monkeypatch):
    """A long prompt's lens: the first `first` positions are reduced (and yielded) before the
    rest, NaN / -1 beyond them; each later yield adds a chunk; the last is the whole lens."""
    import actwidgets.methods.lens as lens_module

    whole = logit_lens(default_model, IOI, target=" Mary")
    monkeypatch.setattr(lens_module, "CHUNK_LOGITS", 4 * len(default_model.tokenizer))
    steps = list(lens_module.iter_lens(default_model, IOI, target=" Mary", first=3))
    assert [round(f * 14) for _, f in steps] == [3, 7, 11, 14]
    first = steps[0][0]
    np.testing.assert_array_equal(first.topk_ids[:, :3], whole.topk_ids[:, :3])
    np.testing.assert_allclose(first.entropy[:, :3], whole.entropy[:, :3], rtol=2e-4)
    assert (first.topk_ids[:, 3:] == -1).all() and np.isnan(first.entropy[:, 3:]).all()
    assert (first.target_rank[:, 3:] == -1).all() and np.isnan(first.target_prob[:, 3:]).all()
    assert np.isnan(steps[1][0].entropy[:, 7:]).all() and not np.isnan(steps[1][0].entropy[:, :7]).any()
    last = steps[-1][0]
    np.testing.assert_array_equal(last.topk_ids, whole.topk_ids)
    np.testing.assert_allclose(last.target_prob, whole.target_prob, rtol=2e-4, atol=1e-6)


def test_a_lens_stops_between_layers_when_asked_and_lets_go_of_the_model(default_model):
    import actwidgets.methods.lens as lens_module
    from actwidgets.errors import Cancelled

    asked = []
    with pytest.raises(Cancelled):
        list(lens_module.iter_lens(default_model, IOI, should_stop=lambda: asked.append(1) or len(asked) > 3))
    assert len(asked) == 4  # three layers reduced, stopped before the fourth
    assert default_model.lock.acquire(blocking=False)
    default_model.lock.release()
