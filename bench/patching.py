"""Exact activation patching on the IOI pair (default model, residual stream, 30 x 14),
against baselines measured in the same run:

- naive: one nnsight trace per cell (under no_grad, last logits only) -> `speedup_vs_naive`
  (target >= 10x);
- batched torch: one plain-torch forward over all 420 cells with hooks, no layer
  skipping -> `ratio_vs_batched_torch` (target <= 0.6);
- peak RSS of the process while the exact grid runs -> `peak_rss_gb` (target <= 2);
- attribution and RelP time in plain-forward equivalents (target <= 3).
"""
from __future__ import annotations

import os
import threading

import numpy as np
import psutil
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import nnsight  # noqa: E402

import actwidgets as aw  # noqa: E402
from actwidgets.methods import patching as P  # noqa: E402
from _util import median_time, report  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")


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
    return (logits[:, problem.correct_id] - logits[:, problem.wrong_id]).reshape(n, t).float().numpy()


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


def figures(dtype=None) -> dict:
    """The figures below for the default model, in its own dtype or cast to `dtype`."""
    model = aw.load(dtype=dtype)
    problem = P.prepare(model, CLEAN, CORRUPTED, ANSWER)
    exact = lambda: P.exact_patching(model, CLEAN, CORRUPTED, ANSWER, "resid")  # noqa: E731
    peak = peak_rss_during(exact)
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
    out = {
        "dtype": str(next(model.hf.parameters()).dtype).split(".")[-1],
        "exact_s": exact_s, "naive_s": naive_s, "batched_torch_s": batched_s, "forward_s": forward_s,
        "speedup_vs_naive": naive_s / exact_s,
        "ratio_vs_batched_torch": exact_s / batched_s,
        "peak_rss_gb": peak,
        "attribution_forward_equivalents": attribution_s / forward_s,
        "relp_forward_equivalents": relp_s / forward_s,
        "max_abs_diff_vs_naive": float(np.abs(grid - naive).max()),
        "max_abs_diff_vs_batched_torch": float(np.abs(grid - batched).max()),
    }
    print(f"exact grid {exact_s:.2f} s | naive per-cell traces {naive_s:.1f} s ({naive_s / exact_s:.1f}x) | "
          f"batched torch, no skipping {batched_s:.2f} s (ratio {exact_s / batched_s:.2f}) | peak RSS {peak:.2f} GB")
    print(f"attribution {attribution_s / forward_s:.1f} and RelP {relp_s / forward_s:.1f} forward equivalents "
          f"(forward {forward_s * 1e3:.0f} ms)")
    return out


def main() -> None:
    report(figures())


if __name__ == "__main__":
    main()
