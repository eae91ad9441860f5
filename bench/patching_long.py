"""Patching on a long prompt (default model, residual stream): the memory a chunk of patched
rows may hold, against chunks cut by `chunk_size` alone, measured in the same run.

A patched row holds every layer's keys and values over the whole prompt, so on a long prompt
`chunk_size` (64) rows no longer fit in Binder's 2 GB; `_prefix.CHUNK_BYTES` (512 MB) cuts a
chunk to the rows that fit. Each run is its own process, so its peak RSS is that of a kernel
that loaded the model and ran one grid, nothing else:
- `peak_rss_gb_exact_N`: the exact grid on an N-token IOI pair, chunks within CHUNK_BYTES;
- `peak_rss_exact_vs_unbounded_N`: that peak over the same grid with CHUNK_BYTES lifted
  (64 rows a chunk, as before the budget), and `grid_rss_exact_vs_unbounded_N`, the same for
  what each grid adds over a process that only loads the model and tokenizes the pair
  (`peak_rss_gb_load`); `time_exact_vs_unbounded_N`, the time ratio, the median of 3 runs each,
  alternating;
- `peak_rss_gb_{attribution,relp}_N`: the approximations on the same pair (target <= 2 GB);
- `max_abs_diff_exact_vs_unbounded_N`: the two exact grids agree.

Usage: python bench/patching_long.py [--tokens 1026] [--threads N]
(about three minutes at 1,026 tokens on 2 cores; the unbounded run needs about 4.5 GB)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from _util import (add_model_options, child_json, load, model_figures, model_flags, model_options,  # noqa: E402
                   peak_rss_gb, report)

CLEAN = " When Mary and John went to the store, John gave a drink to"
CORRUPTED = " When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")
STORY = ("The old lighthouse keeper walked along the rocky shore every morning, counting the boats "
         "that came back from the sea and writing their names in a worn leather book.")


def long_pair(model, tokens: int) -> tuple[str, str]:
    """The IOI pair after a story, `tokens` tokens in all: the prompts differ near the end, so
    every cell before that runs with a long shared prefix, as on a real document."""
    story = " ".join([STORY] * (tokens // 25 + 1))
    for cut in range(tokens, 0, -1):
        body = model.tokenizer.decode(model.tokenizer(story, add_special_tokens=False).input_ids[:cut])
        if model.encode(body + CLEAN).shape[1] <= tokens:
            return body + CLEAN, body + CORRUPTED
    raise ValueError(f"no story gives {tokens} tokens")


def child(method: str, tokens: int, unbounded: bool, options: dict) -> dict:
    from actwidgets.methods import _prefix
    from actwidgets.methods import patching as P

    if unbounded:
        _prefix.CHUNK_BYTES = 1 << 60  # rows_within then allows any chunk: chunk_size (64) alone cuts it
    model = load(**options)
    clean, corrupted = long_pair(model, tokens)
    P.prepare(model, clean, corrupted, ANSWER)
    start = time.perf_counter()
    result = None if method == "none" else P.run(model, clean, corrupted, ANSWER, "resid", method)
    return {"tokens": int(model.encode(clean).shape[1]), "seconds": time.perf_counter() - start,
            "peak_rss_gb": peak_rss_gb(),
            "grid": None if result is None else np.asarray(result.patched_ld, np.float64).tolist(),
            **model_figures(model)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1026)
    add_model_options(parser)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "BOUND"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    options = model_options(args)
    if args.child:
        method, bound = args.child
        print(json.dumps(child(method, args.tokens, bound == "unbounded", options)))
        return

    def run_child(method: str, bound: str) -> dict:
        found = child_json(__file__, "--child", method, bound, "--tokens", str(args.tokens), *model_flags(args),
                                what=f"{method} ({bound})")
        print(f"{method}, {bound}: {found['tokens']} tokens, {found['seconds']:.1f} s, "
              f"peak RSS {found['peak_rss_gb']:.2f} GB")
        return found

    loaded = run_child("none", "bounded")
    runs = [(run_child("exact", "bounded"), run_child("exact", "unbounded")) for _ in range(3)]  # alternating
    bounded, unbounded = runs[0]
    seconds = [statistics.median(run[i]["seconds"] for run in runs) for i in (0, 1)]
    approximations = {method: run_child(method, "bounded") for method in ("attribution", "relp")}
    n, floor = bounded["tokens"], loaded["peak_rss_gb"]
    report({
        "tokens": n,
        "peak_rss_gb_load": floor,
        f"peak_rss_gb_exact_{n}": bounded["peak_rss_gb"],
        f"peak_rss_gb_exact_unbounded_{n}": unbounded["peak_rss_gb"],
        f"peak_rss_exact_vs_unbounded_{n}": bounded["peak_rss_gb"] / unbounded["peak_rss_gb"],
        f"grid_rss_exact_vs_unbounded_{n}": (bounded["peak_rss_gb"] - floor) / (unbounded["peak_rss_gb"] - floor),
        f"time_exact_vs_unbounded_{n}": seconds[0] / seconds[1],
        f"exact_s_{n}": seconds[0],
        **{f"peak_rss_gb_{method}_{n}": run["peak_rss_gb"] for method, run in approximations.items()},
        f"max_abs_diff_exact_vs_unbounded_{n}": float(np.abs(np.array(bounded["grid"]) - np.array(unbounded["grid"])).max()),
        **{key: bounded[key] for key in ("device", "dtype", "torch_threads", "random_weights")},
    })


if __name__ == "__main__":
    main()
