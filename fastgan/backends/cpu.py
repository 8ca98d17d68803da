"""The ``cpu`` backend: kernel primitives of the C++/OpenMP extension ``fastgan._C``.

The public ops (``fastgan.ops``) validate and normalise arguments; the functions here are registered
as the ``cpu`` kernels of the ``torch.ops.fastgan`` operators, whose autograd lives with their schemas
in ``fastgan.backends.prims`` (the kernels themselves are not differentiable). The C++ entry points
(``torch.ops.fastgan_cpu.*``) check their arguments again, so calling them directly is safe.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

import fastgan._C as _C  # loads the kernels and registers torch.ops.fastgan_cpu.*

from .activations import ACTIVATIONS
from .prims import bias_act as ba
from .prims.upfirdn2d import UPFIRDN2D

__all__ = ["isa", "upfirdn2d", "bias_act", "bias_act_grad", "bias_act_grad2"]

_ops = torch.ops.fastgan_cpu


def isa() -> str:
    """SIMD level the kernels dispatch to at run time: ``'avx512'``, ``'avx2'`` or ``'scalar'``."""
    return _C.isa()


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
    """``y = clamp(gain * act(x + b))`` in one pass; ``b`` [x.shape[dim]] (x's dtype) or None; x's layout."""
    return _ops.bias_act(ba.dense(x), b, int(dim), ACTIVATIONS[act].code, float(alpha), float(gain),
                         _clamp_arg(clamp))


def bias_act_grad(dy: torch.Tensor, saved: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                  alpha: float, gain: float, clamp: Optional[float],
                  from_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(dx, db)`` of bias_act (see :mod:`fastgan.backends.prims.bias_act`).

    One pass of the C++ kernel, from ``x`` or reading the piecewise-constant derivative off the
    output ``y``, with ``db`` summed in the same pass (in chunks per thread;
    :func:`~fastgan.backends.prims.bias_act.channel_sum` instead under deterministic algorithms).
    """
    saved = ba.dense(saved)
    if from_output:
        bound = -1.0 if clamp is None else ba.saturation(clamp, saved.dtype)
        dx, db = _ops.bias_act_grad_y(dy, saved, b, int(dim), ba.negative_slope(act, alpha), float(gain), bound)
    else:
        dx, db = _ops.bias_act_grad(dy, saved, b, int(dim), ACTIVATIONS[act].code, float(alpha), float(gain),
                                    _clamp_arg(clamp))
    if b is not None and torch.are_deterministic_algorithms_enabled():
        db = ba.channel_sum(dx, dim, b.dtype)  # the kernel's per-thread chunks depend on the thread count
    return dx, db


def bias_act_grad2(g: torch.Tensor, dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                   alpha: float, gain: float, clamp: Optional[float]) -> torch.Tensor:
    """``g * dy * gain * act''(x + b)``, zero where the output was clamped (the x-gradient of bias_act_grad)."""
    return _ops.bias_act_grad2(g, dy, ba.dense(x), b, int(dim), ACTIVATIONS[act].code, float(alpha), float(gain),
                               _clamp_arg(clamp))


UPFIRDN2D.kernel("cpu")(upfirdn2d)
ba.BIAS_ACT.kernel("cpu")(bias_act)
ba.BIAS_ACT_GRAD.kernel("cpu")(bias_act_grad)
ba.BIAS_ACT_GRAD2.kernel("cpu")(bias_act_grad2)


# --- kernel glue modules: each registers its primitives' cpu kernels when imported (one line each) ---
from . import cpu_adain, cpu_filtered_lrelu  # noqa: E402,F401
from . import cpu_modconv, cpu_stats  # noqa: E402,F401
