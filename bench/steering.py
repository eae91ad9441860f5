"""Steering costs and the ASC KL bound against measured KL, on the default model.

- steer overhead: `steer_generate` (ASC vector, calibrated strength, 32 new tokens, local
  fast path: HF generate + a forward hook on the block, the prompt's prefix keys and values
  reused) vs plain `model.hf.generate` of 32 greedy tokens, paired medians in the same run.
  Target <= 1.05x. The nnsight path (what remote models use; here with remote="local") is
  timed once for information.
- slider latency: a slider move (a new strength on the same prompt) to the first steered
  token, with the prefix cache vs from scratch (the cache off), paired medians, on a
  ~1,000-token prompt (target <= 0.25x) and on the 14-token demo prompt.
- gamma_max cost: forward-pass equivalents `estimate_curvature` spends (3 rows per
  calibration prompt), beside what `calibrate_strength` spends.
- KL ratios: measured mean KL (teacher-forced on the unsteered 8-token greedy
  continuations of the example prompts, pooled over positions) divided by the budget,
  at ASC's closed-form gamma_max and at the calibrated strength.

Usage: python bench/steering.py [--threads N] [--device cuda] [--dtype bfloat16] [--budget NATS]
(--threads 1 is much steadier when other jobs share the cores.)
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import actwidgets as aw  # noqa: E402
from actwidgets.methods import steering as st  # noqa: E402
from actwidgets.methods import steering_examples as ex  # noqa: E402
from actwidgets.methods import prefix_cache  # noqa: E402
from _util import add_model_options, load, model_figures, model_options, paired_medians, report  # noqa: E402

TOKENS = 32
DEMO = "Q: What is 9 + 8?\nA:"
LONG_TOKENS = 1000


def long_prompt(model) -> str:
    """About LONG_TOKENS tokens of the ASC examples' text, ending on the demo question."""
    text = " ".join(q + verbose for q, _, verbose in ex.ASC_PAIRS)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = (ids * (LONG_TOKENS // len(ids) + 1))[:LONG_TOKENS - 12]
    return model.tokenizer.decode(ids) + "\n" + DEMO


def first_token_ratio(model, prompt, vector, layer, strength, repeat) -> tuple[float, float]:
    """Median seconds from a slider move to its first steered token: cached, from scratch."""
    moves = iter(strength * (1 + 0.1 * (i % 5)) for i in range(10**6))  # each move a new strength

    def move():
        out = st.steer_generate(model, prompt, vector, layer, next(moves), max_new_tokens=1)
        assert len(out.token_ids) == 1

    def from_scratch():
        budget, prefix_cache.MAX_BYTES = prefix_cache.MAX_BYTES, 0
        try:
            move()
        finally:
            prefix_cache.MAX_BYTES = budget

    return paired_medians(move, from_scratch, repeat=repeat)


def pooled_kl(model, vector, layer, prompts, strength, continuations) -> float:
    kls = [st.measure_kl(model, p, c, vector, layer, strength).kl_per_token for p, c in zip(prompts, continuations)]
    return float(np.concatenate(kls).mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    parser.add_argument("--budget", type=float, default=1e-3, help="KL budget eps in nats (ASC's default 1e-3)")
    args = parser.parse_args()
    model = load(**model_options(args))
    layer, budget, prompts = ex.ASC_LAYER, args.budget, ex.CALIBRATION_PROMPTS
    print(f"torch threads {torch.get_num_threads()}, layer {layer}, budget {budget} nats")

    vector = st.mean_difference(model, ex.ASC_CONCISE, ex.ASC_VERBOSE, layer)
    start = time.perf_counter()
    curv = st.estimate_curvature(model, vector, layer, prompts)
    curv_s = time.perf_counter() - start
    g_closed = st.gamma_max(budget, curv.a, curv.lipschitz)
    start = time.perf_counter()
    cal = st.calibrate_strength(model, vector, layer, prompts, budget, n_tokens=8)
    cal_s = time.perf_counter() - start
    print(f"||v|| {curv.vector_norm:.2f}; a {curv.a:.4g}, L {curv.lipschitz:.4g} (unit v: {curv.a_unit:.4g}, "
          f"{curv.lipschitz_unit:.4g}); gamma_max {g_closed:.4g} in {curv.forward_equivalents} forward equivalents, "
          f"{curv_s:.2f} s")
    print(f"calibrated strength {cal.strength:.4g} (KL {cal.measured_kl:.4g}) in {cal.evaluations} evaluations, "
          f"{cal.forward_equivalents} forward equivalents, {cal_s:.2f} s; converged={cal.converged}")

    continuations = [st.steer_generate(model, p, vector, layer, 0.0, max_new_tokens=8, min_new_tokens=1).token_ids
                     for p in prompts]
    kl_closed = pooled_kl(model, vector, layer, prompts, g_closed, continuations)
    kl_cal = pooled_kl(model, vector, layer, prompts, cal.strength, continuations)
    print(f"measured KL: closed form {kl_closed:.4g} ({kl_closed / budget:.3g} x budget), "
          f"calibrated {kl_cal:.4g} ({kl_cal / budget:.3f} x budget)")

    prompt = ex.CALIBRATION_PROMPTS[1]
    ids = model.encode(prompt).to(model.device)

    def plain():
        with torch.no_grad():
            out = model.hf.generate(ids, max_new_tokens=TOKENS, min_new_tokens=TOKENS, do_sample=False)
        assert out.shape[1] == ids.shape[1] + TOKENS

    def steered():
        out = st.steer_generate(model, prompt, vector, layer, cal.strength, max_new_tokens=TOKENS,
                                min_new_tokens=TOKENS)
        assert len(out.token_ids) == TOKENS

    steer_t, plain_t = paired_medians(steered, plain, repeat=7)
    remote = aw.Model(model.lm, model.tokenizer, model.adapter, "remote-local", remote="local")
    start = time.perf_counter()
    far = st.steer_generate(remote, prompt, vector, layer, cal.strength, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
    nnsight_t = time.perf_counter() - start
    here = st.steer_generate(model, prompt, vector, layer, cal.strength, max_new_tokens=TOKENS, min_new_tokens=TOKENS)
    print(f"{TOKENS} tokens: steered {steer_t * 1e3:.0f} ms, plain HF generate {plain_t * 1e3:.0f} ms, "
          f"ratio {steer_t / plain_t:.3f}; nnsight path (remote='local') {nnsight_t * 1e3:.0f} ms, "
          f"same tokens: {far.token_ids == here.token_ids}")
    print("steered text:", repr(here.text))

    long = long_prompt(model)
    n_long = model.encode(long).shape[1]
    long_t, long_scratch = first_token_ratio(model, long, vector, layer, cal.strength, repeat=5)
    short_t, short_scratch = first_token_ratio(model, DEMO, vector, layer, cal.strength, repeat=9)
    print(f"slider move -> first steered token, cached vs from scratch: {n_long}-token prompt "
          f"{long_t * 1e3:.0f} ms vs {long_scratch * 1e3:.0f} ms ({long_t / long_scratch:.3f}); "
          f"{model.encode(DEMO).shape[1]}-token demo prompt {short_t * 1e3:.0f} ms vs {short_scratch * 1e3:.0f} ms "
          f"({short_t / short_scratch:.3f})")
    report({"first_token_ratio_long": long_t / long_scratch, "first_token_ratio_short": short_t / short_scratch,
            "first_token_long_ms": long_t * 1e3, "first_token_long_scratch_ms": long_scratch * 1e3,
            "first_token_short_ms": short_t * 1e3, "first_token_short_scratch_ms": short_scratch * 1e3,
            "long_prompt_tokens": n_long, "steer_overhead_ratio": steer_t / plain_t, "steer_ms": steer_t * 1e3, "plain_generate_ms": plain_t * 1e3,
            "nnsight_path_ms": nnsight_t * 1e3, "gamma_max_forward_equivalents": curv.forward_equivalents,
            "calibration_forward_equivalents": cal.forward_equivalents, "calibration_evaluations": cal.evaluations,
            "gamma_max": g_closed, "calibrated_strength": cal.strength,
            "kl_ratio_closed_form": kl_closed / budget, "kl_ratio_calibrated": kl_cal / budget,
            "kl_budget": budget, **model_figures(model)})


if __name__ == "__main__":
    main()
