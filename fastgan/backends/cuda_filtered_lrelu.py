"""The fused filtered_lrelu primitive of the CUDA extension (``fastgan._C_cuda``).

Called by the autograd wrappers of :mod:`fastgan.ops.filtered_lrelu` with validated arguments and
filters already in correlation order; every dtype runs natively (half types compute in float32).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .cuda import _C  # raises ImportError saying how to build fastgan._C_cuda when it is missing

__all__ = ["fused"]


def fused(x: torch.Tensor, b: Optional[torch.Tensor], f1: torch.Tensor, f2: torch.Tensor, up: int, down: int,
          pad1, pad2, gain: float, slope: float, clamp: Optional[float], signs: Optional[torch.Tensor],
          write_signs: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``y = FIR_f2(act(gain * FIR_f1(up(x + b))))``, downsampled; see fastgan/ops/filtered_lrelu.py.

    Returns ``(y, signs)``: the 2-bit activation codes [N, C, mid_h, ceil(mid_w/4)] uint8 when
    ``write_signs``, else an empty uint8 tensor. Given ``signs``, the stored codes replace the activation.
    """
    return _C.filtered_lrelu(x, b, f1, f2, int(up), int(down), list(pad1), list(pad2), float(gain), float(slope),
                             None if clamp is None else float(clamp), signs, bool(write_signs))
