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

from dataclasses import dataclass, field
from typing import Callable, Iterator

import nnsight
import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..model import Model
from .._adapter import get_path
from ._checks import choice, whole
from ._prefix import common_start, plan, prefix_inputs, prefix_keys, rows_within
from ._trace import residual
from .metric import LogitDiff, last_metric
from .relp import apply_rules, ln_rule, lrp_rules
from . import prefix_cache

SITES = ("resid", "attn", "mlp", "heads")
METHODS = ("exact", "attribution", "relp")


@dataclass
class Problem:
    """Two prompts of equal token length and the answer pair they disagree on."""

    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    correct_id: int
    wrong_id: int
    tokens: list[str]

    @property
    def shared(self) -> int:
        """How many tokens both prompts begin with: there, the two runs are the same."""
        return common_start([self.clean_ids[0], self.corrupted_ids[0]])

    def source_target(self, denoise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Where activations come from, and the run they are patched into."""
        return (self.clean_ids, self.corrupted_ids) if denoise else (self.corrupted_ids, self.clean_ids)

    def metric(self, chosen=None):
        """The metric a grid reports: the one chosen, else this problem's logit difference."""
        return chosen or LogitDiff(self.correct_id, self.wrong_id)


@dataclass
class PatchingResult:
    site: str
    method: str
    rows: list[str]
    cols: list[str]
    col_label: str  # "token" or "head"
    patched_ld: np.ndarray  # [rows, cols]: LD after patching (estimated for approximations); NaN = not run
    ld_clean: float
    ld_corrupted: float
    denoise: bool = True
    done: np.ndarray = field(default=None, repr=False)  # [rows, cols] bool: cells computed so far

    @property
    def score_meaning(self) -> str:
        """What 0 and 1 of `normalized` mean for this patching direction."""
        return SCORE_MEANING[self.denoise]

    @property
    def normalized(self) -> np.ndarray:
        """(LD_patched - LD_corr) / (LD_clean - LD_corr) in both directions: 1 is the clean
        behaviour, 0 the corrupted one (`score_meaning` says what that is for this direction)."""
        span = self.ld_clean - self.ld_corrupted
        if abs(span) < 1e-6:
            raise InputError(
                f"The clean and corrupted runs give the same logit difference ({self.ld_clean:+.3f}): there is "
                "nothing to restore, so the normalized score is undefined. Choose prompts the model answers "
                "differently, or show the raw logit difference (normalized=False)."
            )
        return (self.patched_ld - self.ld_corrupted) / span


SCORE_MEANING = {True: "0: no effect, 1: clean answer restored",
                 False: "1: no effect, 0: clean answer destroyed"}


def prepare(model: Model, clean: str, corrupted: str, answer) -> Problem:
    """Tokenize and check the inputs; every message says what to change."""
    clean_ids, corrupted_ids = model.encode(clean, "clean prompt"), model.encode(corrupted, "corrupted prompt")
    if clean_ids.shape != corrupted_ids.shape:
        show = lambda ids: "[" + ", ".join(repr(t) for t in model.token_texts(ids[0])) + "]"  # noqa: E731
        raise InputError(
            "The clean and corrupted prompts must have the same number of tokens, so that positions line up: "
            f"clean has {clean_ids.shape[1]} {show(clean_ids)}, corrupted has {corrupted_ids.shape[1]} "
            f"{show(corrupted_ids)}."
        )
    if not isinstance(answer, (list, tuple)) or len(answer) != 2:
        raise InputError("answer must be a pair: (correct token, wrong token), e.g. (' Mary', ' John').")
    correct, wrong = (model.single_token(a, "each answer") for a in answer)
    if correct == wrong:
        raise InputError("The correct and wrong answers are the same token: the logit difference would be 0.")
    return Problem(clean_ids, corrupted_ids, correct, wrong, model.token_texts(clean_ids[0]))


def check_site(site: str) -> str:
    return choice(site, SITES, "site")


# --- reading a site inside a trace -------------------------------------------
# Trace bodies only touch envoys and tensors resolved beforehand: a remote trace
# ships what its body names, and a Model (it holds a lock) cannot travel.

def _site_refs(model: Model, site: str) -> list[tuple]:
    """(envoy, "output" | "input", flat) per layer: the tensor patched at `site`
    ([B, T, d]; heads: the attention output projection's input, [B, T, H*dh]). `flat` marks
    a site the model computes on [B*T, d] (OPT's MLP)."""
    refs = []
    for block in model.blocks:
        if site == "resid":
            refs.append((block, "output", False))
        elif site == "heads":
            refs.append((model.part(block, "attn_out"), "input", False))
        else:
            flat = site == "mlp" and model.adapter.mlp_flat
            refs.append((model.part(block, site), "output", flat))
    return refs


def _read(ref, batch: int):
    """The site's tensor as [batch, T, width] (a view: writing into it patches the model)."""
    envoy, attr, flat = ref
    value = getattr(envoy, attr)
    value = residual(value) if attr == "output" else value
    return _unflatten(value, batch) if flat else value


def _read_for_grad(ref):
    """The site's tensor as the model made it (flat or not), to take its gradient. A module
    output is handed on as a copy: the model may add into it in place afterwards (Falcon's
    parallel block adds the attention output into the MLP output)."""
    envoy, attr, _ = ref
    value = getattr(envoy, attr)
    if attr == "output" and torch.is_tensor(value):
        setattr(envoy, attr, value.clone())
    return residual(value) if attr == "output" else value


def _unflatten(value, batch: int):
    return value.unflatten(0, (batch, -1)) if value.dim() == 2 else value


def _grid_axes(model: Model, problem: Problem, site: str) -> tuple[list[str], list[str], str]:
    rows = [str(layer) for layer in range(model.n_layers)]
    if site == "heads":
        return rows, [f"H{h}" for h in range(model.n_heads)], "head"
    return rows, list(problem.tokens), "token"


def _cache_runs(model: Model, problem: Problem, site: str, denoise: bool, metric):
    """One trace each over source and target: site activations, block outputs, metric, and
    the key/value cache (kept here only: a remote run's cache stays on the server)."""
    return [_cache_run(model, ids, site, metric) for ids in problem.source_target(denoise)]


def _cache_run(model: Model, ids: torch.Tensor, site: str, metric):
    """One of `_cache_runs`, in a frame of its own: a remote trace ships the names its body
    reads, and a second run in the same frame shipped the first one's saved activations."""
    refs, block_list, lm, keep_cache = _site_refs(model, site), list(model.blocks), model.lm, not model.remote
    unembed = model.unembed
    with model.trace(ids.to(model.device), use_cache=keep_cache, logits_to_keep=1):
        sites, blocks = [], []
        for ref, block in zip(refs, block_list):  # execution order: a site comes before its block's output
            sites.append(_read(ref, 1)[0].clone())  # Falcon adds into its MLP output in place
            blocks.append(residual(block.output)[0])
        sites, blocks = nnsight.save(sites), nnsight.save(blocks)
        value = nnsight.save(last_metric(lm, unembed, metric))
        if keep_cache:
            kv = nnsight.save(lm.output.cache)
    return sites, blocks, float(value[0]), kv if keep_cache else None


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
    rows, cols, col_label = _grid_axes(model, problem, site)
    with model.lock, torch.no_grad():
        (src_sites, _, src_ld, _), (tgt_sites, tgt_blocks, tgt_ld, tgt_cache) = _cache_runs(
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
    refs, blocks, lm, unembed = _site_refs(model, site), list(model.blocks), model.lm, model.unembed
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
            value = _read(refs[layer], k)
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
    rows, cols, col_label = _grid_axes(model, problem, site)
    source_ids, target_ids = problem.source_target(denoise)
    refs = _site_refs(model, site)
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
                apply_rules(rules[layer], lambda ref=ref: acts.append(_read_for_grad(ref)))
            else:
                acts.append(_read_for_grad(ref))
        if relp:
            for norm in rules[-1]:
                ln_rule(norm)
        values = last_metric(lm, unembed, metric)
        diffs = [(_unflatten(a, 2)[0] - _unflatten(a, 2)[1]).detach() for a in acts]  # source - target
        src_ld, tgt_ld = nnsight.save(values[0].detach()), nnsight.save(values[1].detach())
        with values[1].backward():  # gradients arrive last layer first
            scores = [_cell_scores(diff, _unflatten(act.grad, 2)[1], site, n_heads)
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
