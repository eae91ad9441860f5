"""aw.LogitAttribution without a browser: its traits carry the method's numbers, it draws a
figure, a page and a snapshot that round-trips, a bad input stays in the widget, re-runs are
latest-wins, and a logit lens linked to it moves it to the clicked token."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

import actwidgets as aw
from actwidgets.methods.dla import logit_attribution
from actwidgets.widgets import _snapshot as S
from actwidgets.widgets._base import decode_f32

IOI = "When Mary and John went to the store, John gave a drink to"
EIFFEL = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module")
def ioi(default_model):
    return aw.LogitAttribution(default_model, IOI, " Mary", wrong=" John").wait()


def test_the_traits_carry_the_methods_numbers(ioi, default_model):
    assert ioi.status == "done" and ioi.error == ""
    expected = logit_attribution(default_model, IOI, " Mary", wrong=" John")
    layers, heads = default_model.n_layers, default_model.n_heads
    assert ioi.shape == [layers, heads] and ioi.row_labels == [str(i) for i in range(layers)]
    np.testing.assert_array_equal(decode_f32(ioi.values, ioi.shape), expected.heads)
    np.testing.assert_array_equal(decode_f32(ioi.components, [layers, 2]), np.stack([expected.attn, expected.mlp], 1))
    np.testing.assert_array_equal(np.frombuffer(ioi.attn_bias, "<f4"), expected.attn_bias)
    assert ioi.logit == pytest.approx(expected.logit) and ioi.total == pytest.approx(expected.total, abs=1e-4)
    assert ioi.token_index == 13 and ioi.tokens[13] == " to" and ioi.tokens == expected.tokens
    assert ioi.metric_label == "logit(' Mary') − logit(' John')" and ioi.note == ""
    assert ioi.colormap == "rdbu" and ioi.vmin == -ioi.vmax
    assert ioi.vmax >= max(np.abs(expected.heads).max(), np.abs(expected.attn).max(), np.abs(expected.mlp).max())
    assert ioi.data is not None and ioi.data.logit == expected.logit
    assert "Direct logit attribution of logit(' Mary') − logit(' John') at token 13 ' to'" in ioi.describe()
    for name in ioi.traits(sync=True):  # nothing numeric travels as a JSON list
        value = getattr(ioi, name)
        assert not (isinstance(value, list) and value and isinstance(value[0], float)), name


def test_figure_shows_the_strip_and_the_heads_on_one_scale(ioi):
    fig = ioi.figure()
    assert isinstance(fig, Figure)
    strip, heads = (ax.get_images()[0].get_array().filled(np.nan) for ax in fig.axes[:2])
    data = ioi.data
    assert strip.shape == (data.attn.size + 1, 2) and heads.shape == (data.attn.size + 1, data.heads.shape[1])
    assert strip[0, 0] == pytest.approx(data.embed) and np.isnan(strip[0, 1]) and np.isnan(heads[0]).all()
    np.testing.assert_allclose(strip[1:], np.stack([data.attn, data.mlp], 1), rtol=1e-6)
    np.testing.assert_allclose(heads[1:], data.heads, rtol=1e-6)
    images = [ax.get_images()[0] for ax in fig.axes[:2]]
    assert {im.norm.vmin for im in images} == {-ioi.vmax} and {im.norm.vmax for im in images} == {ioi.vmax}
    texts = "\n".join(t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")))
    assert f"model {ioi.logit:+.3f} · sum of parts {ioi.total:+.3f}" in texts


def test_snapshot_round_trips_and_draws_the_same_png(ioi):
    data, _ = ioi._repr_mimebundle_()
    assert set(data) == {S.WIDGET_MIME, S.SNAPSHOT_MIME, "image/png", "text/plain"}
    snap = data[S.SNAPSHOT_MIME]
    assert snap["widget"] == "dla" and "Direct logit attribution" in data["text/plain"]
    json.dumps(snap)
    state = S.snapshot_state(snap)
    np.testing.assert_allclose(state["values"], np.frombuffer(ioi.values, "<f4"), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(state["components"], np.frombuffer(ioi.components, "<f4"), rtol=1e-3, atol=1e-3)
    assert state["tokens"] == ioi.tokens and state["logit"] == ioi.logit and state["token_index"] == 13
    png = base64.b64decode(data["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    redrawn = ioi.draw(state)  # the PNG a kernel-less reader gets is drawn from the snapshot alone
    assert [ax.get_images()[0].get_array().shape for ax in redrawn.axes[:2]] == [(31, 2), (31, 9)]


def test_to_html_is_one_page_that_draws_it(ioi, tmp_path):
    page = ioi.to_html(tmp_path / "dla.html").read_text(encoding="utf-8")
    assert "renderSnapshot" in page and '"widget":"dla"' in page and "data:image/png;base64," in page


def test_a_bad_input_is_an_error_in_the_widget_which_stays_usable(default_model):
    w = aw.LogitAttribution(default_model, EIFFEL, " Paris is").wait()
    assert w.status == "error" and "target must be one token" in w.error and "2 tokens" in w.error
    assert w.data is None and "(in " not in w.error
    w.target = " Paris"
    assert w.wait().status == "done" and w.error == ""
    shown = bytes(w.values)
    w.position = 40
    assert w.wait().status == "error" and "position must be a whole number from -10 to 9, not 40" in w.error
    assert bytes(w.values) == shown  # the last good figure stays (dimmed by the front-end)
    w.wrong = " Paris"
    w.position = -1
    assert w.wait().status == "error" and "wrong is the same token as target" in w.error
    w.wrong = " London"
    assert w.wait().status == "done" and w.metric_label == "logit(' Paris') − logit(' London')"


def test_unknown_keywords_are_refused(default_model):
    with pytest.raises(TypeError, match="did you mean 'wrong'"):
        aw.LogitAttribution(default_model, EIFFEL, " Paris", wrng=" London")


def test_latest_input_wins(default_model):
    w = aw.LogitAttribution(default_model, EIFFEL, " Paris")
    for target in (" London", " Rome", " Berlin"):
        w.target = target
    w.wait()
    assert w.status == "done" and w.metric_label == "logit(' Berlin')"
    assert w.logit == pytest.approx(logit_attribution(default_model, EIFFEL, " Berlin").logit)


def test_a_lens_click_moves_the_attribution_to_that_token(default_model):
    lens = aw.LogitLens(default_model, EIFFEL).wait()
    dla = aw.LogitAttribution(default_model, IOI, " Mary", wrong=" John").wait()
    assert lens.link(dla) is lens
    lens.selected = {"row": 5, "col": 4}  # a click on any layer of column 4 (' is')
    dla.wait()
    top1 = default_model.tokenizer.decode([int(lens.data.topk_ids[-1, 4, 0])])
    assert dla.prompt == EIFFEL and dla.position == 4 and dla.target == top1
    assert dla.status == "done" and dla.token_index == 4 and dla.tokens[4] == lens.tokens[4]
    assert dla.data.target_id == lens.data.topk_ids[-1, 4, 0]
    dla.wrong = ""
    lens.target = " Paris"
    lens.wait()
    lens.selected = {"row": 0, "col": 9}
    dla.wait()
    assert (dla.target, dla.position, dla.token_index, dla.status) == (" Paris", 9, 9, "done")
    assert dla.logit == pytest.approx(logit_attribution(default_model, EIFFEL, " Paris").logit)
    lens.close()
    assert lens._linked == []


def test_a_soft_capped_family_says_so_and_a_post_ln_family_is_refused_in_words(tokenizer):
    from families import tiny

    capped = aw.LogitAttribution(tiny("gemma2", tokenizer), EIFFEL, " Paris").wait()
    assert capped.status == "done" and "soft-caps its logits" in capped.note
    assert capped.total == pytest.approx(capped.logit, abs=1e-4)
    texts = "\n".join(t.get_text() for t in capped.figure().findobj(lambda a: hasattr(a, "get_text")))
    assert "soft-caps" in texts
    post_ln = aw.LogitAttribution(tiny("opt_350m", tokenizer), EIFFEL, " Paris").wait()
    assert post_ln.status == "error" and "post-LN" in post_ln.error and "(in " not in post_ln.error
