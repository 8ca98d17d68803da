"""The ``cuda`` backend: kernel primitives of the CUDA extension ``fastgan._C_cuda``.

The functions take already validated, normalised arguments (see ``fastgan.ops``) and are registered as
the ``cuda`` kernels of the ``torch.ops.fastgan`` operators, whose autograd lives with their schemas in
``fastgan.backends.prims``. All tensors must be on one CUDA device.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from .activations import ACTIVATIONS
from .prims import bias_act as ba
from .prims.upfirdn2d import UPFIRDN2D

try:
    from .. import _C_cuda as _C
except ImportError as e:  # the loader reports this as "cuda unavailable: ..."
    raise ImportError(
        f"fastgan._C_cuda is not built ({e}); it needs a CUDA build of torch and nvcc: "
        "FASTGAN_BUILD_CUDA=1 pip install --no-build-isolation -e .") from e

__all__ = ["upfirdn2d", "bias_act", "bias_act_grad", "bias_act_grad2"]


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
              pad: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """``x`` [N,C,H,W]; ``f`` [fh,fw] or [ft] (separable); up/down (x, y); pad (x0, x1, y0, y1); total ``gain``.

    Returns [N, C, (H*upy+y0+y1-fh+downy)//downy, (W*upx+x0+x1-fw+downx)//downx] in x's dtype and memory format.
    """
    return _C.upfirdn2d(x, f, list(up), list(down), list(pad), bool(flip_filter), float(gain))


def _clamp(clamp: Optional[float]) -> Optional[float]:
    return None if clamp is None else float(clamp)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
             clamp: Optional[float]) -> torch.Tensor:
    """``clamp(act(x + b) * gain)``, shape, dtype and (dense) layout of ``x``."""
    return _C.bias_act(ba.dense(x), b, dim, ACTIVATIONS[act].code, float(alpha), float(gain), _clamp(clamp))


def bias_act_grad(dy: torch.Tensor, saved: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                  alpha: float, gain: float, clamp: Optional[float],
                  from_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(dx, db)`` of bias_act (see :mod:`fastgan.backends.prims.bias_act`).

    From ``x``: the CUDA kernel, whose ``db`` reduction adds with ``atomicAdd`` (order-dependent);
    under deterministic algorithms ``db`` is summed from ``dx`` by torch's reduction instead. From the
    output: :func:`~fastgan.backends.prims.bias_act.grad_from_output` in PyTorch ops (the extension
    has no kernel reading ``y``).
    """
    saved = ba.dense(saved)
    if from_output:
        dx = ba.grad_from_output(dy, saved, act, alpha, gain, clamp)
        return dx, ba.bias_grad(dx, b, dim)
    dx, db = _C.bias_act_grad(dy, saved, b, dim, ACTIVATIONS[act].code, float(alpha), float(gain), _clamp(clamp))
    if b is None or torch.are_deterministic_algorithms_enabled():
        db = ba.bias_grad(dx, b, dim)
    return dx, db


def bias_act_grad2(g: torch.Tensor, dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                   alpha: float, gain: float, clamp: Optional[float]) -> torch.Tensor:
    """``g*dy*gain*act''(x+b)``, zero where the output was clamped (the x-gradient of :func:`bias_act_grad`)."""
    return _C.bias_act_grad2(g, dy, ba.dense(x), b, dim, ACTIVATIONS[act].code, float(alpha), float(gain),
                             _clamp(clamp))


UPFIRDN2D.kernel("cuda")(upfirdn2d)
ba.BIAS_ACT.kernel("cuda")(bias_act)
ba.BIAS_ACT_GRAD.kernel("cuda")(bias_act_grad)
ba.BIAS_ACT_GRAD2.kernel("cuda")(bias_act_grad2)


# --- kernel glue modules: each registers its primitives' cuda kernels when imported (one line each) ---
from . import cuda_filtered_lrelu  # noqa: E402,F401
