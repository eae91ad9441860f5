"""What a remote figure costs, through nnsight's real client and the NDIF test server of
tests/remote (ndif_server.py, reused from there), against the same figure run locally.

- requests_per_heatmap, requests_per_compare_heatmap, requests_per_grid (exact patching,
  chunk_size 64): requests counted at the server (see tests/remote/test_requests.py);
- bytes_down_per_heatmap: the result the server sent back, vs heatmap_array_bytes, the
  figure's own arrays (norm, max |a|, channel, change: 4 x layers x tokens x 4 bytes);
  bytes_up_per_heatmap: the request (the serialised trace and the actwidgets code it calls);
- remote_overhead_ratio: a heatmap's `residual_stats` through the server (serialise, POST,
  websocket, run, download) vs the same call on a local copy, paired medians;
- on the IOI pair after a 108-token start (`long_tokens`), against `activation_bytes`, one
  run's activations of every layer (layers x tokens x d_model x 4), what a trace that named
  them would move: `upload_per_grid_chunk_vs_activations` (an exact grid, chunk_size 64: the
  largest chunk's request, which ships its patches; NDIF runs the blocks below it itself) and
  `download_per_{attribution,relp}_vs_activations` (the scores are reduced on the server).

Model: the embedded default (SmolLM2-135M, saved to a folder the server loads) or, with
`--tiny`, the tiny random Llama the remote tests use (overhead then dominates). Both run on
this machine: the ratio is the protocol's cost with no network in between.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "remote"))

import nnsight  # noqa: E402
import torch  # noqa: E402
from conftest import API_KEY, save_tiny_llama  # noqa: E402
from ndif_server import NDIFServer  # noqa: E402
from nnsight.modeling import huggingface  # noqa: E402

import actwidgets as aw  # noqa: E402
from actwidgets.methods.activations import residual_stats  # noqa: E402
from actwidgets.methods.patching import attribution_patching, iter_exact, prepare  # noqa: E402
from actwidgets._weights import DEFAULT_NAME  # noqa: E402
from _util import paired_medians, report  # noqa: E402

PROMPT = "The Eiffel Tower is located in the city of Paris, the capital of France."
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
START = "The Eiffel Tower is located in the city of Paris and Rome is the capital of Italy. " * 6


def model_dir(folder: Path, tiny: bool) -> str:
    if tiny:
        return save_tiny_llama(folder)
    default = aw.load()
    default.hf.save_pretrained(folder)
    default.tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> None:
    torch.set_num_threads(1)
    tiny = "--tiny" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        folder = model_dir(Path(tmp), tiny)
        server = NDIFServer(folder, timeout=600)
        try:
            local = aw.load(folder)
            huggingface._ID_CACHE[folder] = folder  # a folder is its own id, on both sides
            os.environ["NDIF_API_KEY"] = API_KEY
            remote = aw.load(folder, remote=True)
            nnsight.CONFIG.API.HOST = server.url
            nnsight.CONFIG.APP.REMOTE_LOGGING = False  # no status lines in the timed runs
            figures = measure(server, local, remote, tiny)
        finally:
            server.stop()
    report(figures)


def measure(server: NDIFServer, local, remote, tiny: bool) -> dict:
    server.reset()
    heatmap = aw.Heatmap(remote, PROMPT).wait()
    assert heatmap.status == "done", heatmap.error
    stats = server.stats()
    requests, down, up = stats["requests"], stats["bytes_down"], stats["bytes_up"]
    array_bytes = sum(getattr(heatmap.data, name).nbytes for name in ("norm", "max_abs", "channel", "delta"))

    server.reset()
    words = PROMPT.split()
    compare = " ".join(words[:-1] + ["Italy."])  # the same length in tokens, or the heatmap says so
    compared = aw.Heatmap(remote, PROMPT, compare=compare).wait()
    compare_requests = server.stats()["requests"] if compared.status == "done" else f"error: {compared.error}"

    server.reset()
    grid = aw.PatchingGrid(remote, CLEAN, CORRUPTED, (" Mary", " John"), chunk_size=64).wait(timeout=600)
    grid_requests = server.stats()["requests"] if grid.status == "done" else f"error: {grid.error}"

    clean, corrupted = START + CLEAN, START + CORRUPTED
    long_tokens = remote.encode(clean).shape[1]
    activation_bytes = remote.n_layers * long_tokens * remote.d_model * 4
    server.reset()
    list(iter_exact(remote, prepare(remote, clean, corrupted, (" Mary", " John")), chunk_size=64))
    chunks = server.stats()["request_bytes"][2:]  # after the two cached runs, which ship no patches
    upload = max(chunks)
    download = {}
    for relp in (False, True):
        server.reset()
        attribution_patching(remote, clean, corrupted, (" Mary", " John"), relp=relp)
        download["relp" if relp else "attribution"] = server.stats()["bytes_down"]

    there, here = paired_medians(lambda: residual_stats(remote, PROMPT), lambda: residual_stats(local, PROMPT),
                                 repeat=5)
    return {
        "model": "tiny-llama" if tiny else DEFAULT_NAME,
        "tokens": len(heatmap.data.tokens),
        "requests_per_heatmap": requests,
        "requests_per_compare_heatmap": compare_requests,
        "requests_per_grid": grid_requests,
        "bytes_down_per_heatmap": down,
        "heatmap_array_bytes": array_bytes,
        "bytes_up_per_heatmap": up,
        "remote_heatmap_s": there,
        "local_heatmap_s": here,
        "remote_overhead_ratio": there / here,
        "long_tokens": long_tokens,
        "activation_bytes": activation_bytes,
        "grid_chunks": len(chunks),
        "upload_per_grid_chunk": upload,
        "upload_per_grid_chunk_vs_activations": upload / activation_bytes,
        **{f"download_per_{name}": n for name, n in download.items()},
        **{f"download_per_{name}_vs_activations": n / activation_bytes for name, n in download.items()},
    }


if __name__ == "__main__":
    main()
