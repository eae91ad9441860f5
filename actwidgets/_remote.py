"""Remote (NDIF) runs whose failures read as one sentence a notebook user can act on, whose
wait a widget can watch and give up on, and the weightless local copy of an NDIF model.

nnsight's `RemoteBackend` raises whatever its transport raised: a `RemoteError` carrying
the server's text, a socket or websocket exception, an httpx error from the download. A
widget would show those as a type name and a fragment. What the user needs to know is
what happened and what to do about it -- no key set (refused here, before anything is sent),
a key NDIF turned down, a model NDIF does not host, a job NDIF stopped for running too long,
any other refusal or failure over there, the connection going away, or this kernel's nnsight
differing from NDIF's (and the pip command that fixes it) -- so `backend()` hands
`Model.where` a `RemoteBackend` that says so with a `RemoteRunError`. The message never
carries the API key: it is built from the host, the server's reply and version numbers, and
the key is blanked out of the server's words too, should a server ever echo it.

The same backend keeps a widget informed while it waits. nnsight's blocking client reads the
job's statuses off a websocket until COMPLETED and cannot be told to stop; a widget whose
input changed must not sit out a queued job nobody wants any more. So the wait is ours: it
wakes every 0.1 s (nnsight's own refresh period), asks the job's `should_stop` and raises
`Cancelled` when it says so, and passes each stage ("queued (position N)", "running",
"downloading") to `on_status`. The upload, nnsight's blocking POST, runs on a thread of its
own and is waited for the same way. Both come from `watching()`, which the widget runner opens
around `compute()`; outside it (a plain function call) nothing stops and nothing is said.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Callable

from nnsight.intervention.backends.remote import _REFRESH, RemoteBackend, RemoteError
from nnsight.schema.response import Status

from .errors import Cancelled, RemoteRunError

_SEND_FAILED = "Failed to send request: "  # nnsight's prefix for a refused or unsent POST
_watch = threading.local()  # the job's (should_stop, on_status) on the thread that runs it
_POSITION = re.compile(r"position\D*(\d+)", re.I)  # NDIF says "Queue position: 3."
# NDIF's own words: its queue's answer for a model it will not deploy for this key, and its model
# deployment's for a job past the execution timeout ("Job took longer than timeout: 60 seconds").
_NOT_HOSTED = re.compile(r"hotswapping is not supported|list of scheduled models", re.I)
_TOO_LONG = re.compile(r"took longer than (?:the )?timeout:?\s*([\d.]+)?", re.I)

NO_KEY = ("No NDIF API key is set: set the NDIF_API_KEY environment variable or call "
          "nnsight.CONFIG.set_default_api_key(key) with a key from https://login.ndif.us, then run again.")


@contextlib.contextmanager
def watching(should_stop: Callable[[], bool], on_status: Callable[[str], None]):
    """For the length of the block, remote runs on this thread stop (raise `Cancelled`) within
    0.1 s of `should_stop()` turning true and report their stage to `on_status`; "" at the end."""
    previous = getattr(_watch, "job", None)
    _watch.job = (should_stop, on_status)
    try:
        yield
    finally:
        _watch.job = previous
        on_status("")


def _job() -> tuple[Callable[[], bool], Callable[[str], None]]:
    return getattr(_watch, "job", None) or (lambda: False, lambda _text: None)


_ONE_UPLOAD = threading.Lock()  # held by the thread that uploads (see `_upload`)
_CONNECT_S = 30.0  # the websocket's connect and first message (NDIF answers at once)
_STAGES = {Status.RECEIVED: "sent", Status.PROVISIONING: "starting", Status.DEPLOYING: "starting",
           Status.DISPATCHED: "starting", Status.RUNNING: "running", Status.COMPLETED: "downloading"}


def _until(ready: Callable[[float], bool], should_stop: Callable[[], bool]) -> None:
    """Wait until `ready(timeout)` says so, asking `should_stop()` every _REFRESH seconds."""
    while not ready(_REFRESH):
        if should_stop():
            raise Cancelled


def stage(response) -> str | None:
    """The words for a job's status; None for one that says nothing new (a log line, an error,
    which the widget shows as its error)."""
    if response.status == Status.QUEUED:
        found = _POSITION.search(response.description or "")
        return f"queued (position {found[1]})" if found else "queued"
    return _STAGES.get(response.status)


def weightless(name: str):
    """The nnsight model of an NDIF-hosted `name`, on the meta device (config and tokenizer only)."""
    import nnsight
    from transformers import AutoTokenizer

    # nnsight 0.8.1 asks the pipeline class which preprocessors it loads, which transformers 5.2x
    # names by a lazy import path: without a tokenizer given, the weightless copy gets none.
    return nnsight.TransformersModel(name, task="text-generation", tokenizer=AutoTokenizer.from_pretrained(name))


def backend(lm, verbose: bool = False) -> RemoteBackend:
    """The backend nnsight would build for ``remote=True``, with readable failures. The key is
    nnsight's CONFIG.API.APIKEY, else NDIF_API_KEY, read now: one set after `aw.load` counts."""
    made = _ExplainedBackend(lm.to_model_key(), env=lm._remoteable_get_env(), verbose=verbose)
    made.api_key = made.api_key or os.environ.get("NDIF_API_KEY", "")
    made.model_name = str(getattr(lm, "repo_id", None) or "this model")
    return made


def _local_nnsight() -> str:
    try:
        return version("nnsight")
    except PackageNotFoundError:  # pragma: no cover - nnsight run from a source tree
        return ""


def _line(text: str, last: bool = False) -> str:
    """One line of a server's message: a refusal's first, or a traceback's last (the exception)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()] or [""]
    return lines[-1 if last else 0].rstrip(".")


_UNREADABLE = ("NDIF sent a reply this client could not read ({what}); run again. If it keeps happening, "
               "compare nnsight's version here with NDIF's (nnsight.compare()).")


def _unreadable() -> tuple[type[BaseException], ...]:
    """The errors of a reply that arrived but cannot be read: malformed JSON or frames,
    compressed or pickled result bytes that do not decode."""
    import pickle

    import pydantic
    import zstandard

    return pydantic.ValidationError, zstandard.ZstdError, pickle.UnpicklingError


class _ExplainedBackend(RemoteBackend):
    model_name = "this model"

    def handle(self, response):
        said = stage(response)
        if said is not None:
            _job()[1](said)
        return super().handle(response)

    def request(self, request, tracer):
        """nnsight's blocking wait (subscribe, POST, read statuses until COMPLETED), woken every
        0.1 s to ask whether the job is still wanted. A job given up on runs on at NDIF (the
        protocol has no cancel); only its result is never fetched."""
        import websocket

        should_stop, say = _job()
        blob = self._serialize(tracer)
        # a server that accepts the connection and then says nothing must not hold the worker forever
        connection = websocket.create_connection(
            f"{self.ws_host}/subscribe", header={"ndif-api-key": self.api_key} if self.api_key else None,
            timeout=_CONNECT_S)
        try:
            request.session_id = json.loads(connection.recv())["session_id"]
            if should_stop():
                raise Cancelled
            say("sending")  # the upload: a big trace takes a while, and says so
            self._upload(request, blob, should_stop)
            connection.settimeout(_REFRESH)
            while True:
                if should_stop():
                    raise Cancelled
                try:
                    message = connection.recv()
                except websocket.WebSocketTimeoutException:
                    self.display.refresh()
                    continue
                response = self.parse(message)
                result = self.handle(response)
                if response.status == Status.COMPLETED:
                    if result is None:  # every actwidgets trace saves something
                        raise RemoteRunError(_UNREADABLE.format(what="no result"))
                    return result
        finally:
            connection.close()

    def _upload(self, request, blob: bytes, should_stop: Callable[[], bool]) -> None:
        """nnsight's POST (`send` without its `handle`, which reports on this thread) on a thread
        of its own: it blocks for as long as the upload takes, which a cancel need not wait out.
        One upload is in flight at a time: an upload given up on still reaches NDIF and runs there
        (as a queued job does), and the edits that superseded it must not pile more up meanwhile;
        one given up on before its turn is never sent."""
        post = getattr(self, "_post", None)
        if post is None:  # an nnsight without it: its own blocking send, which a cancel waits out
            self.send(request, blob)
            return
        _until(lambda seconds: _ONE_UPLOAD.acquire(timeout=seconds), should_stop)
        done, out = threading.Event(), {}

        def run() -> None:
            try:
                out["reply"] = post(request, blob)
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                out["error"] = exc
            finally:
                _ONE_UPLOAD.release()
                done.set()

        threading.Thread(target=run, name="actwidgets-ndif-upload", daemon=True).start()
        _until(done.wait, should_stop)
        if "error" in out:
            raise out["error"]
        self.handle(out["reply"])

    def __call__(self, tracer=None):
        import httpx
        import websocket

        if not self.api_key:  # nnsight would send it keyless, for NDIF to refuse after the upload
            raise RemoteRunError(NO_KEY)
        try:
            return super().__call__(tracer)
        except RemoteError as exc:
            status = getattr(getattr(exc.__cause__, "response", None), "status_code", None)
            # a server that echoes the key (a refusal naming it) must not print it in the chained traceback
            cause = None if self.api_key and self.api_key in str(exc) else exc
            raise RemoteRunError(self._explain(str(exc), status)) from cause
        except _unreadable() as exc:  # a reply that is not what this nnsight reads: say so, not a parse error
            raise RemoteRunError(self._mismatch() or _UNREADABLE.format(what=type(exc).__name__)) from exc
        except (ConnectionRefusedError, websocket.WebSocketBadStatusException) as exc:
            # A server of another nnsight generation answers, but not on this client's websocket path.
            raise RemoteRunError(self._mismatch() or f"Could not reach NDIF at {self.host} ({type(exc).__name__}); "
                                 "check the host setting and the network, then run again.") from exc
        except (OSError, websocket.WebSocketException, httpx.HTTPError) as exc:
            raise RemoteRunError(f"The connection to NDIF at {self.host} was lost before the result came back "
                                 f"({type(exc).__name__}); run again.") from exc

    def _explain(self, text: str, status: int | None = None) -> str:
        text = text.replace(self.api_key, "(the key)") if self.api_key else text
        refused = text.startswith(_SEND_FAILED)
        said = _line(text[len(_SEND_FAILED):]) if refused else _line(text, last=True)
        if refused and status in (401, 403):  # NDIF checks the key before anything else, the version too
            return (f"NDIF did not accept the API key ({said.split('. ')[0]}): set a valid one in NDIF_API_KEY "
                    "or with nnsight.CONFIG.set_default_api_key(key), from https://login.ndif.us, then run again.")
        # Past the key, a different nnsight over there is the likeliest cause of any failure and the
        # one with a fix (nnsight#570: a mismatch read as a pickle error).
        if mismatch := self._mismatch():
            return mismatch
        if _NOT_HOSTED.search(text):
            return (f"NDIF does not host {self.model_name} for this API key: pick a model listed at "
                    f"https://nnsight.net/status/ or run it locally with aw.load({self.model_name!r}).")
        if not refused and (too_long := _TOO_LONG.search(text)):
            limit = f" ({too_long[1].rstrip('.')} seconds)" if too_long[1] else ""
            return (f"NDIF stopped this request for running longer than its time limit{limit}: ask for "
                    "fewer tokens, fewer cells or a smaller chunk_size, then run again.")
        if not refused:  # an ERROR status: the job itself failed on NDIF
            return f"NDIF reported an error while running this request ({said})."
        if status is not None and status >= 500 and said.startswith("<"):  # a proxy's HTML page says nothing more
            return f"NDIF is not available right now (HTTP {status}); run again in a while."
        return f"NDIF refused the request ({said})."

    def _mismatch(self) -> str:
        """The sentence for NDIF running another nnsight than this kernel, or "" when it does not (or
        does not say): the version comes from GET /env, the endpoint `nnsight.compare()` reads."""
        import httpx

        try:
            reply = httpx.get(f"{self.host}/env", timeout=5.0)
            reply.raise_for_status()
            server = str(reply.json().get("packages", {}).get("nnsight", ""))
        except (httpx.HTTPError, ValueError, AttributeError):
            return ""
        local = _local_nnsight()
        if not server or server == local:
            return ""
        return (f"NDIF runs nnsight {server} but this kernel has nnsight {local}: run "
                f"`pip install nnsight=={server}` and restart the kernel.")
