"""Glue of the CPU adain kernels (``torch.ops.fastgan_cpu.adain_fwd`` / ``cpu_adain_bwd`` in fastgan._C).

The autograd wrappers live in :mod:`fastgan.ops.adain`.
"""
from __future__ import annotations

import torch

from . import BackendUnavailable, get

get("cpu")
if not hasattr(torch.ops.fastgan_cpu, "adain_fwd"):
    raise BackendUnavailable("fastgan._C was built without adain; rebuild the extension")

__all__ = ["adain_fwd", "adain_bwd"]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def adain_fwd(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float):
    """(y, mean, rstd): y in the compute dtype (float32 for half types), stats [N, C]."""
    return torch.ops.fastgan_cpu.adain_fwd(x.to(_compute_dtype(x.dtype)), scale, bias, eps)


def adain_bwd(dy: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor):
    """(dx, dscale, dbias) of ``sum(y * dy)`` in the compute dtype."""
    return torch.ops.fastgan_cpu.adain_bwd(dy, x, scale, mean, rstd)
