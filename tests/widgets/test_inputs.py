"""Every bad input gets a sentence naming the parameter, what it allows and the value
given, shown in the widget, which stays usable: the next good input computes."""
from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch

import actwidgets as aw
from actwidgets.methods import _checks

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to", (" Mary", " John"))
BUG = "(in "  # how an unexpected exception is shown: "TypeError: ... (in file.py:12)"


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    assert not caught, [str(w.message) for w in caught]


def _grid(model, **kw):
    return aw.PatchingGrid(model, *IOI, **kw)


def _heatmap(model, **kw):
    return aw.Heatmap(model, kw.pop("prompt", "The Eiffel Tower is in Paris"), **kw)


def _lens(model, **kw):
    return aw.LogitLens(model, kw.pop("prompt", "The Eiffel Tower is in Paris"), **kw)


def _steering(model, **kw):
    kw.setdefault("vector", torch.ones(model.d_model))
    return aw.Steering(model, kw.pop("prompt", "I think that"), layer=kw.pop("layer", 1), max_new_tokens=4, **kw)


CASES = [  # (widget, bad input, words the message must hold, a good value for the same trait)
    (_grid, {"chunk_size": -3}, ["chunk_size", "at least 1", "-3"], 8),
    (_grid, {"chunk_size": 0}, ["chunk_size", "at least 1", "0"], 8),
    (_heatmap, {"layers": "abc"}, ["layers", "the text 'abc'"], [0, 1]),
    (_heatmap, {"layers": [1.5]}, ["layers", "whole numbers", "1.5"], [0, 1]),
    (_heatmap, {"layers": object()}, ["layers", "block index"], [0, 1]),
    (_heatmap, {"stat": "direction", "direction": "abc"}, ["direction", "numbers"], None),
    (_heatmap, {"stat": "direction", "direction": [1e300] * 64}, ["direction", "infinite"], None),
    (_heatmap, {"prompt": "\u200b\u200b\u2060"}, ["prompt", "invisible"], "Rome is in Italy"),
    (_lens, {"k": 0}, ["k", "1 to 50", "0"], 3),
    (_lens, {"target": " Paris and Rome"}, ["single token"], " Paris"),
    (_steering, {"kl_budget": float("inf")}, ["kl_budget", "finite", "above 0", "inf"], 0.05),
    (_steering, {"kl_budget": 0.0}, ["kl_budget", "above 0"], 0.05),
    (_steering, {"strength": 1e30}, ["strength", "times the", "strength_range"], 0.0),
    (_steering, {"method": "loud"}, ["method", "'asc'", "'east'", "'loud'"], "asc"),
    (_steering, {"operation": "remove"}, ["operation", "'add'", "'ablate'", "'remove'"], "add"),
    (_steering, {"strength": 1.5, "operation": "ablate"}, ["strength", "'ablate'", "fraction", "0 to 1", "1.5"], 1.0),
    (_steering, {"method": "east", "operation": "ablate", "layers": [0, 1], "actions": [" yes"]},
     ["method='east'", "operation='ablate'", "method='asc'"], "asc"),
    # one action given as text is one action, not its characters; EAST needs two
    (_steering, {"actions": " left", "method": "east"}, ["actions", "at least two", "[' left']"], [" left", " right"]),
    (_steering, {"actions": [" left", " to the right"], "method": "east"},
     ["each action must be one token", "' to the right' is 3 tokens"], [" left", " right"]),
]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a value beyond float32 says so in words, not a warning
@pytest.mark.parametrize("make, bad, words, good", CASES,
                         ids=[f"{m.__name__[1:]}-{'-'.join(b)}" for m, b, _, _ in CASES])
def test_a_bad_input_says_what_is_allowed_and_the_widget_recovers(tiny_llama, make, bad, words, good):
    w = make(tiny_llama, **bad).wait()
    assert w.status == "error", f"{bad} was accepted"
    assert all(word in w.error for word in words), w.error
    assert BUG not in w.error and "Traceback" not in w.error
    name = [k for k in bad if k != "stat"][0]
    if good is None:
        w.direction, w.stat = np.ones(tiny_llama.d_model), "norm"
    else:
        setattr(w, name, good)
    assert w.wait().status == "done", w.error


def test_layers_accept_numpy_and_torch_integers(tiny_llama):
    w = _heatmap(tiny_llama, layers=np.arange(2)).wait()
    assert w.status == "done" and w.row_labels == ["0", "1"]
    assert _heatmap(tiny_llama, layers=np.int64(-1)).wait().row_labels == ["2"]
    assert _heatmap(tiny_llama, layers=torch.arange(2)).wait().row_labels == ["0", "1"]
    assert _heatmap(tiny_llama, layers=torch.tensor(-1)).wait().row_labels == ["2"]
    assert "whole numbers" in _heatmap(tiny_llama, layers=torch.tensor([0.5])).wait().error


@pytest.mark.parametrize("kind", ["complex tensor", "bool array", "bool list", "meta tensor"])
def test_a_vector_of_booleans_complex_numbers_or_no_values_is_refused(tiny_llama, kind):
    d = tiny_llama.d_model
    vector = {"complex tensor": torch.ones(d, dtype=torch.complex64), "bool array": np.ones(d, bool),
              "bool list": [True] * d, "meta tensor": torch.ones(d, device="meta")}[kind]
    with _no_warning():  # numpy's ComplexWarning was all a complex vector got
        w = _steering(tiny_llama, vector=vector).wait()
    assert w.status == "error" and w.error.startswith("The steering vector ") and BUG not in w.error, w.error
    assert ("meta device" if kind == "meta tensor" else "real numbers") in w.error


def test_a_figure_of_text_its_font_lacks_warns_nobody(tiny_llama):
    """The PNG that goes with every display shows a box for a missing glyph; no warning reaches the cell."""
    w = _heatmap(tiny_llama, prompt="שלום 😀 مرحبا").wait()
    assert w.status == "done", w.error
    with _no_warning():
        w._repr_mimebundle_()


@pytest.mark.parametrize("make, typo, meant", [(_heatmap, "layer", "layers"), (_lens, "targt", "target"),
                                               (_grid, "methd", "method"), (_steering, "temprature", None)])
def test_a_misspelt_keyword_is_rejected_with_the_valid_names(tiny_llama, make, typo, meant):
    with pytest.raises(TypeError) as err:
        make(tiny_llama, **{typo: 3})
    message = str(err.value)
    assert repr(typo) in message and "Its keyword arguments are:" in message
    if meant:
        assert f"did you mean {meant!r}" in message


def test_a_grid_that_failed_part_way_is_not_remembered(tiny_llama):
    w = _grid(tiny_llama, chunk_size=-3).wait()
    assert w.status == "error" and w.result is None
    w.chunk_size = 4
    assert w.wait().status == "done" and w.result.done.all()


@pytest.mark.parametrize("value, ok", [(3, True), (np.int32(3), True), (True, False), (3.0, False), ("3", False)])
def test_whole_numbers_are_ints_not_bools_floats_or_text(value, ok):
    if ok:
        assert _checks.whole(value, "n", 1) == 3
    else:
        with pytest.raises(aw.InputError, match=r"n must be a whole number of at least 1, not"):
            _checks.whole(value, "n", 1)


@pytest.mark.parametrize("text", ["", " \n\t", "\u200b", "\ufeff\u200d", "\u3164", "\x00\x01"])
def test_text_of_only_invisible_characters_is_refused(text):
    with pytest.raises(aw.InputError, match="prompt is (empty|only invisible)"):
        _checks.text(text)
    assert _checks.text("a\u200b") == "a\u200b"


def test_steering_spells_its_block_layers_like_every_widget(tiny_llama):
    v = torch.ones(tiny_llama.d_model)
    as_int = aw.Steering(tiny_llama, "I think", vector=v, layers=1, max_new_tokens=2).wait()
    as_list = aw.Steering(tiny_llama, "I think", vector=v, layers=np.array([1]), max_new_tokens=2).wait()
    old = aw.Steering(tiny_llama, "I think", vector=v, layer=1, max_new_tokens=2).wait()
    assert as_int.status == as_list.status == old.status == "done"
    assert as_int.layer == as_list.layer == old.layer == 1
    assert as_int.gamma_max == pytest.approx(old.gamma_max)
    as_int.layers = [0, 1]
    assert as_int.wait().status == "error" and "one block index" in as_int.error
    as_int.layers = -1
    assert as_int.wait().status == "done" and as_int.layer == tiny_llama.n_layers - 1


def test_a_vector_too_long_for_float32_says_so_and_a_shorter_one_steers(tiny_llama):
    w = _steering(tiny_llama, vector=torch.ones(tiny_llama.d_model) * 1e20).wait()
    assert w.status == "error" and "vector is too long for float32" in w.error and "scale it down" in w.error
    w.vector = torch.ones(tiny_llama.d_model)
    assert w.wait().status == "done", w.error


@pytest.mark.parametrize("bad", [(-1, 1, 2), 5, "ab", (1, -1), (0, 0), (float("nan"), 1)])
def test_a_strength_range_must_be_low_then_high(tiny_llama, bad):
    with pytest.raises(aw.InputError, match=r"^strength_range"):
        _steering(tiny_llama, strength_range=bad)


def test_a_strength_beyond_a_given_range_names_that_range(tiny_llama):
    w = _steering(tiny_llama, strength_range=(-1e4, 1e4), strength=1e6).wait()
    assert w.status == "error" and "within ±1e+04 (strength_range), or widen strength_range" in w.error, w.error
    assert "100x" not in w.error


def test_a_positional_mistake_is_one_type_error_and_nothing_else(tiny_llama, monkeypatch):
    """ipywidgets closes in __del__ even a widget whose __init__ never ran: that must not raise."""
    import gc
    import sys

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    for make in (lambda: aw.Heatmap(tiny_llama, "hi", "norm"), lambda: aw.LogitLens(tiny_llama, "hi", " Paris"),
                 lambda: aw.PatchingGrid(tiny_llama, *IOI, "resid")):
        with pytest.raises(TypeError, match="positional argument"):
            make()
    gc.collect()
    assert unraisable == [], [u.exc_value for u in unraisable]


def test_a_prompt_that_leaves_no_room_for_the_continuation_says_how_many_new_tokens(tiny_llama):
    """The widget's own max_new_tokens, not the fewer its calibration generates first."""
    w = aw.Steering(tiny_llama, "word " * 250, vector=torch.ones(tiny_llama.d_model), layers=1, max_new_tokens=32).wait()
    assert w.status == "error" and "plus max_new_tokens=32 is more than tiny-llama reads (256)" in w.error, w.error
    w.max_new_tokens = 4
    assert w.wait().status == "done", w.error
    w.max_new_tokens = 0  # named as the widget's parameter, before any work
    assert w.wait().status == "error" and w.error.startswith("max_new_tokens must be a whole number from 1 to "), w.error


CHAT = [{"role": "user", "content": "When Mary and John went to the store, John gave a drink to"}]


def test_a_chat_prompt_is_written_with_the_models_chat_template(default_model, monkeypatch):
    """An instruct model is asked in its chat format: a list of messages becomes the text its
    template writes, ready for the reply, which the widget shows, saves and re-runs."""
    text = default_model.tokenizer.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    heatmap = aw.Heatmap(default_model, CHAT).wait()
    assert heatmap.status == "done" and heatmap.prompt == text and heatmap.tokens[0] == "<|im_start|>"
    assert default_model.encode(text)[0].tolist() == default_model.tokenizer(text, add_special_tokens=False)["input_ids"]
    swapped = [{"role": "user", "content": CHAT[0]["content"].replace("John gave", "Mary gave")}]
    grid = aw.PatchingGrid(default_model, CHAT, swapped, answer=(" Mary", " John")).wait(300)
    assert grid.status == "done" and grid.clean == text and grid.corrupted.endswith("<|im_start|>assistant\n")
    with pytest.raises(aw.InputError, match=r"^prompt must be text, or a chat: a list of \{'role'"):
        heatmap.prompt = [{"role": "user"}]
    monkeypatch.setattr(default_model.tokenizer, "chat_template", None)
    with pytest.raises(aw.InputError, match="tokenizer has no chat template: pass the prompt as text"):
        aw.Heatmap(default_model, CHAT)
    assert heatmap.prompt == text  # a refused value leaves the widget as it was


def test_a_prompt_that_begins_with_bos_gets_no_second_one(tiny_llama):
    """A tokenizer that adds BOS (Llama-3's, Gemma's) must not add it again to a prompt whose
    chat template already wrote it: a doubled BOS is a prompt the model never saw in training,
    and its first position a different figure. The default tokenizer adds none, so this one
    is the default's with a post-processor that does."""
    import copy

    from tokenizers.processors import TemplateProcessing

    adds_bos = copy.deepcopy(tiny_llama.tokenizer)
    bos, bos_id = adds_bos.bos_token, adds_bos.bos_token_id
    adds_bos.backend_tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, bos_id)])
    assert adds_bos(f"{bos}hi")["input_ids"][:2] == [bos_id, bos_id]  # what the tokenizer alone does
    model = aw.wrap(tiny_llama.hf, adds_bos, name="tiny-llama-adds-bos")
    plain, written = model.encode("When Mary")[0].tolist(), model.encode(f"{bos}When Mary")[0].tolist()
    assert plain == written and plain[0] == bos_id and plain[1] != bos_id, (plain, written)
    text = model.chat(CHAT)
    assert text.startswith(bos)
    heatmap = aw.Heatmap(model, CHAT).wait()
    assert heatmap.status == "done" and heatmap.tokens[:2].count(bos) == 1, heatmap.tokens[:3]


def test_a_token_may_be_given_by_its_id(default_model, monkeypatch):
    """A token box takes an id as `single_token` does (its message says "its text ... or its
    id"); the widgets' traits refused one. The id becomes the label the widget shows, and a
    piece of a character keeps naming its own token, not the one its decoded text would."""
    prompt = "The Eiffel Tower is located in the city of"
    paris = default_model.single_token(" Paris")
    dla = aw.LogitAttribution(default_model, prompt, target=paris, wrong=default_model.single_token(" Rome")).wait()
    assert dla.status == "done" and (dla.target, dla.wrong) == (" Paris", " Rome"), dla.error
    by_text = aw.LogitAttribution(default_model, prompt, target=" Paris", wrong=" Rome").wait()
    assert dla.components == by_text.components and dla.total == by_text.total
    piece = int(default_model.encode("🙂")[0, 0])  # a byte-level piece: no text of its own
    lens = aw.LogitLens(default_model, prompt, target=piece).wait()
    assert lens.status == "done" and lens.color_by == "target_prob" and lens.target.startswith("<0x"), lens.error
    with torch.no_grad():
        expected = torch.softmax(default_model.hf(default_model.encode(prompt)).logits[0, -1].float(), -1)[piece]
    rows, cols = lens.shape
    assert np.frombuffer(lens.target_prob, "<f4").reshape(rows, cols)[-1, -1] == pytest.approx(float(expected), rel=1e-4)
    with pytest.raises(aw.InputError, match=r"^target must be one token \(its text, e.g. ' Paris', or its id\): "
                                            r"Token id 99999 is outside the vocabulary"):
        lens.target = 99999
    assert lens.target.startswith("<0x") and lens.wait().status == "done"
    ids = [default_model.single_token(name) for name in (" Mary", " John")]
    grid = aw.PatchingGrid(default_model, "When Mary and John went to the store, John gave a drink to",
                           "When Mary and John went to the store, Mary gave a drink to", answer=ids)
    assert grid.answer == [" Mary", " John"] and grid.wait(300).status == "done", grid.error
    # a tokenizer may decode two tokens alike (SentencePiece's '▁Paris' and 'Paris'): such an id is
    # refused, not silently swapped for the other token its label reads back as
    monkeypatch.setitem(default_model._texts, ids[1], " Mary")
    with pytest.raises(aw.InputError, match=rf"^target: token id {ids[1]} shows as ' Mary', which names token "
                                            rf"{ids[0]}; give the token as text"):
        dla.target = ids[1]
    with pytest.raises(aw.InputError, match=rf"^each answer: token id {ids[1]} shows as ' Mary'"):
        grid.answer = ids[::-1]
    assert dla.target == " Paris" and grid.answer == [" Mary", " John"]


def test_a_widget_keeps_the_model_it_was_made_with(tiny_llama, default_model):
    """Its worker and remembered results are that model's: another model swapped in showed the
    old model's figure for a prompt seen before."""
    heatmap = aw.Heatmap(tiny_llama, "The cat sat").wait()
    with pytest.raises(AttributeError, match=r"keeps the model it was made with; .* aw.Heatmap\(other_model"):
        heatmap.model = default_model
    assert heatmap.model is tiny_llama
