"""Shared by the benchmarks: repeat-and-take-the-median timing, and the closing JSON line."""
from __future__ import annotations

import json
import statistics
import time


def median_time(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds (these machines are noisy: medians, not means)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_medians(first, second, repeat: int = 7) -> tuple[float, float]:
    """Median times of two functions measured alternately, so load on the machine hits both alike."""
    first(), second()
    a, b = [], []
    for _ in range(repeat):
        for fn, times in ((first, a), (second, b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def report(figures: dict) -> None:
    """Print the figures (4 significant digits), one JSON object on the last line."""
    print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in figures.items()}))
