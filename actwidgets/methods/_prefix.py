"""Position skipping for exact patching: reuse the target run's prefix, and cut the grid
into chunks that share a start.

Attention is causal, so a patch at position p leaves every position before p as it is in
the target run. A batch of cells whose smallest position is p0 therefore runs only the
target tokens from p0 on; the keys and values of positions < p0 are the target run's,
handed in as a fresh key/value cache (attention appends to it), and the patch lands at
p - p0. `prefix_keys` is the one place that decides whether a model's cache can be
reused this way; where it says no, every batch runs the whole prompt (the path before).
"""
from __future__ import annotations

import inspect

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

KeysValues = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values [1, heads, T, head_dim]


def cache_keyword(hf: torch.nn.Module) -> str:
    """What this transformers version calls the cache argument (``cache`` from 5.2x, before
    that ``past_key_values``): the same name for the forward and for ``generate``."""
    return "cache" if "cache" in inspect.signature(type(hf).forward).parameters else "past_key_values"


def prefix_keys(model, site: str, cache, n_tokens: int) -> KeysValues | None:
    """The target run's per-layer keys and values, or None where reusing them could change
    a number: a remote model (its cache stays on the server), the `heads` site (it patches
    every position, so there is no prefix to reuse), or a cache that does not hold every
    position of every layer as one plain tensor (a sliding window shorter than the prompt
    has dropped positions; other layouts are not the keys/values of this forward alone)."""
    if model.remote or site == "heads" or type(cache) is not DynamicCache:
        return None
    if len(cache.layers) != model.n_layers:
        return None
    keys = []
    for layer in cache.layers:
        if type(layer) not in (DynamicLayer, DynamicSlidingWindowLayer):
            return None
        if isinstance(layer, DynamicSlidingWindowLayer) and layer.sliding_window <= n_tokens:
            return None
        if not torch.is_tensor(layer.keys) or layer.keys.dim() != 4 or layer.keys.shape[-2] != n_tokens:
            return None
        keys.append((layer.keys, layer.values))
    return keys


def common_start(prompts: list[torch.Tensor]) -> int:
    """How many tokens the 1-D prompts all begin with."""
    shortest = min(len(x) for x in prompts)
    heads = torch.stack([x[:shortest] for x in prompts])
    return int((heads == heads[0]).all(dim=0).cumprod(dim=0).sum())


def plain_cache(hf) -> bool:
    """Whether a forward of this model may go on from a plain DynamicCache: only where
    ``generate`` would make one itself, so a cached run keeps the same kind of cache (and
    the same numbers) as a run from scratch."""
    supports = getattr(hf, "_supports_default_dynamic_cache", None)
    config = getattr(hf, "generation_config", None)
    return bool(supports and supports()) and getattr(config, "cache_implementation", None) is None


def empty_cache(hf) -> DynamicCache:
    """The cache a forward fills and the next one goes on from, each layer of the model's own kind."""
    return DynamicCache(config=hf.config.get_text_config(decoder=True))


def resume_inputs(model, cache, rows: int, width: int) -> dict:
    """Keyword arguments for a forward that goes on from `cache`: the cache, and an
    attention mask over all `width` positions, the cached ones included (nnsight would
    otherwise pass one over the new tokens only, which the model reads as a shorter sequence)."""
    mask = torch.ones(rows, width, dtype=torch.long, device=model.device)
    return {cache_keyword(model.hf): cache, "attention_mask": mask}


def prefix_inputs(model, keys: KeysValues, start: int, batch: int) -> dict:
    """`resume_inputs` for a forward over positions >= `start` of the cached prompt: a new
    cache holding positions [0, start) of every layer for `batch` rows, built from the
    model's config so that each layer has the model's own cache type."""
    data = [(k[:, :, :start].expand(batch, -1, -1, -1), v[:, :, :start].expand(batch, -1, -1, -1))
            for k, v in keys]
    cache = DynamicCache(ddp_cache_data=data, config=model.hf.config)
    return resume_inputs(model, cache, batch, keys[0][0].shape[-2])


# What one chunk of patched rows may hold at once: its keys and values and hidden states.
# Rows cost memory in proportion to the prompt: 64 rows of a 1,026-token prompt took 3.4 GB
# on the default model; on a 14-token prompt 64 rows take about 60 MB and are not cut.
CHUNK_BYTES = 512 * 2**20


def rows_within(model, cache, n_tokens: int) -> int:
    """How many patched rows fit in `CHUNK_BYTES`. A row holds every layer's keys and values
    over the prompt (twice, while attention appends to a reused prefix) and a few hidden
    states; the keys and values are measured on the target run's `cache` where there is one."""
    itemsize = torch.finfo(model.hf.dtype).bits // 8
    layers = getattr(cache, "layers", None) or []
    kv = sum(layer.keys.nbytes + layer.values.nbytes for layer in layers
             if torch.is_tensor(getattr(layer, "keys", None)) and torch.is_tensor(getattr(layer, "values", None)))
    if not kv:  # a cache of another layout, not measured here: as if every head had its own keys
        kv = model.n_layers * 2 * n_tokens * model.d_model * itemsize
    per_row = 2 * kv + 8 * n_tokens * model.d_model * itemsize
    return max(1, CHUNK_BYTES // per_row)


# A forward's fixed cost per block it runs, in units of one row over one position (running
# the block's Python and hooks, reading its weights): what a patching chunk pays, and what
# running a shared prompt start on its own must save to be worth it (`prefix_cache.shared_start`).
# The IOI grid on the default model (CPU) took the same time within noise for 16 to 256.
OVERHEAD = 64


def plan(cells: list[tuple[int, int]], size: int, n_layers: int, n_tokens: int,
         reuse: bool) -> list[list[tuple[int, int]]]:
    """Cells [(layer, position or head)] cut into chunks of at most `size`, at the cuts that
    cost least: a chunk runs the blocks from its lowest layer on, over the positions from its
    smallest one on when the prefix is reused (`reuse`), else over all of them, so it costs
    about blocks x (rows x positions + OVERHEAD). With reuse the cells are ordered by position
    (a chunk then shares its start), else by layer (a chunk then shares its first block)."""
    order = sorted(cells, key=lambda cell: (cell[1], cell[0])) if reuse else sorted(cells)
    best, cut = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        first, start = n_layers, n_tokens
        for begin in range(end - 1, max(end - size, 0) - 1, -1):
            first, start = min(first, order[begin][0]), min(start, order[begin][1])
            positions = n_tokens - start if reuse else n_tokens
            cost = best[begin] + (n_layers - first) * ((end - begin) * positions + OVERHEAD)
            if cost < best[end]:
                best[end], cut[end] = cost, begin
    chunks, end = [], len(order)
    while end:
        chunks.append(order[cut[end]:end])
        end = cut[end]
    return chunks[::-1]
