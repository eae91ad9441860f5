"""Every supported transformers family (the test suite's tiny random models, 2 layers, width
64): heatmap, logit lens and exact patching grid (residual stream, 2 x 14 cells) each timed
as a ratio to a plain transformers forward of the same prompt on the same model, measured in
the same run. One JSON line per family (`family`, `heatmap_ratio`, `lens_ratio`,
`grid_ratio`), then bench/patching.py's figures for the default model in bfloat16.

On tiny models the ratios measure actwidgets' and nnsight's fixed overhead per call, which a
real model's forward pass hides: they are an upper bound, useful to spot a family that costs
more than the others.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import torch  # noqa: E402

import actwidgets as aw  # noqa: E402
from actwidgets.methods import patching as P  # noqa: E402
from actwidgets.methods.activations import residual_stats  # noqa: E402
from actwidgets.methods.lens import logit_lens  # noqa: E402
from _util import median_time, report  # noqa: E402
from families import FAMILIES, tiny  # noqa: E402

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")


def family_figures(family: str, tokenizer) -> dict:
    model = tiny(family, tokenizer)
    ids = model.encode(CLEAN)
    with torch.no_grad():
        forward_s = median_time(lambda: model.hf(ids), repeat=9)
    heatmap_s = median_time(lambda: residual_stats(model, CLEAN), repeat=5)
    lens_s = median_time(lambda: logit_lens(model, CLEAN), repeat=5)
    grid_s = median_time(lambda: P.exact_patching(model, CLEAN, CORRUPTED, ANSWER, "resid"), repeat=3)
    return {"family": family, "forward_ms": forward_s * 1e3, "heatmap_ratio": heatmap_s / forward_s,
            "lens_ratio": lens_s / forward_s, "grid_ratio": grid_s / forward_s}


def main() -> None:
    tokenizer = aw.load().tokenizer
    for family in FAMILIES:
        report(family_figures(family, tokenizer))
    import patching  # bench/patching.py

    report({"family": "smollm2-135m", **patching.figures(dtype=torch.bfloat16)})


if __name__ == "__main__":
    main()
