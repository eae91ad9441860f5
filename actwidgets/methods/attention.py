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

Memory stays bounded: each layer's weights are reduced inside the trace while that layer
runs (pooled overview, one row per head for the chosen query, the selected head), and the run
stops after the last layer read, so the unembedding's [T, vocab] logits are never made.
(`output_attentions=True` on the whole model would keep every layer's weights.) A prompt whose
[H, T, T] scores and weights would pass CHUNK_BYTES runs as consecutive traces over query
positions, each going on from the previous ones' keys and values (as a generation does): a
layer then makes [H, queries, T] at a time, and the default model reads its whole 8,192-token
context within Binder's 2 GB. Where a forward cannot go on from a cache (a remote model, a
family whose generation keeps another kind of cache) the prompt runs whole, and one too long
for that is refused before the trace, in a sentence.

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
from ._prefix import empty_cache, plain_cache, resume_inputs
from ._trace import after_each_block, row_labels

OVERVIEW_SIZE = 32  # thumbnails of at most 32 x 32 pooled cells per head
FULL_MAX = 512  # the selected head cell by cell up to 512 tokens, pooled to at most 512 bins above
KEEP_ALL_BYTES = 64 * 2**20  # every head's pattern is kept (head changes need no trace) up to this
# Eager attention makes a layer's float32 scores, then its weights: 8 bytes per query x key cell
# at once (bench/views.py: +0.17 GB of peak over SDPA for 0.15 GB of weights at 2,048 tokens).
# Beyond CHUNK_BYTES a layer's queries are taken in parts (8,192 tokens of the default model: 227
# queries a part, the process at 1.90 GB with a heatmap and a lens drawn first; 256 MB parts took
# it near 2 GB for 8% less time); where they cannot be (see the module docstring), beyond
# EAGER_BYTES the prompt is refused (the default model: 3,861 tokens).
CELL_BYTES, CHUNK_BYTES, EAGER_BYTES = 8, 128 * 2**20, 2**30


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


def queries_per_trace(model: Model, n_tokens: int) -> int:
    """How many query positions one trace runs: all of them where a layer's scores and weights
    fit CHUNK_BYTES, else as many as fit (at least one), where the model can go on from a cache;
    a prompt that must run whole is refused above EAGER_BYTES."""
    fit = max(1, CHUNK_BYTES // (CELL_BYTES * model.n_heads * n_tokens))
    if fit < n_tokens and not model.remote and plain_cache(model.hf):
        return fit
    need = CELL_BYTES * model.n_heads * n_tokens ** 2
    if need > EAGER_BYTES:
        most = int((EAGER_BYTES / (CELL_BYTES * model.n_heads)) ** 0.5)
        raise InputError(
            f"Attention patterns of a {n_tokens:,}-token prompt need {need / 2**30:.1f} GB per layer (every head's "
            f"[tokens x tokens] weights, made by eager attention); this view reads at most {most:,} tokens of "
            f"{model.name}: shorten the prompt (the Heatmap and LogitLens take up to the model's context).")
    return n_tokens


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
    """First token of each bin (see the module docstring's pooling)."""
    return np.arange(0, n_tokens, bin_width(n_tokens, size), dtype=np.int32)


def key_bins(weights: torch.Tensor, width: int, n: int, offset: int = 0) -> torch.Tensor:
    """[..., Q, K] weights on keys offset .. offset + K - 1 -> [..., Q, n]: the sum over each key
    bin of `width` tokens. Whole bins are summed through a view (no copy of the weights)."""
    if width == 1 and offset == 0 and weights.shape[-1] == n:
        return weights
    out = weights.new_zeros(*weights.shape[:-1], n)
    done, n_keys = 0, weights.shape[-1]
    while done < n_keys:
        key = offset + done
        whole_bins = (n_keys - done) // width if key % width == 0 else 0
        if whole_bins:
            span = weights[..., done:done + whole_bins * width]
            out[..., key // width:key // width + whole_bins] += span.unflatten(-1, (whole_bins, width)).sum(-1)
            done += whole_bins * width
        else:  # a part of a bin: where the keys start off a bin's edge, and at the end
            take = min(width - key % width, n_keys - done)
            out[..., key // width] += weights[..., done:done + take].sum(-1)
            done += take
    return out


def query_bins(sums: torch.Tensor, width: int, n: int, first: int = 0) -> torch.Tensor:
    """[..., Q, m] rows of queries first .. first + Q - 1 -> [..., n, m]: added up per query bin."""
    index = torch.arange(first, first + sums.shape[-2], device=sums.device) // width
    return sums.new_zeros(*sums.shape[:-2], n, sums.shape[-1]).index_add_(-2, index, sums)


def bin_sizes(n_tokens: int, width: int) -> torch.Tensor:
    """[n, 1]: the tokens in each bin (the last may have fewer), to turn query-bin sums into means."""
    n = -(-n_tokens // width)
    sizes = torch.full((n, 1), float(width))
    sizes[-1] = n_tokens - (n - 1) * width
    return sizes


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
    """Batch 0's [H, queries, keys] from an attention module's output."""
    weights = attn_output[1] if isinstance(attn_output, tuple) and len(attn_output) > 1 else None
    if weights is None:
        raise InputError("This model's attention returned no weights even when run eagerly, so its "
                         "patterns cannot be read.")
    return weights[0].float()


def _reduce(w: torch.Tensor, first: int, last: int, q: int, heads: slice | None, over: tuple, pat: tuple) -> tuple:
    """One layer's weights [H, queries first .. last - 1, keys] -> (offset of the first key, the
    overview's key-bin sums, the row of query `q` if among them, the pattern's key-bin sums of
    the `heads` kept (None: none)). `over`, `pat`: (bin width, bins)."""
    offset = last - w.shape[-1]  # a sliding window keeps only the last keys
    return (offset, key_bins(w, *over, offset).clone(), w[:, q - first].clone() if first <= q < last else None,
            None if heads is None else key_bins(w[heads], *pat, offset).clone())


def _run_part(model, ids, resume: dict, attns, end, first: int, last: int, q: int, heads: list, over, pat) -> list:
    """One trace over query positions first .. last - 1: each read layer's `_reduce`.

    Here the weights are reduced by plain forward hooks that then drop them, so a layer's
    weights are gone before the next layer makes its own (read in the trace body, nnsight holds
    earlier outputs until the body's next read: 2-3 more layers' worth, +0.35 GB at 4,096
    tokens). A remote model's trace reads them in its body, which travels with it. The trace
    stops after the last layer read (here at the end of its block, `end`): no [T, vocab] logits."""
    if model.remote:
        with model.trace(ids, **resume) as tracer:
            parts = nnsight.save([_reduce(_weights(attn.output), first, last, q, head, over, pat)
                                  for attn, head in zip(attns, heads)])
            tracer.stop()
        return parts
    parts = []

    def reduce_and_drop(head):
        def hook(module, args, output):
            parts.append(_reduce(_weights(output), first, last, q, head, over, pat))
            return (output[0], None, *output[2:])
        return hook

    handles = [attn._module.register_forward_hook(reduce_and_drop(head)) for attn, head in zip(attns, heads)]
    try:
        with model.trace(ids, **resume) as tracer:
            end.output  # noqa: B018 (a module's own hooks run before nnsight hands on its output)
            tracer.stop()
    finally:
        for handle in handles:
            handle.remove()
    return parts


# --- the traces -------------------------------------------------------------------------
def attention_patterns(model: Model, prompt: str, *, layers=None, head=None, query=None,
                       overview_size: int = OVERVIEW_SIZE, full_max: int = FULL_MAX,
                       keep_bytes: int = KEEP_ALL_BYTES, progress=None) -> AttentionResult:
    """Attention per layer x head for one prompt, in one trace per part of query positions.

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
    step = queries_per_trace(model, n_tokens)
    q = check_query(query, n_tokens)
    over_width, pat_width = bin_width(n_tokens, overview_size), bin_width(n_tokens, full_max)
    n_over, n_pat = -(-n_tokens // over_width), -(-n_tokens // pat_width)
    keep_all = len(chosen) * model.n_heads * n_pat ** 2 * 4 <= keep_bytes
    attns, end = [model.part(model.blocks[layer], "attn") for layer in chosen], model.blocks[chosen[-1]]
    at = chosen.index(selected[0])
    one = slice(selected[1], selected[1] + 1)
    heads = [slice(None) if keep_all else (one if n == at else None) for n in range(len(chosen))]
    over_spec, pat_spec = (over_width, n_over), (pat_width, n_pat)
    starts = range(0, n_tokens, step)
    over, rows = torch.zeros(len(chosen), model.n_heads, n_over, n_over), torch.zeros(len(chosen), model.n_heads, n_tokens)
    pattern = torch.zeros(len(chosen) if keep_all else 1, model.n_heads if keep_all else 1, n_pat, n_pat)

    with model.lock, torch.no_grad(), eager_attention(model), after_each_block(model, progress, len(starts)):
        cache = empty_cache(model.hf) if len(starts) > 1 else None
        for first in starts:
            last = min(first + step, n_tokens)
            resume = resume_inputs(model, cache, 1, last) if cache is not None else {}
            parts = _run_part(model, ids[:, first:last].to(model.device), resume, attns, end, first, last, q, heads,
                              over_spec, pat_spec)
            for n, (offset, overview, row, reads) in enumerate(parts):
                over[n] += query_bins(overview.float().cpu(), over_width, n_over, first)
                if row is not None:
                    rows[n, :, offset:last] = row.cpu()
                if reads is not None:
                    pattern[n if keep_all else 0] += query_bins(reads.float().cpu(), pat_width, n_pat, first)

    over, pattern = over / bin_sizes(n_tokens, over_width), pattern / bin_sizes(n_tokens, pat_width)
    patterns = pattern.numpy() if keep_all else None
    return AttentionResult(
        tokens=model.token_texts(ids[0]), rows=row_labels(chosen, False), layers=chosen, n_heads=model.n_heads,
        overview=over.numpy(), overview_bins=bins(n_tokens, overview_size), head=selected,
        pattern=pattern[at, selected[1]].numpy() if keep_all else pattern[0, 0].numpy(),
        pattern_bins=bins(n_tokens, full_max), query=q, from_query=rows.numpy(), patterns=patterns,
    )


def head_pattern(model: Model, prompt: str, head, *, full_max: int = FULL_MAX) -> HeadPattern:
    """One head's pattern (as `AttentionResult.pattern`): traces that stop after its layer."""
    layer, index = check_head(model, head, model.check_layers(None))
    result = attention_patterns(model, prompt, layers=[layer], head=(layer, index), full_max=full_max, keep_bytes=0)
    return HeadPattern(head=(layer, index), pattern=result.pattern, bins=result.pattern_bins)
