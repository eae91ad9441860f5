"""Nothing crashes, nothing leaks: exit during a job, one worker per model, and a re-run
cell releasing the widgets it made (in a real kernel, with the cellId JupyterLab sends)."""
from __future__ import annotations

import contextlib
import gc
import os
import subprocess
import sys
import textwrap
import threading
import uuid
import weakref
from pathlib import Path

import pytest
import torch
from jupyter_client.manager import start_new_kernel

import actwidgets as aw
from actwidgets.widgets import _runner
from families import hf_model

ROOT = Path(__file__).resolve().parents[2]
PROMPT = "The Eiffel Tower is in the city of Paris, and the Colosseum is in the city of"


@pytest.mark.parametrize("make", [
    "aw.LogitLens(m, PROMPT * 6)",
    "aw.PatchingGrid(m, 'When Mary and John went to the store, John gave a drink to', "
    "'When Mary and John went to the store, Mary gave a drink to', (' Mary', ' John'), chunk_size=4)",
])
def test_a_script_that_exits_while_a_job_runs_exits_cleanly(make):
    script = textwrap.dedent(f"""
        import os, time
        os.environ["HF_HUB_OFFLINE"] = "1"
        import actwidgets as aw
        m = aw.load()
        PROMPT = {PROMPT!r}
        w = {make}
        time.sleep(0.3)
        print("running" if not w.idle else "finished")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.strip() == "running", "the job ended before exit: nothing was tested"
    assert done.returncode == 0, done.stderr[-2000:]
    assert "terminate called" not in done.stderr and "Traceback" not in done.stderr


def test_a_terminal_ipython_gets_no_figure_lines_in_unrelated_cells():
    """The cell hooks that keep a headless notebook's saved figures finished are a kernel's:
    a terminal IPython has no cell output to keep, and printed a widget's line again under the
    next, unrelated cell."""
    script = textwrap.dedent("""
        import os, time
        os.environ["HF_HUB_OFFLINE"] = "1"
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        shell.run_cell("import actwidgets as aw; m = aw.load(); w = aw.Heatmap(m, 'The cat sat'); w")
        shell.run_cell("w.prompt = 'The dog sat on the mat'")
        time.sleep(2)  # the new figure is sent while no cell runs
        print("<<unrelated>>", flush=True)
        shell.run_cell("x = 1")
        print("<<end>>", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<<unrelated>>\n<<end>>" in done.stdout, done.stdout


def test_widgets_of_one_model_share_one_long_lived_worker(tiny_llama):
    before = threading.active_count()
    widgets = [aw.Heatmap(tiny_llama, f"prompt number {i}") for i in range(12)]
    for w in widgets:
        w.wait()
    assert len({id(w._runner._worker) for w in widgets}) == 1
    assert threading.active_count() <= before + 1
    for w in widgets:  # a second burst reuses the same thread
        w.prompt += " again"
    ident = widgets[0]._runner._worker._thread.ident
    for w in widgets:
        w.wait()
    assert widgets[0]._runner._worker._thread.ident == ident
    assert [w.status for w in widgets] == ["done"] * 12


@pytest.mark.parametrize("kind", ["Heatmap", "LogitLens", "Attention", "LogitAttribution", "PatchingGrid", "Steering"])
def test_a_closed_widget_and_then_its_model_are_freed(kind, tokenizer):
    """A session that switches models must get the memory back: once closed and dropped, the
    widget goes, and with the user's last reference the model (and its worker) goes too.
    anywidget's hot-reload signal for a bundle given as a path held every widget forever."""
    held = [aw.wrap(hf_model("llama", len(tokenizer)), tokenizer)]  # the user's one reference (families caches the weights)
    widget, model = _closed_after_a_run(kind, held[0])
    gc.collect()
    assert widget() is None, gc.get_referrers(widget())
    held.clear()
    gc.collect()
    assert model() is None, gc.get_referrers(model())


def _closed_after_a_run(kind: str, model) -> tuple[weakref.ref, weakref.ref]:
    args = ("The cat sat", "The dog sat") if kind == "PatchingGrid" else ("The cat sat",)
    kwargs = {"PatchingGrid": dict(answer=(" on", " in")), "LogitAttribution": dict(target=" on"),
              "Steering": dict(vector=torch.ones(model.d_model), layer=1, max_new_tokens=2)}.get(kind, {})
    widget = getattr(aw, kind)(model, *args, **kwargs).wait(300)
    assert widget.status == "done", widget.error
    widget.close()
    return weakref.ref(widget), weakref.ref(model)


@contextlib.contextmanager
def _model_busy(widget):
    """Another widget's job holds the worker of `widget`'s model until the block ends."""
    release, blocked = threading.Event(), threading.Event()
    gate = _runner.Runner(widget._runner._worker)
    gate.submit(lambda _current: (blocked.set(), release.wait(10)))
    assert blocked.wait(10)
    try:
        yield
    finally:
        release.set()


def test_a_cancel_is_idle_at_once_even_behind_another_widgets_job(tiny_llama):
    slow = aw.Heatmap(tiny_llama, "one")
    with _model_busy(slow):
        queued = aw.Heatmap(tiny_llama, "two")  # queued behind the other job on the same worker
        assert not queued.idle
        queued.cancel()
        assert queued._runner.wait(1), "a cancelled widget waited for another widget's job"
    assert slow.wait().status == "done"


def test_a_widget_waiting_for_the_worker_says_queued_and_a_cancel_there_marks_its_figure_stale(tiny_llama):
    """A heatmap edited while another widget's job holds the model says "queued", not its old
    "done"; cancelled before it ran, it keeps the old figure, says whose (the page dims it, the
    PNG and text say so), and the next input runs and draws afresh."""
    from actwidgets.widgets._figure import STALE_LABEL

    heatmap = aw.Heatmap(tiny_llama, "one two").wait()
    assert heatmap.status == "done" and not heatmap.stale
    drawn = list(heatmap.tokens)
    with _model_busy(heatmap):
        heatmap.prompt = "three four five six"
        assert heatmap.status == "queued"
        heatmap.cancel()
        assert heatmap.status == "cancelled" and heatmap.stale and heatmap.tokens == drawn
        text = heatmap._repr_mimebundle_()[0]["text/plain"]
        assert text.endswith(f"(cancelled) ({STALE_LABEL})"), text
    heatmap.prompt = ""  # an error keeps the figure too, and says so
    assert heatmap.wait().status == "error" and heatmap.stale
    heatmap.prompt = "seven eight"
    assert heatmap.wait().status == "done" and not heatmap.stale and heatmap.tokens != drawn
    empty = aw.Heatmap(tiny_llama, "").wait()  # no figure: nothing to call stale
    assert empty.status == "error" and not empty.stale


def test_a_request_made_while_a_result_is_written_is_never_reported_done(tiny_llama, monkeypatch):
    """A new prompt typed while the previous run writes its figure waits for that write, then
    says "queued": the old run's "done" cannot land on top of it, so a cancel of the new request
    (here while another widget's job holds the model) leaves "cancelled" and a stale figure."""
    heatmap = aw.Heatmap(tiny_llama, "one").wait()
    writing, release, gate_release = threading.Event(), threading.Event(), threading.Event()
    apply = type(heatmap).apply

    def slow_apply(self, result):
        if self is heatmap and not writing.is_set():
            writing.set()
            release.wait(10)
        apply(self, result)

    monkeypatch.setattr(type(heatmap), "apply", slow_apply)
    heatmap.prompt = "two words"
    assert writing.wait(10)  # the run for "two words" is writing its result
    gate = _runner.Runner(heatmap._runner._worker)
    gate.submit(lambda _current: gate_release.wait(10))  # the next job on this model is another widget's
    typed = threading.Thread(target=lambda: setattr(heatmap, "prompt", "three more words here"))
    typed.start()
    typed.join(0.3)
    assert typed.is_alive(), "the new request did not wait for the write in progress"
    release.set()
    typed.join(10)
    try:
        assert heatmap.status == "queued"
        heatmap.cancel()
    finally:
        gate_release.set()
    heatmap.wait()
    assert heatmap.status == "cancelled" and heatmap.stale and len(heatmap.tokens) < 5


def test_a_notebook_saved_mid_run_shows_the_run_stopped_not_running_forever(tiny_llama):
    """The bundle a save keeps is all a reopened notebook has: no kernel will finish that run.
    A widget closed mid-run (its cell re-run) reads "cancelled" too."""
    from actwidgets.widgets import _snapshot as S
    from actwidgets.widgets._base import SAVED_MID_RUN
    from actwidgets.widgets._figure import STALE_LABEL

    heatmap = aw.Heatmap(tiny_llama, "one two").wait()
    with _model_busy(heatmap):
        heatmap.prompt = "three four five"
        bundle = heatmap._repr_mimebundle_()[0]
        saved = bundle[S.SNAPSHOT_MIME]["state"]
        assert (saved["status"], saved["stale"]) == ("cancelled", True), saved
        assert saved["error"] == SAVED_MID_RUN
        assert bundle["text/plain"].endswith(f"(cancelled) ({SAVED_MID_RUN}) ({STALE_LABEL})")
        assert heatmap.status == "queued"  # the live widget goes on
        heatmap.close()
        assert heatmap.status == "cancelled"


def _execute(client, code: str, cell_id: str | None = None) -> dict:
    msg = client.session.msg("execute_request", {"code": code, "silent": False, "store_history": True,
                                                "user_expressions": {"out": "__result"},
                                                "allow_stdin": False, "stop_on_error": True},
                             metadata={"cellId": cell_id} if cell_id else {})
    client.shell_channel.send(msg)
    while True:
        reply = client.get_shell_msg(timeout=300)
        if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
            break
    content = reply["content"]
    assert content["status"] == "ok", (code, content)
    return content["user_expressions"].get("out", {}).get("data", {}).get("text/plain")


def test_rerunning_a_cell_releases_the_widgets_it_made_and_only_those():
    manager, client = start_new_kernel(kernel_name="python3", env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        _execute(client, "import os; os.environ['HF_HUB_OFFLINE'] = '1'\nimport actwidgets as aw, ipywidgets\n"
                         "m = aw.load()\ncount = lambda: len(ipywidgets.widgets.widget._instances)")
        cell, other = uuid.uuid4().hex, uuid.uuid4().hex
        make = "w = aw.Heatmap(m, 'The Eiffel Tower'); w.wait(); w\nmade = [*globals().get('made', []), w]"
        _execute(client, make, cell)
        _execute(client, "shown_elsewhere = w; shown_elsewhere", other)  # the first widget, shown again
        counts = []
        for _ in range(4):
            _execute(client, make, cell)
            counts.append(_execute(client, "__result = count()"))
        assert len(set(counts)) == 1, f"widgets piled up: {counts}"
        closed = _execute(client, "__result = [x.comm is None for x in made]")
        # the first widget is still on screen in the other cell; the 2nd..4th were replaced
        assert closed == "[False, True, True, True, False]"
        assert _execute(client, "__result = len(made[1].memo)") == "0"  # its results were let go
        _execute(client, "1 + 1", other)  # the other cell now shows something else: the first goes too
        assert _execute(client, "__result = made[0].comm is None") == "True"
        # a variable can still hold a released widget: shown again, it opens and computes again
        _execute(client, "again = made[1]; again.wait(); again", uuid.uuid4().hex)
        assert _execute(client, "again.wait(); __result = (again.comm is not None, again.status, "
                                "len(again.memo) > 0)") == "(True, 'done', True)"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_deferred_calls_coalesce_on_one_shared_thread():
    later, calls = _runner.Later(), []
    try:
        for i in range(50):
            later.call("snapshot", 0.05, lambda i=i: calls.append(i))
        later.call("other", 0.0, lambda: calls.append("other"))
        deadline = threading.Event()
        deadline.wait(0.5)
        assert calls == ["other", 49]  # the due one first; 50 requests for one key made one call
        assert [t.name for t in threading.enumerate()].count("actwidgets-later") <= 2  # ours + the shared one
    finally:
        later.stop(1.0)
