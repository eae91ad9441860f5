"""Attention patterns: how much each query token reads from each key token, per layer x head.

The pattern of head h at layer l is `softmax(q k^T / sqrt(d_head) + mask)` plus whatever the
family adds (ALiBi, sliding windows, soft-capping, grouped-query heads sharing keys, rotary
positions). SDPA and flash attention never materialise it, so the ONE trace here runs with
eager attention: `hf.set_attn_implementation("eager")` for that trace only, restored in a
`finally` (errors included). In transformers 5 every supported family's attention module then
returns `(output, weights [B, H, T, T])`, and the weights are read from that output: they are
the model's own numbers, equal to `output_attentions=True` of an eager model.
Falcon cannot switch through `set_attn_implementation` (it does not use AttentionInterface),
but its attention reads `config._attn_implementation` at every call, so its config is switched
directly. (Its sdpa path with `output_attentions=True` is no alternative: in transformers 5.24
it adds the boolean causal mask as numbers and returns non-causal weights.)

Memory stays bounded: each layer's [H, T, T] is reduced inside the trace while that layer
runs (pooled overview, one row per head for the chosen query, the selected head), and the run
stops after the last layer read, so the unembedding's [T, vocab] logits are never made.
(`output_attentions=True` on the whole model would keep every layer's weights.)

Pooling (`overview`; `pattern` beyond `full_max` tokens): tokens are split into bins of
`width = ceil(T / size)` consecutive tokens (the last may be shorter; `*_bins` holds each bin's
first token). A pooled cell is the MEAN over its query bin of the SUM over its key bin, so each
pooled row still sums to 1.

Remote: the weights exist only under eager attention, which cannot be switched on NDIF's copy
of a model, so `remote=True` raises InputError; `remote="local"` (nnsight's serialisation path,
run here) switches this process's model and works.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import nnsight
import numpy as np
import torch

from ..errors import InputError
from ..model import Model
from ._checks import shown, whole
from ._trace import after_each_block, row_labels

OVERVIEW_SIZE = 32  # thumbnails of at most 32 x 32 pooled cells per head
FULL_MAX = 512  # the selected head cell by cell up to 512 tokens, pooled to at most 512 bins above
KEEP_ALL_BYTES = 64 * 2**20  # every head's pattern is kept (head changes need no trace) up to this
# Eager attention makes a layer's [H, T, T] float32 scores, then its weights: 8 bytes per cell at
# once (bench/views.py: +0.17 GB of peak over SDPA for 0.15 GB of weights at 2,048 tokens). Beyond
# EAGER_BYTES the prompt is refused before the trace, in a sentence, rather than taking the kernel
# past Binder's 2 GB (the default model reads up to 3,861 tokens).
CELL_BYTES, EAGER_BYTES = 8, 2**30


@dataclass
class HeadPattern:
    head: tuple[int, int]  # (layer, head)
    pattern: np.ndarray  # [P, P] float32; P = T up to full_max, else pooled (rows sum to 1)
    bins: np.ndarray  # [P] int32: first token of each query (= key) bin; arange(T) when not pooled


@dataclass
class AttentionResult:
    tokens: list[str]
    rows: list[str]  # one label per layer shown
    layers: list[int]  # their block indices
    n_heads: int
    overview: np.ndarray  # [R, H, n, n] float32: every head pooled to n = ceil(T / ceil(T / overview_size)) bins
    overview_bins: np.ndarray  # [n] int32: first token of each bin
    head: tuple[int, int]  # (layer, head) of `pattern`
    pattern: np.ndarray  # [P, P] float32: the selected head (see HeadPattern)
    pattern_bins: np.ndarray  # [P] int32
    query: int  # the query position of `from_query` (0-based)
    from_query: np.ndarray  # [R, H, T] float32: each head's weights from token `query`; rows sum to 1
    patterns: np.ndarray | None = None  # [R, H, P, P]: every head as `pattern`, when that fits keep_bytes

    def pattern_of(self, head: tuple[int, int]) -> HeadPattern | None:
        """A head's pattern from this result (the selected one, or any when `patterns` was kept)."""
        if tuple(head) == tuple(self.head):
            return HeadPattern(self.head, self.pattern, self.pattern_bins)
        if self.patterns is None or head[0] not in self.layers:
            return None
        return HeadPattern(tuple(head), self.patterns[self.layers.index(head[0]), head[1]], self.pattern_bins)


# --- input checks -------------------------------------------------------------------
def check_head(model: Model, head, layers: list[int]) -> tuple[int, int]:
    """(layer, head) as block and head indices; None (or []) means (first layer shown, 0)."""
    if head is None or (isinstance(head, (list, tuple)) and not head):
        return layers[0], 0
    if isinstance(head, (str, bytes, dict)) or not hasattr(head, "__len__") or len(head) != 2:
        raise InputError(f"head must be a pair (layer, head), e.g. ({layers[0]}, 0), not {shown(head)}.")
    n = model.n_layers
    layer = whole(head[0], "head's layer", -n, n - 1) % n
    index = whole(head[1], "head's index", 0, model.n_heads - 1)
    if layer not in layers:
        raise InputError(f"head's layer {layer} is not among the layers shown ({', '.join(map(str, layers))}).")
    return layer, index


def check_query(query, n_tokens: int) -> int:
    """A query position; None is the last token and negative ones count from the end."""
    if query is None:
        return n_tokens - 1
    return whole(query, "query", -n_tokens, n_tokens - 1) % n_tokens


def _check_size(model: Model, n_tokens: int) -> None:
    need = CELL_BYTES * model.n_heads * n_tokens ** 2
    if need > EAGER_BYTES:
        most = int((EAGER_BYTES / (CELL_BYTES * model.n_heads)) ** 0.5)
        raise InputError(
            f"Attention patterns of a {n_tokens:,}-token prompt need {need / 2**30:.1f} GB per layer (every head's "
            f"[tokens x tokens] weights, made by eager attention); this view reads at most {most:,} tokens of "
            f"{model.name}: shorten the prompt (the Heatmap and LogitLens take up to the model's context).")


def _check_model(model: Model) -> None:
    if model.remote is True:
        raise InputError(
            f"Attention patterns need the attention switched to eager for one trace, which cannot be done to "
            f"NDIF's copy of {model.name}: load it locally (aw.load({model.name!r})) to see its attention.")


# --- pooling --------------------------------------------------------------------------
def bin_width(n_tokens: int, size: int) -> int:
    """Tokens per bin so that at most `size` bins cover `n_tokens`."""
    return -(-n_tokens // size)


def bins(n_tokens: int, size: int) -> np.ndarray:
    """First token of each bin (see `pool`)."""
    return np.arange(0, n_tokens, bin_width(n_tokens, size), dtype=np.int32)


def pool(weights: torch.Tensor, width: int) -> torch.Tensor:
    """[..., T, T] -> [..., n, n] with n = ceil(T / width): the sum over each key bin, averaged
    over each query bin, so rows keep summing to 1. width 1 returns the weights themselves."""
    if width == 1:
        return weights
    n_tokens = weights.shape[-1]
    n = -(-n_tokens // width)
    pad = n * width - n_tokens  # zeros add nothing to a sum; the last bin's mean divides by its real size
    lead = weights.shape[:-2]
    keys = torch.nn.functional.pad(weights, (0, pad)) if pad else weights
    keys = keys.reshape(*lead, n_tokens, n, width).sum(-1)  # [..., T, n]
    keys = torch.nn.functional.pad(keys, (0, 0, 0, pad)) if pad else keys
    total = keys.reshape(*lead, n, width, n).sum(-2)  # [..., n, n]
    counts = torch.full((n, 1), float(width), dtype=total.dtype, device=total.device)
    counts[-1] = width - pad
    return total / counts


# --- eager attention for one trace ------------------------------------------------------
@contextlib.contextmanager
def eager_attention(model: Model):
    """Run the model's attention eagerly (so it returns its weights) inside the block; the
    user's implementation comes back afterwards, also when the block raises. Hold model.lock."""
    hf = model.hf
    config = hf.config
    before = config._attn_implementation
    dynamic = hf._can_set_attn_implementation()
    if before != "eager":
        if dynamic:
            hf.set_attn_implementation("eager")
        else:  # Falcon: its attention reads the config at each call
            config._attn_implementation = "eager"
    try:
        yield
    finally:
        if before != "eager":
            if dynamic:
                hf.set_attn_implementation(before)
            else:
                config._attn_implementation = before


def _weights(attn_output) -> torch.Tensor:
    """Batch 0's [H, T, T] from an attention module's output (in a trace body)."""
    weights = attn_output[1] if isinstance(attn_output, tuple) and len(attn_output) > 1 else None
    if weights is None:
        raise InputError("This model's attention returned no weights even when run eagerly, so its "
                         "patterns cannot be read.")
    return weights[0].float()


# --- the traces -------------------------------------------------------------------------
def attention_patterns(model: Model, prompt: str, *, layers=None, head=None, query=None,
                       overview_size: int = OVERVIEW_SIZE, full_max: int = FULL_MAX,
                       keep_bytes: int = KEEP_ALL_BYTES, progress=None) -> AttentionResult:
    """Attention per layer x head for one prompt, in one trace.

    - `overview`: every head's pattern pooled to at most `overview_size` bins a side;
    - `pattern`: the head `head` = (layer, head) (default: the first layer shown, head 0) cell by
      cell up to `full_max` tokens, pooled to at most `full_max` bins above;
    - `from_query`: every head's weights from token `query` (default the last; negative counts
      from the end) to each key token;
    - `patterns`: every head as `pattern`, when they take at most `keep_bytes` (0: never).
    Rows sum to 1 and keys after the query are 0 (the causal mask). `layers`: block indices
    (default all). `progress(fraction)`, if given, is called after each block and may raise to
    stop (`_trace.after_each_block`). A remote model raises InputError (see the module docstring).
    """
    _check_model(model)
    overview_size = whole(overview_size, "overview_size", 1, 256)
    full_max = whole(full_max, "full_max", 1, 4096)
    ids = model.encode(prompt)
    chosen = model.check_layers(layers)
    selected = check_head(model, head, chosen)
    n_tokens = ids.shape[1]
    _check_size(model, n_tokens)
    q = check_query(query, n_tokens)
    over_width, pat_width = bin_width(n_tokens, overview_size), bin_width(n_tokens, full_max)
    pat_side = len(bins(n_tokens, full_max))
    keep_all = len(chosen) * model.n_heads * pat_side ** 2 * 4 <= keep_bytes
    attns = [model.part(model.blocks[layer], "attn") for layer in chosen]

    with model.lock, torch.no_grad(), eager_attention(model), after_each_block(model, progress):
        with model.trace(ids.to(model.device)) as tracer:
            over, rows, pattern, every = [], [], [], []
            for layer, attn in zip(chosen, attns):
                w = _weights(attn.output)
                # clone(): a view would keep the layer's whole [H, T, T] alive until the end
                over.append(pool(w, over_width).clone())
                rows.append(w[:, q, :].clone())
                if keep_all:
                    every.append(pool(w, pat_width).clone())
                elif layer == selected[0]:
                    pattern.append(pool(w[selected[1]], pat_width).clone())
            saved = nnsight.save([over, rows, pattern, every])
            tracer.stop()  # nothing after the last layer read is needed: no [T, vocab] logits

    over, rows, pattern, every = saved
    patterns = torch.stack(every).cpu().numpy() if keep_all else None
    return AttentionResult(
        tokens=model.token_texts(ids[0]), rows=row_labels(chosen, False), layers=chosen, n_heads=model.n_heads,
        overview=torch.stack(over).cpu().numpy(), overview_bins=bins(n_tokens, overview_size), head=selected,
        pattern=patterns[chosen.index(selected[0]), selected[1]] if keep_all else pattern[0].cpu().numpy(),
        pattern_bins=bins(n_tokens, full_max), query=q, from_query=torch.stack(rows).cpu().numpy(), patterns=patterns,
    )


def head_pattern(model: Model, prompt: str, head, *, full_max: int = FULL_MAX) -> HeadPattern:
    """One head's pattern (as `AttentionResult.pattern`): a trace that stops after its layer."""
    _check_model(model)
    full_max = whole(full_max, "full_max", 1, 4096)
    ids = model.encode(prompt)
    layer, index = check_head(model, head, model.check_layers(None))
    n_tokens = ids.shape[1]
    _check_size(model, n_tokens)
    width = bin_width(n_tokens, full_max)
    attn = model.part(model.blocks[layer], "attn")

    with model.lock, torch.no_grad(), eager_attention(model):
        with model.trace(ids.to(model.device)) as tracer:
            pattern = nnsight.save(pool(_weights(attn.output)[index], width).clone())
            tracer.stop()
    return HeadPattern(head=(layer, index), pattern=pattern.cpu().numpy(), bins=bins(n_tokens, full_max))
