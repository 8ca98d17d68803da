"""The cuda kernel of ``fastgan::filtered_lrelu`` (the fused primitive of ``fastgan._C_cuda``).

Imported by :mod:`fastgan.backends.cuda`; every dtype runs natively (half types compute in float32)
and ``y`` comes back in the memory format of ``x``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .cuda import _C  # raises ImportError saying how to build fastgan._C_cuda when it is missing
from .prims.filtered_lrelu import register_fused

__all__ = ["fused"]


def fused(x: torch.Tensor, b: Optional[torch.Tensor], f1: torch.Tensor, f2: torch.Tensor, up: int, down: int,
          pad1: Sequence[int], pad2: Sequence[int], gain: float, slope: float, clamp: Optional[float],
          signs: Optional[torch.Tensor], write_signs: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, signs) of the fused pipeline (see :func:`fastgan.backends.prims.filtered_lrelu.register_fused`).

    ``signs`` out: the 2-bit codes [N, C, mid_h, ceil(mid_w/4)] uint8 when ``write_signs``, else empty.
    """
    return _C.filtered_lrelu(x, b, f1, f2, int(up), int(down), list(pad1), list(pad2), float(gain), float(slope),
                             None if clamp is None else float(clamp), signs, bool(write_signs))


if hasattr(_C, "filtered_lrelu"):
    register_fused("cuda", fused)
