"""A widget's remote job, watched and given up on, through nnsight's real client and the
NDIF test server: the stages it reports while the job waits in the queue, runs and comes
back (`remote_status`), and how fast a cancel or a superseding edit frees the widget when
the job it no longer wants is still queued on the server (the wait wakes every 0.1 s).
"""
from __future__ import annotations

import time

import numpy as np

import actwidgets as aw

PROMPT = "The Eiffel Tower is located in the city of"
OTHER = "When Mary and John went to the store, John gave a drink to"


def stages(widget) -> list[str]:
    seen: list[str] = []
    widget.observe(lambda change: seen.append(change["new"]), "remote_status")
    return seen


def until(condition, timeout: float = 30.0) -> float:
    """Seconds until `condition()` holds (fails the test after `timeout`)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


def settled(ndif) -> list[list[str]]:
    """Every job's statuses once each has finished on the server: an abandoned job still runs
    there (the protocol has no cancel), and must not report into the next test."""
    until(lambda: all(job[-1] in ("COMPLETED", "ERROR") for job in ndif.stats()["statuses"].values()))
    return list(ndif.stats()["statuses"].values())


def test_a_queued_job_says_queued_then_running_then_downloading(remote_model, ndif):
    ndif.configure(queue_seconds=0.5)
    # An empty prompt runs nothing; wait for that first run (under load it can start late, read the
    # prompt set below, send a job and be superseded), then observe
    heatmap = aw.Heatmap(remote_model, "", layers=[1]).wait()
    seen = stages(heatmap)
    heatmap.prompt = PROMPT
    heatmap.wait()
    assert heatmap.status == "done", heatmap.error
    assert seen == ["sending", "sent", "queued (position 1)", "running", "downloading", ""]
    assert heatmap.remote_status == ""


def test_a_job_with_another_ahead_says_position_2(remote_model, local_model, ndif):
    import nnsight

    ndif.configure(queue_seconds=1.0)
    blocks = remote_model.blocks
    with remote_model.lm.trace(remote_model.encode(OTHER), remote=True, blocking=False) as ahead:
        _norm = nnsight.save(blocks[1].output[0].norm(dim=-1))  # someone else's job, first in the queue
    heatmap = aw.Heatmap(remote_model, "", layers=[1]).wait()  # its first run over before observing
    seen = stages(heatmap)
    heatmap.prompt = PROMPT
    assert heatmap.wait().status == "done", heatmap.error
    assert seen[:3] == ["sending", "sent", "queued (position 2)"]
    assert ahead.backend() is not None  # the other job completed too
    assert aw.LogitLens(local_model, PROMPT).wait().remote_status == ""  # a local run has no remote stage


def still_queued(ndif) -> bool:
    """The server holds every job so far in its queue: none has started running."""
    return all(job[-1] == "QUEUED" for job in ndif.stats()["statuses"].values())


# No wall-clock bound (the machine may be busy): the widget must be free while the job it gave
# up on is still in the server's queue, which holds it QUEUE_S (measured: freed in ~0.01 s).
QUEUE_S = 6.0


def test_cancel_while_queued_returns_at_once_and_the_next_run_works(remote_model, local_model, ndif):
    ndif.configure(queue_seconds=QUEUE_S)
    heatmap = aw.Heatmap(remote_model, PROMPT)
    until(lambda: heatmap.remote_status.startswith("queued"))
    heatmap.cancel()
    until(lambda: heatmap.idle)
    assert still_queued(ndif)  # not waited for: the widget let go before the job left the queue
    assert heatmap.status == "cancelled" and heatmap.data is None and heatmap.remote_status == ""

    ndif.configure(queue_seconds=0.0)
    heatmap.schedule()
    assert heatmap.wait().status == "done", heatmap.error
    np.testing.assert_allclose(heatmap.data.norm, aw.Heatmap(local_model, PROMPT).wait().data.norm, rtol=1e-6)
    assert settled(ndif) == [["QUEUED", "RUNNING", "COMPLETED"]] * 2  # the cancelled job ran all the same


def test_an_edit_supersedes_a_queued_job_without_waiting_for_it(remote_model, local_model, ndif):
    ndif.configure(queue_seconds=QUEUE_S)
    heatmap = aw.Heatmap(remote_model, PROMPT)
    until(lambda: heatmap.remote_status.startswith("queued"))
    first = next(iter(ndif.stats()["statuses"]))
    ndif.configure(queue_seconds=0.0)
    heatmap.prompt = OTHER
    heatmap.wait()
    # Before: the superseded job's queue time and run came first (5.2 s with a 2 s queue).
    assert ndif.stats()["statuses"][first][-1] == "QUEUED"
    assert heatmap.status == "done" and heatmap.data.tokens == local_model.token_texts(local_model.encode(OTHER)[0])
    assert ndif.stats()["requests"] == 2  # the superseded job was sent; its result is never fetched
    assert len(settled(ndif)) == 2


def test_cancel_while_sending_returns_at_once_and_uploads_do_not_pile_up(remote_model, local_model, ndif):
    """The upload is nnsight's blocking POST, whose read timeout is minutes: a cancel during it
    waited for the server's answer. Here the server answers the POST QUEUE_S late. A cancelled
    upload still reaches NDIF and runs, so the next one waits its turn, and is never sent if
    given up on before then."""
    ndif.configure(post_seconds=QUEUE_S)
    heatmap = aw.Heatmap(remote_model, PROMPT)
    until(lambda: heatmap.remote_status == "sending" and ndif.stats()["requests"] == 1)
    heatmap.cancel()
    until(lambda: heatmap.idle)
    assert ndif.stats()["statuses"] == {}  # let go before the server answered: it has received no job yet
    assert heatmap.status == "cancelled" and heatmap.data is None and heatmap.remote_status == ""
    heatmap.schedule()  # waits for the first upload to finish...
    until(lambda: heatmap.remote_status == "sending")
    heatmap.cancel()  # ...and is given up on before its turn
    until(lambda: heatmap.idle)

    ndif.configure(post_seconds=0.0)
    heatmap.schedule()
    assert heatmap.wait().status == "done", heatmap.error
    np.testing.assert_allclose(heatmap.data.norm, aw.Heatmap(local_model, PROMPT).wait().data.norm, rtol=1e-6)
    until(lambda: len(ndif.stats()["statuses"]) == 2)  # the abandoned upload arrives, and runs, all the same
    assert settled(ndif) == [["QUEUED", "RUNNING", "COMPLETED"]] * 2
    assert ndif.stats()["requests"] == 2  # the one given up on while waiting was never sent
