"""A fuzz of the widget surface: random values of random types for every input trait of
every widget, set in random order. After each set the widget either refused the value at
the door (a TraitError or InputError naming the trait), or computed, or shows an error
sentence: no traceback text, no "(in file.py:12)" of an unexpected exception, no stuck
"running". Afterwards good inputs compute again. CI runs a fixed, derandomized set of
examples; `bench/reliability.py` runs more (`run_fuzz`).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import traitlets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actwidgets as aw
from families import tiny

IOI = ("When Mary and John went to the store, John gave a drink to",
       "When Mary and John went to the store, Mary gave a drink to", [" Mary", " John"])
CI_EXAMPLES = 36
WAIT_S = 120


def good_inputs(model) -> dict:
    """Per widget: its constructor, and a good value for every input trait the fuzz sets."""
    return {
        "Heatmap": (aw.Heatmap, dict(prompt="The Eiffel Tower is in Paris", stat="norm", compare="", layers=None,
                                     direction=None, log_scale=None, selected={})),
        "LogitLens": (aw.LogitLens, dict(prompt="The Eiffel Tower is in", target=" Paris", k=5,
                                         color_by="top_prob", layers=None, selected={})),
        "PatchingGrid": (aw.PatchingGrid, dict(clean=IOI[0], corrupted=IOI[1], answer=IOI[2], site="resid",
                                               method="exact", normalized=True, denoise=True, chunk_size=64,
                                               selected={})),
        "Steering": (aw.Steering, dict(prompt="I think that", vector=np.ones(model.d_model, np.float32), layers=1,
                                       kl_budget=0.05, strength=0.0, method="asc", operation="add", actions=[],
                                       positions="last", max_new_tokens=3)),
        "Attention": (aw.Attention, dict(prompt=IOI[0], layers=None, head=[0, 0], query=None, selected={})),
        "LogitAttribution": (aw.LogitAttribution, dict(prompt=IOI[0], target=" Mary", wrong="", position=-1,
                                                       selected={})),
    }


INVISIBLE = st.sampled_from(["", " ", "\u200b", "\u2060\ufeff", "\x00", "\u3164", "\n\t"])
TEXT = st.one_of(st.text(max_size=12), INVISIBLE, st.sampled_from(["<!--<script>", "🚀", " Paris", "norm", "all"]))
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.integers(-3, 5),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -1.0, 1e30, 1e-30, 0.5]),
    TEXT, st.lists(st.integers(-4, 4), max_size=4), st.lists(TEXT, max_size=3),
    st.dictionaries(st.sampled_from(["row", "col", "x"]), st.one_of(st.integers(-2, 40), TEXT), max_size=3),
    st.sampled_from(["np.arange", "np.ones", "torch.zeros", "object"]),
)


def _materialize(value, d_model: int):
    """Values hypothesis cannot draw directly (arrays, tensors, arbitrary objects)."""
    return {"np.arange": np.arange(3), "np.ones": np.ones(d_model), "torch.zeros": torch.zeros(d_model),
            "object": object()}.get(value, value) if isinstance(value, str) else value


def problems_with(model, kind: str, steps: list[tuple[str, object]]) -> list[str]:
    """Run one example; the list of what went wrong (empty: the widget behaved)."""
    make, good = good_inputs(model)[kind]
    w = make(model, **{k: v for k, v in good.items() if k != "selected"})
    found = []
    try:
        w.wait(WAIT_S)
        for name, raw in steps:
            value = _materialize(raw, model.d_model)
            try:
                setattr(w, name, value)
            except (traitlets.TraitError, aw.InputError) as refused:
                if name not in str(refused):
                    found.append(f"{kind}.{name} = {value!r} was refused without naming it: {refused}")
                continue
            except Exception as exc:  # noqa: BLE001 - anything else is what the fuzz looks for
                found.append(f"{kind}.{name} = {value!r} raised {type(exc).__name__}: {exc}")
                continue
            w.wait(WAIT_S)
            if w.status not in ("done", "error"):
                found.append(f"{kind}.{name} = {value!r} left status {w.status!r}")
            if w.status == "error" and ("Traceback" in w.error or "(in " in w.error or not w.error):
                found.append(f"{kind}.{name} = {value!r} gave an unexpected exception: {w.error}")
        with w.hold_trait_notifications():
            for name, value in good.items():
                setattr(w, name, value)
        w.schedule()
        if w.wait(WAIT_S).status != "done":
            found.append(f"{kind}: good inputs after {steps!r} did not compute: {w.error}")
    except TimeoutError as exc:
        found.append(f"{kind} {steps!r}: {exc}")
    finally:
        w.close()
    return found


def _examples(model):
    names = {kind: sorted(good) for kind, (_, good) in good_inputs(model).items()}
    return st.sampled_from(sorted(names)).flatmap(
        lambda kind: st.tuples(st.just(kind), st.lists(st.tuples(st.sampled_from(names[kind]), VALUES),
                                                       min_size=1, max_size=4)))


_MODEL = None


def fuzz_model():
    global _MODEL
    if _MODEL is None:
        _MODEL = tiny("llama", aw.load().tokenizer)
    return _MODEL


def run_fuzz(examples: int) -> tuple[int, int]:
    """(examples run, examples with a problem) for the bench: every failure counted, none shrunk."""
    model, seen, failed = fuzz_model(), [0], []

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(example=_examples(model))
    def count(example):
        seen[0] += 1
        problems = problems_with(model, *example)
        if problems:
            failed.append(problems)
            print("\n".join(problems))

    count()
    return seen[0], len(failed)


@settings(max_examples=CI_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(example=_examples(fuzz_model()))
def test_random_inputs_never_break_a_widget(example):
    assert problems_with(fuzz_model(), *example) == []
