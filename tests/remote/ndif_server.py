"""A local server that speaks NDIF's protocol to the installed nnsight client, for tests.

Why: `remote="local"` skips nnsight's transport (HTTP, websocket, download). This server
lets the real `RemoteBackend` talk to 127.0.0.1 and runs each request the way NDIF does:
`RequestModel.deserialize` with the model's persistent objects, then `tracer.execute`, in
a process where actwidgets cannot be imported (NDIF does not have it installed).

The protocol of nnsight 0.8.x, as its client speaks it:
  WS   /subscribe        first frame {"session_id": ...}; then every status of the session's
                         jobs, JSON text frames (QUEUED with the queue position in its
                         description, RUNNING, COMPLETED, ERROR); a COMPLETED whose result
                         is inline is a binary frame (a pickled ResponseModel)
  POST /request          multipart: form field `data` (RequestModel JSON: model_key,
                         session_id, compress, env) and file `blob` (the serialized trace);
                         headers ndif-api-key, nnsight-version, python-version, ndif-timestamp;
                         answers RECEIVED with the job id, or 4xx/5xx {"detail": ...}
  GET  /results/{id}     the result: torch.save of the saved values, zstd when compressed
  GET  /response/{id}    the latest status of a job (the client's non-blocking mode)
  GET  /env, /ping       the server's python and package versions; liveness
Test controls (not NDIF's): GET /_test/stats (request count, headers and URIs seen, whether
the key was in a request's body, statuses sent per job, bytes up (request bodies, in all and
each request's) and down (results, downloaded or inline), blocked modules ever imported),
POST /_test/config with any of {"queue_seconds", "post_seconds" (the POST answered that much
later, as a slow upload would be), "fail" ("status" | "http", or a reply the client cannot
read: "proxy" (a proxy's 502 HTML page), "garbled" (result bytes that do not decode),
"empty" (COMPLETED with no result); "echo": a 401 that repeats the key; "silent": a
websocket that never sends its session), "drop", "version" (the nnsight version reported at
/env and required at /request unless "gate" is false), "inline" (results on the websocket),
"keys" (the API keys accepted; null: any), "hosted" (false: the model is not deployed for
this key), "timeout" (NDIF's execution timeout in seconds; null: none)}, POST /_test/reset.
NDIF's answers copied here, from its API and queue: a key it does not know gets 401 {"detail":
"Missing or invalid API key. ..."} before any other check; a model it will not deploy for the
key is received and queued, then ERROR "Model is not dedicated and hotswapping is not supported
for this API key. ..." (also what a request for another model than the one served gets); a job
past the timeout gets ERROR, the traceback then "Job took longer than timeout: N seconds".

Run: `python tests/remote/ndif_server.py MODEL_DIR`; it prints `LISTENING <url>` once the model is
loaded. `NDIFServer` below starts it on a free port and stops it (the pytest fixture's job).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

# --- the client side: start, drive and stop a server process ------------------------------


class NDIFServer:
    """A server process on 127.0.0.1 and a free port, serving the model saved in `model_dir`.

    Starting returns at once, so the caller can load its own model while the server loads
    its copy; `url` waits until the server listens."""

    def __init__(self, model_dir: str | os.PathLike, timeout: float = 120) -> None:
        env = {k: v for k, v in os.environ.items() if k != "NDIF_API_KEY"}  # the server holds no key
        env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, __file__, str(model_dir)], env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.timeout = timeout
        self.output: list[str] = []
        self._url = ""
        self._ready = threading.Event()
        # Reading all along also keeps a full pipe from blocking the server mid-request.
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.output.append(line)
            if line.startswith("LISTENING "):
                self._url = line.split()[1]
                self._ready.set()
        self._ready.set()  # exited: `url` says so instead of waiting out its timeout

    @property
    def url(self) -> str:
        if not self._ready.wait(self.timeout) or not self._url:
            self.stop()
            raise RuntimeError("the NDIF test server did not start listening:\n" + "".join(self.output))
        return self._url

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        with urllib.request.urlopen(urllib.request.Request(self.url + path, data=data), timeout=30) as reply:
            return json.loads(reply.read())

    def stats(self) -> dict:
        return self._call("/_test/stats")

    def configure(self, **behaviour) -> None:
        self._call("/_test/config", behaviour)

    def reset(self) -> None:
        self._call("/_test/reset", {})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- the server side ------------------------------------------------------------------------

NOT_HOSTED = ("Model is not dedicated and hotswapping is not supported for this API key. See "
              "https://nnsight.net/status/ for a list of scheduled models.")
BLOCKED = {"actwidgets"}  # packages NDIF does not have: they must travel with the request


def _block_imports() -> None:
    import importlib.abc

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (not installed on this server)", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())


def _exit_with_parent() -> None:
    """A test run killed outright must not leave its server behind on a shared machine."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(model_dir: str) -> None:
    _exit_with_parent()
    _block_imports()
    import asyncio
    import io
    import queue
    import traceback
    import uuid
    from importlib.metadata import version

    import nnsight
    import torch
    import tornado.httpserver
    import tornado.httputil
    import tornado.ioloop
    import tornado.netutil
    import tornado.web
    import tornado.websocket
    import zstandard
    from nnsight.modeling import huggingface
    from nnsight.schema.request import RequestModel
    from nnsight.schema.response import ResponseModel, Status
    from nnsight.tracing.tracer import _saves, dec, inc

    torch.set_num_threads(1)
    huggingface._ID_CACHE[model_dir] = model_dir  # no Hub here: a folder is its own canonical id
    model = nnsight.TransformersModel(model_dir, task="text-generation", dispatch=True)
    model._module.requires_grad_(False)
    persistent = model._remoteable_persistent_objects()
    model_key = model.to_model_key()
    loop = tornado.ioloop.IOLoop.current()

    defaults = {"queue_seconds": 0.0, "post_seconds": 0.0, "fail": None, "drop": False, "version": version("nnsight"),
                "gate": True, "inline": False, "keys": None, "hosted": True, "timeout": None}
    def counters() -> dict:  # what /_test/stats reports (but the config) and /_test/reset starts afresh
        return {"config": dict(defaults), "requests": 0, "request_headers": [], "key_in_body": [], "uris": [],
                "subscribe_headers": [], "statuses": {}, "bytes_up": 0, "request_bytes": [], "bytes_down": 0}

    state = {**counters(), "jobs_waiting": 0}
    sessions: dict[str, tornado.websocket.WebSocketHandler] = {}
    results: dict[str, bytes] = {}
    latest: dict[str, str] = {}  # job id -> its latest status as JSON, for GET /response
    jobs: queue.Queue = queue.Queue()
    base_url = ""

    def publish(session_id: str, response: ResponseModel, inline: bytes | None = None) -> None:
        """Send one status to the job's websocket (from any thread), and keep it for polling."""
        state["statuses"].setdefault(response.id, []).append(response.status.value)
        # A poller reads JSON: an inline result's bytes stay on the websocket.
        latest[response.id] = response.model_dump_json(exclude={"data"} if inline is not None else None)

        def send() -> None:
            socket = sessions.get(session_id)
            if socket is not None:
                socket.write_message(inline if inline is not None else response.model_dump_json(),
                                     binary=inline is not None)
        loop.add_callback(send)

    def drop(session_id: str) -> None:
        def cut() -> None:  # no close frame: as if the server crashed or the network went away
            socket = sessions.pop(session_id, None)
            if socket is not None and socket.ws_connection is not None:
                socket.ws_connection.stream.close()
        loop.add_callback(cut)

    def execute(blob: bytes, compress: bool) -> bytes:
        """NDIF's path: rebuild the trace against this model, run it, return the saved values."""
        tracer = RequestModel.deserialize(blob, persistent, compress)
        inc()  # the outermost trace's depth, so only save()d values reach the frame
        try:
            tracer.execute(tracer.info.code)
            saves = {k: v for k, v in tracer.info.frame.f_locals.items() if id(v) in _saves()}
        finally:
            dec()
        buffer = io.BytesIO()
        torch.save(saves, buffer)
        data = buffer.getvalue()
        return zstandard.ZstdCompressor(level=3).compress(data) if compress else data

    def leave_queue() -> None:
        state["jobs_waiting"] -= 1

    def worker() -> None:
        while True:
            job_id, session_id, blob, compress, config = jobs.get()
            loop.add_callback(leave_queue)  # the count lives on the event loop's thread

            def say(status: Status, text: str = "", data=None) -> ResponseModel:
                return ResponseModel(id=job_id, status=status, description=text, data=data)

            try:
                if config["drop"]:
                    drop(session_id)
                    continue
                if config["fail"] == "status":
                    publish(session_id, say(Status.ERROR, "Internal server error: the model worker crashed."))
                    continue
                if config["fail"] == "empty":
                    publish(session_id, say(Status.COMPLETED, "Your job has been completed."))
                    continue
                if not config["hosted"]:
                    publish(session_id, say(Status.ERROR, NOT_HOSTED))
                    continue
                publish(session_id, say(Status.RUNNING, "Your job has started running."))
                started = time.monotonic()
                data = execute(blob, compress)
                if config["fail"] == "garbled":
                    data = b"\x00garbage" * 10
                # NDIF abandons the job at the deadline; a job here is too short to stop midway, and the
                # client sees the same thing either way: an ERROR instead of the result.
                if config["timeout"] is not None and time.monotonic() - started > config["timeout"]:
                    try:
                        raise TimeoutError
                    except TimeoutError:
                        said = f"Job took longer than timeout: {config['timeout']} seconds"
                        publish(session_id, say(Status.ERROR, f"{traceback.format_exc()}\n{said}"))
                    continue
                if config["inline"]:
                    done = say(Status.COMPLETED, "Your job has been completed.", data)
                    inline = done.pickle()
                    state["bytes_down"] += len(inline)
                    publish(session_id, done, inline=inline)
                else:
                    results[job_id] = data
                    publish(session_id, say(Status.COMPLETED, "Your job has been completed.",
                                            f"{base_url}/results/{job_id}"))
            except Exception:  # the user's code failed: NDIF sends the traceback as the job's error
                publish(session_id, say(Status.ERROR, traceback.format_exc()))

    class Subscribe(tornado.websocket.WebSocketHandler):
        def open(self) -> None:
            state["subscribe_headers"].append(dict(self.request.headers))
            state["uris"].append(self.request.uri)
            if state["config"]["fail"] == "silent":  # accepts the connection, then says nothing
                return
            self.session_id = uuid.uuid4().hex
            sessions[self.session_id] = self
            self.write_message(json.dumps({"session_id": self.session_id}))

        def on_close(self) -> None:
            sessions.pop(getattr(self, "session_id", ""), None)

    class Request(tornado.web.RequestHandler):
        def refuse(self, code: int, detail: str) -> None:
            self.set_status(code)
            self.finish({"detail": detail})

        async def post(self) -> None:
            state["requests"] += 1
            state["bytes_up"] += len(self.request.body)
            state["request_bytes"].append(len(self.request.body))
            state["request_headers"].append(dict(self.request.headers))
            state["uris"].append(self.request.uri)
            fields: dict = {}
            files: dict = {}
            tornado.httputil.parse_body_arguments(self.request.headers.get("Content-Type", ""), self.request.body,
                                                  fields, files)
            try:
                request = RequestModel.model_validate_json(fields["data"][0])
                blob = files["blob"][0]["body"]
                payload = zstandard.ZstdDecompressor().decompress(blob) if request.compress else blob
            except (KeyError, IndexError, ValueError, zstandard.ZstdError) as exc:
                return self.refuse(422, f"Malformed request: {exc}")
            # Did the API key travel in the body too (the payload decompressed), not only in the header?
            key = self.request.headers.get("ndif-api-key", "").encode()
            state["key_in_body"].append(bool(key) and (key in self.request.body or key in payload))

            config = dict(state["config"])
            if config["keys"] is not None and self.request.headers.get("ndif-api-key", "") not in config["keys"]:
                return self.refuse(401, "Missing or invalid API key. Please visit https://login.ndif.us/ to create "
                                        "a new one.")
            client = self.request.headers.get("nnsight-version", "")
            if config["gate"] and client != config["version"]:
                return self.refuse(400, f"Client nnsight version {client or '(none)'} does not match the server's "
                                        f"{config['version']}. Please `pip install nnsight=={config['version']}`.")
            if config["fail"] == "http":
                return self.refuse(500, "Internal server error.")
            if config["fail"] == "echo":  # a server that repeats the key it refuses
                return self.refuse(401, f"Unknown API key {self.request.headers.get('ndif-api-key', '')}.")
            if config["fail"] == "proxy":
                self.set_status(502)
                return self.finish("<html><head><title>502 Bad Gateway</title></head>"
                                   "<body><center><h1>502 Bad Gateway</h1></center></body></html>")
            if config["post_seconds"]:
                await asyncio.sleep(config["post_seconds"])
            config["hosted"] = config["hosted"] and request.model_key == model_key
            job_id = uuid.uuid4().hex
            self.finish(ResponseModel(id=job_id, status=Status.RECEIVED,
                                      description="Your job has been received.").model_dump_json())
            state["jobs_waiting"] += 1
            publish(request.session_id, ResponseModel(id=job_id, status=Status.QUEUED,
                                                      description=f"Queue position: {state['jobs_waiting']}."))
            if config["queue_seconds"]:
                await asyncio.sleep(config["queue_seconds"])
            jobs.put((job_id, request.session_id, blob, request.compress, config))

    class Result(tornado.web.RequestHandler):
        def get(self, job_id: str) -> None:
            if job_id not in results:
                raise tornado.web.HTTPError(404)
            self.set_header("Content-Type", "application/octet-stream")
            data = results.pop(job_id)
            state["bytes_down"] += len(data)
            self.finish(data)  # a presigned url is good for one download here

    class Response(tornado.web.RequestHandler):
        def get(self, job_id: str) -> None:
            if job_id not in latest:
                raise tornado.web.HTTPError(404)
            self.finish(latest[job_id])

    class Env(tornado.web.RequestHandler):
        def get(self) -> None:
            packages = {name: version(name) for name in ("torch", "transformers")}
            self.finish({"python_version": sys.version, "packages": {**packages, "nnsight": state["config"]["version"]}})

    class Ping(tornado.web.RequestHandler):
        def get(self) -> None:
            self.finish(json.dumps("pong"))

    class Stats(tornado.web.RequestHandler):
        def get(self) -> None:
            names = [name for name in counters() if name != "config"]
            # Proof that requests ran without the blocked packages: none of them was ever imported here.
            loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
            self.finish({**{k: state[k] for k in names}, "blocked_modules_loaded": loaded})

    class Config(tornado.web.RequestHandler):
        def post(self) -> None:
            changes = json.loads(self.request.body or b"{}")
            unknown = set(changes) - set(defaults)
            if unknown:
                raise tornado.web.HTTPError(400, f"unknown settings {sorted(unknown)}")
            state["config"].update(changes)
            self.finish({"config": state["config"]})

    class Reset(tornado.web.RequestHandler):
        def post(self) -> None:
            state.update(counters())
            self.finish({"config": state["config"]})

    app = tornado.web.Application([
        (r"/subscribe", Subscribe), (r"/request", Request), (r"/results/(\w+)", Result),
        (r"/response/(\w+)", Response), (r"/env", Env), (r"/ping", Ping),
        (r"/_test/stats", Stats), (r"/_test/config", Config), (r"/_test/reset", Reset),
    ], websocket_max_message_size=1 << 30)
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")  # port 0: the OS picks a free one, no race
    server = tornado.httpserver.HTTPServer(app, max_body_size=1 << 30)
    server.add_sockets(sockets)
    base_url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    threading.Thread(target=worker, daemon=True, name="ndif-worker").start()
    print(f"LISTENING {base_url} serving {model_key}", flush=True)
    loop.start()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: ndif_server.py MODEL_DIR")
    serve(sys.argv[1])  # as given: the client names the model by the same string
