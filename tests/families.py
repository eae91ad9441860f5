"""Tiny random models of every transformers family actwidgets supports (2 layers, width 64),
built from the config classes, and plain-torch references the methods are checked against.

The references find parts by their own, simpler rules (class and attribute names), not
through actwidgets' structural adapter, so a wrong guess on either side shows as a
mismatch. Norm gains are random (Gemma's (1 + w) then differs from w) and the init scale is
raised so that logits are not all alike.
"""
from __future__ import annotations

import functools
import re

import torch

import actwidgets as aw

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
GQA = dict(SMALL, num_key_value_heads=2)
FAMILIES = {
    "llama": ("LlamaConfig", GQA),
    "mistral": ("MistralConfig", GQA),
    "mixtral": ("MixtralConfig", dict(GQA, num_local_experts=4, num_experts_per_tok=2)),
    "qwen2": ("Qwen2Config", GQA),
    "qwen3": ("Qwen3Config", dict(GQA, head_dim=16)),
    "gemma": ("GemmaConfig", dict(GQA, head_dim=16)),
    "gemma2": ("Gemma2Config", dict(GQA, head_dim=16, final_logit_softcapping=0.5)),
    "gemma3_text": ("Gemma3TextConfig", dict(GQA, head_dim=16)),
    "phi": ("PhiConfig", SMALL),
    "phi3": ("Phi3Config", GQA),
    "gpt2": ("GPT2Config", dict(n_embd=64, n_layer=2, n_head=4)),
    "gpt_neo": ("GPTNeoConfig", dict(hidden_size=64, num_layers=2, num_heads=4, window_size=8,
                                     attention_types=[[["global", "local"], 1]])),
    "gptj": ("GPTJConfig", dict(n_embd=64, n_layer=2, n_head=4, rotary_dim=8)),
    "gpt_neox": ("GPTNeoXConfig", SMALL),
    "opt": ("OPTConfig", dict(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                              word_embed_proj_dim=64)),
    # OPT-350m's layout: norms after each sublayer, no final norm, a projection before the unembedding
    "opt_350m": ("OPTConfig", dict(hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                                   word_embed_proj_dim=32, do_layer_norm_before=False)),
    "falcon": ("FalconConfig", dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4)),
    "bloom": ("BloomConfig", dict(hidden_size=64, n_layer=2, n_head=4)),
    "olmo": ("OlmoConfig", SMALL),
    "olmo2": ("Olmo2Config", SMALL),
    "stablelm": ("StableLmConfig", GQA),
    "cohere": ("CohereConfig", GQA),
    "granite": ("GraniteConfig", dict(GQA, logits_scaling=4.0)),
    "starcoder2": ("Starcoder2Config", GQA),
    "smollm3": ("SmolLM3Config", GQA),
    "apertus": ("ApertusConfig", GQA),  # xIELU: an activation with learned parameters
}
BF16 = ("llama", "gemma2", "qwen2", "gpt2")


@functools.lru_cache(maxsize=None)
def hf_model(family: str, vocab: int) -> torch.nn.Module:
    import transformers

    name, kwargs = FAMILIES[family]
    config = getattr(transformers, name)(vocab_size=vocab, bos_token_id=0, eos_token_id=0, pad_token_id=0, **kwargs)
    if hasattr(config, "initializer_range"):
        config.initializer_range = 0.1
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if "norm" in type(module).__name__.lower():
                for pname, p in module.named_parameters(recurse=False):
                    p.normal_(1.0 if pname == "weight" else 0.0, 0.3)
    return model


@functools.lru_cache(maxsize=None)
def tiny(family: str, tokenizer, dtype: torch.dtype = torch.float32) -> aw.Model:
    """The family's tiny model (fp32, or the same weights cast to `dtype`), wrapped."""
    import copy

    hf = hf_model(family, len(tokenizer))
    if dtype != torch.float32:
        hf = copy.deepcopy(hf)
    return aw.wrap(hf, tokenizer, name=f"tiny-{family}-{str(dtype).split('.')[-1]}",
                   dtype=None if dtype == torch.float32 else dtype)


# --- plain-torch references ---------------------------------------------------------

def first(x):
    return x[0] if isinstance(x, tuple) else x


def run_with_hooks(module_hooks, fn):
    handles = []
    for module, kind, hook in module_hooks:
        register = {"pre": module.register_forward_pre_hook, "post": module.register_forward_hook}[kind]
        handles.append(register(hook))
    try:
        return fn()
    finally:
        for h in handles:
            h.remove()


def block_outputs(hf, blocks, ids) -> torch.Tensor:
    """[1 + L, T, d]: block 0's input, then every block's output (plain hooks)."""
    got = []
    hooks = [(blocks[0], "pre", lambda m, args: got.append(args[0][0].detach().clone()))]
    hooks += [(b, "post", lambda m, i, o: got.append(first(o)[0].detach().clone())) for b in blocks]
    with torch.no_grad():
        run_with_hooks(hooks, lambda: hf(ids))
    return torch.stack(got).float()


def attention_modules(hf) -> list:
    return [m for m in hf.modules() if "attention" in type(m).__name__.lower()]


def inside(module, containers) -> bool:
    return any(module is not c and any(module is sub for sub in c.modules()) for c in containers)


ACTIVATION = re.compile(r"SiLU|GELU|Gelu|ReLU|Activation")


def relp_hooks(hf) -> list:
    """RelP's rules as plain forward hooks (Rezaei Jafari et al. 2025): LN-rule on every norm
    outside attention (gain read from the class: Gemma's 1 + w), Identity-rule on the MLP
    nonlinearity, Half-rule on the gating product (gate_proj/up_proj or a fused gate_up_proj)."""
    attn = attention_modules(hf)
    hooks = []
    for module in hf.modules():
        name = type(module).__name__
        if "norm" in name.lower() and not list(module.children()) and not inside(module, attn):
            hooks.append((module, "post", functools.partial(_ln_rule, centred="LayerNorm" in name,
                                                             plus_one="Gemma" in name)))
        elif ACTIVATION.search(name) and not list(module.children()):
            hooks.append((module, "post", _identity_rule))
    for module in hf.modules():
        down = getattr(module, "down_proj", None)
        gated = hasattr(module, "gate_proj") and hasattr(module, "up_proj") or hasattr(module, "gate_up_proj")
        if not isinstance(down, torch.nn.Module) or not gated:  # Apertus: down(act(up(x))), no product
            continue
        act = getattr(module, "act_fn", None) or getattr(module, "activation_fn")
        seen = {}
        hooks.append((act, "post", lambda m, i, o, seen=seen: seen.__setitem__("act", o)))
        if hasattr(module, "up_proj"):
            hooks.append((module.up_proj, "post", lambda m, i, o, seen=seen: seen.__setitem__("up", o)))
        else:
            hooks.append((module.gate_up_proj, "post",
                          lambda m, i, o, seen=seen: seen.__setitem__("up", o.chunk(2, dim=-1)[1])))
        hooks.append((down, "pre", lambda m, args, seen=seen: (
            0.5 * seen["act"] * seen["up"].detach() + 0.5 * seen["act"].detach() * seen["up"],)))
    return hooks


def _ln_rule(module, args, out, centred, plus_one):
    x = args[0].float()
    xc = x - x.mean(-1, keepdim=True) if centred else x
    eps = next((v for v in (getattr(module, a, None) for a in ("variance_epsilon", "eps", "epsilon"))
                if isinstance(v, float)), 1e-5)  # OlmoLayerNorm hard-codes 1e-5
    weight = getattr(module, "weight", None)
    gain = 1.0 if weight is None else (1.0 + weight.float() if plus_one else weight.float())
    linear = xc * torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps).detach() * gain
    return out.detach() + (linear - linear.detach()).to(out.dtype)


def _identity_rule(module, args, out):
    x = args[0]
    sign = torch.where(x >= 0, 1.0, -1.0)
    linear = x * (out / (x + 1e-6 * sign)).detach()
    return out.detach() + (linear - linear.detach())  # the gradient of the product, the value of f(x)


def attribution_reference(model: aw.Model, site_module, site: str, source_ids, target_ids, correct, wrong,
                          relp: bool = False):
    """(a_src - a_tgt) . dLD/da at the target run, per position (or per head), in plain torch."""
    hf = model.hf
    take_input = site == "heads"
    grab = {}

    def keep(m, *args):
        value = args[0][0] if take_input else first(args[-1])
        if torch.is_grad_enabled() and value.requires_grad:
            value.retain_grad()
        grab["a"] = value
        if not take_input and torch.is_tensor(args[-1]):  # the model may add into it in place later (Falcon)
            return value.clone()

    kind = "pre" if take_input else "post"
    with torch.no_grad():
        run_with_hooks([(site_module, kind, keep)], lambda: hf(source_ids))
    src = grab["a"].detach()
    rules = relp_hooks(hf) if relp else []
    logits = run_with_hooks([(site_module, kind, keep)] + rules, lambda: hf(target_ids).logits)
    ld = logits[0, -1, correct] - logits[0, -1, wrong]
    ld.backward()
    tgt, grad = grab["a"].detach(), grab["a"].grad
    T = target_ids.shape[1]
    product = ((src - tgt) * grad).float().reshape(T, -1)
    if site == "heads":
        return product.reshape(T, model.n_heads, -1).sum(dim=(0, 2)), float(ld.detach())
    return product.sum(-1), float(ld.detach())
