"""The cpu kernel of ``fastgan::filtered_lrelu`` (``torch.ops.fastgan_cpu.filtered_lrelu`` in fastgan._C).

Imported by :mod:`fastgan.backends.cpu`, which has loaded the extension; registers the kernel when the
extension has it (an older build without it leaves the operator without a cpu kernel, which then
raises :class:`~fastgan.backends.BackendUnavailable` when asked for).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from .prims import layout as _layout
from .prims._common import compute_dtype
from .prims.filtered_lrelu import register_fused


def _as_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` NCHW or channels_last through the ``fastgan::relayout`` operator's cpu kernel."""
    return _layout.as_layout(t, channels_last, "cpu")


__all__ = ["fused"]


def fused(x: torch.Tensor, b: Optional[torch.Tensor], f1: torch.Tensor, f2: torch.Tensor, up: int, down: int,
          pad1: Sequence[int], pad2: Sequence[int], gain: float, slope: float, clamp: Optional[float],
          signs: Optional[torch.Tensor], write_signs: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, signs) of the fused pipeline (see :func:`fastgan.backends.prims.filtered_lrelu.register_fused`).

    The kernel reads NCHW planes in float32/float64: other layouts are transposed in, half types widened;
    ``y`` comes back NCHW in the compute dtype.
    """
    dt = compute_dtype(x.dtype)
    xc = _as_layout(x if x.dtype == dt else x.to(dt), channels_last=False)
    bc = None if b is None else b.to(dt)
    return torch.ops.fastgan_cpu.filtered_lrelu(xc, bc, f1, f2, int(up), int(down), list(pad1), list(pad2),
                                                float(gain), float(slope), -1.0 if clamp is None else float(clamp),
                                                signs, bool(write_signs))


if hasattr(torch.ops.fastgan_cpu, "filtered_lrelu"):
    register_fused("cpu", fused, layout=_as_layout)
