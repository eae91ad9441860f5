"""Remote (NDIF) runs whose failures read as one sentence a notebook user can act on, and the
weightless local copy of an NDIF model.

nnsight's `RemoteBackend` raises whatever its transport raised: a `RemoteError` carrying
the server's text, a socket or websocket exception, an httpx error from the download. A
widget would show those as a type name and a fragment. What the user needs to know is
which of four things happened -- NDIF refused the request, NDIF failed while running it,
the connection went away, or this kernel's nnsight differs from NDIF's (and the pip
command that fixes it) -- so `backend()` hands `Model.where` a `RemoteBackend` that says
so with a `RemoteRunError`. The message never carries the API key: it is built from the
host, the server's reply and version numbers only.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from nnsight.intervention.backends.remote import RemoteBackend, RemoteError

from .errors import RemoteRunError

_SEND_FAILED = "Failed to send request: "  # nnsight's prefix for a refused or unsent POST


def weightless(name: str):
    """The nnsight model of an NDIF-hosted `name`, on the meta device (config and tokenizer only)."""
    import nnsight
    from transformers import AutoTokenizer

    # nnsight 0.8.1 asks the pipeline class which preprocessors it loads, which transformers 5.2x
    # names by a lazy import path: without a tokenizer given, the weightless copy gets none.
    return nnsight.TransformersModel(name, task="text-generation", tokenizer=AutoTokenizer.from_pretrained(name))


def backend(lm, verbose: bool = False) -> RemoteBackend:
    """The backend nnsight would build for ``remote=True``, with readable failures."""
    return _ExplainedBackend(lm.to_model_key(), env=lm._remoteable_get_env(), verbose=verbose)


def _local_nnsight() -> str:
    try:
        return version("nnsight")
    except PackageNotFoundError:  # pragma: no cover - nnsight run from a source tree
        return ""


def _line(text: str, last: bool = False) -> str:
    """One line of a server's message: a refusal's first, or a traceback's last (the exception)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()] or [""]
    return lines[-1 if last else 0].rstrip(".")


class _ExplainedBackend(RemoteBackend):
    def __call__(self, tracer=None):
        import httpx
        import websocket

        try:
            return super().__call__(tracer)
        except RemoteError as exc:
            raise RemoteRunError(self._explain(str(exc))) from exc
        except (ConnectionRefusedError, websocket.WebSocketBadStatusException) as exc:
            # A server of another nnsight generation answers, but not on this client's websocket path.
            raise RemoteRunError(self._mismatch() or f"Could not reach NDIF at {self.host} ({type(exc).__name__}); "
                                 "check the host setting and the network, then run again.") from exc
        except (OSError, websocket.WebSocketException, httpx.HTTPError) as exc:
            raise RemoteRunError(f"The connection to NDIF at {self.host} was lost before the result came back "
                                 f"({type(exc).__name__}); run again.") from exc

    def _explain(self, text: str) -> str:
        # Whether NDIF refused the request or failed running it, a different nnsight over there is
        # the likeliest cause and the one with a fix (nnsight#570: a mismatch read as a pickle error).
        if mismatch := self._mismatch():
            return mismatch
        if not text.startswith(_SEND_FAILED):  # an ERROR status: the job itself failed on NDIF
            return f"NDIF reported an error while running this request ({_line(text, last=True)})."
        return f"NDIF refused the request ({_line(text[len(_SEND_FAILED):])})."

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
