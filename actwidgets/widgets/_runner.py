"""Where widget jobs run: one long-lived worker thread per model, latest request wins.

Each widget has a Runner holding at most one pending job. A request made while another
runs replaces any queued one, so a burst of slider moves runs at most the current job
plus the last request, and a job superseded mid-way stops at its next check and never
writes its result. Runners of widgets sharing a model queue on that model's Worker:
traces of one model never overlap anyway (it has one lock), and a thread that lives as
long as the model keeps one malloc arena warm instead of a new one per burst of work.

At interpreter exit every job is cancelled and every worker joined before torch's
thread pools are torn down; a worker still inside torch then aborts the process
("terminate called without an active exception", exit code 134).
"""
from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import weakref
from typing import Callable

from .._malloc import trim

log = logging.getLogger("actwidgets")
THREAD_NAME = "actwidgets-runner"
EXIT_JOIN_S = 30.0  # a job checks for cancellation at least once per forward pass

_workers: "weakref.WeakSet[Worker]" = weakref.WeakSet()
_by_model: dict[int, Worker] = {}  # by id(model): a Model (a dataclass) is not hashable
_by_model_lock = threading.Lock()


class Worker:
    """One daemon thread that runs queued Runners' jobs in the order they were asked for."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._queue: collections.deque[Runner] = collections.deque()
        self._runners: weakref.WeakSet[Runner] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._stopped = False
        _workers.add(self)

    def add(self, runner: "Runner") -> None:
        with self._cv:
            self._runners.add(runner)

    def wake(self, runner: "Runner") -> None:
        with self._cv:
            if self._stopped:
                runner._finish()
                return
            if runner not in self._queue:
                self._queue.append(runner)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
                self._thread.start()
            self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                runner = self._queue.popleft()
            runner._step()
            with self._cv:
                idle = not self._queue
            if idle:
                trim()  # hand the job's freed heap back to the OS

    def stop(self, timeout: float) -> bool:
        """Cancel every job, let the running one reach its next check, end the thread."""
        with self._cv:
            self._stopped = True
            runners, thread = list(self._runners), self._thread
            self._queue.clear()
            self._cv.notify()
        for runner in runners:
            runner.cancel()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True


def worker_for(model) -> Worker:
    """The model's worker (made on first use, stopped when the model is collected)."""
    with _by_model_lock:
        worker = _by_model.get(id(model))
        if worker is None:
            worker = _by_model[id(model)] = Worker()
            weakref.finalize(model, _retire, id(model))
        return worker


def _retire(key: int) -> None:
    with _by_model_lock:
        worker = _by_model.pop(key, None)
    if worker is not None:
        worker.stop(0.0)


class Runner:
    """One widget's queue of length one; runs on a Worker; only the newest request counts."""

    def __init__(self, worker: Worker | None = None) -> None:
        self._worker = worker or Worker()
        self._worker.add(self)
        self._lock = threading.Lock()
        self._generation = 0
        self._pending: Callable[[], None] | None = None
        self._running = False
        self._idle = threading.Event()
        self._idle.set()
        self.runs = 0  # jobs actually started (tests count them)

    def submit(self, job: Callable[[Callable[[], bool]], None]) -> None:
        """Queue `job(is_current)`; a job still queued is dropped."""
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._pending = lambda: job(lambda: generation == self._generation)
            self._idle.clear()
        self._worker.wake(self)

    def _step(self) -> None:
        """Run the pending job, if any (on the worker thread)."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                self._idle.set()
                return
            self._running = True
        self.runs += 1
        try:
            pending()
        except Exception:  # a job must never take the worker down with it
            log.exception("actwidgets: a widget job failed outside its own error handling")
        with self._lock:
            self._running = False
            again = self._pending is not None
            if not again:
                self._idle.set()
        if again:  # behind the other widgets' requests made meanwhile
            self._worker.wake(self)

    def _finish(self) -> None:
        with self._lock:
            self._pending = None
            if not self._running:
                self._idle.set()

    def cancel(self) -> None:
        """Supersede the running job and drop a queued one, queuing nothing new."""
        with self._lock:
            self._generation += 1
            self._pending = None
            if not self._running:
                self._idle.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no job is running or queued (tests and scripts)."""
        return self._idle.wait(timeout)

    @property
    def idle(self) -> bool:
        return self._idle.is_set()


class Later:
    """Calls a function once, a moment after the last request for it, on one shared thread
    (not a `threading.Timer`, a new thread per call): how saved snapshots are refreshed."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._due: dict[object, tuple[float, Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None
        self._stopped = False

    def call(self, key, delay: float, fn: Callable[[], None]) -> None:
        """Run `fn` after `delay` seconds, replacing any call for `key` not yet made."""
        with self._cv:
            if self._stopped:
                return
            self._due[key] = (time.monotonic() + delay, fn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="actwidgets-later", daemon=True)
                self._thread.start()
            self._cv.notify()

    def drop(self, key) -> None:
        with self._cv:
            self._due.pop(key, None)

    def flush(self) -> None:
        """Make every pending call now, on this thread."""
        with self._cv:
            due, self._due = list(self._due.values()), {}
        for _, fn in due:
            try:
                fn()
            except Exception:
                log.exception("actwidgets: a deferred call failed")

    def _loop(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._stopped:
                        return
                    if not self._due:
                        self._cv.wait()
                        continue
                    key = min(self._due, key=lambda k: self._due[k][0])
                    due, fn = self._due[key]
                    if due <= time.monotonic():
                        del self._due[key]
                        break
                    self._cv.wait(due - time.monotonic())
            try:
                fn()
            except Exception:  # one failed call must not end the thread
                log.exception("actwidgets: a deferred call failed")

    def stop(self, timeout: float) -> None:
        with self._cv:
            self._stopped, thread = True, self._thread
            self._due.clear()
            self._cv.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


later = Later()


def on_worker() -> bool:
    return threading.current_thread().name == THREAD_NAME


@atexit.register
def _stop_all() -> None:
    # atexit runs after non-daemon threads are joined but before torch's own teardown
    # (registered earlier, run later): the last moment a worker can leave torch cleanly.
    for worker in list(_workers):
        if not worker.stop(EXIT_JOIN_S):
            log.warning("actwidgets: a widget job was still running at exit")
    later.stop(EXIT_JOIN_S)
