"""Host-side helpers shared by the Triton kernels of this package."""
from __future__ import annotations

import os

import torch
import triton.language as tl

# Read once: ``triton.jit`` decides at decoration time whether kernels run in the interpreter.
INTERPRET = os.environ.get("TRITON_INTERPRET", "") == "1"


def acc_type(dtype: torch.dtype):
    """Accumulator type of a kernel reading ``dtype``: float64 for float64, else float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def acc_torch_dtype(dtype: torch.dtype) -> torch.dtype:
    """The torch dtype of :func:`acc_type` (for intermediates kept in the accumulator precision)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` if it covers its storage densely in some dimension order, else a dense copy in that order."""
    like = torch.empty_like(t)  # preserve_format: keeps the strides exactly when t is dense
    return t if like.stride() == t.stride() else like.copy_(t)


def strided_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (shape of the dense tensor ``like``) with the strides of ``like``; copies only when they differ."""
    return t if t.stride() == like.stride() else torch.empty_like(like, dtype=t.dtype).copy_(t)


INT32_LIMIT = 2 ** 31  # read at call time, so tests can lower it to exercise the int64 paths


def needs_int64(*extents: int) -> bool:
    """True when element offsets as large as ``max(extents)`` do not fit int32."""
    return max(extents) >= INT32_LIMIT


def extent(t: torch.Tensor) -> int:
    """One past the largest element offset of ``t`` from its data pointer."""
    return 1 + sum((s - 1) * st for s, st in zip(t.shape, t.stride())) if t.numel() else 0
