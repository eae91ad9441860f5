"""Direct logit attribution (as in TransformerLens): one logit, or a logit difference, at one
position, split into what each part of the model wrote into the residual stream.

The last block's output is a sum: the embedding (`blocks[0]`'s input) plus each block's
attention output and MLP output (parallel blocks too: both are read at their output
projections; Bloom's attention adds the residual inside itself, so its output projection
is read, never the module's output). Freezing each norm's per-token scale at the real run's
value makes the head a linear map, `logit = u . F(h) + c`, so the logit is the sum of
`u_eff . part` over the parts, with `u_eff = F^T u`. Every norm is linearised by
`relp.norm_parts`: gain `offset + slope * w` (RMSNorm w, Gemma 1 + w, OLMo's weightless 1),
mean removal applied to each part. A head's share goes through its slice of the output
projection, `z_h . (W_O[:, h]^T v)`; the projection's bias is a term of its own.

- Post-sublayer norms (Gemma-2/3's post_attention / post_feedforward, OLMo-2) are frozen the
  same way, so heads still add up; a block that scales what it adds (Granite's
  `residual_multiplier`) is scaled too. A one-off probe (`_layout`) finds these by value and
  checks that a block's output IS its input plus its parts: a post-LN block (OPT-350m,
  `do_layer_norm_before=False`) norms the residual stream itself, which no sum of parts
  reproduces, and is refused with an InputError.
- `norm_bias` is the constant the head adds: the final norm's bias carried through the rest
  of the head, plus the unembedding's own bias (GPT-J, Phi). With it the parts sum to the
  model's own logit before any soft-capping or scaling, which is the logit attributed
  (the `note` says so for Gemma-2, Cohere, Granite).

One trace: the forward pass, reading a few vectors at the position; the arithmetic runs in
float32 inside the trace (remote-ready: weights are read where the model is).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import nnsight
import numpy as np
import torch

from .._adapter import _is_linear, _miniature, get_path
from ..errors import InputError
from ..model import Model
from ._checks import whole
from ._trace import residual
from .relp import norm_centre, norm_gain, norm_parts, norm_scale

_ADDITIVE_RTOL = 0.02  # of a block's update; a post-LN block misses by about all of it


@dataclass
class DLAResult:
    """Logit (or logit difference) parts at one position. `heads[l].sum() + attn_bias[l]`
    is `attn[l]`; `total` (= embed + attn + mlp + norm_bias) is `logit` to float precision."""

    tokens: list[str]
    position: int  # 0-based index of the token whose next-token logit is attributed
    target_id: int
    target_text: str
    wrong_id: int | None
    wrong_text: str | None
    logit: float  # the model's own logit (or logit difference), before soft-capping / scaling
    embed: float
    attn: np.ndarray  # [L] each block's attention output
    mlp: np.ndarray  # [L] each block's MLP output
    heads: np.ndarray  # [L, H] each head, through its slice of the output projection
    attn_bias: np.ndarray  # [L] the output projection's bias (and a post-norm's bias)
    norm_bias: float  # the final norm's bias through the unembedding, plus the unembedding's bias
    note: str = ""

    @property
    def total(self) -> float:
        return float(self.embed + self.attn.astype(np.float64).sum() + self.mlp.astype(np.float64).sum()
                     + self.norm_bias)

    @property
    def label(self) -> str:
        """What is attributed, e.g. `logit(' Mary') - logit(' John')`."""
        if self.wrong_id is None:
            return f"logit({self.target_text!r})"
        return f"logit({self.target_text!r}) − logit({self.wrong_text!r})"


@dataclass(frozen=True)
class _Layout:
    post_attn: str | None  # a norm applied to the attention output before it is added
    post_mlp: str | None
    multiplier: float  # what the block scales its sublayer outputs by before adding them


_LAYOUTS: "weakref.WeakKeyDictionary[torch.nn.Module, _Layout]" = weakref.WeakKeyDictionary()


def _layout(model: Model) -> _Layout:
    """Post-sublayer norms and the residual multiplier, found on block 0 of a short hooked run
    (a miniature for a remote model's weightless copy), and the check that the block adds."""
    key = model.hf
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    a = model.adapter
    hf = model.hf
    if next(hf.parameters()).device.type == "meta":
        hf = _miniature(hf)
    block = get_path(hf, a.blocks)[0]
    watched = {"attn": get_path(block, a.attn_out), "mlp": get_path(block, a.mlp_out),
               **{name: get_path(block, name) for name in a.norms}}
    seen: dict = {}

    def keep(name):
        def hook(module, args, out):
            seen[name] = (args[0].detach().clone() if args else None, residual(out).detach().clone())
        return hook

    def keep_block(module, args, kwargs, out):
        seen["block"] = ((args[0] if args else next(iter(kwargs.values()))).detach().clone(),
                         residual(out).detach().clone())

    hooks = [m.register_forward_hook(keep(n)) for n, m in watched.items()]
    hooks.append(block.register_forward_hook(keep_block, with_kwargs=True))
    try:
        with model.lock, torch.no_grad():  # hooks on the model: no trace may run meanwhile
            hf(torch.tensor([[1, 2, 3, 4, 5]], device=next(hf.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    rounding = 4 * torch.finfo(seen["block"][1].dtype).eps  # bf16 rounds every add, relative to the stream
    block_in, block_out = (x.float() for x in seen["block"])
    sub = {k: seen[k][1].float().reshape(block_in.shape) for k in ("attn", "mlp")}
    post = {k: next((n for n in a.norms if seen[n][0] is not None and seen[n][0].shape == seen[k][1].shape
                     and torch.equal(seen[n][0], seen[k][1])), None) for k in ("attn", "mlp")}
    multiplier = float(getattr(block, "residual_multiplier", None) or getattr(hf.config, "residual_multiplier", None)
                       or 1.0)
    added = sum(seen[post[k]][1].float() if post[k] else multiplier * sub[k] for k in ("attn", "mlp"))
    update = block_out - block_in
    if (update - added).norm() > _ADDITIVE_RTOL * update.norm() + rounding * block_out.norm() + 1e-6:
        raise InputError(
            f"Direct logit attribution needs a residual stream that is a sum of the blocks' outputs, and in "
            f"{model.name} ({a.family}) a block's output is not its input plus its attention and MLP outputs: "
            "post-LN blocks (as OPT-350m's, do_layer_norm_before=False) normalise the residual stream itself after "
            "each sublayer, so the final residual has no per-component split. Use activation patching "
            "(aw.PatchingGrid) instead.")
    layout = _Layout(post["attn"], post["mlp"], multiplier)
    _LAYOUTS[key] = layout
    return layout


def _note(model: Model) -> str:
    transform = model.adapter.logit_transform
    if not transform:
        return ""
    kind, value = transform
    if kind == "softcap":
        return (f"{model.name} soft-caps its logits (tanh(x / {value:g}) x {value:g}); the logit attributed is "
                "the one before the cap, which is where the parts add up.")
    return (f"{model.name} multiplies its logits by {value:g} after the unembedding; the logit attributed is the "
            "one before that scaling.")


# --- pure helpers a trace body calls (they travel to NDIF by value) -----------------------

def _norm_back(parts, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """F^T u for the frozen norm F(y) = gain * s * c(y) (c is symmetric)."""
    gu = norm_gain(parts, u.device) * u
    return norm_scale(parts, x) * norm_centre(parts, gu)


def _linear_back(envoy, conv1d: bool, u: torch.Tensor) -> torch.Tensor:
    """W^T u for a projection (nn.Linear holds [out, in]; GPT-2's Conv1D [in, out])."""
    w = envoy.weight.detach().float()
    return w @ u if conv1d else u @ w


def _bias(envoy, has_bias: bool, u: torch.Tensor) -> torch.Tensor:
    return envoy.bias.detach().float() @ u if has_bias else u.new_zeros(())


def _row(matrix: torch.Tensor, t_id: int, w_id: int | None) -> torch.Tensor:
    """The target's row (or entry), minus the wrong token's when there is one."""
    row = matrix[t_id].detach().float()
    return row if w_id is None else row - matrix[w_id].detach().float()


def _head(final: list, final_in: list, unembed, unembed_bias: bool, t_id: int, w_id: int | None):
    """(u_eff, c): the frozen head is `u_eff . h + c` on the last block's output h. u_eff is
    F^T u, F the modules between the last block and the unembedding with every norm's scale
    frozen at its real input; c = u . F(0) (the biases they add) + the unembedding's bias."""
    u0 = u = _row(unembed.weight, t_id, w_id)
    for (kind, parts, _, conv1d), x in reversed(list(zip(final, final_in))):
        u = _norm_back(parts, x, u) if kind == "norm" else _linear_back(parts, conv1d, u)
    x0 = torch.zeros_like(u)
    for (kind, parts, bias, conv1d), x in zip(final, final_in):
        if kind == "norm":
            x0 = norm_gain(parts, x0.device) * norm_scale(parts, x) * norm_centre(parts, x0)
            x0 = x0 + parts[0].bias.detach().float() if bias else x0
        else:
            w = parts.weight.detach().float()
            x0 = (x0 @ w if conv1d else x0 @ w.T) + (parts.bias.detach().float() if bias else 0.0)
    const = x0 @ u0
    return u, const + _row(unembed.bias, t_id, w_id) if unembed_bias else const


def logit_attribution(model: Model, prompt: str, target, *, wrong=None, position: int = -1) -> DLAResult:
    """Direct logit attribution of `target`'s logit (minus `wrong`'s, when given) at `position`
    (default: the last token) to the embedding, every block's attention and MLP output, and
    every head; see the module docstring for the frozen-norm linearisation."""
    ids = model.encode(prompt)
    n_tokens = ids.shape[1]
    position = whole(position, "position", -n_tokens, n_tokens - 1) % n_tokens
    target_id = model.single_token(target, "target")
    wrong_id = None if wrong is None or (isinstance(wrong, str) and wrong == "") else model.single_token(wrong, "wrong")
    if wrong_id == target_id:
        raise InputError(f"wrong is the same token as target ({target!r}): their logit difference is 0. Pick "
                         "another wrong token, or none to attribute the logit itself.")
    layout = _layout(model)
    a = model.adapter
    hf_blocks = get_path(model.hf, a.blocks)
    conv = lambda m: type(m).__name__ == "Conv1D"  # noqa: E731
    has_bias = lambda m: getattr(m, "bias", None) is not None  # noqa: E731
    attn_proj = get_path(hf_blocks[0], a.attn_out)
    attn_conv, attn_has_bias = conv(attn_proj), has_bias(attn_proj)
    plans = []
    for block in model.blocks:
        plans.append((model.part(block, "attn_out"), model.part(block, "mlp"),
                      layout.post_attn and norm_parts(get_path(block, layout.post_attn)),
                      layout.post_mlp and norm_parts(get_path(block, layout.post_mlp))))
    post_attn_bias = bool(layout.post_attn) and has_bias(get_path(hf_blocks[0], layout.post_attn))
    final = []  # (kind, parts-or-envoy, has_bias, conv1d) per module between the last block and the unembedding
    for envoy in model.final:
        module = envoy._module
        kind = "linear" if _is_linear(module) else "norm"
        final.append((kind, norm_parts(envoy) if kind == "norm" else envoy, has_bias(module), conv(module)))
    unembed, unembed_bias = model.unembed, has_bias(model.unembed._module)
    first_block, flat, mult, n_heads = model.blocks[0], a.mlp_flat, layout.multiplier, model.n_heads
    p, t_id, w_id = position, target_id, wrong_id

    with model.lock, torch.no_grad():
        with model.trace(ids.to(model.device)):
            h0 = first_block.input[0, p].detach().float().clone()
            reads = []
            for attn_out, mlp_out, post_a, post_m in plans:  # each block's parts, in the order they run
                z = attn_out.input[0, p].detach().float().clone()
                o = residual(attn_out.output)[0, p].detach().float().clone()
                pa = (post_a[0].input[0, p].detach().float().clone(),
                      post_a[0].output[0, p].detach().float().clone()) if post_a else None
                m = residual(mlp_out.output)
                m = (m[p] if flat else m[0, p]).detach().float().clone()  # before Falcon adds into it in place
                pm = (post_m[0].input[0, p].detach().float().clone(),
                      post_m[0].output[0, p].detach().float().clone()) if post_m else None
                reads.append((z, o, pa, m, pm))
            final_in = [parts[0].input[0, p].detach().float().clone() if kind == "norm" else None
                        for kind, parts, _, _ in final]
            logit = _row(unembed.output[0, p], t_id, w_id)
            u, const = _head(final, final_in, unembed, unembed_bias, t_id, w_id)

            attn, mlp, heads, attn_bias = [], [], [], []
            for (attn_out, _, post_a, post_m), (z, o, pa, m, pm) in zip(plans, reads):
                v = _norm_back(post_a, pa[0], u) if post_a else mult * u
                heads.append((z * _linear_back(attn_out, attn_conv, v)).reshape(n_heads, -1).sum(-1))
                bias = _bias(attn_out, attn_has_bias, v)
                attn_bias.append(bias + post_a[0].bias.detach().float() @ u if post_attn_bias else bias)
                attn.append(pa[1] @ u if post_a else mult * (o @ u))
                mlp.append(pm[1] @ u if post_m else mult * (m @ u))
            saved = nnsight.save([h0 @ u, torch.stack(attn), torch.stack(mlp), torch.stack(heads),
                                  torch.stack(attn_bias), const, logit])

    embed, attn, mlp, heads, attn_bias, const, logit = (x.cpu().numpy() for x in saved)
    return DLAResult(
        tokens=model.token_texts(ids[0]), position=position,
        target_id=target_id, target_text=model.token_texts([target_id])[0],  # a piece of a character as its bytes
        wrong_id=wrong_id, wrong_text=None if wrong_id is None else model.token_texts([wrong_id])[0],
        logit=float(logit), embed=float(embed), attn=attn.astype(np.float32), mlp=mlp.astype(np.float32),
        heads=heads.astype(np.float32), attn_bias=attn_bias.astype(np.float32), norm_bias=float(const),
        note=_note(model),
    )


__all__ = ["DLAResult", "logit_attribution"]
