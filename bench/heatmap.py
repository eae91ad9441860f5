"""Heatmap costs, each against a named baseline measured in the same run.

- wire: bytes per cell of a 30 x 2,048 grid as the widget sends it (float32 buffer)
  vs the same values as a JSON list of numbers;
- trace overhead: `residual_stats` (one nnsight trace, statistics reduced inside it)
  vs a plain HF forward with output_hidden_states, same prompt;
- draw: one full draw of a 30 x 4,096 heatmap by js/src/lib/grid.ts in headless Chromium
  (paint every cell, blit the visible window, read a pixel back so the raster happened).
Targets: trace overhead <= 1.15x, draw <= 50 ms.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import actwidgets as aw  # noqa: E402
from actwidgets.methods.activations import residual_stats  # noqa: E402
from actwidgets.widgets._traits import Array  # noqa: E402
from _util import paired_medians, report  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def wire_bytes(rows: int = 30, cols: int = 2048) -> tuple[float, float]:
    from ipywidgets.widgets.widget import _remove_buffers

    values = np.random.default_rng(0).lognormal(3, 1, (rows, cols)).astype(np.float32)
    state, _, buffers = _remove_buffers({"values": Array().validate(None, values), "shape": [rows, cols]})
    wire = len(json.dumps(state)) + sum(len(b) for b in buffers)
    as_json = len(json.dumps({"values": values.ravel().tolist(), "shape": [rows, cols]}))
    return wire / values.size, as_json / values.size


def trace_overhead(model, tokens: int = 256) -> tuple[float, float]:
    prompt = " ".join(["the quick brown fox jumps over the lazy dog"] * (tokens // 9 + 1))
    ids = model.encode(prompt)[:, :tokens]
    prompt = model.tokenizer.decode(ids[0])

    def plain():
        with torch.no_grad():
            model.hf(ids, output_hidden_states=True)

    return paired_medians(lambda: residual_stats(model, prompt), plain)


def draw_ms(rows: int = 30, cols: int = 4096) -> float:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "grid.js"
        subprocess.run(["npx", "--no-install", "esbuild", "src/lib/grid.ts", "--bundle", "--format=iife",
                        "--global-name=awgrid", f"--outfile={bundle}"], cwd=ROOT / "js", check=True,
                       capture_output=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"])
            page = browser.new_page()
            page.set_content("<html><body></body></html>")
            page.add_script_tag(content=bundle.read_text())
            ms = page.evaluate("""([rows, cols]) => {
                const values = new Float32Array(rows * cols).map((_, i) => Math.sin(i) * 50 + 60);
                const data = {rows, cols, values, vmin: 10, vmax: 110, colormap: "viridis", scale: "log",
                              tokens: Array.from({length: cols}, (_, i) => "tok" + i),
                              rowLabels: Array.from({length: rows}, (_, i) => String(i))};
                const canvas = document.createElement("canvas"); document.body.append(canvas);
                const times = [];
                for (let k = 0; k < 21; k++) {
                    const t0 = performance.now();
                    awgrid.drawGrid(canvas, data, {cellWidth: 4, viewWidth: 1200});
                    canvas.getContext("2d").getImageData(0, 0, 1, 1);
                    times.push(performance.now() - t0);
                }
                times.sort((a, b) => a - b);
                return times[10];
            }""", [rows, cols])
            browser.close()
    return ms


def main() -> None:
    wire, as_json = wire_bytes()
    print(f"wire: {wire:.2f} bytes/cell (float32 buffer)   JSON list: {as_json:.2f} bytes/cell")
    model = aw.load()
    traced, baseline = trace_overhead(model)
    print(f"trace: residual_stats {traced * 1e3:.1f} ms   plain HF forward {baseline * 1e3:.1f} ms"
          f"   ratio {traced / baseline:.3f}")
    draw = draw_ms()
    print(f"draw 30 x 4096 in headless Chromium: {draw:.1f} ms (median of 21)")
    report({"wire_bytes_per_cell": wire, "json_bytes_per_cell": as_json, "trace_overhead_ratio": traced / baseline,
            "trace_ms": traced * 1e3, "plain_forward_ms": baseline * 1e3, "draw_ms_30x4096": draw})


if __name__ == "__main__":
    main()
