"""The cpu kernels of ``fastgan::adain_forward`` / ``adain_backward`` (``torch.ops.fastgan_cpu.adain_fwd`` /
``adain_bwd`` in fastgan._C).

Imported by :mod:`fastgan.backends.cpu`, which has loaded the extension; registers the kernels when the
extension has them. The kernels read NCHW planes in float32/float64: other layouts are transposed in
(half types widened) and results come back NCHW in the compute dtype.
"""
from __future__ import annotations

from typing import Tuple

import torch

from .prims import layout as _layout
from .prims._common import compute_dtype
from .prims.adain import register_adain


def _as_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` NCHW or channels_last through the ``fastgan::relayout`` operator's cpu kernel."""
    return _layout.as_layout(t, channels_last, "cpu")


__all__ = ["adain_fwd", "adain_bwd"]


def _planes(t: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    return _as_layout(t if t.dtype == dt else t.to(dt), channels_last=False)


def adain_fwd(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
              eps: float) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, mean, rstd): y [N, C, H, W] and the statistics [N, C]."""
    return torch.ops.fastgan_cpu.adain_fwd(_planes(x, compute_dtype(x.dtype)), scale, bias, float(eps))


def adain_bwd(dy: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor,
              rstd: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dscale, dbias) of ``sum(y * dy)``."""
    dt = compute_dtype(x.dtype)
    return torch.ops.fastgan_cpu.adain_bwd(_planes(dy, dt), _planes(x, dt), scale, mean, rstd)


if hasattr(torch.ops.fastgan_cpu, "adain_fwd"):
    register_adain("cpu", adain_fwd, adain_bwd, layout=_as_layout)
