"""`remote=True` through nnsight's real transport (HTTP upload, websocket status stream,
result download) against the NDIF test server in tests/remote/ndif_server.py, which runs each
request with nnsight's own deserialise-and-execute path in a process without actwidgets.

What is checked: the numbers equal a local run's; how many requests a figure costs,
counted at the server; that a bad input sends none; that the API key goes to the server
in a header and nowhere else (not the payload, a widget's state, its snapshot, its HTML
export, the output or the logs); and that a server error, a dropped connection, an
unreachable host, an nnsight version mismatch, a missing or rejected key, a model NDIF does
not host and a job past NDIF's time limit each read as one sentence, and the widget recovers.
"""
from __future__ import annotations

import json
import logging
import re
import socket
import time
from importlib.metadata import version

import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.errors import InputError, RemoteRunError
from actwidgets.methods.activations import residual_stats
from actwidgets.methods.lens import logit_lens
from actwidgets.widgets import _snapshot

PROMPT = "The Eiffel Tower is located in the city of"
OTHER = "When Mary and John went to the store, John gave a drink to"
SAME_LENGTH = "The Mont Blanc is located in the city of"  # 9 tokens, as PROMPT


def one_sentence(message: str) -> bool:
    """One line ending in a full stop, with no sentence break inside (dots in versions and
    addresses are followed by a digit, not a space)."""
    return "\n" not in message and message.endswith(".") and len(re.findall(r"[.!?](?:\s|$)", message)) == 1


def job_statuses(ndif) -> list[list[str]]:
    return list(ndif.stats()["statuses"].values())


# --- the same numbers, and what they cost -------------------------------------------------

def test_heatmap_through_the_server_equals_the_local_run(remote_model, local_model, ndif):
    heatmap = aw.Heatmap(remote_model, PROMPT).wait()
    assert heatmap.status == "done", heatmap.error
    assert ndif.stats()["requests"] == 1  # one trace per heatmap: every statistic comes from it
    assert job_statuses(ndif) == [["QUEUED", "RUNNING", "COMPLETED"]]
    assert ndif.stats()["blocked_modules_loaded"] == []  # actwidgets' helpers travelled by value

    remote, local = heatmap.data, aw.Heatmap(local_model, PROMPT).wait().data
    assert remote.tokens == local.tokens and remote.rows == local.rows
    for name in ("norm", "max_abs", "delta"):
        np.testing.assert_allclose(getattr(remote, name), getattr(local, name), rtol=1e-6, equal_nan=True)
    np.testing.assert_array_equal(remote.channel, local.channel)

    heatmap.stat = "max_abs"  # a redraw, not a run
    heatmap.wait()
    assert ndif.stats()["requests"] == 1

    mismatched = aw.Heatmap(remote_model, PROMPT, compare=OTHER).wait()
    assert "prompt is 9 tokens, compare is 14" in mismatched.error
    assert ndif.stats()["requests"] == 1  # refused here, before either prompt was sent

    compared = aw.Heatmap(remote_model, PROMPT, compare=SAME_LENGTH).wait()
    assert compared.status == "done", compared.error
    assert ndif.stats()["requests"] == 2  # a comparison: both prompts' traces in one session, one job
    local = aw.Heatmap(local_model, PROMPT, compare=SAME_LENGTH).wait().data
    np.testing.assert_allclose(compared.data.norm, local.norm, rtol=1e-5, atol=1e-5)
    assert compared.data.tokens == local.tokens


def test_logit_lens_through_the_server_equals_the_local_run(remote_model, local_model, ndif):
    ndif.configure(inline=True)  # the result comes back on the websocket: nnsight's other route
    remote = logit_lens(remote_model, PROMPT, target=" Paris")
    local = logit_lens(local_model, PROMPT, target=" Paris")
    assert ndif.stats()["requests"] == 1
    np.testing.assert_array_equal(remote.topk_ids, local.topk_ids)
    np.testing.assert_array_equal(remote.target_rank, local.target_rank)
    for name in ("topk_prob", "entropy", "target_prob"):
        np.testing.assert_allclose(getattr(remote, name), getattr(local, name), rtol=1e-5, atol=1e-7)

    ndif.configure(inline=False)  # and through the download url, as a widget
    lens = aw.LogitLens(remote_model, PROMPT, target=" Paris").wait()
    assert lens.status == "done", lens.error
    np.testing.assert_array_equal(lens.data.topk_ids, local.topk_ids)
    assert ndif.stats()["requests"] == 2


def test_a_steered_generation_through_the_server_equals_the_local_run(remote_model, local_model, ndif):
    from actwidgets.methods.steering.generation import steer_generate

    vector = torch.randn(local_model.d_model, generator=torch.Generator().manual_seed(0))
    remote = steer_generate(remote_model, PROMPT, vector, layer=1, strength=4.0, max_new_tokens=6)
    local = steer_generate(local_model, PROMPT, vector, layer=1, strength=4.0, max_new_tokens=6)
    assert remote.token_ids == local.token_ids and len(remote.token_ids) == 6
    unsteered = steer_generate(local_model, PROMPT, vector, layer=1, strength=0.0, max_new_tokens=6)
    assert unsteered.token_ids != local.token_ids  # so the equality above says the edit ran on the server
    assert ndif.stats()["requests"] == 1  # the whole generation is one job


def test_a_queued_job_reports_its_position_and_still_completes(remote_model, local_model, ndif, capfd):
    ndif.configure(queue_seconds=1.0)
    start = time.monotonic()
    stats = residual_stats(remote_model, PROMPT)
    assert time.monotonic() - start >= 1.0
    assert job_statuses(ndif) == [["QUEUED", "RUNNING", "COMPLETED"]]
    assert "Queue position: 1." in capfd.readouterr().out  # nnsight's status line shows it
    np.testing.assert_allclose(stats.norm, residual_stats(local_model, PROMPT).norm, rtol=1e-6)


def test_a_polling_client_gets_the_same_result(remote_model, local_model, ndif):
    """nnsight's non-blocking mode: POST without a websocket, then GET /response/{id} until done."""
    import nnsight

    ids = remote_model.encode(PROMPT)
    blocks = remote_model.blocks
    with remote_model.lm.trace(ids, remote=True, blocking=False) as tracer:
        _norm = nnsight.save(blocks[1].output[0].norm(dim=-1))  # polled: it comes back in the result, by name
    deadline = time.monotonic() + 30
    while (result := tracer.backend()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    expected = residual_stats(local_model, PROMPT, layers=[1]).norm[0]
    np.testing.assert_allclose(result["_norm"].numpy(), expected, rtol=1e-6)
    assert ndif.stats()["requests"] == 1 and ndif.stats()["subscribe_headers"] == []


@pytest.mark.parametrize("make", [
    lambda m: residual_stats(m, PROMPT, layers=[99]),
    lambda m: logit_lens(m, PROMPT, target=" Mont Blanc"),  # two tokens
    lambda m: logit_lens(m, "", target=" Paris"),
], ids=["layer out of range", "two-token target", "empty prompt"])
def test_a_bad_input_sends_no_request(remote_model, ndif, make):
    with pytest.raises(InputError):
        make(remote_model)
    assert ndif.stats()["requests"] == 0


def test_a_bad_input_in_a_widget_sends_no_request(remote_model, ndif):
    heatmap = aw.Heatmap(remote_model, PROMPT, layers=[99]).wait()
    lens = aw.LogitLens(remote_model, PROMPT, target=" Mont Blanc").wait()
    assert "out of range" in heatmap.error and "2 tokens" in lens.error
    assert ndif.stats()["requests"] == 0


# --- the key ------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:Glyph")  # a random model's top tokens include control bytes
def test_the_api_key_travels_in_the_header_only(remote_model, ndif, api_key, tmp_path, capfd, caplog):
    caplog.set_level(logging.DEBUG)
    heatmap = aw.Heatmap(remote_model, PROMPT).wait()
    lens = aw.LogitLens(remote_model, PROMPT, target=" Paris").wait()
    assert heatmap.status == lens.status == "done"

    seen = ndif.stats()
    assert seen["requests"] == 2
    assert [h.get("Ndif-Api-Key") for h in seen["request_headers"]] == [api_key] * 2
    assert seen["key_in_body"] == [False, False]  # not in the form field, not in the (decompressed) payload
    assert [h.get("Ndif-Api-Key") for h in seen["subscribe_headers"]] == [api_key] * 2  # the websocket's header
    assert seen["uris"] and not any(api_key in uri for uri in seen["uris"])

    for widget in (heatmap, lens):
        assert api_key not in str(widget.get_state())
        assert api_key not in json.dumps(_snapshot.snapshot(widget))
        assert api_key not in widget.to_html(tmp_path / f"{type(widget).__name__}.html").read_text()
        assert api_key not in str(widget._repr_mimebundle_())
    out, err = capfd.readouterr()
    assert "COMPLETED" in out  # the status lines were captured: the check below reads real output
    assert api_key not in out + err + caplog.text


# --- failures, each said in one sentence ------------------------------------------------

def test_a_server_error_is_one_sentence_and_the_widget_recovers(remote_model, ndif):
    ndif.configure(fail="status")
    with pytest.raises(RemoteRunError) as failed:
        residual_stats(remote_model, PROMPT)
    message = str(failed.value)
    assert message == ("NDIF reported an error while running this request "
                       "(Internal server error: the model worker crashed).")
    assert one_sentence(message)

    heatmap = aw.Heatmap(remote_model, PROMPT).wait()
    assert heatmap.status == "error" and heatmap.error == message  # shown verbatim, no type name
    assert ndif.stats()["requests"] == 2

    ndif.configure(fail=None)
    heatmap.schedule()
    assert heatmap.wait().status == "done" and heatmap.data is not None


def test_an_error_in_the_trace_on_ndif_names_the_exception(remote_model, ndif):
    import nnsight

    blocks = remote_model.blocks  # 3 blocks: the body below is only run on the server
    with pytest.raises(RemoteRunError) as failed:
        with remote_model.trace(remote_model.encode(PROMPT)):
            _out = nnsight.save(blocks[7].output)
    message = str(failed.value)
    # the traceback's last line, the exception, not its first ("Traceback (most recent call last):")
    assert re.fullmatch(r"NDIF reported an error while running this request \(AttributeError: .*'7'\)\.", message)
    assert one_sentence(message)


def test_a_refused_request_is_one_sentence(remote_model, ndif):
    ndif.configure(fail="http")
    with pytest.raises(RemoteRunError) as failed:
        logit_lens(remote_model, PROMPT)
    assert str(failed.value) == "NDIF refused the request (Internal server error)."
    assert one_sentence(str(failed.value))


@pytest.mark.parametrize("fail, said", [
    ("proxy", "NDIF is not available right now (HTTP 502); run again in a while."),
    ("garbled", "NDIF sent a reply this client could not read (ZstdError); run again."),
    ("empty", "NDIF sent a reply this client could not read (no result); run again."),
])
def test_a_reply_that_cannot_be_read_is_a_sentence_and_the_widget_recovers(remote_model, ndif, fail, said):
    """A proxy's HTML page, result bytes that do not decode, a COMPLETED without a result: each
    was a raw parse error in the widget ("ZstdError: error determining content size ...")."""
    ndif.configure(fail=fail)
    heatmap = aw.Heatmap(remote_model, PROMPT).wait(timeout=60)
    assert heatmap.status == "error" and heatmap.error.startswith(said), heatmap.error
    ndif.configure(fail=None)
    heatmap.schedule()
    assert heatmap.wait(timeout=60).status == "done", heatmap.error


def test_a_server_that_never_answers_the_connection_frees_the_worker(remote_model, ndif, monkeypatch):
    """It held the model's worker, and every widget on it, for good: no cancel reached it."""
    from actwidgets import _remote

    monkeypatch.setattr(_remote, "_CONNECT_S", 1.0)
    ndif.configure(fail="silent")
    heatmap = aw.Heatmap(remote_model, PROMPT).wait(timeout=30)
    assert heatmap.status == "error" and heatmap.error.startswith(f"The connection to NDIF at {ndif.url} was lost")
    ndif.configure(fail=None)
    heatmap.schedule()
    assert heatmap.wait(timeout=60).status == "done", heatmap.error


def test_a_dropped_connection_is_one_sentence(remote_model, ndif):
    ndif.configure(drop=True)
    heatmap = aw.Heatmap(remote_model, PROMPT).wait(timeout=60)
    assert heatmap.status == "error"
    assert heatmap.error.startswith(f"The connection to NDIF at {ndif.url} was lost before the result came back")
    assert one_sentence(heatmap.error)
    assert ndif.stats()["requests"] == 1


def test_an_unreachable_host_is_one_sentence(remote_model, monkeypatch):
    import nnsight

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(nnsight.CONFIG.API, "HOST", host)
    with pytest.raises(RemoteRunError) as failed:
        residual_stats(remote_model, PROMPT)
    assert str(failed.value).startswith(f"Could not reach NDIF at {host}")
    assert one_sentence(str(failed.value))


@pytest.mark.parametrize("server", [
    {"version": "0.9.0"},  # NDIF gating clients by version: the request is refused at the door
    {"version": "0.9.0", "gate": False, "fail": "status"},  # not gating: the job fails over there
], ids=["refused", "failed"])
def test_a_version_mismatch_names_both_versions_and_the_pip_command(remote_model, ndif, server):
    ndif.configure(**server)
    heatmap = aw.Heatmap(remote_model, PROMPT).wait()
    mine = version("nnsight")
    assert heatmap.error == (f"NDIF runs nnsight 0.9.0 but this kernel has nnsight {mine}: run "
                             f"`pip install nnsight==0.9.0` and restart the kernel.")
    assert one_sentence(heatmap.error)
    assert ndif.stats()["requests"] == 1
    assert job_statuses(ndif) == ([] if server.get("gate", True) else [["QUEUED", "ERROR"]])


# --- the key, the model, the time limit: one sentence that says what to do -------------------

def settled(widget, status: str = "error"):
    """The widget after its run, checked to be in `status` with a one-sentence, traceback-free error."""
    widget.wait(timeout=60)
    assert widget.status == status, widget.error
    if status == "error":
        assert one_sentence(widget.error) and "Traceback" not in widget.error and "Error:" not in widget.error
    return widget


def test_no_api_key_is_refused_before_anything_is_sent(remote_model, ndif, api_key, monkeypatch):
    import nnsight

    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", None)
    heatmap = settled(aw.Heatmap(remote_model, PROMPT))
    assert heatmap.error == ("No NDIF API key is set: set the NDIF_API_KEY environment variable or call "
                             "nnsight.CONFIG.set_default_api_key(key) with a key from https://login.ndif.us, "
                             "then run again.")
    assert ndif.stats()["requests"] == 0 and ndif.stats()["subscribe_headers"] == []  # not even the websocket

    monkeypatch.setenv("NDIF_API_KEY", api_key)  # set after aw.load, and only in the environment: it counts
    heatmap.schedule()
    settled(heatmap, "done")
    assert [h.get("Ndif-Api-Key") for h in ndif.stats()["request_headers"]] == [api_key]


def test_a_rejected_api_key_is_one_sentence_without_the_key(remote_model, ndif, api_key, monkeypatch):
    import nnsight

    wrong = "aw-revoked-key-0d1e2f3a"
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", wrong)
    ndif.configure(keys=[api_key], version="0.9.0")  # NDIF checks the key first: no version sentence
    heatmap = settled(aw.Heatmap(remote_model, PROMPT))
    assert heatmap.error == ("NDIF did not accept the API key (Missing or invalid API key): set a valid one in "
                             "NDIF_API_KEY or with nnsight.CONFIG.set_default_api_key(key), from "
                             "https://login.ndif.us, then run again.")
    assert wrong not in heatmap.error and wrong not in str(heatmap.get_state())
    assert ndif.stats()["requests"] == 1 and job_statuses(ndif) == []

    ndif.configure(version=version("nnsight"))
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", api_key)
    heatmap.schedule()
    assert settled(heatmap, "done").data is not None


def test_a_key_a_server_echoes_back_is_blanked_out(remote_model, api_key):
    from actwidgets._remote import backend

    explained = backend(remote_model.lm)
    said = explained._explain(f"Failed to send request: Unknown key {api_key}.", 400)
    assert said == "NDIF refused the request (Unknown key (the key))."


def test_a_key_a_server_echoes_is_not_in_the_traceback_either(remote_model, ndif, api_key):
    """The sentence blanks it, and the chained exception that a notebook prints under it must
    not carry it (it said "RemoteError: Failed to send request: Unknown API key <the key>")."""
    import traceback

    ndif.configure(fail="echo")
    with pytest.raises(RemoteRunError) as failed:
        residual_stats(remote_model, PROMPT)
    printed = "".join(traceback.format_exception(failed.value))
    assert api_key not in printed and "(the key)" in str(failed.value)


def test_a_model_not_hosted_by_ndif_names_the_model_and_what_to_do(remote_model, ndif):
    ndif.configure(hosted=False)
    lens = settled(aw.LogitLens(remote_model, PROMPT, target=" Paris"))
    name = remote_model.name
    assert lens.error == (f"NDIF does not host {name} for this API key: pick a model listed at "
                          f"https://nnsight.net/status/ or run it locally with aw.load({name!r}).")
    assert job_statuses(ndif) == [["QUEUED", "ERROR"]]  # received, then turned down, as NDIF's queue does

    ndif.configure(hosted=True)
    lens.schedule()
    assert settled(lens, "done").data is not None


def test_a_job_past_ndifs_timeout_says_what_to_make_smaller(remote_model, ndif):
    ndif.configure(timeout=0.001)
    heatmap = settled(aw.Heatmap(remote_model, PROMPT))
    assert heatmap.error == ("NDIF stopped this request for running longer than its time limit (0.001 seconds): "
                             "ask for fewer tokens, fewer cells or a smaller chunk_size, then run again.")
    assert job_statuses(ndif) == [["QUEUED", "RUNNING", "ERROR"]]

    ndif.configure(timeout=None)
    heatmap.schedule()
    assert settled(heatmap, "done").data is not None
