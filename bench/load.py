"""Cold vs warm load of the default model.

cold: `aw.load()` with an empty cache (dequantize the GGUF, convert, write safetensors);
warm: the same call once the cache exists. Each runs in a fresh interpreter so nothing
is shared; the figure is the time of the `load()` call alone (imports excluded).
Targets: warm <= 4 s and cold/warm >= 4x.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from _util import report

CHILD = """
import time, actwidgets as aw
start = time.perf_counter(); aw.load(); print(time.perf_counter() - start)
"""


def timed_load(cache: str) -> float:
    env = dict(os.environ, ACTWIDGETS_CACHE=cache, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = timed_load(cache)
        warm = min(timed_load(cache) for _ in range(3))
    print(f"cold (GGUF -> cache): {cold:.2f} s   warm (cache): {warm:.2f} s   ratio {cold / warm:.1f}x")
    report({"cold_s": cold, "warm_s": warm, "cold_over_warm": cold / warm})


if __name__ == "__main__":
    main()
