"""Helpers shared by the traces in methods/: reading a block's residual output, and
checking a user's vector (a steering vector, a heatmap direction) before any trace."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def residual(block_output) -> torch.Tensor:
    """A block's residual-stream output: a tensor in transformers 5, a tuple before it."""
    return block_output[0] if isinstance(block_output, tuple) else block_output


def row_labels(layers: list[int], with_embeddings: bool) -> list[str]:
    return (["emb"] if with_embeddings else []) + [str(layer) for layer in layers]


def check_vector(model, vector, what: str = "The steering vector") -> torch.Tensor:
    """The vector as a float32 tensor [d_model]; InputError if it cannot steer this model."""
    if vector is None:
        raise InputError(f"{what} is missing: pass a vector of {model.d_model} numbers (d_model).")
    try:
        vec = torch.as_tensor(np.asarray(vector.detach().cpu() if torch.is_tensor(vector) else vector,
                                         dtype=np.float32)).flatten()
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a list or array of numbers, not {type(vector).__name__}.") from None
    if vec.numel() != model.d_model:
        raise InputError(f"{what} has {vec.numel()} entries; {model.name} needs {model.d_model} (d_model).")
    if not torch.isfinite(vec).all():
        raise InputError(f"{what} contains NaN or infinite values.")
    if vec.norm() == 0:
        raise InputError(f"{what} is all zeros: it would not change anything.")
    return vec
