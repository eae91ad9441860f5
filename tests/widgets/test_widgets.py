"""Widgets without a browser: traits, the byte codec, latest-wins, errors in the widget."""
import threading
import time

import numpy as np
import pytest

import actwidgets as aw
from actwidgets.methods.activations import residual_stats
from actwidgets.methods.lens import logit_lens
from actwidgets.widgets._base import decode_f32
from actwidgets.widgets._runner import Runner

IOI = "When Mary and John went to the store, John gave a drink to"


def test_heatmap_ships_float32_bytes_equal_to_the_method(default_model):
    w = aw.Heatmap(default_model, IOI).wait()
    assert w.status == "done" and w.error == ""
    rows, cols = w.shape
    assert (rows, cols) == (31, 14) and len(w.values) == rows * cols * 4
    np.testing.assert_array_equal(decode_f32(w.values, w.shape), residual_stats(default_model, IOI).norm)
    assert w.tokens[1] == " Mary" and w.row_labels[0] == "emb" and w.scale == "log"
    # nothing numeric travels as a JSON list
    for name, trait in w.traits(sync=True).items():
        value = getattr(w, name)
        assert not (isinstance(value, list) and value and isinstance(value[0], float)), name


IOI_B = "When Mary and John went to the store, Mary gave a drink to"


def test_heatmap_compare_shows_the_difference_token_by_token(default_model):
    w = aw.Heatmap(default_model, IOI, compare=IOI_B).wait()
    assert w.status == "done" and w.colormap == "rdbu" and w.scale == "linear"
    values = decode_f32(w.values, w.shape)
    expected = residual_stats(default_model, IOI).norm - residual_stats(default_model, IOI_B).norm
    np.testing.assert_array_equal(values, expected)
    # a causal model: positions before the swapped name (9) are the same run, so exactly 0
    assert (values[:, :9] == 0).all() and (np.abs(values[1:, 9:]) > 0).all()
    assert w.vmin == -w.vmax and w.tokens[9] == "' John' vs ' Mary'" and "minus" in w.describe()
    assert w.aux == b"" and "prompt − compare" in w.value_label
    w.compare = IOI + " Mary"  # 15 tokens: refused with both lengths, the widget stays usable
    w.wait()
    assert w.status == "error" and "prompt is 14 tokens, compare is 15" in w.error and w.data is None
    w.compare = ""
    w.wait()
    assert w.status == "done" and w.colormap == "viridis" and w.data.tokens[9] == " John"


def test_switching_stat_redraws_without_retracing(default_model, monkeypatch):
    w = aw.Heatmap(default_model, IOI).wait()
    calls = []
    monkeypatch.setattr("actwidgets.widgets.heatmap.residual_stats", lambda *a, **k: calls.append(1))
    w.stat = "max_abs"
    w.wait()
    assert calls == [] and w.aux_label == "channel" and len(w.aux) == 31 * 14 * 4
    w.stat = "delta"
    w.wait()
    assert np.isnan(decode_f32(w.values, w.shape)[0]).all()


def test_direction_stat_is_diverging(default_model):
    w = aw.Heatmap(default_model, IOI, stat="direction", direction=np.ones(576)).wait()
    assert w.status == "done" and w.colormap == "rdbu" and w.scale == "linear"
    assert w.vmin == -w.vmax


def test_the_stat_select_offers_direction_only_with_a_direction(tiny_llama):
    w = aw.Heatmap(tiny_llama, "one two").wait()
    assert w.stat_options == ["norm", "max_abs", "delta"]
    w.direction = np.ones(tiny_llama.d_model)
    assert w.stat_options == ["norm", "max_abs", "delta", "direction"]
    w.stat = "direction"
    assert w.wait().status == "done", w.error


@pytest.mark.parametrize("change, message", [
    (dict(prompt=""), "prompt is empty"),
    (dict(layers=[30]), "out of range: SmolLM2-135M-Instruct has 30 layers"),
    (dict(stat="entropy"), "stat must be one of 'norm', 'max_abs', 'delta', 'direction', not 'entropy'"),
    (dict(prompt="word " * 9000), "reads at most 8,192"),
    (dict(stat="direction", direction=np.ones(10)), "has 10 entries"),
])
def test_bad_input_is_a_message_and_the_widget_recovers(default_model, change, message):
    w = aw.Heatmap(default_model, IOI).wait()
    good = bytes(w.values)
    for name, value in change.items():
        setattr(w, name, value)
    w.wait()
    assert w.status == "error" and message in w.error
    assert w.values == good, "a failed run must leave the last figure in place"
    w.set_trait("layers", None)
    w.set_trait("direction", None)
    w.stat, w.prompt = "norm", "The cat sat on the mat"
    w.wait()
    assert w.status == "done" and w.error == "" and w.tokens[-1] == " mat"


def test_untrusted_token_text_is_passed_verbatim(default_model):
    text = 'Say <img src=x onerror=alert(1)> and <script>alert(2)</script>'
    w = aw.Heatmap(default_model, text).wait()
    assert "".join(w.tokens) == text


def test_selection_from_the_front_end_is_readable(default_model):
    w = aw.Heatmap(default_model, IOI).wait()
    seen = []
    w.observe(lambda c: seen.append(c["new"]), "selected")
    w.selected = {"row": 3, "col": 1}
    assert seen == [{"row": 3, "col": 1}]
    assert w.selection == {"row": 3, "col": 1, "layer": "2", "token": " Mary"}
    w.selected = {"row": 99, "col": 0}
    assert w.selection is None


def test_logit_lens_widget(default_model):
    w = aw.LogitLens(default_model, "The Eiffel Tower is located in the city of", target=" Paris").wait()
    assert w.status == "done" and w.color_by == "target_prob"
    rows, cols = w.shape
    index = np.frombuffer(w.topk_index, "<i4").reshape(rows, cols, w.k)
    assert w.text_table[index[-1, -1, 0]] == " Paris"
    assert np.frombuffer(w.target_rank, "<i4").reshape(rows, cols)[-1, -1] == 0
    w.target = " Paris Paris"
    w.wait()
    assert w.status == "error" and "2 tokens" in w.error
    w.target, w.color_by = "", "entropy"
    w.wait()
    assert w.status == "done" and w.colormap == "magma" and w.target_prob == b""



def test_a_long_lens_shows_its_first_screen_before_the_rest(default_model, monkeypatch):
    """The widget publishes the first positions (empty cells and index -1 beyond them) while
    the rest is computed, then the whole lens, equal to the method's."""
    import actwidgets.methods.lens as lens_module
    import actwidgets.widgets.lens as lens_widget

    monkeypatch.setattr(lens_widget, "FIRST_SCREEN", 4)
    monkeypatch.setattr(lens_widget, "PUBLISH_S", 0.0)
    monkeypatch.setattr(lens_module, "CHUNK_LOGITS", 5 * len(default_model.tokenizer))
    prompt = "When Mary and John went to the store, John gave a drink to"
    seen = []
    w = aw.LogitLens(default_model, "x")
    w.wait()
    w.observe(lambda change: seen.append((decode_f32(w.values, w.shape).copy(),  # apply sets values first
                                          np.frombuffer(change.new, "<i4").copy())), "topk_index")
    w.prompt = prompt
    w.wait()
    rows, cols = w.shape
    assert cols == 14 and len(seen) >= 3
    first, index = seen[0][0], seen[0][1].reshape(rows, cols, w.k)
    assert not np.isnan(first[:, :4]).any() and np.isnan(first[:, 4:]).all()
    assert (index[:, 4:] == -1).all() and (index[:, :4] >= 0).all()
    whole = logit_lens(default_model, prompt)
    index = np.frombuffer(w.topk_index, "<i4").reshape(rows, cols, w.k)
    assert [w.text_table[i] for i in index[:, :, 0].ravel()] == default_model.token_texts(
        whole.topk_ids[:, :, 0].ravel())
    np.testing.assert_allclose(decode_f32(w.values, w.shape), whole.topk_prob[..., 0], rtol=2e-4, atol=1e-6)

def test_a_long_lens_fills_in_the_columns_on_screen_next(default_model, monkeypatch):
    """After the first screen, the chunk the user scrolled to (`view_columns`, sent by the
    front-end) is computed next and published at once, not in order at the next redraw."""
    import actwidgets.methods.lens as lens_module
    import actwidgets.widgets.lens as lens_widget

    monkeypatch.setattr(lens_widget, "FIRST_SCREEN", 2)
    monkeypatch.setattr(lens_widget, "PUBLISH_S", 1e9)  # only the first screen and the view force a redraw
    monkeypatch.setattr(lens_module, "CHUNK_LOGITS", 3 * len(default_model.tokenizer))  # chunks of 3 positions
    prompt = "When Mary and John went to the store, John gave a drink to"
    w = aw.LogitLens(default_model, "x").wait()
    published = []
    w.observe(lambda change: published.append("".join(
        "1" if i >= 0 else "0" for i in np.frombuffer(change.new, "<i4").reshape(31, -1, w.k)[0, :, 0])), "topk_index")
    w.view_columns = [11, 14]  # the user looks at the last three tokens
    w.prompt = prompt
    w.wait()
    assert published[:2] == ["11000000000000", "11000000000111"], published
    assert published[-1] == "1" * 14 and w.status == "done"
    whole = logit_lens(default_model, prompt)
    np.testing.assert_allclose(decode_f32(w.values, w.shape), whole.topk_prob[..., 0], rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("kind, shape", [("Heatmap", [31, 10]), ("LogitLens", [31, 10]), ("Attention", [9, 10])])
def test_a_cancel_stops_the_forward_between_blocks(default_model, kind, shape):
    """A cancel during a long prompt's one forward stops it at the next block, not at its end
    (on 2 slow cores an 8,192-token forward takes minutes); the heatmap's bar moves block by
    block meanwhile (the lens's over its forward's share); the widget then runs the next prompt whole."""
    import actwidgets.widgets.lens as lens_widget

    blocks = list(default_model.blocks._module)
    ran, progress, pressed = [], [], []
    w = getattr(aw, kind)(default_model, "x").wait()
    w.observe(lambda change: progress.append(change.new), "progress")

    def block_done(*_):
        ran.append(1)
        if len(ran) == 3 and not pressed:  # mid-forward: the user presses cancel, once
            pressed.append(w.status)
            w.cancel()

    handles = [b.register_forward_hook(block_done) for b in blocks]
    try:
        w.prompt = "When Mary and John went to the store, John gave a drink to"
        w.wait()
        assert (pressed, w.status, len(ran)) == (["running"], "cancelled", 3)
        if kind != "Attention":  # (attention's bar starts at 0.05, which holds the next update back)
            share = 1.0 if kind == "Heatmap" else lens_widget.FORWARD_SHARE  # the lens: then positions
            assert progress == [0.0, pytest.approx(share / len(blocks))]  # then at most one update per 0.25 s
        ran.clear()
        w.prompt = "The Eiffel Tower is located in the city of"
        w.wait()
    finally:
        for handle in handles:
            handle.remove()
    # the last block is read, then the trace stops inside it, before this test's hook
    assert (w.status, len(ran), list(w.shape)) == ("done", len(blocks) - 1, shape)


def test_runner_latest_wins_under_a_burst():
    runner, seen, started = Runner(), [], threading.Event()

    def job(value):
        def run(is_current):
            started.set()
            time.sleep(0.05)
            if is_current():
                seen.append(value)
        return run

    for value in range(20):
        runner.submit(job(value))
    assert runner.wait(10)
    assert runner.runs <= 3 and seen[-1] == 19


def test_a_superseded_job_never_writes(default_model):
    w = aw.Heatmap(default_model, IOI).wait()
    for text in ["one two", "three four five", "six seven eight nine"]:
        w.prompt = text
    w.wait()
    assert w.tokens == default_model.token_texts(default_model.encode("six seven eight nine"))
    assert w._runner.runs <= 4


def test_tiny_models_drive_the_widgets(tiny_model):
    assert aw.Heatmap(tiny_model, IOI).wait().shape == [4, 14]
    assert aw.LogitLens(tiny_model, IOI).wait().status == "done"
