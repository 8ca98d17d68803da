"""Glue of the fused CPU filtered_lrelu kernel (``torch.ops.fastgan_cpu.filtered_lrelu`` in fastgan._C).

Called by the autograd wrappers of :mod:`fastgan.ops.filtered_lrelu` with validated arguments and
filters already in correlation order. Half types run in float32 and are cast back.
"""
from __future__ import annotations

import logging
from typing import Optional, Tuple

import torch

from . import BackendUnavailable, get
from .cpu import as_layout

get("cpu")  # loads fastgan._C (raises BackendUnavailable with the reason when it cannot)
if not hasattr(torch.ops.fastgan_cpu, "filtered_lrelu"):
    raise BackendUnavailable("fastgan._C was built without filtered_lrelu; rebuild the extension")

_OP = torch.ops.fastgan_cpu.filtered_lrelu
_log = logging.getLogger(__name__)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def fused(x: torch.Tensor, b: Optional[torch.Tensor], f1: torch.Tensor, f2: torch.Tensor, up: int, down: int,
          pad1, pad2, gain: float, slope: float, clamp: Optional[float], signs: Optional[torch.Tensor],
          write_signs: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``y = FIR_f2(act(gain * FIR_f1(up(x + b))))``, downsampled; see fastgan/ops/filtered_lrelu.py."""
    if f1.ndim == 2 or f2.ndim == 2:
        _log.debug("filtered_lrelu: 2-D filter(s) %s, %s take the generic (non-separable) path",
                   list(f1.shape), list(f2.shape))
    dt = _compute_dtype(x.dtype)
    xc = as_layout(x, channels_last=False) if x.dtype == dt else x.to(dt)   # the kernel reads NCHW planes
    bc = None if b is None else b.to(dt)
    y, s = _OP(xc, bc, f1, f2, up, down, list(pad1), list(pad2), gain, slope, -1.0 if clamp is None else clamp,
               signs, write_signs)
    return y.to(x.dtype), s
