"""Helpers shared by the traces in methods/: reading a block's residual output."""
from __future__ import annotations

import torch


def residual(block_output) -> torch.Tensor:
    """A block's residual-stream output: a tensor in transformers 5, a tuple before it."""
    return block_output[0] if isinstance(block_output, tuple) else block_output


def row_labels(layers: list[int], with_embeddings: bool) -> list[str]:
    return (["emb"] if with_embeddings else []) + [str(layer) for layer in layers]
