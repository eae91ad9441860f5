"""The steering edit, in one function every path uses (a forward hook, an nnsight trace,
a remote generation), and the checks shared by the steering methods.

``steer(h, v, shift, project) = h + (shift - project * (h . v)) v``:
``mode="add"`` is (shift, project) = (strength, 0) with v as given; ``mode="ablate"`` is
(0, strength) with v unit length, so strength 1 removes the direction. It is plain torch
with no branch, so it runs inside a trace body (see `_trace.py`). `edit_hook` is the same
edit as a forward hook, for the local fast paths (plain ``generate``, no trace).
"""
from __future__ import annotations

import numpy as np
import torch

from ...errors import InputError
from ...model import Model
from ..._adapter import get_path
from .._checks import shown
from .._trace import check_vector, residual

MODES = ("add", "ablate")
POSITIONS = ("last", "all")
MAX_NEW_TOKENS = 2048


def steer(h, vec, shift, project):
    """The edit: ``h + (shift - project * (h . vec)) vec`` over the last dimension."""
    return h + (shift - project * (h @ vec)[..., None]) * vec


def coefficients(strength: float, mode: str) -> tuple[float, float]:
    """`steer`'s (shift, project) for a strength and a mode."""
    return (strength, 0.0) if mode == "add" else (0.0, strength)


def edit_hook(vec: torch.Tensor, shift, project, positions: str):
    """A forward hook that applies `steer` to a block's output: at its last position
    (``"last"``: the last prompt position in the first forward, the one new token in each
    later one, as the KV cache runs) or at every position (``"all"``). `shift` and
    `project` are numbers, or [rows, 1, 1] tensors for one strength per row."""
    first = -1 if positions == "last" else 0

    def hook(module, args, output):
        h = residual(output).clone()
        h[:, first:, :] = steer(h[:, first:, :], vec, shift, project)
        return h if torch.is_tensor(output) else (h,) + tuple(output[1:])

    return hook


def add(h: torch.Tensor, v: torch.Tensor, gamma: float) -> torch.Tensor:
    """ASC / EAST edit: ``h + gamma * v`` (v broadcast over the leading dimensions)."""
    return steer(h, v.to(h.dtype), gamma, 0.0)


def ablate_direction(h: torch.Tensor, r: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Directional ablation: ``h - scale * (h . r_hat) r_hat``; scale 1 removes the direction."""
    return steer(h, (r / r.norm()).to(h.dtype), 0.0, scale)


def _edit_vector(model: Model, vector, mode: str, dtype=None) -> torch.Tensor:
    """The vector on the model's device, in `dtype` (default: the model's); unit length for ablation."""
    vec = check_vector(model, vector)
    if mode == "ablate":
        vec = vec / vec.norm()
    return vec.to(device=model.device, dtype=dtype or model.hf.dtype)


def _block_module(model: Model, layer: int) -> torch.nn.Module:
    """The torch module of block `layer` (for the local fast path's forward hook)."""
    return get_path(model.hf, model.adapter.blocks)[layer]


def _layer(model: Model, layer) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise InputError(f"layer must be one block index (a whole number), not {shown(layer)}.")
    return model.check_layers(int(layer))[0]


def _layers(model: Model, layer) -> list[int]:
    """One block index, or several (an ablation usually edits many): sorted, each once."""
    if layer is None:  # check_layers' "all of them" is not a steering default
        raise InputError("layer must be a block index or a list of them, not None.")
    return model.check_layers(layer, "layer")


def check_room(model: Model, prompt_tokens: int, new_tokens: int, what: str = "The prompt",
               name: str = "max_new_tokens") -> None:
    """The prompt and its continuation (`name`, the parameter that asks for it) fit in what the model reads."""
    limit = model.max_tokens
    if limit and prompt_tokens + new_tokens > limit:
        raise InputError(f"{what} ({prompt_tokens:,} tokens) plus {name}={new_tokens} is more than "
                         f"{model.name} reads ({limit:,}): shorten it or ask for fewer new tokens.")


def _prompts(prompts, what="prompts") -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    prompts = list(prompts or [])
    if not prompts:
        raise InputError(f"The list of {what} is empty: give at least one prompt.")
    return prompts
