"""The ``cpu`` backend: kernel primitives of the C++/OpenMP extension ``fastgan._C``.

The public ops (``fastgan.ops``) validate and normalise arguments and wrap these primitives in
their autograd functions; the primitives themselves are not differentiable. The C++ entry points
(``torch.ops.fastgan_cpu.*``) check their arguments again, so calling them directly is safe.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

import fastgan._C as _C  # loads the kernels and registers torch.ops.fastgan_cpu.*

from .activations import ACTIVATIONS
from .prims.upfirdn2d import UPFIRDN2D

__all__ = ["isa", "relayout", "as_layout", "center_rows_", "upfirdn2d", "bias_act", "bias_act_grad", "bias_act_grad2"]

_ops = torch.ops.fastgan_cpu


def isa() -> str:
    """SIMD level the kernels dispatch to at run time: ``'avx512'``, ``'avx2'`` or ``'scalar'``."""
    return _C.isa()


def relayout(x: torch.Tensor, scale: Optional[torch.Tensor] = None, channels_last: bool = False) -> torch.Tensor:
    """``x * scale[:, :, None, None]`` (or a copy of ``x``) as a new tensor in the requested memory format.

    ``x`` [N, C, H, W] float32/float64, contiguous or channels_last; ``scale`` [N, C] or None. A tiled
    transpose: several times faster than ``x.contiguous(memory_format=...)`` across layouts.
    """
    return _ops.relayout(x, scale, bool(channels_last))


def as_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The CPU tensor ``t`` in the requested memory format: ``t`` itself when it already is, float32/64
    NCHW <-> channels_last through :func:`relayout`, anything else through ``contiguous``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if t.is_contiguous(memory_format=fmt):
        return t
    if t.dim() == 4 and t.dtype in (torch.float32, torch.float64) and (
            t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last)):
        return relayout(t, None, channels_last)
    return t.contiguous(memory_format=fmt)


def center_rows_(dst: torch.Tensor, x: torch.Tensor, shift: torch.Tensor, sums: torch.Tensor) -> None:
    """In one pass: ``dst = x - shift`` in float64 and ``sums += dst.sum(0)``.

    ``x`` (N, D) float32/float64 contiguous; ``dst`` (N, D), ``shift`` (D,) and ``sums`` (D,) float64
    contiguous, none overlapping. The centring step of :class:`fastgan.metrics.FeatureStats`.
    """
    _ops.center_rows_(dst, x, shift, sums)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
              pad: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """``x`` [N,C,H,W] -> upsample by ``up`` (x, y), pad ``pad`` (x0, x1, y0, y1), FIR ``f``, downsample.

    ``f`` is [fh, fw] or separable [ft]; ``gain`` is the total gain. Contiguous and channels_last
    inputs keep their memory format. Same semantics as ``fastgan.backends.ref.upfirdn2d``.
    """
    return _ops.upfirdn2d(x, f, int(up[0]), int(up[1]), int(down[0]), int(down[1]),
                              int(pad[0]), int(pad[1]), int(pad[2]), int(pad[3]), bool(flip_filter), float(gain))


def _clamp_arg(clamp: Optional[float]) -> float:
    return -1.0 if clamp is None else float(clamp)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
             clamp: Optional[float]) -> torch.Tensor:
    """``y = clamp(gain * act(x + b))`` in one pass; ``b`` [x.shape[dim]] or None; keeps x's memory format."""
    return _ops.bias_act(x, b, int(dim), ACTIVATIONS[act].code, float(alpha), float(gain), _clamp_arg(clamp))


def bias_act_grad(dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float,
                  gain: float, clamp: Optional[float]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(dx, db)``: ``dx = dy * gain * act'(x + b)``, zero where the output was clamped; ``db`` is ``dx``
    summed over every dim but ``dim`` in the same pass (None when ``b`` is None)."""
    dx, db = _ops.bias_act_grad(dy, x, b, int(dim), ACTIVATIONS[act].code, float(alpha), float(gain),
                                    _clamp_arg(clamp))
    return dx, (db if b is not None else None)


def bias_act_grad2(g: torch.Tensor, dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                   alpha: float, gain: float, clamp: Optional[float]) -> torch.Tensor:
    """``g * dy * gain * act''(x + b)``, zero where the output was clamped (the x-gradient of bias_act_grad)."""
    return _ops.bias_act_grad2(g, dy, x, b, int(dim), ACTIVATIONS[act].code, float(alpha), float(gain),
                                   _clamp_arg(clamp))


UPFIRDN2D.kernel("cpu")(upfirdn2d)


# --- kernel glue modules: each registers its primitives' cpu kernels when imported (one line each) ---
