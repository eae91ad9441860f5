"""What saving a figure costs, each against a named baseline measured in the same run.

- size: the snapshot of a long heatmap (2,048 random token ids decoded to text, which
  re-encodes to about 2,100 tokens: 31 rows with the embeddings') (what a saved notebook
  keeps per figure) vs the same values as a JSON list of floats, and vs the PNG beside it;
- time: building the whole static bundle (snapshot + matplotlib PNG + text), which the
  kernel does once after a run settles, vs the run itself (`residual_stats`), for the
  14-token IOI heatmap and for the long one.
Targets: snapshot <= 256 KiB (the test's bound) and <= 1/4 of the JSON list.
"""
from __future__ import annotations

import base64
import json
import os

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import actwidgets as aw  # noqa: E402
from actwidgets.methods.activations import residual_stats  # noqa: E402
from actwidgets.widgets import _snapshot as S  # noqa: E402
from _util import median_time, report  # noqa: E402


def long_prompt(model, tokens: int = 2048) -> str:
    ids = torch.randint(1000, 20000, (tokens,), generator=torch.Generator().manual_seed(0))
    return model.tokenizer.decode(ids)


def sizes(widget) -> dict:
    data, _ = widget._repr_mimebundle_()
    values = np.frombuffer(widget.values, "<f4")
    return {
        "snapshot_kib": len(json.dumps(data[S.SNAPSHOT_MIME], separators=(",", ":"))) / 1024,
        "values_as_json_kib": len(json.dumps(values.tolist())) / 1024,
        "png_kib": len(base64.b64decode(data["image/png"])) / 1024,
    }


def costs(model, widget) -> tuple[float, float]:
    run = median_time(lambda: residual_stats(model, widget.prompt), repeat=3)
    build = median_time(lambda: S.static_bundle(widget), repeat=3)
    return build, run


def main() -> None:
    model = aw.load()
    small = aw.Heatmap(model, "When Mary and John went to the store, John gave a drink to").wait()
    large = aw.Heatmap(model, long_prompt(model)).wait(timeout=600)
    rows, cols = large.shape
    size = sizes(large)
    print(f"snapshot of {rows} x {cols}: {size['snapshot_kib']:.0f} KiB   values as JSON: "
          f"{size['values_as_json_kib']:.0f} KiB   PNG: {size['png_kib']:.0f} KiB")
    figures = {f"large_{k}": v for k, v in size.items()}
    figures["large_shape"] = [rows, cols]
    figures["snapshot_vs_json"] = size["snapshot_kib"] / size["values_as_json_kib"]
    for name, widget in [("small", small), ("large", large)]:
        build, run = costs(model, widget)
        print(f"{name} ({widget.shape[1]} tokens): bundle {build * 1e3:.0f} ms   the run itself {run * 1e3:.0f} ms"
              f"   ratio {build / run:.2f}")
        figures.update({f"{name}_bundle_ms": build * 1e3, f"{name}_run_ms": run * 1e3, f"{name}_bundle_vs_run": build / run})
    report(figures)


if __name__ == "__main__":
    main()
