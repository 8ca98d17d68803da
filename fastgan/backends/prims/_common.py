"""Contract helpers shared by the kernel registrations of several operators.

Every kernel backend returns the input's memory format and dtype, computes half types in float32,
and an automatic backend choice without a kernel for an operator runs ``ref`` instead.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .. import current
from ..library import primitive

Layout = Callable[[torch.Tensor, bool], torch.Tensor]


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """channels_last for a channels_last (and not also contiguous) 4-D tensor, else contiguous."""
    return (torch.channels_last if t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a kernel computes ``dtype`` in: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def empty_like_format(like: torch.Tensor, shape, zero: bool = False) -> torch.Tensor:
    """A new tensor of ``shape`` with the dtype, device and memory format of ``like`` (zero-filled if asked)."""
    t = like.new_zeros(shape) if zero else like.new_empty(shape)
    return t.contiguous(memory_format=memory_format_of(like))


def finish(y: torch.Tensor, like: torch.Tensor, layout: Optional[Layout] = None) -> torch.Tensor:
    """A kernel result ``y`` in the memory format (``layout(y, channels_last)`` when given) and dtype of ``like``."""
    fmt = memory_format_of(like)
    if not y.is_contiguous(memory_format=fmt):
        y = layout(y, fmt == torch.channels_last) if layout is not None else y.contiguous(memory_format=fmt)
    return y.to(like.dtype)


@torch.compiler.assume_constant_result
def kernel_backend(op: str, name: str, impl: Optional[str]) -> str:
    """``name`` (a resolved backend) for operator ``op``, or ``'ref'`` when ``auto`` chose a backend that
    has no kernel for it (e.g. the CUDA extension without this op). An explicit choice stays, so the
    operator raises :class:`~fastgan.backends.BackendUnavailable` naming it."""
    if name == "ref" or name in primitive(op).backends():
        return name
    request = current() if impl is None or impl == "cuda" else impl.lower()
    return "ref" if request == "auto" else name
