"""What a widget leaves in a saved notebook: the snapshot (compact, faithful), the PNG
(a real figure of the stated size), text/plain, `figure()` and `to_html()`."""
from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import actwidgets as aw
from actwidgets.widgets import _snapshot as S

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to", (" Mary", " John"))
# A 30-layer x 2,048-token heatmap's snapshot stays under this (float16 values, the
# tokens as text); its values as a JSON list of floats would take about 1.3 MB.
SNAPSHOT_LIMIT_30x2048 = 256 * 1024


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def bundle_of(widget) -> dict:
    data, _metadata = widget._repr_mimebundle_()
    return data


# --- packing --------------------------------------------------------------------
@pytest.mark.parametrize("values, dtype", [
    (np.array([0.5, -3.25, np.nan, 1e4], np.float32), "<f2"),
    (np.array([1.0, 7e4], np.float32), "<f4"),  # float16 would overflow to inf
    (np.array([0, 3, 255], np.int32), "|u1"),
    (np.array([-1, 30000], np.int32), "<i2"),
    (np.array([0, 40000], np.int32), "<i4"),
])
def test_pack_picks_the_smallest_faithful_dtype(values, dtype):
    packed = S.pack(values)
    assert packed["dtype"] == dtype
    back = S.unpack(packed)
    np.testing.assert_allclose(back, values, rtol=1e-3, equal_nan=True)


def test_pack_keeps_float16_within_display_precision():
    values = np.random.default_rng(0).lognormal(3, 2, 4096).astype(np.float32)
    values = values[values < 6e4]
    back = S.unpack(S.pack(values))
    assert np.max(np.abs(back - values) / values) < 1e-3


# --- bundles of real widgets ------------------------------------------------------
@pytest.fixture(scope="module")
def heatmap(default_model):
    return aw.Heatmap(default_model, "The Eiffel Tower is located in the city of").wait()


def test_heatmap_bundle_has_snapshot_png_and_text(heatmap):
    data = bundle_of(heatmap)
    assert set(data) == {S.WIDGET_MIME, S.SNAPSHOT_MIME, "image/png", "text/plain"}
    snap = data[S.SNAPSHOT_MIME]
    assert snap["format"] == S.FORMAT and snap["widget"] == "heatmap"
    assert snap["model"] == heatmap.model.name
    state = S.snapshot_state(snap)
    rows, cols = heatmap.shape
    assert state["shape"] == [rows, cols] and state["tokens"] == heatmap.tokens
    np.testing.assert_allclose(state["values"], np.frombuffer(heatmap.values, "<f4"), rtol=1e-3)
    assert "_esm" not in snap["state"] and "layout" not in snap["state"]
    assert "L2 norm" in data["text/plain"] and "Eiffel" in data["text/plain"]
    json.dumps(snap)  # the notebook file must be able to hold it


def test_png_is_a_real_figure_of_the_stated_size(heatmap):
    png = base64.b64decode(bundle_of(heatmap)["image/png"])
    width, height = png_size(png)
    fig = heatmap.figure()
    expected = tuple(round(v * S.PNG_DPI) for v in fig.get_size_inches())
    assert (width, height) == expected
    assert width >= 400 and height >= 300
    assert len(png) > 10_000, "a heatmap of 31 x 10 cells is more than a blank image"
    # not one flat colour: decode the PNG back and look at its pixels
    import matplotlib.image

    pixels = matplotlib.image.imread(__import__("io").BytesIO(png))
    assert pixels.shape[:2] == (height, width)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 50


def test_figure_returns_a_matplotlib_figure_of_the_grid(heatmap):
    fig = heatmap.figure()
    assert isinstance(fig, Figure)
    image = fig.axes[0].get_images()[0]
    np.testing.assert_allclose(image.get_array().filled(np.nan), heatmap.data.stat("norm"), rtol=1e-6)


def _texts(fig) -> str:
    return "\n".join(text.get_text() for text in fig.findobj(lambda a: hasattr(a, "get_text")))


def test_figure_after_an_error_is_faded_and_says_it_is_the_previous_inputs(default_model):
    """The widget keeps the last figure when a run fails; its PNG must not pass it off as the bad input's."""
    from actwidgets.widgets._figure import STALE_LABEL

    h = aw.Heatmap(default_model, "The Eiffel Tower is located in the city of").wait()
    assert STALE_LABEL not in _texts(h.figure())
    h.prompt = "   "
    h.wait()
    assert h.status == "error" and h.shape[1] > 0
    fig = h.figure()
    assert f"Error: {h.error} — {STALE_LABEL}" in _texts(fig).replace("\n", " ")
    assert fig.axes[0].get_images()[0].get_alpha() < 1
    snap_state = S.snapshot_state(bundle_of(h)[S.SNAPSHOT_MIME])
    assert snap_state["status"] == "error" and STALE_LABEL in _texts(h.draw(snap_state))
    # no previous figure: the error is the figure, nothing is faded or called previous
    empty = aw.Heatmap(default_model, "").wait()
    assert empty.status == "error" and STALE_LABEL not in _texts(empty.figure())


def test_steering_figure_after_an_error_says_so_only_when_it_has_a_figure():
    from actwidgets.widgets._figure import STALE_LABEL, steering_figure

    shown = {"unsteered_tokens": [" a"], "steered_tokens": [" b"], "kl_per_token": np.array([0.1], np.float32),
             "kl_budget": 0.05, "strength": 1.0, "measured_kl": 0.1}
    failed = {"status": "error", "error": "The prompt is empty.", "stale": True}
    assert STALE_LABEL not in _texts(steering_figure({**shown, "status": "done"}, "t"))
    fig = steering_figure({**shown, **failed}, "t")
    assert STALE_LABEL in _texts(fig) and "The prompt is empty." in _texts(fig)
    bars = fig.axes[2].patches
    assert bars and all(bar.get_alpha() < 1 for bar in bars)
    assert STALE_LABEL not in _texts(steering_figure({"kl_budget": 0.05, **failed}, "t"))


def test_steering_figure_prints_dollars_as_text_and_keeps_the_kl_bars_clear():
    """A wrapped line never ends in the lone backslash of an escaped `$` (it was escaped before
    wrapping), and the budget is named in the title: a legend sat on the highest bars."""
    from actwidgets.widgets._figure import steering_figure

    text = "x" * 59 + "$" + "y" * 10 + " costs $5 and $6"  # the 60th character is the `$`
    kl = np.array([0.01, 0.3, 0.02], np.float32)
    fig = steering_figure({"unsteered_tokens": [text], "steered_tokens": [text], "kl_per_token": kl,
                           "kl_budget": 0.05, "strength": 1.0, "measured_kl": 0.11, "status": "done"}, "t")
    panel = fig.axes[0].texts[0].get_text().split("\n")
    assert not any(line.endswith("\\") for line in panel), panel
    assert "".join(panel).replace("\\$", "$").replace(" ", "") == text.replace(" ", "")
    fig.canvas.draw()  # mathtext would raise on an unbalanced `$`
    kl_axes = fig.axes[2]
    assert kl_axes.get_legend() is None and "budget 0.05 nats" in kl_axes.get_title()


def test_snapshot_of_30_by_2048_heatmap_is_compact(default_model):
    ids = torch.randint(1000, 20000, (2048,), generator=torch.Generator().manual_seed(0))
    prompt = default_model.tokenizer.decode(ids)
    h = aw.Heatmap(default_model, prompt).wait(timeout=300)
    assert h.error == ""
    rows, cols = h.shape
    assert rows == 31 and cols >= 2000
    size = len(json.dumps(S.snapshot(h), separators=(",", ":")))
    as_json_floats = len(json.dumps(np.frombuffer(h.values, "<f4").tolist()))
    print(f"\nsnapshot of {rows} x {cols}: {size / 1024:.0f} KiB (values as JSON floats: {as_json_floats / 1024:.0f} KiB)")
    assert size < SNAPSHOT_LIMIT_30x2048
    assert size < as_json_floats / 4


def test_lens_patching_and_steering_bundles(default_model):
    lens = aw.LogitLens(default_model, "The Eiffel Tower is located in the city of", target=" Paris").wait()
    grid = aw.PatchingGrid(default_model, *IOI, method="attribution").wait()
    torch.manual_seed(0)
    vector = torch.randn(default_model.hf.config.hidden_size)
    steer = aw.Steering(default_model, "Tell me about cats.", vector=vector / vector.norm(), layer=10,
                        strength=1.0, max_new_tokens=4).wait()  # the bundle is checked, not the text's length
    for widget, kind in [(lens, "lens"), (grid, "patching"), (steer, "steering")]:
        assert widget.error == "", widget.error
        data = bundle_of(widget)
        snap = data[S.SNAPSHOT_MIME]
        assert snap["widget"] == kind
        width, height = png_size(base64.b64decode(data["image/png"]))
        assert width >= 600 and height >= 400
    lens_state = S.snapshot_state(bundle_of(lens)[S.SNAPSHOT_MIME])
    assert lens_state["topk_index"].dtype == np.int32 and lens_state["text_table"]
    grid_state = S.snapshot_state(bundle_of(grid)[S.SNAPSHOT_MIME])
    assert grid_state["reference_values"].size == grid_state["values"].size  # exact beside attribution
    assert grid_state["correlation"] is not None
    steer_state = S.snapshot_state(bundle_of(steer)[S.SNAPSHOT_MIME])
    assert steer_state["steered_tokens"] and steer_state["kl_per_token"].size > 0
    assert "KL" in bundle_of(steer)["text/plain"]


def test_to_html_is_one_self_contained_file(heatmap, tmp_path):
    path = heatmap.to_html(tmp_path / "heatmap.html")
    page = path.read_text(encoding="utf-8")
    assert "renderSnapshot" in page and "data:image/png;base64," in page
    assert "<script src" not in page and "<link" not in page
    assert "Content-Security-Policy" in page


def test_untrusted_text_cannot_end_the_script_element(default_model, tmp_path):
    h = aw.Heatmap(default_model, "</script><script>alert(1)</script>").wait()
    page = h.to_html(tmp_path / "x.html").read_text(encoding="utf-8")
    assert page.count("</script>") == 3  # the JSON's, the code's and the call's: none from the prompt
    assert "&lt;/script&gt;" in page  # the title, escaped


UNTRUSTED = "<!--<script> a </script> b <!-- c & d \u2028 e"


def test_no_text_can_change_how_the_page_parses(default_model, tmp_path):
    """`<!--<script>` inside a script element would swallow the rest of the page: the snapshot's
    JSON carries <, > and & as \\u escapes, and our drawing code holds no `<!--` or `<script`."""
    import json
    import re

    h = aw.Heatmap(default_model, UNTRUSTED).wait()
    page = h.to_html(tmp_path / "x.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", page, flags=re.S)
    assert len(scripts) == 3 and page.count("<script") == 3 and page.count("</script>") == 3
    assert all("<!--" not in body and "<script" not in body for body in scripts)
    assert json.loads(scripts[0])["title"] == h.describe()  # the escapes read back as the text
    assert json.loads(scripts[0])["state"]["prompt"] == UNTRUSTED


# --- in a real kernel ---------------------------------------------------------------
@pytest.mark.slow
def test_saved_outputs_hold_the_finished_run(tmp_path):
    """A fast widget is displayed finished; a slow one's output is replaced (same display
    id) once its run ends, so the notebook file ends up with finished figures either way."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in [
        "import torch, actwidgets as aw\nmodel = aw.load()",
        'aw.Heatmap(model, "The Eiffel Tower is located in the city of")',
        "torch.manual_seed(0)\nv = torch.randn(model.hf.config.hidden_size)\n"
        's = aw.Steering(model, "Tell me about cats.", vector=v / v.norm(), layer=10, max_new_tokens=8)\ns',
        "import time\ns.wait()\ntime.sleep(3 * s._publisher.DELAY_S + 1)",
    ]]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (heatmap,), (steering,) = nb.cells[1].outputs, nb.cells[2].outputs
    assert heatmap["output_type"] == "display_data"
    assert heatmap["data"][S.SNAPSHOT_MIME]["state"]["status"] == "done"
    assert steering["data"][S.SNAPSHOT_MIME]["state"]["status"] == "done"
    assert steering["data"][S.SNAPSHOT_MIME]["state"]["steered_tokens"]
    assert "KL" in steering["data"]["text/plain"] and "KL ?" not in steering["data"]["text/plain"]


@pytest.mark.parametrize("token, shown", [
    ("$5 and $6", "$5 and $6"),  # two dollars would otherwise start mathtext
    ("a\\b", "a\\b"),  # a backslash prints as itself, once
    ("x\\$", "x\\$"),
    ("line\nnext", "line⏎next"),
])
def test_figure_labels_print_token_text_as_is(token, shown):
    from matplotlib.text import Text

    from actwidgets.widgets._figure import plain

    assert Text()._preprocess_math(plain(token)) == (shown, False)
