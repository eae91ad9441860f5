"""Costs of the views that read inside the model, each against a named baseline.

Attention at 2,048 tokens on the default model (30 layers x 9 heads): `attention_patterns`
(eager attention, in traces of 910 query positions each going on from the earlier ones' keys
and values (`CHUNK_BYTES`), each layer's weights reduced as it runs) vs a plain HF
forward of the same ids with the model's own (sdpa) attention, for time (median of paired
runs) and peak resident memory (the kernel's high-water mark, reset before each call through
/proc/self/clear_refs, so the model's load does not count); and the bytes the widget sends
for its overview (every head pooled to 32 x 32, float32).

Direct logit attribution in forward equivalents: `logit_attribution` (one nnsight trace,
every part dotted with the frozen head's direction inside it) vs a plain HF forward of the
same ids, paired medians, on the IOI prompt (14 tokens) and a 256-token prompt. Target <= 2.

Usage: python bench/views.py [--threads N] [--device cuda] [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import actwidgets as aw  # noqa: E402
from actwidgets.methods.attention import attention_patterns  # noqa: E402
from actwidgets.methods.dla import logit_attribution  # noqa: E402
from actwidgets.widgets._traits import Array  # noqa: E402
from _util import add_model_options, load, model_figures, model_options, paired_medians, report  # noqa: E402

TOKENS = 2048
IOI = "When Mary and John went to the store, John gave a drink to"


def peak_rss_gb(fn) -> float:
    """The process's peak resident memory while fn() runs, in GB (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    fn()
    status = Path("/proc/self/status").read_text()
    kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1])
    return kb * 1024 / 1e9


def long_prompt(model, tokens: int = TOKENS) -> str:
    text = " ".join(["When Mary and John went to the store, John gave a drink to Mary."] * (tokens // 14 + 2))
    ids = model.encode(text)[0, :tokens]
    prompt = model.tokenizer.decode(ids)
    assert model.encode(prompt).shape[1] == tokens, "the decoded prompt must re-encode to the same length"
    return prompt


def measure_attention(model=None) -> dict:
    model = model or aw.load()
    prompt = long_prompt(model)
    ids = model.encode(prompt).to(model.device)

    def plain():
        with torch.no_grad():
            model.hf(ids)

    def method():
        return attention_patterns(model, prompt, head=(5, 3))

    traced, baseline = paired_medians(method, plain, repeat=3)
    plain_peak = peak_rss_gb(plain)
    attention_peak = peak_rss_gb(method)
    overview = Array().validate(None, method().overview)
    return {"attention_2048_s": traced, "plain_forward_2048_s": baseline, "attention_ratio": traced / baseline,
            "attention_2048_peak_rss_gb": attention_peak, "plain_forward_2048_peak_rss_gb": plain_peak,
            "attention_wire_bytes": len(overview)}


def measure_dla(model=None) -> dict:
    model = model or aw.load()
    figures = {}
    long = model.tokenizer.decode(model.encode(" ".join([IOI + " Mary."] * 40))[0, :255]) + " to"
    for key, prompt in (("dla_forward_equivalents", IOI), ("dla_forward_equivalents_256", long)):
        ids = model.encode(prompt).to(model.device)

        def forward():
            with torch.no_grad():
                model.hf(ids)

        dla, plain = paired_medians(lambda: logit_attribution(model, prompt, " Mary", wrong=" John"), forward)
        figures[key] = dla / plain
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    model = load(**model_options(parser.parse_args()))
    figures = {**measure_attention(model), **measure_dla(model), **model_figures(model)}
    print(f"attention at {TOKENS} tokens: {figures['attention_2048_s']:.2f} s "
          f"(plain forward {figures['plain_forward_2048_s']:.2f} s, ratio {figures['attention_ratio']:.2f}); "
          f"peak RSS {figures['attention_2048_peak_rss_gb']:.2f} GB "
          f"(plain forward {figures['plain_forward_2048_peak_rss_gb']:.2f} GB); "
          f"overview {figures['attention_wire_bytes']:,} bytes; DLA {figures['dla_forward_equivalents']:.2f} "
          f"forward equivalents at 14 tokens, {figures['dla_forward_equivalents_256']:.2f} at 256")
    report(figures)


if __name__ == "__main__":
    main()
