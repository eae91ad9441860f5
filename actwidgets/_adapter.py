"""Where the parts of any causal-LM family live, found by structure, not by a list of names.

One hooked forward pass over two tokens (on the meta device when the weights are not
here, as for a remote model) records which modules run, in which order, on which tensors.
From that record: the block list (the ModuleList with one entry per layer), the modules
between the last block and the unembedding (final norm, OPT's `project_out`, or nothing),
and inside a block every residual-stream norm, the attention and its output projection,
the MLP, its nonlinearity and its gating (separate gate/up projections, one fused
`gate_up_proj`, or none) and mixture-of-experts MLPs. Parallel attention + MLP blocks (GPT-J,
Falcon, Phi, Cohere) need nothing special: every rule is per module, in execution order.
What the model does to logits after the unembedding (Gemma-2's soft-capping, Cohere's
`logit_scale`, Granite's `logits_scaling`) comes from the config and is checked against
the model's own logits in the tests. A family whose parts cannot be found gets a
ModelLoadError at load time naming the family and the missing part.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .errors import ModelLoadError


def get_path(obj, dotted: str):
    for part in dotted.split(".") if dotted else ():
        obj = getattr(obj, part)
    return obj


def _is_linear(module) -> bool:
    return isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"  # GPT-2's transposed Linear


def _is_norm(module) -> bool:
    return "norm" in type(module).__name__.lower() and not list(module.children())


def _is_activation(module) -> bool:
    """A leaf that is not a projection, a norm or dropout. It may learn a few numbers of its
    own (Apertus's xIELU learns two slopes), never a weight matrix."""
    own = list(module.parameters(recurse=False))
    return (not list(module.children()) and sum(p.numel() for p in own) <= 8
            and not isinstance(module, torch.nn.Dropout) and not _is_norm(module) and not _is_linear(module))


def _out_features(module) -> int:
    return module.weight.shape[-1] if type(module).__name__ == "Conv1D" else module.out_features


def _in_features(module) -> int:
    return module.weight.shape[0] if type(module).__name__ == "Conv1D" else module.in_features


@dataclass(frozen=True)
class Adapter:
    """Dotted paths to the parts of one architecture (block parts are relative to a block)."""

    family: str
    blocks: str
    final: tuple  # modules after the last block, before the unembedding, in execution order
    unembed: str
    logit_transform: tuple  # () | ("softcap", c) | ("scale", s): applied after the unembedding
    block_tuple: bool  # the block returns (hidden, ...) rather than a tensor
    attn: str
    attn_out: str  # the attention's output projection: its input holds the heads
    mlp_out: str  # the MLP's output projection (the whole block for MoE): the `mlp` site, and
    # where RelP's Half-rule rewrites the input
    mlp_flat: bool  # the MLP works on [batch * tokens, d] (OPT)
    norms: tuple  # every residual-stream norm in the block, in execution order
    act: str | None  # the MLP's nonlinearity
    up: str | None  # the projection multiplied with act's output (gated MLPs)
    gate_up: str | None  # a fused gate/up projection: act reads one half, the other is `up`
    gate_half: int  # which half of `gate_up` feeds act (0 or 1)
    moe: bool
    order: tuple  # (relative path, event) per block part, in execution order; event: "in" or "out"

    def event(self, path: str, when: str) -> int:
        """Position of `path` starting ("in") or finishing ("out") within one block's run."""
        return self.order.index((path, when))

    @classmethod
    def for_model(cls, hf_model: torch.nn.Module) -> "Adapter":
        try:
            return _find(hf_model)
        except ModelLoadError:
            if next(hf_model.parameters(), torch.empty(0)).device.type != "meta":
                raise
        # Some families cannot run on the meta device (a remote model's local copy): find the
        # parts on a miniature of the same architecture instead; paths do not depend on widths.
        return replace(_find(_miniature(hf_model)), blocks=_find_blocks(hf_model)[0])


def _fail(hf_model, what: str):
    cfg = getattr(hf_model, "config", None)
    raise ModelLoadError(
        f"actwidgets cannot find {what} in {type(hf_model).__name__} "
        f"(model_type={getattr(cfg, 'model_type', '?')!r}), so it cannot trace this family. "
        "Please report it with the model name."
    )


_SHRINK = {"hidden_size": 64, "n_embd": 64, "d_model": 64, "intermediate_size": 128, "ffn_dim": 128,
           "n_inner": 128, "num_attention_heads": 4, "n_head": 4, "num_heads": 4, "num_key_value_heads": 2,
           "head_dim": 16, "num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "vocab_size": 256}


def _miniature(hf_model) -> torch.nn.Module:
    """The same architecture at width 64, 2 layers and 256 tokens, with random weights, on the cpu."""
    import copy

    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(hf_model.config)
    for key, value in _SHRINK.items():
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, value)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if isinstance(getattr(config, key, None), int):
            setattr(config, key, 0)
    with torch.device("cpu"):
        return AutoModelForCausalLM.from_config(config).eval()


def _find_blocks(hf_model) -> tuple:
    cfg = hf_model.config
    n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    lists = [(n, m) for n, m in hf_model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers and n_layers]
    if not lists:
        _fail(hf_model, f"a list of {n_layers} blocks")
    return lists[0]


def _record(hf_model, block_list) -> tuple[list, dict, dict]:
    """Run two tokens through the model with hooks: events, inputs and outputs by module."""
    names = {id(m): n for n, m in hf_model.named_modules()}
    events, inputs, outputs = [], {}, {}
    block0 = block_list[0]
    watched = [m for m in block0.modules()] + [m for m in hf_model.modules() if m not in set(block0.modules())]
    hooks = []
    for module in watched:
        name = names[id(module)]

        def pre(mod, args, kwargs, name=name):
            events.append((name, "in"))
            first = args[0] if args else next(iter(kwargs.values()), None)
            inputs.setdefault(name, first)

        def post(mod, args, kwargs, out, name=name):
            events.append((name, "out"))
            outputs.setdefault(name, out)

        hooks.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        hooks.append(module.register_forward_hook(post, with_kwargs=True))
    param = next(hf_model.parameters())
    ids = torch.tensor([[1, 2]], device=param.device)
    try:
        with torch.no_grad():
            hf_model(ids)
    except Exception as exc:  # noqa: BLE001 - any failure here means the layout is unknown
        _fail(hf_model, f"a forward pass that runs on two tokens ({type(exc).__name__}: {exc})")
    finally:
        for h in hooks:
            h.remove()
    return events, inputs, outputs


def _same(a, b) -> bool:
    return torch.is_tensor(a) and torch.is_tensor(b) and a.shape == b.shape and (
        a.data_ptr() == b.data_ptr() if a.device.type != "meta" else True)


def _find(hf_model) -> Adapter:
    cfg = hf_model.config
    blocks_path, block_list = _find_blocks(hf_model)
    n_layers = len(block_list)
    unembedding = hf_model.get_output_embeddings()
    unembed = next((n for n, m in hf_model.named_modules() if m is unembedding and n), None)
    if unembed is None:
        _fail(hf_model, "an output embedding (unembedding)")
    events, inputs, outputs = _record(hf_model, block_list)
    prefix = f"{blocks_path}.0."
    block0 = f"{blocks_path}.0"
    start = events.index((block0, "in"))  # a module run twice (Phi's dropout) counts where it first ran
    order = tuple(dict.fromkeys((n[len(prefix):], e) for n, e in events[start:] if n.startswith(prefix)))
    block = block_list[0]
    parts = dict(block.named_modules())

    # after the last block: norms and projections up to the unembedding
    last_block_end = max(i for i, (n, e) in enumerate(events) if n == f"{blocks_path}.{n_layers - 1}" and e == "out")
    unembed_start = events.index((unembed, "in"))
    top = dict(hf_model.named_modules())
    final = tuple(n for i, (n, e) in enumerate(events) if last_block_end < i < unembed_start and e == "in"
                  and (_is_norm(top[n]) or _is_linear(top[n])))

    # attention: the part whose class says so; its output projection is the last linear it runs
    ran = [n for n, e in order if e == "in" and n]
    attn = next((n for n in ran if "attention" in type(parts[n]).__name__.lower() and "." not in n), None)
    if attn is None:
        _fail(hf_model, "the attention module of a block")
    attn_linears = [n for n in ran if n.startswith(attn + ".") and _is_linear(parts[n])]
    if not attn_linears:
        _fail(hf_model, "the attention's output projection")
    attn_out = attn_linears[-1]

    norms = tuple(n for n in ran if _is_norm(parts[n]) and not n.startswith(attn + "."))
    # the MLP: everything the block runs after the attention that is not a norm or dropout
    attn_end = order.index((attn, "out"))
    after = [n for n, e in order[attn_end:] if e == "in" and n and not n.startswith(attn + ".")]
    containers = [n for n in after if "." not in n and list(parts[n].children())]
    mlp = containers[0] if containers else None
    region = [n for n in after if (mlp is None or n.startswith(mlp + "."))]
    linears = [n for n in region if _is_linear(parts[n])]
    acts = [n for n in region if _is_activation(parts[n])]
    act = acts[0] if acts else None
    moe = mlp is not None and any("expert" in n.lower() for n in region)
    up = gate_up = None
    gate_half = 0
    if moe:
        mlp_out = mlp
    else:
        if not linears or act is None:
            _fail(hf_model, "the MLP's projections and nonlinearity")
        mlp_out = linears[-1]
        feeding = linears[:-1]
        if len(feeding) == 2:  # separate gate and up: act reads the gate's output
            gate = next((n for n in feeding if _same(outputs.get(f"{prefix}{n}"), inputs.get(f"{prefix}{act}"))),
                        feeding[0])
            up = next(n for n in feeding if n != gate)
        elif len(feeding) == 1 and _out_features(parts[feeding[0]]) == 2 * _in_features(parts[mlp_out]):
            gate_up = feeding[0]
            fused, act_in = outputs.get(f"{prefix}{gate_up}"), inputs.get(f"{prefix}{act}")
            if torch.is_tensor(fused) and fused.device.type != "meta":
                gate_half = 0 if torch.equal(fused.chunk(2, dim=-1)[0], act_in) else 1
    mlp_output = outputs.get(f"{prefix}{mlp_out}")
    mlp_flat = torch.is_tensor(mlp_output) and mlp_output.dim() == 2
    block_out = outputs.get(block0)

    transform = ()
    if getattr(cfg, "final_logit_softcapping", None):
        transform = ("softcap", float(cfg.final_logit_softcapping))
    elif getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        transform = ("scale", float(cfg.logit_scale))
    elif getattr(cfg, "logits_scaling", None) not in (None, 1, 1.0):
        transform = ("scale", 1.0 / float(cfg.logits_scaling))
    return Adapter(
        family=getattr(cfg, "model_type", type(hf_model).__name__), blocks=blocks_path, final=final,
        unembed=unembed, logit_transform=transform, block_tuple=isinstance(block_out, tuple), attn=attn,
        attn_out=attn_out, mlp_out=mlp_out, mlp_flat=mlp_flat, norms=norms, act=act, up=up, gate_up=gate_up,
        gate_half=gate_half, moe=moe, order=order,
    )


def transform_logits(logits: torch.Tensor, transform: tuple) -> torch.Tensor:
    """The model's own post-unembedding step, so the lens's last row is the model's output."""
    if not transform:
        return logits
    kind, value = transform
    if kind == "softcap":
        return torch.tanh(logits / value) * value
    return logits * value


def apply_head(h: torch.Tensor, head: tuple) -> torch.Tensor:
    """Logits from a residual state through the model's own head (`Model.head`)."""
    final, unembed, transform = head
    for module in final:
        h = module(h)
    return transform_logits(unembed(h), transform)
