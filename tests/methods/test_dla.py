"""Direct logit attribution: the parts add up to the model's own logit (before any soft-cap or
scaling) on the default model and on every family, agree with a plain-torch reference head by
head, decompose a logit difference, refuse bad inputs in words, and pick out the IOI heads that
exact head patching finds."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.methods import patching as P
from actwidgets.methods.dla import logit_attribution

from families import BF16, FAMILIES, first, run_with_hooks, tiny

PROMPT = "The Eiffel Tower is located in the city of"
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
NOT_ADDITIVE = "opt_350m"  # post-LN: the residual stream is normalised after every sublayer


def pre_transform_logits(model: aw.Model, ids) -> torch.Tensor:
    """[T, V] logits as the unembedding writes them (before Gemma-2's cap, Cohere's scale), by a hook."""
    got = {}
    unembed = model.hf.get_output_embeddings()
    with torch.no_grad():
        run_with_hooks([(unembed, "post", lambda m, i, o: got.__setitem__("x", o[0].detach().float()))],
                       lambda: model.hf(ids))
    return got["x"]


def check_sums(result, model, ids, target, wrong=None):
    logits = pre_transform_logits(model, ids)[result.position]
    real = float(logits[target] - (logits[wrong] if wrong is not None else 0.0))
    assert result.logit == pytest.approx(real, abs=1e-5)
    assert result.total == pytest.approx(real, abs=1e-4)
    np.testing.assert_allclose(result.heads.sum(1) + result.attn_bias, result.attn, atol=1e-5)


def test_parts_sum_to_the_default_models_logit(default_model):
    ids = default_model.encode(PROMPT)
    paris = default_model.single_token(" Paris")
    result = logit_attribution(default_model, PROMPT, " Paris")
    assert result.position == ids.shape[1] - 1 and result.target_text == " Paris" and result.note == ""
    assert result.heads.shape == (default_model.n_layers, default_model.n_heads)
    assert result.attn.shape == result.mlp.shape == result.attn_bias.shape == (default_model.n_layers,)
    with torch.no_grad():  # the model's own output: no transform on SmolLM2
        real = float(default_model.hf(ids).logits[0, -1, paris])
    assert result.total == pytest.approx(real, abs=1e-4)
    check_sums(result, default_model, ids, paris)
    assert result.norm_bias == 0.0  # RMSNorm, no unembedding bias


@pytest.mark.parametrize("family", list(FAMILIES))
def test_parts_sum_to_the_logit_on_every_family(family, tokenizer):
    model = tiny(family, tokenizer)
    ids = model.encode(PROMPT)
    if family == NOT_ADDITIVE:
        with pytest.raises(aw.InputError, match=r"needs a residual stream that is a sum of the blocks' outputs.*"
                                                r"post-LN.*do_layer_norm_before=False"):
            logit_attribution(model, PROMPT, " Paris")
        return
    for position in (-1, 4):
        result = logit_attribution(model, PROMPT, " Paris", position=position)
        check_sums(result, model, ids, model.single_token(" Paris"))
    if model.adapter.logit_transform:
        assert "before" in result.note and re.search(r"soft-caps|multiplies", result.note)
    else:
        assert result.note == ""


@pytest.mark.parametrize("name,config", [
    ("granite x0.5", ("GraniteConfig", dict(num_key_value_heads=2, residual_multiplier=0.5, logits_scaling=4.0))),
    ("opt project_out", ("OPTConfig", dict(ffn_dim=128, word_embed_proj_dim=32))),
    ("gpt2 ln_f bias", None),
])
def test_multipliers_projections_and_norm_biases(name, config, tokenizer):
    """What the tiny families leave out: a residual multiplier (Granite's real models use 0.22),
    a projection after the final norm (OPT with word_embed_proj_dim < hidden_size, pre-LN), and a
    final norm whose bias is far from 0 (GPT-2's ln_f, randomised), which `norm_bias` carries."""
    import transformers

    if config is None:
        hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2,
                                                                  n_head=4, bos_token_id=0, eos_token_id=0))
        with torch.no_grad():
            hf.transformer.ln_f.bias.normal_(0, 1.0)
    else:
        cls, extra = config
        base = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)
        if cls == "OPTConfig":
            base.pop("intermediate_size")
        torch.manual_seed(0)
        hf = transformers.AutoModelForCausalLM.from_config(getattr(transformers, cls)(
            vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0, pad_token_id=0, **base, **extra)).eval()
    model = aw.wrap(hf, tokenizer, name=name)
    ids = model.encode(PROMPT)
    result = logit_attribution(model, PROMPT, " Paris", wrong=" London")
    check_sums(result, model, ids, model.single_token(" Paris"), model.single_token(" London"))
    if config is None:
        assert abs(result.norm_bias) > 1e-3  # the bias is there, and counted once


# --- an independent reference: hooks on the HF modules, its own simpler rules -------------

POST_NORMS = {"gemma2": ("post_attention_layernorm", "post_feedforward_layernorm"),
              "gemma3_text": ("post_attention_layernorm", "post_feedforward_layernorm"),
              "olmo2": ("post_attention_layernorm", "post_feedforward_layernorm")}
MLP_OUT = {"bloom": "mlp.dense_4h_to_h", "opt": "fc2"}  # Bloom's MLP module adds the residual itself
OUT_PROJ = ("o_proj", "out_proj", "dense", "c_proj")


def frozen_norm(module, x):
    """x -> gain * c(x) / sqrt(mean(c(x)^2) + eps), as a function of a new input, scale from x."""
    name = type(module).__name__
    centred = "LayerNorm" in name
    eps = next((v for v in (getattr(module, a, None) for a in ("variance_epsilon", "eps", "epsilon"))
                if isinstance(v, float)), 1e-5)
    weight = getattr(module, "weight", None)
    gain = 1.0 if weight is None else (1.0 + weight.detach().float() if "Gemma" in name else weight.detach().float())
    c = (lambda y: y - y.mean(-1, keepdim=True)) if centred else (lambda y: y)
    scale = torch.rsqrt(c(x).pow(2).mean() + eps)
    return lambda y: gain * scale * c(y)


def reference(model: aw.Model, family: str, prompt: str, target: int, wrong: int | None, position: int):
    hf = model.hf
    blocks = next(m for m in hf.modules() if isinstance(m, torch.nn.ModuleList))
    seen, norms_run = {}, []

    def grab(key, take_input=False):
        def hook(m, args, out):
            seen[key] = (args[0] if take_input else first(out)).detach().float().clone()
        return hook

    hooks = [(blocks[0], "pre", lambda m, args: seen.__setitem__("embed", args[0].detach().float().clone()))]
    for layer, block in enumerate(blocks):
        named = dict(block.named_modules())
        attention = [n for n, m in named.items() if "Attention" in type(m).__name__]
        proj = next(n for n in named if n.split(".")[-1] in OUT_PROJ and any(n.startswith(a + ".") for a in attention))
        mlp = MLP_OUT.get(family, "mlp")
        hooks += [(named[proj], "pre", lambda m, args, l=layer: seen.__setitem__(("z", l), args[0].detach().float())),
                  (named[proj], "post", grab(("o", layer))), (named[mlp], "post", grab(("mlp", layer)))]
        for which, norm in zip(("attn", "mlp"), POST_NORMS.get(family, ())):
            hooks.append((named[norm], "post", grab((which + "_norm_in", layer), take_input=True)))
        seen[("proj", layer)], seen[("post", layer)] = named[proj], [named[n] for n in POST_NORMS.get(family, ())]
    inside = {id(m) for m in blocks.modules()}
    for module in hf.modules():  # the final norm: the last norm outside the blocks to run
        if "norm" in type(module).__name__.lower() and id(module) not in inside:
            hooks.append((module, "pre", lambda m, args: norms_run.append((m, args[0].detach().float()))))
    with torch.no_grad():
        run_with_hooks(hooks, lambda: hf(model.encode(prompt)))
    final_module, final_in = norms_run[-1]
    final = frozen_norm(final_module, final_in[0, position])
    w_u = hf.get_output_embeddings().weight.detach().float()
    u = w_u[target] - (w_u[wrong] if wrong is not None else 0.0)
    mult = getattr(hf.config, "residual_multiplier", 1.0)
    logit = lambda vec: float(final(vec) @ u)  # noqa: E731
    out = {"embed": logit(seen["embed"][0, position]), "attn": [], "mlp": [], "heads": []}
    for layer in range(len(blocks)):
        post = seen[("post", layer)]
        post_attn = frozen_norm(post[0], seen[("attn_norm_in", layer)][0, position]) if post else (lambda y: mult * y)
        post_mlp = frozen_norm(post[1], seen[("mlp_norm_in", layer)][0, position]) if post else (lambda y: mult * y)
        o, m = seen[("o", layer)], seen[("mlp", layer)]
        out["attn"].append(logit(post_attn(o[0, position])))
        out["mlp"].append(logit(post_mlp(m[position] if m.dim() == 2 else m[0, position])))
        proj, z = seen[("proj", layer)], seen[("z", layer)][0, position]
        w_o = proj.weight.detach().float() if type(proj).__name__ == "Conv1D" else proj.weight.detach().float().T  # [in, out]
        dh = z.numel() // model.n_heads
        out["heads"].append([logit(post_attn(z[h * dh:(h + 1) * dh] @ w_o[h * dh:(h + 1) * dh]))
                             for h in range(model.n_heads)])
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != NOT_ADDITIVE])
def test_heads_and_components_equal_a_plain_torch_reference(family, tokenizer):
    model = tiny(family, tokenizer)
    paris, london = model.single_token(" Paris"), model.single_token(" London")
    for wrong, position in ((None, -1), (london, 3)):
        result = logit_attribution(model, PROMPT, paris, wrong=wrong, position=position)
        ref = reference(model, family, PROMPT, paris, wrong, result.position)
        scale = max(1.0, np.abs(ref["heads"]).max())
        np.testing.assert_allclose(result.heads, ref["heads"], atol=1e-5 * scale)
        np.testing.assert_allclose(result.attn, ref["attn"], atol=1e-5 * scale)
        np.testing.assert_allclose(result.mlp, ref["mlp"], atol=1e-5 * scale)
        assert result.embed == pytest.approx(float(ref["embed"]), abs=1e-5 * scale)


def test_the_default_model_equals_the_reference_too(default_model):
    mary = default_model.single_token(" Mary")
    result = logit_attribution(default_model, CLEAN, mary)
    ref = reference(default_model, "llama", CLEAN, mary, None, result.position)
    np.testing.assert_allclose(result.heads, ref["heads"], atol=1e-4)
    np.testing.assert_allclose(result.mlp, ref["mlp"], atol=1e-4)


def test_a_logit_difference_is_the_difference_of_the_two_attributions(default_model):
    ids = default_model.encode(CLEAN)
    ld = logit_attribution(default_model, CLEAN, " Mary", wrong=" John")
    mary, john = logit_attribution(default_model, CLEAN, " Mary"), logit_attribution(default_model, CLEAN, " John")
    check_sums(ld, default_model, ids, default_model.single_token(" Mary"), default_model.single_token(" John"))
    assert ld.logit == pytest.approx(6.12, abs=0.01)  # METHODS.md's measured clean LD
    np.testing.assert_allclose(ld.heads, mary.heads - john.heads, atol=1e-4)
    np.testing.assert_allclose(ld.mlp, mary.mlp - john.mlp, atol=1e-4)
    assert ld.label == "logit(' Mary') − logit(' John')" and ld.wrong_text == " John"


# --- bf16 --------------------------------------------------------------------------------
# The parts are read from the bf16 run and dotted in float32; the model's residual stream is
# rounded to bf16 (8 significant bits, unit roundoff 2^-8) at every add and its logit once more
# at the unembedding, so the parts agree with its logit to within 2^-7 (two bf16 roundoffs) of
# the magnitudes being added, |logit| + sum |parts| (measured: at most 0.4 of that bound), not
# to float32 precision. Heads agree with the fp32 model's to 0.02 (measured <= 0.008).

@pytest.mark.parametrize("family", BF16)
def test_bf16_parts_sum_to_the_bf16_models_logit(family, tokenizer):
    fp32, bf16 = tiny(family, tokenizer), tiny(family, tokenizer, torch.bfloat16)
    assert bf16.hf.dtype == torch.bfloat16
    for prompt in (PROMPT, CLEAN):
        for position in (-1, 3):
            result = logit_attribution(bf16, prompt, " Paris", position=position)
            real = float(pre_transform_logits(bf16, bf16.encode(prompt))[result.position, bf16.single_token(" Paris")])
            assert result.logit == real
            magnitude = abs(real) + abs(result.embed) + np.abs(result.attn).sum() + np.abs(result.mlp).sum()
            assert abs(result.total - real) <= 2 ** -7 * magnitude, (result.total, real, magnitude)
            reference32 = logit_attribution(fp32, prompt, " Paris", position=position)
            np.testing.assert_allclose(result.heads, reference32.heads, atol=0.02)


# --- inputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,message", [
    (dict(target=" Paris is"), r"target must be one token .*' Paris is' is 2 tokens"),
    (dict(target=""), r"target must be one token"),
    (dict(target=" Paris", wrong=" Paris"), r"wrong is the same token as target"),
    (dict(target=" Paris", wrong=10 ** 9), r"wrong must be one token .*outside the vocabulary"),
    (dict(target=" Paris", position=10), r"position must be a whole number from -10 to 9, not 10"),
    (dict(target=" Paris", position=-11), r"position must be a whole number from -10 to 9, not -11"),
    (dict(target=" Paris", position=True), r"position must be a whole number .*not True"),
    (dict(target=" Paris", position=2.0), r"position must be a whole number .*not 2.0"),
])
def test_bad_inputs_are_refused_in_words(default_model, kwargs, message):
    with pytest.raises(aw.InputError, match=message):
        logit_attribution(default_model, PROMPT, **kwargs)


def test_an_empty_prompt_is_refused(default_model):
    with pytest.raises(aw.InputError, match="prompt is empty"):
        logit_attribution(default_model, "  ", " Paris")


def test_remote_local_gives_the_same_parts(tiny_llama):
    remote = aw.Model(tiny_llama.lm, tiny_llama.tokenizer, tiny_llama.adapter, "remote-local", remote="local")
    here, there = (logit_attribution(m, CLEAN, " Mary", wrong=" John") for m in (tiny_llama, remote))
    np.testing.assert_allclose(there.heads, here.heads, atol=1e-6)
    assert there.total == pytest.approx(here.total, abs=1e-6)


# --- IOI: direct effects and exact head patching point at the same heads ----------------------

def test_ioi_top_dla_heads_are_the_heads_exact_patching_finds(default_model):
    """Measured on SmolLM2-135M: the 5 heads with the largest |DLA| of LD(' Mary' - ' John') on the
    clean prompt are all among the 10 heads whose exact patching (denoising, site="heads") moves
    the LD most, and both put L23 H3 first. Asserted: at least 4 of 5, and the same first head."""
    dla = logit_attribution(default_model, CLEAN, " Mary", wrong=" John")
    exact = P.exact_patching(default_model, CLEAN, CORRUPTED, (" Mary", " John"), "heads")
    effect = np.abs(exact.patched_ld - exact.ld_corrupted)
    top_dla = np.argsort(-np.abs(dla.heads).ravel())[:5]
    top_patch = np.argsort(-effect.ravel())[:10]
    overlap = len(set(top_dla.tolist()) & set(top_patch.tolist()))
    assert overlap >= 4, (overlap, top_dla, top_patch)
    assert top_dla[0] == top_patch[0] == 23 * default_model.n_heads + 3
