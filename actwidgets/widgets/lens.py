"""aw.LogitLens: what each layer would predict if the model stopped there."""
from __future__ import annotations

import time
from contextlib import closing

import numpy as np
import traitlets as t

from ..errors import InputError
from ..methods._checks import choice
from ..methods.lens import LensResult, iter_lens
from ._base import bundle, quoted
from ._traits import Array, PromptText, Token
from ._grid import GridWidget

# The one list of colourings: the front-end draws its select from `color_by_options`.
COLOR_BY = {"top_prob": "top-1 probability", "entropy": "entropy (nats)", "target_prob": "target probability"}
# A long prompt's lens fills in: these first positions (more than a wide screen shows at the
# narrowest cells) appear first, then the rest, redrawn at most every PUBLISH_S seconds (each
# redraw sends every array again: ~10 MB at 8,192 tokens).
FIRST_SCREEN = 256
PUBLISH_S = 5.0
# The progress bar's share for the forward pass (then the unembedding, position by position):
# about what it takes of a lens on the default model, 9% at 1,024 tokens, 17% at 8,192.
FORWARD_SHARE = 0.1


class LogitLens(GridWidget):
    """Logit lens per layer x token: the top-k tokens, entropy, and a target's probability.

    Each cell shows the layer's top-1 next-token prediction; hover for the top-k.
    `color_by`: "top_prob", "entropy" or "target_prob" (needs `target`).
    """

    _esm = bundle("lens")
    snapshot_kind = "lens"
    target = Token()
    color_by = t.Unicode("top_prob").tag(sync=True)
    color_by_options = t.List(t.List(t.Unicode()),  # [[value, label], ...]: JSON keeps a list's order
                              default_value=[[value, label] for value, label in COLOR_BY.items()]).tag(sync=True)
    k = t.Int(5).tag(sync=True)
    text_table = t.List(t.Unicode()).tag(sync=True)
    topk_index = Array("<i4")
    topk_prob = Array()
    entropy = Array()
    target_prob = Array()
    target_rank = Array("<i4")
    # js -> py: the columns [first, last) on screen while a long lens fills in (empty: unknown)
    view_columns = t.List(t.Int(), default_value=[]).tag(sync=True)
    layers = t.Any(None)

    def __init__(self, model, prompt: PromptText = "", *, target: str | int = "", k: int = 5, color_by: str | None = None,
                 layers=None, **kwargs):
        color_by = color_by or ("top_prob" if target in ("", None) else "target_prob")  # an id may be 0
        super().__init__(model, prompt=prompt, target=target, k=k, color_by=color_by, layers=layers, **kwargs)
        self.observe(self.schedule, ["prompt", "target", "k", "color_by", "layers"])
        self.schedule()

    @property
    def data(self) -> LensResult | None:
        """The lens arrays of the current inputs, waiting for a run in progress;
        None when the current inputs have no result (an error)."""
        self.wait_unless_worker()
        return self.memo.get(self._key())

    def describe(self) -> str:
        target = f", target {self.target!r}" if self.target else ""
        return f"Logit lens ({COLOR_BY.get(self.color_by, self.color_by)}{target}): {quoted(self.prompt)}"

    def _key(self) -> tuple:
        return (self.prompt, self.target, self.k, repr(self.layers))

    def compute(self):
        # Inputs are read once: the user may edit them while the trace runs.
        key, color_by, target = self._key(), self.color_by, self.target
        choice(color_by, tuple(COLOR_BY), "color_by")
        if color_by == "target_prob" and not target:
            raise InputError("Colouring by target probability needs a target token: type one in the target box.")
        lens = self.memo.get(key)
        if lens is None:
            prompt, k, layers = self.prompt, self.k, self.layers
            steps = iter_lens(self.model, prompt, target=target or None, k=k, layers=layers, first=FIRST_SCREEN,
                              should_stop=lambda: not self._current(), focus=self._view,
                              progress=self.reporter(0.0, FORWARD_SHARE))
            shown, known = -float("inf"), None  # when, and which columns, last published
            with closing(steps):  # a cancel closes the generator now, releasing the model's lock
                for lens, fraction in steps:
                    self.check()
                    if fraction < 1 and (time.monotonic() - shown >= PUBLISH_S or self._view_filled(lens, known)):
                        shown, known = time.monotonic(), ~np.isnan(lens.entropy[0])
                        self.show((color_by, lens))
                    self.progress = FORWARD_SHARE + (1 - FORWARD_SHARE) * fraction
            self.memo.put(key, lens)
        return color_by, lens

    def _view(self) -> tuple[int, int] | None:
        view = list(self.view_columns)
        return (view[0], view[1]) if len(view) == 2 and 0 <= view[0] < view[1] else None

    def _view_filled(self, lens: LensResult, known) -> bool:
        """Whether the columns on screen are all computed now but were not when last published:
        the user scrolled there, so they are shown at once rather than at the next redraw."""
        view = self._view()
        if view is None or known is None:
            return False
        now = ~np.isnan(lens.entropy[0, view[0]:view[1]])
        return bool(now.all()) and not bool(known[view[0]:view[1]].all())

    def apply(self, result) -> None:
        color_by, lens = result
        known = lens.topk_ids >= 0  # a partial result: -1 where not computed yet
        table = np.unique(lens.topk_ids[known])
        index = np.full(lens.topk_ids.shape, -1, np.int32)
        index[known] = np.searchsorted(table, lens.topk_ids[known])
        values = {"top_prob": lens.topk_prob[..., 0], "entropy": lens.entropy, "target_prob": lens.target_prob}
        bounded = color_by != "entropy"
        self.set_grid(lens.tokens, lens.rows, values[color_by], label=COLOR_BY[color_by],
                      colormap="viridis" if bounded else "magma",
                      vmin=0.0 if bounded else None, vmax=1.0 if bounded else None)
        self.text_table = self.model.token_texts(table)
        self.topk_index = index
        self.topk_prob = lens.topk_prob
        self.entropy = lens.entropy
        has_target = lens.target_prob is not None
        self.target_prob = lens.target_prob if has_target else b""
        self.target_rank = lens.target_rank if has_target else b""

    # --- linked views ----------------------------------------------------------------
    links_to = ("LogitAttribution",)

    def _point(self, view, cell: dict) -> None:
        """A LogitAttribution attributes at the clicked token: the same prompt, `position` = the
        clicked column, and `target` = this lens's target when it has one, else the lens's top-1
        prediction in its last row for that column (the model's own next-token prediction when
        the lens shows the last layer, as it does by default). The row clicked does not matter;
        the view's `wrong` token is left as it is."""
        target = self.target
        if not target:
            lens = self.data
            if lens is None:
                return
            # its label, as the lens shows it: a piece of a character decodes to '�', another token
            target = self.model.token_texts([int(lens.topk_ids[-1, cell["col"], 0])])[0]
        view.prompt, view.position, view.target = self.prompt, cell["col"], target
