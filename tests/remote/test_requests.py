"""What each figure costs in NDIF requests, counted at the NDIF test server, with the same
numbers as a local run. The rule: one job per figure where nnsight allows it (one trace, or
one session holding several traces), and a request never sent for input refused here.

  Heatmap                 1 (every statistic from one trace); with `compare`, still 1: both
                          prompts' traces in one nnsight session (each its own forward pass)
  LogitLens               1 (every chunk of positions reduced inside one trace)
  PatchingGrid, exact     2 + one per chunk of `chunk_size` cells: the clean and corrupted
                          runs are cached first (their activations are patched in from here),
                          then each chunk is its own job so the grid fills in as they return
  PatchingGrid, attribution / relp   1 for the approximation, then the exact grid as above
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import actwidgets as aw
from actwidgets.methods.activations import residual_stats, residual_stats_pair
from actwidgets.methods.patching import iter_exact, prepare

PROMPT = "The Eiffel Tower is located in the city of"
SAME_LENGTH = "The Mont Blanc is located in the city of"
CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
ANSWER = (" Mary", " John")


def chunks_of(model, chunk_size: int) -> int:
    """How many chunk jobs iter_exact runs for the IOI pair (cells before the first differing
    token need none: there the patch copies what is already there). A remote model cuts its
    chunks its own way (no prefix reuse there: methods/_prefix.py), so count on the model the
    grid will run on; the caller resets the server's count afterwards."""
    return sum(1 for _ in iter_exact(model, prepare(model, CLEAN, CORRUPTED, ANSWER), chunk_size=chunk_size))


def test_a_pair_in_one_session_is_two_separate_runs_bit_for_bit(local_model):
    first, second = residual_stats_pair(local_model, PROMPT, SAME_LENGTH)
    for alone, paired in ((residual_stats(local_model, PROMPT), first), (residual_stats(local_model, SAME_LENGTH), second)):
        assert alone.tokens == paired.tokens and alone.rows == paired.rows
        for name in ("norm", "max_abs", "delta", "channel"):
            np.testing.assert_array_equal(getattr(paired, name), getattr(alone, name))


def test_a_compare_heatmap_is_one_request(remote_model, local_model, ndif):
    heatmap = aw.Heatmap(remote_model, PROMPT, compare=SAME_LENGTH).wait()
    assert heatmap.status == "done", heatmap.error
    assert ndif.stats()["requests"] == 1
    assert list(ndif.stats()["statuses"].values()) == [["QUEUED", "RUNNING", "COMPLETED"]]
    local = aw.Heatmap(local_model, PROMPT, compare=SAME_LENGTH).wait().data
    np.testing.assert_allclose(heatmap.data.norm, local.norm, rtol=1e-5, atol=1e-6)

    heatmap.compare = ""  # the prompt's own statistics came with the pair: nothing to send
    heatmap.wait()
    assert heatmap.status == "done" and ndif.stats()["requests"] == 1


@pytest.mark.parametrize("chunk_size", [64, 8])
def test_an_exact_grid_is_two_requests_plus_one_per_chunk(remote_model, local_model, ndif, chunk_size):
    chunks = chunks_of(remote_model, chunk_size)
    assert chunks >= math.ceil(chunks_of(local_model, 1) / chunk_size)
    ndif.reset()
    grid = aw.PatchingGrid(remote_model, CLEAN, CORRUPTED, ANSWER, chunk_size=chunk_size).wait()
    assert grid.status == "done", grid.error
    assert ndif.stats()["requests"] == 2 + chunks
    local = aw.PatchingGrid(local_model, CLEAN, CORRUPTED, ANSWER, chunk_size=chunk_size).wait()
    np.testing.assert_allclose(grid.result.patched_ld, local.result.patched_ld, rtol=1e-4, atol=1e-5)


def test_an_exact_grid_uploads_its_patches_not_every_layers_activations(remote_model, ndif):
    """A chunk's trace ships the values its body names: it named the source run's activations
    of every layer (and the target's block outputs below the chunk), so each chunk uploaded
    more than all of them; now the patches, and NDIF runs the blocks below itself. The second
    cached run also carried the first one's activations."""
    start = "The Eiffel Tower is located in the city of Paris and Rome is the capital of Italy. " * 6
    clean, corrupted = start + CLEAN, start + CORRUPTED
    activations = remote_model.n_layers * remote_model.encode(clean).shape[1] * remote_model.d_model * 4
    ndif.reset()
    list(iter_exact(remote_model, prepare(remote_model, clean, corrupted, ANSWER), chunk_size=1))
    chunks = ndif.stats()["request_bytes"][2:]  # after the two cached runs
    assert activations > 90_000 and max(chunks) < activations / 8, (chunks, activations)  # 101 KB a chunk before


@pytest.mark.parametrize("relp", [False, True], ids=["attribution", "relp"])
def test_an_approximation_brings_back_its_grid_not_the_activations(remote_model, ndif, relp):
    """The scores are reduced on the server: 157 KB came back for a 128-token prompt (both
    rows' activations and the gradients), for a [layers, tokens] grid of 1.5 KB."""
    from actwidgets.methods.patching import attribution_patching

    start = "The Eiffel Tower is located in the city of Paris and Rome is the capital of Italy. " * 6
    activations = remote_model.n_layers * remote_model.encode(start + CLEAN).shape[1] * remote_model.d_model * 4
    ndif.reset()
    attribution_patching(remote_model, start + CLEAN, start + CORRUPTED, ANSWER, relp=relp)
    assert ndif.stats()["requests"] == 1 and ndif.stats()["bytes_down"] < activations / 8


def test_an_attribution_grid_sends_one_request_before_the_exact_grid(remote_model, ndif):
    chunks = chunks_of(remote_model, 64)
    ndif.reset()
    grid = aw.PatchingGrid(remote_model, CLEAN, CORRUPTED, ANSWER, method="attribution").wait()
    assert grid.status == "done", grid.error
    assert ndif.stats()["requests"] == 1 + 2 + chunks


def test_the_rehearsal_sends_the_pair_as_one_session(local_model):
    import dataclasses

    rehearsal = dataclasses.replace(local_model, remote="local")  # nnsight's serialise-deserialise-run path
    first, second = residual_stats_pair(rehearsal, PROMPT, SAME_LENGTH)
    np.testing.assert_allclose(first.norm, residual_stats(local_model, PROMPT).norm, rtol=1e-6)
    np.testing.assert_allclose(second.delta, residual_stats(local_model, SAME_LENGTH).delta, rtol=1e-6,
                               equal_nan=True)
