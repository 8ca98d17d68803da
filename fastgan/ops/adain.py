"""``adain``: adaptive instance normalisation of StyleGAN v1.

Per (n, c) plane: ``y = (x - mean) * rsqrt(var + eps) * scale[n, c] + bias[n, c]`` with the biased
variance ``var = mean((x - mean)**2)`` over H and W, i.e. ``eps`` is added to the variance, as in
the NVlabs v1 instance norm (``x - mean`` followed by ``* rsqrt(mean(x**2) + eps)``).
The op is pure: StyleGAN v1 styles are applied as ``scale = style[:, 0] + 1``, and that ``+ 1``
belongs to the network, not to this op.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from ..backends.ref.adain import adain as _ref_adain
from ._args import check_float, check_same_device, check_tensor
from .filtered_lrelu import kernels_for

__all__ = ["adain"]

_KERNEL_MODULES = {"cpu": "fastgan.backends.cpu_adain", "triton": "fastgan.backends.triton.adain"}


class _AdaIN(torch.autograd.Function):
    """Kernel forward saving the per-plane mean and 1/std; fused kernel backward."""

    @staticmethod
    def forward(ctx, x, scale, bias, kernels, eps):
        y, mean, rstd = kernels.adain_fwd(x, scale, bias, eps)
        xc = x.to(y.dtype)
        ctx.save_for_backward(xc, scale, mean, rstd)
        ctx.args = (kernels, eps, x.dtype, scale.dtype, bias.dtype)
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, scale, mean, rstd = ctx.saved_tensors
        kernels, eps, xt, st, bt = ctx.args
        dx, ds, db = _AdaINGrad.apply(dy.to(x.dtype), x, scale, mean, rstd, kernels, eps)
        return dx.to(xt), ds.to(st), db.to(bt), None, None


class _AdaINGrad(torch.autograd.Function):
    """(dx, dscale, dbias) from dy by the kernel; its derivative recomputes the ref formula, so
    every order (R1 through a StyleGAN v1 generator) works."""

    @staticmethod
    def forward(ctx, dy, x, scale, mean, rstd, kernels, eps):
        ctx.save_for_backward(dy, x, scale)
        ctx.eps = eps
        return kernels.adain_bwd(dy, x, scale, mean, rstd)

    @staticmethod
    def backward(ctx, g_dx, g_ds, g_db):
        dy, x, scale = ctx.saved_tensors
        higher = torch.is_grad_enabled()
        with torch.enable_grad():
            dy_, x_, s_ = (t.detach().requires_grad_(True) for t in (dy, x, scale))
            y = _ref_adain(x_, s_, torch.zeros_like(s_), ctx.eps)
            dx, ds = torch.autograd.grad(y, (x_, s_), dy_, create_graph=True)
            terms = [(a * g).sum() for a, g in ((dx, g_dx), (ds, g_ds), (dy_.sum(dim=(2, 3)), g_db)) if g is not None]
            d_dy, d_x, d_s = torch.autograd.grad(sum(terms), (dy_, x_, s_), allow_unused=True, create_graph=higher)
        return d_dy, d_x, d_s, None, None, None, None


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float = 1e-8,
          impl: Optional[str] = None) -> torch.Tensor:
    """Normalise each (n, c) plane of ``x`` to zero mean and unit variance, then ``* scale + bias``.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64.
        scale, bias: [N, C] per-sample, per-channel affine parameters (differentiable).
        eps: added to the biased variance before the reciprocal square root.
        impl: backend ('ref', 'cpu', 'triton', 'cuda', 'auto'); None defers to ``fastgan.backends``.

    Returns:
        Tensor of the shape and dtype of ``x``.
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
    kernels = kernels_for(backends.resolve(impl, x, op), impl, op, _KERNEL_MODULES)
    if kernels is None:
        return _ref_adain(x, scale, bias, eps)
    return _AdaIN.apply(x, scale, bias, kernels, eps)
