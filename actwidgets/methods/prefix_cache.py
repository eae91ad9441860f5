"""The prompt's prefix keys and values, computed once per (model, prompt) and reused by
every steering strength (the local fast path's answer to slider latency), and by attribution
patching (below). It sits beside `_prefix.py`, the rules for resuming a forward from a cache.

Why it is sound: with ``positions="last"`` the edit touches the last prompt position and
later ones only, and attention is causal, so the keys and values of ``ids[:, :-1]`` are
the unsteered model's at every strength. A slider move then runs the last prompt position
and the new tokens (`steer_generate`), or the last prompt position and the continuation
(`measure_kl`'s teacher forcing), instead of the whole prompt again: on a 1,000-token
prompt the first steered token comes ~24x sooner (bench/steering.py). ``positions="all"``
edits the prefix too, so it never comes here. The prefix runs in a forward of its own, whose float sums differ from
a whole prefill's in the last bits (another matrix shape: in float32, logits ~4e-5 apart,
measured KL ~3e-5 relative): greedy tokens are the same but at a near-tie of the top two,
as with `steer_generate_batch`'s padding. A hit and the miss that filled it agree exactly.

The same store serves any forward that edits nothing before a known position
(`shared_start`): steering vectors' prompts that open with the same chat template, and
attribution patching's pair up to its first differing token.

Entries are kept per model (weakly: a model that goes away takes its entries with it),
keyed by the prompt's ids and the dtype and device the weights have at the time (`measure_kl`
runs a bf16 model in float32: that is another entry), least recently used first out past
`MAX_BYTES`. An entry is stale once a weight changes: each parameter's identity and autograd
version counter are compared on every use, which sees in-place edits (``p.add_``,
``load_state_dict``), replaced parameters and casts. Edits through ``p.data`` bypass the
version counter: call `clear(model)` after those. Callers hold ``model.lock``.
"""
from __future__ import annotations

import copy
import threading
import weakref
from collections import OrderedDict

import torch

from ._prefix import OVERHEAD, cache_keyword, common_start, empty_cache, plain_cache, resume_inputs

MAX_BYTES = 256 * 2**20  # all models together; 0 turns the cache off (the benchmark's "from scratch")

# (id of the transformers model, prompt ids, dtype, device) -> (stamp, cache, bytes), oldest use first
_entries: OrderedDict = OrderedDict()
_watched: set[int] = set()  # models whose entries go when they do
_guard = threading.Lock()  # the store is shared by every model, and each model has its own lock


def reusable(model, ids: torch.Tensor, rows: int = 1):
    """A private copy of the cached keys and values of ``ids[:, :-1]``, repeated for `rows`
    rows, computing and storing them first if needed; None where there is nothing to reuse
    (a one-token prompt, a remote model, a model whose ``generate`` keeps another kind of
    cache, or the cache off). The caller runs from position ``ids.shape[1] - 1`` on."""
    hf = model.hf
    if MAX_BYTES <= 0 or model.remote or ids.shape[1] < 2 or not plain_cache(hf):
        return None
    key = (id(hf), tuple(ids[0, :-1].tolist()), next(hf.parameters()).dtype, model.device)
    stamp = _stamp(hf)
    with _guard:
        entry = _entries.pop(key, None)
        if entry is not None and entry[0] == stamp:
            _entries[key] = entry  # now the most recently used
    if entry is None or entry[0] != stamp:
        cache = _prefill(model, ids[:, :-1])
        entry = (stamp, cache, _bytes(cache))
        _store(hf, key, entry)
    return _fork(entry[1], rows)


def resume(model, ids: torch.Tensor, rows: int = 1, width: int | None = None) -> tuple[int, dict]:
    """(positions to skip, trace keyword arguments) for a forward over `ids` (and `width` -
    ``ids.shape[1]`` positions after them) that edits nothing before ``ids``'s last position:
    the cached prefix and an attention mask over all `width` positions, or (0, {}) where
    `reusable` has nothing."""
    past = reusable(model, ids, rows)
    if past is None:
        return 0, {}
    return ids.shape[1] - 1, resume_inputs(model, past, rows, ids.shape[1] if width is None else width)


def shared_start(model, prompts: list[torch.Tensor], width: int, saved: float) -> tuple[int, dict]:
    """`resume` for a batch of 1-D prompts, one per row, that all begin with the same tokens
    (a chat template's system prompt, a patching pair's common start): those run once, where
    that saves more than a forward's fixed cost, `saved` x their number (in rows x positions)
    against `OVERHEAD`; (0, {}) otherwise. Each prompt keeps at least its last token."""
    common = min(common_start(prompts), min(len(x) for x in prompts) - 1)
    if saved * common <= OVERHEAD:
        return 0, {}
    return resume(model, prompts[0][None, :common + 1], rows=len(prompts), width=width)


def clear(model=None) -> None:
    """Forget the cached prefixes of one model (of all models without an argument)."""
    with _guard:
        for key in [k for k in _entries if model is None or k[0] == id(model.hf)]:
            del _entries[key]


def cached_bytes() -> int:
    """What the stored prefixes hold, all models together."""
    with _guard:
        return sum(size for _, _, size in _entries.values())


def _stamp(hf) -> tuple:
    return tuple((id(p), p._version) for p in hf.parameters())


def _prefill(model, prefix: torch.Tensor):
    """The prefix through the decoder stack only (no unembedding: only the keys and values
    are kept), with the attention mask a generation passes."""
    model.check_eval()  # a prefix computed with dropout would be kept, and reused after eval()
    hf = model.hf
    cache = empty_cache(hf)
    prefix = prefix.to(model.device)
    with torch.no_grad():
        hf.base_model(prefix, attention_mask=torch.ones_like(prefix), use_cache=True,
                      **{cache_keyword(hf): cache})
    return cache


def _bytes(cache) -> int:
    return sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (getattr(layer, "keys", None), getattr(layer, "values", None)) if torch.is_tensor(t))


def _store(hf, key, entry) -> None:
    if entry[2] > MAX_BYTES:
        return  # more than the whole budget: recomputed each time rather than evicting everything
    with _guard:
        if key[0] not in _watched:
            _watched.add(key[0])
            weakref.finalize(hf, _forget, key[0]).atexit = False  # nothing to free at exit
        _entries[key] = entry
        total = sum(size for _, _, size in _entries.values())
        while total > MAX_BYTES:
            total -= _entries.popitem(last=False)[1][2]


def _forget(model_id: int) -> None:
    with _guard:
        _watched.discard(model_id)
        for key in [k for k in _entries if k[0] == model_id]:
            del _entries[key]


def _fork(cache, rows: int):
    """A copy that `generate` (or a forward) may grow without touching the stored one.

    ``DynamicLayer`` and ``DynamicSlidingWindowLayer`` grow by ``torch.cat`` into new tensors
    and never write into the ones they hold, so a copy of the layer objects sharing the
    tensors is enough (no bytes copied); any other layer kind is deep-copied."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers):
        fork = copy.copy(cache)
        fork.layers = [copy.copy(layer) for layer in cache.layers]
    else:
        fork = copy.deepcopy(cache)
    if rows > 1:
        fork.batch_repeat_interleave(rows)
    return fork
