"""RelP's rules (Rezaei Jafari et al. 2025, arXiv 2508.21258) as rewrites inside an nnsight
trace: the forward values stay the model's, only the backward pass changes.

- LN-rule on EVERY residual-stream norm of a block (Gemma-2/3's four, OLMo-2's post-sublayer
  ones, OLMo's weightless LayerNorm) and on the final norm: the per-token scale is a constant
  for the backward pass. Norms inside the attention (Qwen3's and Gemma-3's q/k norms) are part
  of the attention, which keeps its plain gradient (the optional AH-rule is not applied).
- Identity-rule on the MLP nonlinearity: x * (f(x) / x).detach(), stabiliser 1e-6.
- Half-rule on a gating product act(gate) * up, whether gate and up are separate projections
  or halves of one fused `gate_up_proj` (Phi-3): half the relevance to each factor.
- Linear layers keep their plain gradient. Mixture-of-experts MLPs (Mixtral): the experts'
  nonlinearity gets the Identity-rule; the router weights and the product inside the fused
  experts keep their plain gradient, because transformers fuses the experts into one module
  and the product is not a module boundary that a trace can rewrite (a documented choice).

Every step runs when the block reaches it (the adapter records the execution order), so one
trace rewrites any family.
"""
from __future__ import annotations

import copy
import weakref

import torch

from ..errors import InputError
from ..model import Model

IDENTITY_RULE_EPS = 1e-6


def norm_parts(norm) -> tuple:
    """(envoy, offset, slope, centred, eps) of any norm, read off its definition by probing.

    Every norm here computes ``g * c(x) / sqrt(mean(c(x)^2) + eps) + b`` with c the mean
    removal (LayerNorm) or nothing (RMSNorm), and its gain g is ``offset + slope * w`` in
    its weight w (Llama: w; Gemma: 1 + w; OLMo's LayerNorm has no weight: 1). The probe
    runs on a weightless copy of the module with w set to 0 and then 1: with p a zero-mean,
    unit-RMS vector, ``n(p) - n(-p) = 2 g p / sqrt(1 + eps)``, and ``n(p + 1) == n(p)`` says
    whether the mean is removed. The real w is read inside the trace (`ln_rule`), so this
    also holds for a remote model, whose local copy has no weights (meta device).
    """
    module = norm._module
    eps = next((float(v) for v in (getattr(module, a, None) for a in ("variance_epsilon", "eps", "epsilon"))
                if isinstance(v, (int, float))), 1e-5)
    scratch = copy.deepcopy(module).to_empty(device="cpu").float()
    weight = getattr(scratch, "weight", None)
    width = weight.numel() if weight is not None else _norm_width(norm)
    probe = torch.ones(width)
    probe[1::2] = -1.0
    probe = (probe - probe.mean()) / (probe - probe.mean()).pow(2).mean().sqrt()

    def gain_at(w: float) -> tuple[torch.Tensor, bool]:
        with torch.no_grad():
            for param in scratch.parameters():
                param.fill_(w)
            pos, neg, shifted = (scratch(x[None])[0] for x in (probe, -probe, probe + 1.0))
        centred = bool(torch.allclose(shifted, pos, atol=1e-4 * float(pos.abs().max()) + 1e-6))
        return (pos - neg) / (2 * probe) * (1.0 + eps) ** 0.5, centred

    offset, _ = gain_at(0.0)  # at w = 0 an RMSNorm's output is 0: it cannot tell centring
    at_one, centred = gain_at(1.0)
    slope = at_one - offset if weight is not None else None
    return norm, offset, slope, centred, eps


def _norm_width(norm) -> int:
    shape = getattr(norm._module, "normalized_shape", None)
    if shape:
        return int(shape[-1])
    raise InputError(f"Cannot tell the width of the norm {type(norm._module).__name__}.")


def lrp_rules(model: Model, site: str) -> list:
    """Per layer, the (event index, step) list `apply_rules` runs in the block's order;
    last entry: the norms between the last block and the unembedding.

    Made once per model and site: the probes read the modules' definitions, not their weights
    (those are read inside each trace), and they cost about half a forward pass of a short
    prompt on the default model, a sixth of a whole RelP run."""
    per_model = _RULES.setdefault(model.lm, {})
    if site not in per_model:
        per_model[site] = _make_rules(model, site)
    return per_model[site]


_RULES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # nnsight model -> {site: rules}


def _make_rules(model: Model, site: str) -> list:
    a = model.adapter
    site_event = {"resid": None, "heads": a.event(a.attn_out, "in"), "attn": a.event(a.attn_out, "out"),
                  "mlp": a.event(a.mlp_out, "out")}[site]
    out = []
    for block in model.blocks:
        steps = [(a.event(name, "in"), "norm", norm_parts(model.part(block, name))) for name in a.norms]
        if a.act:
            steps.append((a.event(a.act, "in"), "act", model.part(block, a.act)))
        if a.up or a.gate_up:
            up = a.up or a.gate_up
            steps.append((a.event(up, "out"), "up", (model.part(block, up), None if a.up else 1 - a.gate_half)))
            steps.append((a.event(a.mlp_out, "in"), "half", model.part(block, a.mlp_out)))
        steps.append((site_event if site_event is not None else len(a.order), "site", None))
        out.append(sorted(steps, key=lambda step: step[0]))
    out.append([norm_parts(envoy) for envoy in model.final if "norm" in type(envoy._module).__name__.lower()])
    return out


def ln_rule(parts) -> None:
    """LN-rule: the norm's own output, with a backward pass that treats its per-token scale
    1/sqrt(mean(c(x)^2) + eps) as a constant. The added term is zero in value, so the
    forward pass is the model's to the last bit."""
    norm = parts[0]
    x, y = norm.input.float(), norm.output
    linear = norm_centre(parts, x) * norm_scale(parts, x).detach() * norm_gain(parts, x.device)
    norm.output = y.detach() + (linear - linear.detach()).to(y.dtype)


def norm_gain(parts, device) -> torch.Tensor:
    """The norm's gain g = offset + slope * w, with w as the model holds it (on NDIF: NDIF's)."""
    norm, offset, slope, _, _ = parts
    gain = offset.to(device)
    return gain if slope is None else gain + slope.to(device) * norm.weight.detach().float()


def norm_scale(parts, x: torch.Tensor) -> torch.Tensor:
    """The norm's per-token scale 1 / sqrt(mean(c(x)^2) + eps) at its real input x [..., d]."""
    return torch.rsqrt(norm_centre(parts, x).pow(2).mean(dim=-1, keepdim=True) + parts[4])


def norm_centre(parts, x: torch.Tensor) -> torch.Tensor:
    """c(x): x less its mean for a LayerNorm, x itself for an RMSNorm."""
    return x - x.mean(dim=-1, keepdim=True) if parts[3] else x


def _identity_rule(act):
    """Identity-rule: f(x) passes relevance as if linear, through x * (f(x) / x).detach().
    As in `ln_rule`, that product only routes the gradient: the value is f(x) to the last bit
    (the product itself is off by the stabiliser, about 1e-6 / |x| relative)."""
    x, y = act.input, act.output
    sign = (x >= 0).to(x.dtype) * 2 - 1
    ratio = (y.float() / (x.float() + IDENTITY_RULE_EPS * sign.float())).detach()
    linear = x.float() * ratio
    act.output = y.detach() + (linear - linear.detach()).to(y.dtype)
    return act.output


def apply_rules(steps: list, read_site) -> None:
    """Rewrite one block for the LRP backward pass, each step when the block reaches it:
    LN-rule on every norm, Identity-rule on the nonlinearity, Half-rule on a gating product
    (act * up: half the relevance to each factor). `read_site()` runs at the site's place."""
    gated = up = None
    for _, kind, part in steps:
        if kind == "norm":
            ln_rule(part)
        elif kind == "act":
            gated = _identity_rule(part)
        elif kind == "up":
            envoy, half = part
            up = envoy.output if half is None else envoy.output.chunk(2, dim=-1)[half]
        elif kind == "half":
            part.input = 0.5 * (gated * up.detach()) + 0.5 * (gated.detach() * up)
        else:
            read_site()
