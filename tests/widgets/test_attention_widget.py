"""aw.Attention without a browser: the arrays it sends equal the method's, a new head needs no
whole forward pass, figure() / to_html() / the snapshot, and bad input as a message in a
widget that stays usable."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from matplotlib.figure import Figure

import actwidgets as aw
from actwidgets.methods.attention import attention_patterns, head_pattern
from actwidgets.widgets import _snapshot as S
from actwidgets.widgets import attention as W
from actwidgets.widgets._base import decode_f32

IOI = "When Mary and John went to the store, John gave a drink to"


def grid(data: bytes, n: int) -> np.ndarray:
    return decode_f32(data, (-1, n, n))


@pytest.fixture(scope="module")
def widget(default_model):
    return aw.Attention(default_model, IOI).wait()


def test_sends_the_methods_arrays_as_float32(widget, default_model):
    w = widget
    assert w.status == "done" and w.error == ""
    assert w.head == [0, 0] == w.pattern_head  # the default, resolved
    assert (w.n_heads, w.overview_size, w.pattern_size, w.query_index) == (9, 14, 14, 13)
    assert w.shape == [9, 14] and w.row_labels[0] == "head 0" and w.layer_labels == [str(i) for i in range(30)]
    ref = attention_patterns(default_model, IOI, head=(0, 0))
    above = np.triu(np.ones((14, 14), bool), 1)
    overview = grid(w.overview, 14).reshape(30, 9, 14, 14)
    assert np.isnan(overview[..., above]).all()  # the causal mask, drawn empty
    np.testing.assert_array_equal(overview[..., ~above], ref.overview[..., ~above])
    pattern = grid(w.pattern, 14)[0]
    np.testing.assert_allclose(np.nansum(pattern, -1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(pattern[~above], ref.pattern[~above])
    from_query = decode_f32(w.values, w.shape)
    np.testing.assert_array_equal(from_query, ref.from_query[0])  # the last token: nothing masked
    np.testing.assert_array_equal(np.frombuffer(w.pattern_bins, "<i4"), np.arange(14))
    assert w.tokens[1] == " Mary" and w.selected == {"row": 0, "col": 13}
    np.testing.assert_array_equal(w.data.overview, ref.overview)


def test_a_new_head_needs_no_whole_forward_pass(default_model, monkeypatch):
    w = aw.Attention(default_model, IOI, head=(2, 1)).wait()
    calls = []
    monkeypatch.setattr(W, "attention_patterns", lambda *a, **k: calls.append("all"))
    monkeypatch.setattr(W, "head_pattern", lambda *a, **k: calls.append("head"))
    w.head = [9, 4]  # short prompt: every head was kept by the first trace
    w.wait()
    assert calls == [] and w.status == "done" and w.pattern_head == [9, 4]
    expected = head_pattern(default_model, IOI, (9, 4)).pattern
    np.testing.assert_array_equal(np.nan_to_num(grid(w.pattern, 14)[0]), expected)
    np.testing.assert_array_equal(decode_f32(w.values, w.shape), w.data.from_query[9])


def test_a_head_beyond_what_was_kept_retraces_only_that_head(tiny_llama, monkeypatch):
    monkeypatch.setattr(W.Attention, "keep_bytes", 0)
    calls = []
    real_all, real_head = W.attention_patterns, W.head_pattern
    monkeypatch.setattr(W, "attention_patterns", lambda *a, **k: calls.append("all") or real_all(*a, **k))
    monkeypatch.setattr(W, "head_pattern", lambda *a, **k: calls.append("head") or real_head(*a, **k))
    w = aw.Attention(tiny_llama, IOI).wait()
    assert calls == ["all"]
    w.head = [2, 3]
    w.wait()
    assert calls == ["all", "head"] and w.pattern_head == [2, 3]
    np.testing.assert_array_equal(np.nan_to_num(grid(w.pattern, w.pattern_size)[0]),
                                  real_head(tiny_llama, IOI, (2, 3)).pattern)
    w.head = [0, 0]  # both kept now
    w.wait()
    w.head = [2, 3]
    w.wait()
    assert calls == ["all", "head"]


def test_a_row_of_the_from_token_grid_selects_that_head(tiny_llama):
    w = aw.Attention(tiny_llama, IOI, head=(1, 0)).wait()
    w.selected = {"row": 2, "col": 5}  # what a click on the grid sends
    w.wait()
    assert w.head == [1, 2] == w.pattern_head and w.selected == {"row": 2, "col": w.query_index}


def test_query_moves_the_from_token_view(tiny_llama):
    w = aw.Attention(tiny_llama, IOI, query=3).wait()
    values = decode_f32(w.values, w.shape)
    assert w.query_index == 3 and np.isnan(values[:, 4:]).all()
    np.testing.assert_allclose(values[:, :4].sum(-1), 1.0, atol=1e-5)
    w.query = -1
    w.wait()
    assert w.query_index == len(w.tokens) - 1 and not np.isnan(decode_f32(w.values, w.shape)).any()


@pytest.mark.parametrize("change, message", [
    (dict(head=[30, 0]), "head's layer must be a whole number from -3 to 2, not 30."),
    (dict(head=[0, 9]), "head's index must be a whole number from 0 to 3, not 9."),
    (dict(head=[0]), "head must be a pair (layer, head), e.g. (0, 0), not [0]."),
    (dict(query=99), "query must be a whole number from -14 to 13, not 99."),
    (dict(layers=[1], head=[0, 0]), "head's layer 0 is not among the layers shown (1)."),
    (dict(prompt=""), "prompt is empty"),
])
def test_bad_input_is_a_message_and_the_widget_recovers(tiny_llama, change, message):
    w = aw.Attention(tiny_llama, IOI).wait()
    good = bytes(w.pattern), bytes(w.overview)
    w.set_trait("head", change.pop("head", w.head))
    for name, value in change.items():
        setattr(w, name, value)
    w.wait()
    assert w.status == "error" and message in w.error
    assert (bytes(w.pattern), bytes(w.overview)) == good, "a failed run must leave the last figure in place"
    w.set_trait("layers", None)
    w.query, w.prompt, w.head = None, "The cat sat on the mat", [1, 1]
    w.wait()
    assert w.status == "done" and w.error == "" and w.tokens[-1] == " mat" and w.pattern_head == [1, 1]


def test_a_remote_model_says_why_in_the_widget(tiny_llama):
    w = aw.Attention(dataclasses.replace(tiny_llama, remote=True), IOI).wait()
    assert w.status == "error" and "NDIF's copy" in w.error


def test_unknown_keywords_are_refused(tiny_llama):
    with pytest.raises(TypeError, match="did you mean 'head'"):
        aw.Attention(tiny_llama, IOI, heads=(0, 0))


def test_figure_html_and_snapshot(widget, tmp_path):
    fig = widget.figure()
    assert isinstance(fig, Figure) and len(fig.axes) >= 3
    titles = [ax.get_title() for ax in fig.axes]
    assert "layer 0 · head 0" in titles and any(t.startswith("from token 13") for t in titles)
    bundle, _ = widget._repr_mimebundle_()
    snap = bundle[S.SNAPSHOT_MIME]
    assert snap["widget"] == "attention" and snap["state"]["pattern_head"] == [0, 0]
    state = S.snapshot_state(snap)
    live = S.live_state(widget)
    for name in ("overview", "pattern", "values"):  # float16 in the snapshot: display precision
        np.testing.assert_allclose(state[name], live[name], rtol=1e-3, atol=1e-4, equal_nan=True)
    np.testing.assert_array_equal(state["pattern_bins"], live["pattern_bins"])
    png = widget.draw(state)  # the PNG is drawn from a snapshot's state as well as a live one
    assert isinstance(png, Figure)
    page = widget.to_html(tmp_path / "attention.html").read_text(encoding="utf-8")
    assert '"widget":"attention"' in page and "actwidgetsSnapshot.renderSnapshot" in page


def test_a_long_prompt_in_parts_cancels_in_one_and_then_draws_the_whole_forwards_numbers(default_model,
                                                                                         monkeypatch):
    """A prompt too long for one part runs as traces over its queries (here parts of at most 5):
    a cancel in the second part stops it at the next block, and the next run draws the whole
    forward's numbers."""
    import actwidgets.methods.attention as A

    monkeypatch.setattr(A, "CHUNK_BYTES", A.CELL_BYTES * 9 * 14 * 5)
    blocks = list(default_model.blocks._module)
    ran, pressed = [], []
    w = aw.Attention(default_model, "x").wait()

    def block_done(*_):
        ran.append(1)
        if len(ran) == 40 and not pressed:  # in the second part (each runs the 30 blocks)
            pressed.append(w.status)
            w.cancel()

    handles = [b.register_forward_hook(block_done) for b in blocks]
    again = "The Eiffel Tower is located in the city of"
    try:
        w.prompt = IOI
        w.wait()
        assert (pressed, w.status, len(ran)) == (["running"], "cancelled", 40)
        ran.clear()
        w.prompt = again
        w.wait()
    finally:
        for handle in handles:
            handle.remove()
    n = default_model.encode(again).shape[1]
    step = A.queries_per_trace(default_model, n)
    # each part stops at the end of the last block, before this test's hook
    assert step < n and (w.status, len(ran)) == ("done", -(-n // step) * (len(blocks) - 1))
    monkeypatch.undo()
    whole = attention_patterns(default_model, again, head=(0, 0))
    np.testing.assert_allclose(decode_f32(w.values, w.shape), whole.from_query[0], atol=1e-5)
