"""Activation patching: exact (batched), attribution patching, and RelP.

Metric: the logit difference LD = logit(correct) - logit(wrong) at the last position
(or any `metric(last_logits [B, V]) -> [B]`, see metric.py). Each cell reports LD after
patching and, normalised, `(LD_patched - LD_corr) / (LD_clean - LD_corr)`: 0 = no effect,
1 = the clean behaviour fully restored. Denoising (clean activations into the corrupted
run) is the default; noising patches corrupted activations into the clean run.

Sites: `resid` (block output), `attn` and `mlp` (their outputs) x layer x position,
and `heads` (one head's slice of the attention output projection's input, at every
position) x layer x head.

Exact patching batches cells along the batch dimension and starts them from the cached
target run: blocks below the patched one are skipped (nnsight's `skip`), and positions
before the patched one are not recomputed (their keys and values are the target run's,
see _prefix.py), so a cell at (layer l, position p) costs about L - l blocks over T - p
positions, not L over T. Attribution patching approximates every cell at once,
`(a_src - a_tgt) . dLD/da` at the target run: two forwards and one backward (the tokens
both prompts begin with run once, without a graph: their scores are 0). RelP is the same
with the backward pass changed by LRP rules (Rezaei Jafari et al. 2025; see relp.py).
Scores are summed in float32.
"""
from __future__ import annotations

from typing import Callable, Iterator

import nnsight
import numpy as np
import torch

from ..errors import Cancelled
from ..model import Model
from .._adapter import get_path
from ._checks import choice, whole
from ._grid import (METHODS, SITES, PatchingResult, Problem, cache_runs, check_site, grid_axes, prepare, read,
                    read_for_grad, site_refs, unflatten)
from ._prefix import plan, prefix_inputs, prefix_keys, rows_within
from .metric import LogitDiff, last_metric
from .relp import apply_rules, ln_rule, lrp_rules
from . import prefix_cache


# --- exact patching ------------------------------------------------------------

def iter_exact(model: Model, problem: Problem, site: str = "resid", *, denoise: bool = True,
               chunk_size: int = 64, metric=None, should_stop: Callable[[], bool] | None = None,
               ) -> Iterator[tuple[PatchingResult, float]]:
    """Exact patching, yielding (partial result, fraction done) after every chunk of cells.

    Cells are run at most `chunk_size` at a time along the batch dimension, fewer on a long
    prompt (`_prefix.rows_within`: a chunk holds at most about 512 MB); a cancel
    (`should_stop`) takes effect between chunks.
    """
    check_site(site)
    chunk_size = whole(chunk_size, "chunk_size", 1)
    metric = problem.metric(metric)
    rows, cols, col_label = grid_axes(model, problem, site)
    with model.lock, torch.no_grad():
        (src_sites, _, src_ld, _), (tgt_sites, tgt_blocks, tgt_ld, tgt_cache) = cache_runs(
            model, problem, site, denoise, metric)
        ld_clean, ld_corr = (src_ld, tgt_ld) if denoise else (tgt_ld, src_ld)
        grid = np.full((len(rows), len(cols)), np.nan, dtype=np.float32)
        result = PatchingResult(site, "exact", rows, cols, col_label, grid, ld_clean, ld_corr, denoise,
                                done=np.zeros(grid.shape, bool))
        target_ids = problem.source_target(denoise)[1].to(model.device)
        keys = prefix_keys(model, site, tgt_cache, target_ids.shape[1])
        # A patch that copies an identical activation changes nothing, and so does one before
        # the first differing token, where the runs agree in exact arithmetic even if their
        # rounding does not (a mixture of experts groups tokens by expert: the later tokens
        # change the earlier ones' matmul shapes). A head's patch covers every position.
        same = _same_cells(src_sites, tgt_sites, site, model.n_heads)
        if site != "heads":
            same[:, :problem.shared] = True
        grid[same], result.done[same] = tgt_ld, True
        moved = [(int(layer), int(col)) for layer, col in zip(*np.nonzero(~same))]
        # NDIF's memory is not this machine's: a remote grid is cut by chunk_size alone
        rows_at_once = chunk_size if model.remote else min(chunk_size, rows_within(model, tgt_cache, target_ids.shape[1]))
        chunks = plan(moved, rows_at_once, model.n_layers, target_ids.shape[1], keys is not None)
        if not chunks:
            yield result, 1.0
        for n, chunk in enumerate(chunks, 1):
            if should_stop and should_stop():
                raise Cancelled
            layers, columns = (list(axis) for axis in zip(*chunk))
            grid[layers, columns] = _patched_batch(model, target_ids, chunk, site, src_sites, tgt_blocks, keys, metric)
            result.done[layers, columns] = True
            yield result, n / len(chunks)


def _same_cells(src_sites, tgt_sites, site: str, n_heads: int) -> np.ndarray:
    """[layers, cols] bool: where source and target activations are identical, computed on
    the model's device and brought to the host once (no round trip per cell on a GPU)."""
    rows = []
    for src, tgt in zip(src_sites, tgt_sites):  # [T, width]
        equal = src == tgt
        rows.append(equal.reshape(equal.shape[0], n_heads, -1).all(dim=2).all(dim=0) if site == "heads"
                    else equal.all(dim=-1))
    return torch.stack(rows).cpu().numpy()


def exact_patching(model: Model, clean: str, corrupted: str, answer, site: str = "resid", **kwargs) -> PatchingResult:
    """The whole exact grid (see iter_exact for streaming)."""
    problem = prepare(model, clean, corrupted, answer)
    result = None
    for result, _ in iter_exact(model, problem, site, **kwargs):
        pass
    return result


def _patched_batch(model, target_ids, chunk, site, src_sites, tgt_blocks, keys, metric) -> np.ndarray:
    """The metric for a batch of cells [(layer, position or head)], one cell per batch row.

    With the target run's keys and values (`keys`), only positions from the chunk's
    smallest one on are run. Blocks below the chunk's lowest layer are skipped and replaced
    by the cached target run; each row then gets its patch at its own layer, in execution order.
    """
    refs, blocks, lm, unembed = site_refs(model, site), list(model.blocks), model.lm, model.unembed
    head_dim, as_tuple = model.head_dim, model.adapter.block_tuple
    # NDIF recomputes the blocks below faster than their outputs could be uploaded to it
    k, first = len(chunk), 0 if model.remote else min(layer for layer, _ in chunk)
    start = min(col for _, col in chunk) if keys else 0
    reuse = prefix_inputs(model, keys, start, k) if start else {}
    # What the body reads, taken out here: a remote trace ships the values its body names, and
    # naming src_sites and tgt_blocks there shipped every layer's activations with every chunk.
    patches = [(src_sites[layer][:, cell * head_dim:(cell + 1) * head_dim] if site == "heads"
                else src_sites[layer][cell]).clone() for layer, cell in chunk]  # a view would ship its whole storage
    skipped = [tgt_blocks[below][start:] for below in range(first)]
    with model.trace(target_ids[:, start:].expand(k, -1), logits_to_keep=1, **reuse):
        for below in range(first):  # these blocks would only recompute the cached target run
            cached = skipped[below].expand(k, -1, -1)
            blocks[below].skip((cached, None) if as_tuple else cached)  # callers read [0] of a tuple
        for layer in sorted({layer for layer, _ in chunk}):
            value = read(refs[layer], k)
            for row, (cell_layer, cell) in enumerate(chunk):
                if cell_layer != layer:
                    continue
                if site == "heads":
                    value[row, :, cell * head_dim:(cell + 1) * head_dim] = patches[row]
                else:
                    value[row, cell - start] = patches[row]
        out = nnsight.save(last_metric(lm, unembed, metric))
    return out.float().cpu().numpy()


# --- attribution patching and RelP -------------------------------------------------

def attribution_patching(model: Model, clean: str, corrupted: str, answer, site: str = "resid", *,
                         relp: bool = False, denoise: bool = True, metric=None) -> PatchingResult:
    """Linear estimate of every cell: (a_src - a_tgt) . dMetric/da at the target run.

    With `relp=True` the gradient is taken through the LRP rules (module docstring).
    """
    check_site(site)
    problem = prepare(model, clean, corrupted, answer)
    metric = problem.metric(metric)
    rows, cols, col_label = grid_axes(model, problem, site)
    source_ids, target_ids = problem.source_target(denoise)
    refs = site_refs(model, site)
    rules = lrp_rules(model, site) if relp else None
    # a gradient even where the caller turned them off (a notebook under torch.no_grad or
    # inference_mode); tensors made in here are ordinary ones, which a backward may save
    with model.lock, torch.inference_mode(False), torch.enable_grad(), _frozen_parameters(model):
        both = torch.cat([source_ids, target_ids]).to(model.device)  # row 0: source, row 1: target
        # Positions before the first differing token are the same in both rows: their scores
        # are 0 and need no gradient, so they run once, without a graph (3 row-positions saved
        # for each: one forward row, two backward rows).
        skip, resume = prefix_cache.shared_start(model, list(both), both.shape[1], saved=3)
        src_ld, tgt_ld, scores = _first_order(model, both[:, skip:], refs, rules, metric, resume, site)
    if site != "heads":
        scores = torch.nn.functional.pad(scores, (skip, 0))
    ld_clean, ld_corr = (src_ld, tgt_ld) if denoise else (tgt_ld, src_ld)
    estimate = (tgt_ld + scores).float().cpu().numpy()
    return PatchingResult(site, "relp" if relp else "attribution", rows, cols, col_label, estimate,
                          ld_clean, ld_corr, denoise, done=np.ones(estimate.shape, bool))


def _first_order(model: Model, both: torch.Tensor, refs, rules, metric, resume: dict, site: str):
    """(source metric, target metric, [layers, cols] scores) from one trace of both rows.

    The metric reads the last position: unembedding it alone, not all T, saved a fifth of a
    14-token forward and its backward, and the default metric's two columns alone another
    sixth. (Two one-row traces, the source without a graph, measured slower: a batch of two
    rows costs 1.4 rows.)"""
    relp, lm, unembed, n_heads = rules is not None, model.lm, model.unembed, model.n_heads
    embedding = get_path(lm, _embedding_path(model))
    with model.trace(both, logits_to_keep=1, **resume):
        embedding.output.requires_grad_(True)  # parameters are frozen: the graph starts here
        acts = []  # raw site tensors: a gradient is read off the tensor the model used
        for layer, ref in enumerate(refs):
            if relp:
                apply_rules(rules[layer], lambda ref=ref: acts.append(read_for_grad(ref)))
            else:
                acts.append(read_for_grad(ref))
        if relp:
            for norm in rules[-1]:
                ln_rule(norm)
        values = last_metric(lm, unembed, metric)
        diffs = [(unflatten(a, 2)[0] - unflatten(a, 2)[1]).detach() for a in acts]  # source - target
        src_ld, tgt_ld = nnsight.save(values[0].detach()), nnsight.save(values[1].detach())
        with values[1].backward():  # gradients arrive last layer first
            scores = [_cell_scores(diff, unflatten(act.grad, 2)[1], site, n_heads)
                      for diff, act in zip(reversed(diffs), reversed(acts))]
            # reduced where the run is: a remote run brings back [layers, cols], not three
            # [layers, tokens, d] sets (activations of both rows and the gradients)
            scores = nnsight.save(torch.stack(scores[::-1]))
    return float(src_ld), float(tgt_ld), scores


def _cell_scores(diff: torch.Tensor, grad: torch.Tensor, site: str, n_heads: int) -> torch.Tensor:
    """Sum the first-order term over d_model per position ([T]), or per head over positions ([H])."""
    product = diff.float() * grad.float()
    if site == "heads":
        return product.reshape(product.shape[0], n_heads, -1).sum(dim=(0, 2))
    return product.sum(dim=-1)


def _embedding_path(model: Model) -> str:
    hf = model.hf
    target = hf.get_input_embeddings()
    return next(name for name, module in hf.named_modules() if module is target)


class _frozen_parameters:
    """Gradients flow to activations only: parameters are set not to require grad."""

    def __init__(self, model: Model) -> None:
        self.params = [p for p in model.hf.parameters() if p.requires_grad]

    def __enter__(self):
        for p in self.params:
            p.requires_grad_(False)

    def __exit__(self, *exc):
        for p in self.params:
            p.requires_grad_(True)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the cells both grids have (NaN when undefined)."""
    mask = np.isfinite(a) & np.isfinite(b)
    if mask.sum() < 2 or np.std(a[mask]) == 0 or np.std(b[mask]) == 0:
        return float("nan")
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def run(model: Model, clean: str, corrupted: str, answer, site: str = "resid", method: str = "exact",
        **kwargs) -> PatchingResult:
    """Any method by name: 'exact', 'attribution' or 'relp'."""
    if choice(method, METHODS, "method") == "exact":
        return exact_patching(model, clean, corrupted, answer, site, **kwargs)
    return attribution_patching(model, clean, corrupted, answer, site, relp=method == "relp", **kwargs)


__all__ = ["METHODS", "SITES", "LogitDiff", "PatchingResult", "Problem", "attribution_patching", "exact_patching",
           "iter_exact", "pearson", "prepare", "run"]
