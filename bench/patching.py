"""Exact activation patching on the IOI pair (default model, residual stream, 30 x 14),
against baselines measured in the same run:

- naive: one nnsight trace per cell (under no_grad, last logits only) -> `speedup_vs_naive`
  (target >= 20x);
- batched torch: one plain-torch forward over all 420 cells with hooks, no layer or
  position skipping -> `ratio_vs_batched_torch` (target <= 0.15);
- peak RSS of the process while the exact grid runs -> `peak_rss_gb` (target <= 2);
- attribution and RelP time in plain-forward equivalents (targets 2.5 and 3), and the same
  attribution in plain torch (`torch_attribution`: one two-row forward with hooks, one
  backward) -> `torch_attribution_forward_equivalents`, the floor for this algorithm;
- the exact grid on the IOI pair lengthened to 28 and 56 tokens (`lengthened`) ->
  `grid_s_by_tokens`, and `grid_growth_exponent`, the slope of log time over log tokens
  from 14 to 56 (target <= 2: the work is cells x remaining positions);
- the default metric, which unembeds its two tokens only (`_trace.unembed_only`), over the
  same logit difference given as a plain function, which unembeds the whole vocabulary ->
  `two_columns_ratio_{attribution,relp,exact}` (alternating, median of each);
- attribution on the 56-token pair, whose first 36 tokens are shared, with that start run
  once (`prefix_cache.shared_start`), over the same computed for both whole prompts ->
  `attribution_shared_start_ratio_56` (the start computed afresh) and `..._stored_56` (the
  start already stored, as when the grid re-runs with another metric or method).

Usage: python bench/patching.py [--threads N] [--device cuda] [--dtype bfloat16]
(--threads 1 is steadier on shared cores; on a GPU, `gpu_peak_gb` is the exact grid's device peak)
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import threading

import numpy as np
import psutil
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import nnsight  # noqa: E402

from actwidgets.methods import patching as P  # noqa: E402
from actwidgets.methods import prefix_cache  # noqa: E402
from _util import (add_model_options, gpu_peak, load, median_time, model_figures, model_options,  # noqa: E402
                   paired_medians, report)

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")
PREAMBLE = ("It was a quiet morning in the small town by the river and most of the people who lived there were still "
            "asleep in their warm beds when the sun came up over the hills").split()
FILLER = ("who had walked all the way there in the cold rain that fell on the town all morning and made the streets "
          "wet and grey while the shops opened one by one and the bells of the old church rang out over the square"
          ).split()


def lengthened(model, n_tokens: int) -> tuple[str, str]:
    """The IOI pair grown to `n_tokens` by a sentence before it and a clause after the
    differing name, placed so that the prompts differ from the same fraction on (5 of 14
    tokens): the grid's work, cells x remaining positions, then grows as tokens squared."""
    differ_at = n_tokens - round(n_tokens * 5 / 14)
    for a in range(len(PREAMBLE) + 1):
        for k in range(len(FILLER) + 1):
            preamble = " ".join(PREAMBLE[:a]) + ". " if a else ""
            clause = ", " + " ".join(FILLER[:k]) + "," if k else ""
            clean = preamble + CLEAN.replace("store, John", f"store, John{clause}")
            corrupted = clean.replace("store, John", "store, Mary")
            ids, other = model.encode(clean)[0], model.encode(corrupted)[0]
            if len(ids) == len(other) == n_tokens and int(torch.nonzero(ids != other)[0]) == differ_at:
                return clean, corrupted
    raise ValueError(f"no preamble and clause give {n_tokens} tokens")


def naive_grid(model, problem) -> np.ndarray:
    blocks, lm = model.blocks, model.lm
    with torch.no_grad():
        with model.trace(problem.clean_ids):
            clean = nnsight.save([blocks[l].output[0] for l in range(model.n_layers)])
        grid = np.zeros((model.n_layers, problem.clean_ids.shape[1]), np.float32)
        for layer in range(model.n_layers):
            for pos in range(grid.shape[1]):
                with model.trace(problem.corrupted_ids, logits_to_keep=1):
                    out = blocks[layer].output
                    out[0, pos] = clean[layer][pos]
                    logits = lm.output.logits[0, -1]
                    ld = nnsight.save(logits[problem.correct_id] - logits[problem.wrong_id])
                grid[layer, pos] = float(ld)
    return grid


def batched_torch_grid(model, problem) -> np.ndarray:
    """Every cell in one batch; block l's hook patches the rows of layer l's cells."""
    n, t = model.n_layers, problem.clean_ids.shape[1]
    blocks = [b._module for b in model.blocks]
    clean = []
    hooks = [b.register_forward_hook(lambda m, i, o: clean.append(o[0] if isinstance(o, tuple) else o)) for b in blocks]
    with torch.no_grad():
        model.hf(problem.clean_ids)
    for h in hooks:
        h.remove()

    def patcher(layer):
        def hook(module, inputs, output):
            rows = torch.arange(layer * t, (layer + 1) * t)
            output[rows, torch.arange(t)] = clean[layer][0]
            return output
        return hook

    hooks = [b.register_forward_hook(patcher(l)) for l, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            logits = model.hf(problem.corrupted_ids.expand(n * t, -1), logits_to_keep=1).logits[:, -1]
    finally:
        for h in hooks:
            h.remove()
    return (logits[:, problem.correct_id] - logits[:, problem.wrong_id]).reshape(n, t).float().cpu().numpy()


def torch_attribution(model, problem) -> np.ndarray:
    """Attribution patching in plain torch: [source, target] as one batch, the residual stream
    read by block hooks, the gradient of the target's logit difference, (src - tgt) . grad."""
    blocks = [b._module for b in model.blocks]
    frozen = [p for p in model.hf.parameters() if p.requires_grad]
    acts = []

    def keep(module, inputs, output):
        acts.append(output[0] if isinstance(output, tuple) else output)
        acts[-1].retain_grad()

    hooks = [b.register_forward_hook(keep) for b in blocks]
    hooks.append(model.hf.get_input_embeddings().register_forward_hook(lambda m, i, o: o.requires_grad_(True)))
    for p in frozen:
        p.requires_grad_(False)
    try:
        last = model.hf(torch.cat([problem.clean_ids, problem.corrupted_ids]), logits_to_keep=1).logits[:, -1]
        (last[1, problem.correct_id] - last[1, problem.wrong_id]).backward()
    finally:
        for h in hooks:
            h.remove()
        for p in frozen:
            p.requires_grad_(True)
    return torch.stack([((a[0] - a[1]) * a.grad[1]).float().sum(-1) for a in acts]).detach().cpu().numpy()


def peak_rss_during(fn) -> float:
    process, peak, stop = psutil.Process(), [0], threading.Event()

    def sample():
        while not stop.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    fn()
    stop.set()
    thread.join()
    return peak[0] / 1024**3


def figures(device=None, dtype=None, random_weights=None) -> dict:
    """The figures below for the default model, on `device`, in its own dtype or cast to `dtype`."""
    model = load(device=device, dtype=dtype, random_weights=random_weights)
    problem = P.prepare(model, CLEAN, CORRUPTED, ANSWER)
    problem = dataclasses.replace(problem, clean_ids=problem.clean_ids.to(model.device),  # for the baselines
                                  corrupted_ids=problem.corrupted_ids.to(model.device))
    exact = lambda: P.exact_patching(model, CLEAN, CORRUPTED, ANSWER, "resid")  # noqa: E731
    if model.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    peak = peak_rss_during(exact)
    exact_gpu_peak = gpu_peak(model)
    grid = exact().patched_ld
    exact_s = median_time(exact, repeat=3)
    batched_s = median_time(lambda: batched_torch_grid(model, problem), repeat=3)
    batched = batched_torch_grid(model, problem)
    naive_s = median_time(lambda: naive_grid(model, problem), repeat=1, warmup=0)
    naive = naive_grid(model, problem)
    with torch.no_grad():
        forward_s = median_time(lambda: model.hf(problem.corrupted_ids), repeat=7)
    attribution_s = median_time(lambda: P.attribution_patching(model, CLEAN, CORRUPTED, ANSWER, "resid"), repeat=3)
    relp_s = median_time(lambda: P.attribution_patching(model, CLEAN, CORRUPTED, ANSWER, "resid", relp=True), repeat=3)
    torch_attribution_s = median_time(lambda: torch_attribution(model, problem), repeat=3)
    ours = P.attribution_patching(model, CLEAN, CORRUPTED, ANSWER, "resid")
    attribution_diff = float(np.abs(ours.patched_ld - ours.ld_corrupted - torch_attribution(model, problem)).max())
    default = P.LogitDiff(problem.correct_id, problem.wrong_id)
    whole_vocabulary = lambda last: default(last)  # noqa: E731 - the same metric, not recognised as the default
    two_columns = {}
    for method, repeat in (("attribution", 7), ("relp", 7), ("exact", 3)):
        two, whole = paired_medians(lambda: P.run(model, CLEAN, CORRUPTED, ANSWER, "resid", method),
                                    lambda: P.run(model, CLEAN, CORRUPTED, ANSWER, "resid", method,
                                                  metric=whole_vocabulary), repeat=repeat)
        two_columns[method] = two / whole
    by_tokens = {14: exact_s}
    for n in (28, 56):
        clean, corrupted = lengthened(model, n)
        by_tokens[n] = median_time(lambda: P.exact_patching(model, clean, corrupted, ANSWER, "resid"), repeat=1)
    clean_56, corrupted_56 = lengthened(model, 56)
    attribution_56 = lambda: P.attribution_patching(model, clean_56, corrupted_56, ANSWER, "resid")  # noqa: E731
    stored_s = median_time(attribution_56, repeat=5)
    fresh_s = median_time(lambda: (prefix_cache.clear(model), attribution_56()), repeat=5)
    budget, prefix_cache.MAX_BYTES = prefix_cache.MAX_BYTES, 0  # no start is stored or reused: both whole prompts run
    whole_s = median_time(attribution_56, repeat=5)
    prefix_cache.MAX_BYTES = budget
    out = {
        **model_figures(model),
        "exact_s": exact_s, "naive_s": naive_s, "batched_torch_s": batched_s, "forward_s": forward_s,
        "speedup_vs_naive": naive_s / exact_s,
        "ratio_vs_batched_torch": exact_s / batched_s,
        "peak_rss_gb": peak,
        **exact_gpu_peak,
        "attribution_forward_equivalents": attribution_s / forward_s,
        "relp_forward_equivalents": relp_s / forward_s,
        "torch_attribution_forward_equivalents": torch_attribution_s / forward_s,
        "max_abs_diff_attribution_vs_torch": attribution_diff,
        "max_abs_diff_vs_naive": float(np.abs(grid - naive).max()),
        "max_abs_diff_vs_batched_torch": float(np.abs(grid - batched).max()),
        "grid_s_by_tokens": {n: round(s, 3) for n, s in by_tokens.items()},
        "grid_growth_exponent": math.log(by_tokens[56] / by_tokens[14]) / math.log(4),
        **{f"two_columns_ratio_{method}": ratio for method, ratio in two_columns.items()},
        "attribution_shared_start_ratio_56": fresh_s / whole_s,
        "attribution_shared_start_stored_56": stored_s / whole_s,
    }
    print(f"exact grid {exact_s:.2f} s | naive per-cell traces {naive_s:.1f} s ({naive_s / exact_s:.1f}x) | "
          f"batched torch, no skipping {batched_s:.2f} s (ratio {exact_s / batched_s:.2f}) | peak RSS {peak:.2f} GB")
    print("exact grid by prompt length: " + ", ".join(f"{n} tokens {s:.2f} s" for n, s in by_tokens.items()))
    print(f"attribution {attribution_s / forward_s:.2f} (plain torch {torch_attribution_s / forward_s:.2f}, max abs "
          f"diff {attribution_diff:.1e}) and RelP {relp_s / forward_s:.2f} forward equivalents "
          f"(forward {forward_s * 1e3:.0f} ms)")
    print("the default metric's two columns over the whole vocabulary: " +
          ", ".join(f"{method} {ratio:.2f}x" for method, ratio in two_columns.items()))
    print(f"attribution on 56 tokens from a shared start: {fresh_s / whole_s:.2f}x ({stored_s / whole_s:.2f}x with the "
          f"start stored) the time over both whole prompts ({whole_s * 1e3:.0f} ms)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    report(figures(**model_options(parser.parse_args())))


if __name__ == "__main__":
    main()
