"""Helpers shared by the traces in methods/: reading a block's residual output,
checking a user's vector (a steering vector, a heatmap direction) before any trace, and
running a half-precision model in float32 where a result is a difference of nearly
equal numbers.

The rule for a trace body (what runs inside ``with model.trace(...)`` or
``model.generate(...)``, here or on NDIF): plain torch on the saved envoys, Python
values and actwidgets' pure helpers (`residual`, `apply_head`, `steer`) -- those travel
to NDIF by value, as `Model.trace` registers the package with cloudpickle -- but never
the `Model` (it holds a lock), and no branch on a tensor's value (a remote body is
compiled once). Open traces with `Model.trace`, generations with `Model.where`'s arguments.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..errors import InputError


def residual(block_output) -> torch.Tensor:
    """A block's residual-stream output: a tensor in transformers 5, a tuple before it."""
    return block_output[0] if isinstance(block_output, tuple) else block_output


def unembed_only(unembed, columns: list[int]) -> None:
    """Inside a trace: the unembedding computes these vocabulary columns only, and the model's
    logits hold them in this order. A method that reads a few logits (a logit difference, a
    few action tokens) then skips the rest of the [d, vocab] matmul, and its backward: on the
    default model that matmul is a fifth of a short prompt's forward. What the model does to
    its logits afterwards (soft-capping, scaling) acts on each logit alone, so it still
    applies. `unembed` is the envoy of the model's output embedding (`Model.unembed`)."""
    bias = unembed.bias
    unembed.skip(torch.nn.functional.linear(unembed.input, unembed.weight[columns],
                                            None if bias is None else bias[columns]))


def row_labels(layers: list[int], with_embeddings: bool) -> list[str]:
    return (["emb"] if with_embeddings else []) + [str(layer) for layer in layers]


def check_vector(model, vector, what: str = "The steering vector") -> torch.Tensor:
    """The vector as a float32 tensor [d_model]; InputError if it cannot steer this model."""
    if vector is None:
        raise InputError(f"{what} is missing: pass a vector of {model.d_model} numbers (d_model).")
    if torch.is_tensor(vector) and vector.is_meta:
        raise InputError(f"{what} is on the meta device: it has a shape but no values.")
    if _not_real(vector):
        raise InputError(f"{what} must hold real numbers, not booleans or complex numbers.")
    try:
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, which the check below names
            vec = torch.as_tensor(np.asarray(vector.detach().float().cpu() if torch.is_tensor(vector) else vector,
                                             dtype=np.float32)).flatten()
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a list or array of numbers, not {type(vector).__name__}.") from None
    if vec.numel() != model.d_model:
        raise InputError(f"{what} has {vec.numel()} entries; {model.name} needs {model.d_model} (d_model).")
    if not torch.isfinite(vec).all():
        raise InputError(f"{what} contains NaN or infinite values.")
    norm = vec.norm()
    if norm == 0:
        raise InputError(f"{what} is all zeros: it would not change anything.")
    if not torch.isfinite(norm):  # its length, not an entry, overflows: every bound would read NaN
        raise InputError(f"{what} is too long for float32 (its largest entry is {float(vec.abs().max()):.3g}): "
                         "scale it down; the strength multiplies it.")
    return vec


def _not_real(vector) -> bool:
    """Booleans or complex numbers, which a cast to float32 would make numbers of silently."""
    if torch.is_tensor(vector):
        return vector.dtype == torch.bool or vector.is_complex()
    kind = getattr(getattr(vector, "dtype", None), "kind", None)  # numpy
    if kind is not None:
        return kind in ("b", "c")
    return isinstance(vector, (list, tuple)) and any(isinstance(x, (bool, complex)) for x in vector)


@contextlib.contextmanager
def float32(model):
    """Compute in float32 on a bf16 / fp16 model, for the length of the block.

    Measured KL, finite-difference curvature and the calibration search subtract nearly
    equal numbers: in bf16 (8 bits of mantissa) they are rounding noise (a KL of 4.5e-6
    reads 6.6e-3). The model's half-precision parameters and buffers are cast to float32
    and back, which is lossless, so the numbers are those of the user's bf16 weights,
    computed exactly; it costs twice the weights' memory while it runs. Remote models
    compute in their own dtype (NDIF's copy cannot be cast from here). Hold `model.lock`.
    """
    if model.remote:
        yield
        return
    hf = model.hf
    tensors = [t for t in list(hf.parameters()) + list(hf.buffers())
               if t.is_floating_point() and t.dtype in (torch.bfloat16, torch.float16)]
    dtypes = [t.dtype for t in tensors]
    for t in tensors:
        t.data = t.data.float()
    try:
        yield
    finally:
        for t, dtype in zip(tensors, dtypes):
            t.data = t.data.to(dtype)


def float32_dtype(model) -> torch.dtype:
    """The residual stream's dtype inside a `float32` block, for the vectors added to it:
    float32 here, a remote model's own (its copy on NDIF is not cast)."""
    return model.hf.dtype if model.remote else torch.float32


@contextlib.contextmanager
def after_each_block(model, progress, passes: int = 1):
    """Call ``progress(fraction)`` after each block of the local forwards run inside (`passes`
    of them): one long prompt's forward then moves a progress bar, block by block, and
    `progress` may raise (`Cancelled`) to stop that forward where it is rather than at its
    end. Enter it holding ``model.lock``, so no other trace sees the hooks. Nothing on a
    remote model (its forward runs on the server) or without `progress`."""
    if progress is None or model.remote:
        yield
        return
    modules = list(model.blocks._module)
    total, done = len(modules) * passes, [0]

    def hook(*_):
        done[0] += 1
        progress(min(done[0] / total, 1.0))

    handles = [module.register_forward_hook(hook) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
