"""Matplotlib versions of the widgets' figures: the PNG in a saved notebook and `widget.figure()`.

Each function takes a widget's state (traits, arrays unpacked, see `_snapshot.py`) and
returns a `matplotlib.figure.Figure` built without pyplot, so drawing on a worker
thread never touches a global backend. Sizes are fixed in inches (no tight bbox):
the PNG's pixel size is figsize x PNG_DPI, whatever the labels.
"""
from __future__ import annotations

import textwrap

import numpy as np
from matplotlib.colors import LinearSegmentedColormap, LogNorm, Normalize
from matplotlib.figure import Figure

# The front-end's colour maps (js/src/lib/colormap.ts), so the PNG matches the widget.
_RDBU = ["#053061", "#2166ac", "#4393c3", "#92c5de", "#d1e5f0", "#f7f7f7",
         "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f"]
_CMAPS = {"rdbu": LinearSegmentedColormap.from_list("aw_rdbu", _RDBU), "magma": "magma", "viridis": "viridis"}
_MAX_TICKS = 48  # more token labels than this overlap: label every k-th
_MAX_ANNOTATED = 600  # lens cells beyond this are too small to print a token in
STALE_LABEL = "figure from the previous input"  # as js/src/lib/shell.ts (test_contract.py)
STALE_ALPHA = 0.35


def plain(text: str) -> str:
    """Token text as matplotlib should print it: `$` is not mathtext, a newline is visible."""
    return _visible(text).replace("$", r"\$")


def _visible(text: str) -> str:
    return str(text).replace("\n", "⏎").replace("\t", "⇥")


def _wrapped(text: str, width: int, lines: int | None = None) -> list[str]:
    """`plain` text in lines of `width` (the first `lines`): wrapped before `$` is escaped, so
    no line ends in the escape's lone backslash."""
    return [line.replace("$", r"\$") for line in textwrap.wrap(_visible(text), width)[:lines]]


def _size(rows: int, cols: int, panels: int = 1) -> tuple[float, float]:
    width = min(max(2.0 + 0.32 * cols * panels, 6.0), 16.0)
    height = min(max(1.6 + 0.2 * rows, 3.0), 10.0)
    return round(width, 1), round(height, 1)


def _grid(state: dict, name: str = "values") -> np.ndarray:
    rows, cols = state.get("shape") or (0, 0)
    values = np.asarray(state.get(name, []), dtype=np.float32)
    return values.reshape(rows, cols) if values.size == rows * cols else np.full((rows, cols), np.nan, np.float32)


def _norm(state: dict):
    vmin, vmax = state.get("vmin", 0.0), state.get("vmax", 1.0)
    if state.get("scale") == "log" and vmin > 0:
        return LogNorm(vmin=vmin, vmax=vmax)
    return Normalize(vmin=vmin, vmax=vmax)


def _label_axes(ax, state: dict) -> None:
    tokens, rows = state.get("tokens", []), state.get("row_labels", [])
    step = max(1, int(np.ceil(len(tokens) / _MAX_TICKS)))
    ax.set_xticks(range(0, len(tokens), step))
    ax.set_xticklabels([plain(t) for t in tokens[::step]], rotation=90, fontsize=7, family="monospace")
    rstep = max(1, int(np.ceil(len(rows) / 32)))
    ax.set_yticks(range(0, len(rows), rstep))
    ax.set_yticklabels([plain(r) for r in rows[::rstep]], fontsize=7)
    ax.set_ylabel("layer")


def _title(fig: Figure, title: str, state: dict, stale: bool = False) -> None:
    """A suptitle wrapped to the figure's width (about 11 characters per inch at 10 pt).

    `stale`: the figure is an earlier input's (the run for this one failed, or was cancelled
    before it drew anything), so it is faded and the title says so, as the widget does."""
    width = int(fig.get_size_inches()[0] * 11)
    lines = _wrapped(title, width)
    if stale:
        error = state.get("error")
        why = (error or "Cancelled") if state.get("status") == "cancelled" else f"Error: {error or 'the run failed'}"
        lines += _wrapped(f"{why} — {STALE_LABEL}", width)
        for ax in fig.axes:
            for artist in (*ax.images, *ax.patches, *ax.lines, *ax.collections, *ax.texts):
                artist.set_alpha(STALE_ALPHA)
    fig.suptitle("\n".join(lines), fontsize=10)


def _waiting(fig: Figure, state: dict) -> Figure:
    message = state.get("error") or "no result yet"
    fig.text(0.5, 0.5, "\n".join(_wrapped(message, 60)), ha="center", va="center", fontsize=11)
    return fig


def grid_figure(state: dict, title: str) -> Figure:
    """Heatmap, logit lens, or a patching grid (with the exact grid beside an approximation)."""
    values = _grid(state)
    reference = _grid(state, "reference_values") if len(state.get("reference_values", [])) else None
    panels = [values] if reference is None else [values, reference]
    fig = Figure(figsize=_size(*values.shape, len(panels)), layout="constrained")
    if values.size == 0:
        return _waiting(fig, state)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    cmap, norm = _CMAPS.get(state.get("colormap"), "viridis"), _norm(state)
    for ax, grid in zip(axes, panels):
        image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", interpolation="nearest", cmap=cmap, norm=norm)
        _label_axes(ax, state)
    if reference is not None:
        method = state.get("method", "approximation")
        r = state.get("correlation")
        axes[0].set_title(plain(method), fontsize=9)
        axes[1].set_title("exact" + (f" (Pearson r = {r:.2f})" if r is not None else ""), fontsize=9)
    if "topk_index" in state and values.size <= _MAX_ANNOTATED:
        _annotate_top_tokens(axes[0], state, values.shape)
    fig.colorbar(image, ax=list(axes), label=plain(state.get("value_label", "")), shrink=0.9)
    _title(fig, title, state, stale=bool(state.get("stale")))
    return fig


def _annotate_top_tokens(ax, state: dict, shape) -> None:
    table, index = state.get("text_table", []), np.asarray(state["topk_index"])
    k = index.size // max(1, shape[0] * shape[1])
    if not k or not table:
        return
    top = index.reshape(shape[0], shape[1], k)[..., 0]
    for (row, col), i in np.ndenumerate(top):
        ax.text(col, row, plain(table[i]).strip()[:6], ha="center", va="center", fontsize=5, color="white")


def steering_figure(state: dict, title: str) -> Figure:
    """The two continuations, the KL per token against the budget, and EAST's curves."""
    curves = len(state.get("curve_beta", [])) > 0
    fig = Figure(figsize=(10.0, 7.0 if curves else 5.0), layout="constrained")
    grid = fig.add_gridspec(3 if curves else 2, 2, height_ratios=[0.6, 1, 1] if curves else [0.6, 1])
    strength = state.get("strength", 0.0)
    for col, (name, label) in enumerate([("unsteered_tokens", "unsteered"), ("steered_tokens", f"strength {strength:+.3g}")]):
        ax = fig.add_subplot(grid[0, col])
        ax.axis("off")
        text = "\n".join(_wrapped("".join(state.get(name, [])), 60, 7)) or "(nothing yet)"
        ax.set_title(label, fontsize=9, loc="left")
        ax.text(0, 1, text, va="top", ha="left", fontsize=8, family="monospace", transform=ax.transAxes)
    ax = fig.add_subplot(grid[1, :])
    kl = np.asarray(state.get("kl_per_token", []), dtype=np.float32)
    budget = state.get("kl_budget", 0.0)
    colors = ["#d6604d" if v > budget else "#4393c3" for v in kl]
    ax.bar(np.arange(kl.size), kl, color=colors)
    ax.axhline(budget, color="#b2182b", linestyle="--", linewidth=1)
    measured = state.get("measured_kl")
    # the budget is named in the title, not a legend: a legend sat on the highest bars
    mean = f", mean {measured:.3g} nats" if measured is not None else ""
    ax.set_title(f"KL(unsteered || steered) per token{mean}; dashed: budget {budget:.3g} nats", fontsize=9)
    ax.set_xlabel("unsteered token")
    ax.set_ylabel("nats")
    if curves:
        for col, (x, y, xlabel) in enumerate([("curve_beta", "curve_entropy_beta", "steering strength beta"),
                                              ("curve_temperature", "curve_entropy_temperature", "temperature")]):
            ax = fig.add_subplot(grid[2, col])
            ax.plot(state[x], state[y], marker="o", color="#2166ac")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("action entropy (nats)")
            if x == "curve_temperature":
                ax.set_xscale("log")
    shown = state.get("unsteered_tokens") or state.get("steered_tokens")
    _title(fig, title, state, stale=bool(state.get("stale")) and bool(shown))
    return fig
