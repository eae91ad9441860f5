"""The matplotlib figure of aw.Attention (its PNG and `figure()`), drawn from the widget's state.

Three panels as on screen: the overview (one thumbnail per head, layers down, heads across),
the selected head large, and "from this token" (each head of that layer, weights from the query
token to every key), all on one colour scale from 0 to 1 (weights are probabilities). NaN cells
(keys after the query: the causal mask) stay empty. Built without pyplot, like `_figure.py`, whose helpers it reuses.
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ._figure import _title, _waiting, plain

_MAX_LABELS = 40  # more token labels than this on an axis overlap: label every k-th


def _array(state: dict, name: str, shape: tuple) -> np.ndarray | None:
    values = np.asarray(state.get(name, []), dtype=np.float32)
    return values.reshape(shape) if values.size and values.size == int(np.prod(shape)) else None


def _thumbnails(overview: np.ndarray) -> np.ndarray:
    """[R, H, n, n] -> one image, one NaN pixel between heads."""
    rows, heads, n, _ = overview.shape
    gap = 1 if n >= 4 else 0
    image = np.full((rows * (n + gap), heads * (n + gap)), np.nan, np.float32)
    for r in range(rows):
        for h in range(heads):
            image[r * (n + gap):r * (n + gap) + n, h * (n + gap):h * (n + gap) + n] = overview[r, h]
    return image


def _token_ticks(axis_set, labels: list[str], positions) -> None:
    step = max(1, int(np.ceil(len(labels) / _MAX_LABELS)))
    axis_set(positions[::step], [plain(t) for t in labels[::step]], fontsize=6, family="monospace")


def attention_figure(state: dict, title: str) -> Figure:
    fig = Figure(figsize=(12.0, 9.0), layout="constrained")
    rows, heads = len(state.get("layer_labels", [])), int(state.get("n_heads", 0))
    n, p = int(state.get("overview_size", 0)), int(state.get("pattern_size", 0))
    overview = _array(state, "overview", (rows, heads, n, n))
    pattern = _array(state, "pattern", (p, p))
    if overview is None or pattern is None:
        return _waiting(fig, state)
    tokens = list(state.get("tokens", []))
    layer, head = (state.get("pattern_head") or [0, 0])[:2]
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 2.2], height_ratios=[3, 1.2])
    cmap = "viridis"

    ax = fig.add_subplot(grid[0, 0])
    gap = 1 if n >= 4 else 0
    ax.imshow(np.ma.masked_invalid(_thumbnails(overview)), cmap=cmap, norm=Normalize(0, 1), interpolation="nearest",
              aspect="equal")
    centre = (n - 1) / 2
    ax.set_xticks([h * (n + gap) + centre for h in range(heads)], [str(h) for h in range(heads)], fontsize=6)
    step = max(1, int(np.ceil(rows / 32)))
    labels = list(state.get("layer_labels", []))
    ax.set_yticks([r * (n + gap) + centre for r in range(0, rows, step)], labels[::step], fontsize=6)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title("every head", fontsize=9)
    if str(layer) in labels and 0 <= head < heads:
        r = labels.index(str(layer))
        ax.add_patch(Rectangle((head * (n + gap) - 0.5, r * (n + gap) - 0.5), n, n, fill=False, edgecolor="#d6604d",
                               linewidth=1.5))

    ax = fig.add_subplot(grid[0, 1])
    image = ax.imshow(np.ma.masked_invalid(pattern), cmap=cmap, norm=Normalize(0, 1), interpolation="nearest",
                      aspect="equal")
    bins = np.asarray(state.get("pattern_bins", np.arange(p)), dtype=int)
    names = [tokens[b] if b < len(tokens) else "" for b in bins]
    pooled = p < len(tokens)
    _token_ticks(ax.set_xticks, names, list(range(p)))
    _token_ticks(ax.set_yticks, names, list(range(p)))
    for label in ax.get_xticklabels():
        label.set_rotation(90)
    ax.set_xlabel("key token" + (" (first of each bin)" if pooled else ""))
    ax.set_ylabel("query token" + (" (first of each bin)" if pooled else ""))
    ax.set_title(f"layer {layer} · head {head}" + (f" (pooled to {p} bins)" if pooled else ""), fontsize=9)
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.8)

    ax = fig.add_subplot(grid[1, :])
    shape = state.get("shape") or (0, 0)
    values = _array(state, "values", tuple(shape))
    q = int(state.get("query_index", 0))
    if values is not None:
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, aspect="auto", interpolation="nearest",
                          norm=Normalize(state.get("vmin", 0.0), state.get("vmax", 1.0)))
        _token_ticks(ax.set_xticks, tokens, list(range(len(tokens))))
        for label in ax.get_xticklabels():
            label.set_rotation(90)
        ax.set_yticks(range(len(state.get("row_labels", []))), state.get("row_labels", []), fontsize=6)
        fig.colorbar(image, ax=ax, label="attention weight", shrink=0.9)
    query_text = plain(tokens[q]) if q < len(tokens) else ""
    ax.set_title(f"from token {q} “{query_text}”: each head of layer {layer}", fontsize=9)
    _title(fig, title, state, stale=bool(state.get("stale")))
    return fig
