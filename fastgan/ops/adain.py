"""``adain``: adaptive instance normalisation of StyleGAN v1.

Per (n, c) plane: ``y = (x - mean) * rsqrt(var + eps) * scale[n, c] + bias[n, c]`` with the biased
variance ``var = mean((x - mean)**2)`` over H and W, i.e. ``eps`` is added to the variance, as in
the NVlabs v1 instance norm (``x - mean`` followed by ``* rsqrt(mean(x**2) + eps)``).
The op is pure: StyleGAN v1 styles are applied as ``scale = style[:, 0] + 1``, and that ``+ 1``
belongs to the network, not to this op.

The kernel backends run the device-neutral operators of :mod:`fastgan.backends.prims.adain`;
``ref`` runs the composite of plain torch ops. Autocast: the op is outside autocast's cast lists on
every backend (``ref`` included): it computes half types in float32 and returns the dtype of ``x``.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from ..backends.prims import adain as _prim
from ..backends.prims._common import kernel_backend
from ..backends.ref.adain import adain as _ref_adain
from ._args import check_float, check_same_device, check_tensor

__all__ = ["adain"]


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8,
          impl: Optional[str] = None) -> torch.Tensor:
    """Normalise each (n, c) plane of ``x`` to zero mean and unit variance, then ``* scale + bias``.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64, any memory format.
        scale, bias: [N, C] per-sample, per-channel affine parameters (differentiable), rounded to the
            dtype of ``x`` first on every backend.
        eps: added to the biased variance before the reciprocal square root.
        impl: backend ('ref', 'cpu', 'triton', 'cuda', 'auto'); None defers to ``fastgan.backends``.

    Returns:
        Tensor of the shape, dtype and memory format of ``x``.
    """
    op = "adain"
    check_tensor(x, "x", op, ndim=4)
    for name, t in (("scale", scale), ("bias", bias)):
        check_tensor(t, name, op, ndim=2)
        check_same_device(t, name, x, op)
        if tuple(t.shape) != tuple(x.shape[:2]):
            raise ValueError(f"{op}: {name} must have shape [N, C] = {list(x.shape[:2])}, got {list(t.shape)}")
    eps = check_float(eps, "eps", op)
    if eps < 0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    scale, bias = scale.to(x.dtype), bias.to(x.dtype)
    name = kernel_backend("adain_forward", backends.resolve(impl, x, op), impl)
    if name == "ref":
        return _ref_adain(x, scale, bias, eps)
    return _prim.ADAIN_FORWARD(x, scale, bias, eps, backend=name)[0]
