"""The matplotlib figure of aw.LogitAttribution (its PNG and `figure()`), drawn from its state
as `_figure.py`'s figures are: the embedding + layer x {attn, mlp} strip beside the layer x head
grid, one diverging scale centred on 0, and the model's logit beside the sum of the parts."""
from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from ._figure import _CMAPS, _title, _waiting, plain


def _signed(value) -> str:
    return "—" if value is None else f"{value:+.3f}"


def strip_and_heads(state: dict) -> tuple[np.ndarray, np.ndarray]:
    """[L + 1, 2] (embedding row, then attn and MLP per layer) and [L + 1, H] (a blank first
    row, so the two grids' layers line up), NaN where there is nothing."""
    layers, heads = state.get("shape") or (0, 0)
    values = np.asarray(state.get("values", []), dtype=np.float32)
    comps = np.asarray(state.get("components", []), dtype=np.float32)
    if not layers or values.size != layers * heads or comps.size != layers * 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, heads), np.float32)
    embed = state.get("embed")
    strip = np.vstack([[np.nan if embed is None else embed, np.nan], comps.reshape(layers, 2)])
    grid = np.vstack([np.full((1, heads), np.nan, np.float32), values.reshape(layers, heads)])
    return strip, grid


def dla_figure(state: dict, title: str) -> Figure:
    strip, grid = strip_and_heads(state)
    rows, heads = grid.shape
    width = min(max(4.0 + 0.35 * heads, 6.0), 16.0)
    fig = Figure(figsize=(round(width, 1), round(min(max(2.2 + 0.2 * rows, 3.5), 10.0), 1)), layout="constrained")
    if rows == 0:
        return _waiting(fig, state)
    axes = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, max(heads, 2)]})
    cmap = _CMAPS["rdbu"]
    norm = Normalize(vmin=state.get("vmin", -1.0), vmax=state.get("vmax", 1.0))
    layers = [plain(r) for r in state.get("row_labels", [])]
    step = max(1, int(np.ceil(rows / 32)))
    for ax, data, cols, first, name in ((axes[0], strip, ["attn", "mlp"], "emb", "layer outputs"),
                                        (axes[1], grid, [f"H{h}" for h in range(heads)], "", "heads")):
        image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols, fontsize=7, rotation=90 if len(cols) > 16 else 0)
        ax.set_yticks(range(0, rows, step))
        ax.set_yticklabels(([first] + layers)[::step], fontsize=7)
        ax.set_title(name, fontsize=9)
    axes[0].set_ylabel("layer")
    fig.colorbar(image, ax=list(axes), label=plain(state.get("value_label", "")), shrink=0.9)
    summary = (f"model {_signed(state.get('logit'))} · sum of parts {_signed(state.get('total'))} "
               f"(embedding {_signed(state.get('embed'))}, final-norm bias {_signed(state.get('norm_bias'))})")
    lines = textwrap.wrap(summary + (f". {state['note']}" if state.get("note") else ""), int(fig.get_size_inches()[0] * 12))
    fig.supxlabel("\n".join(plain(line) for line in lines), fontsize=9)
    _title(fig, title, state, stale=bool(state.get("stale")))
    return fig
