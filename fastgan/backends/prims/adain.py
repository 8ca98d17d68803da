"""``fastgan::adain_forward`` and ``fastgan::adain_backward``: StyleGAN v1 adaptive instance norm.

Per (n, c) plane of ``x`` [N, C, H, W] with ``M = H*W`` values: ``mean``, the biased variance ``var``,
``rstd = rsqrt(var + eps)``, ``xh = (x - mean) * rstd`` and ``y = xh * scale + bias``. Arguments arrive
validated by :func:`fastgan.ops.adain`, ``scale`` and ``bias`` [N, C] already in the dtype of ``x``.

The forward returns ``(y, mean, rstd)``: ``y`` in the dtype and memory format of ``x``, the statistics
[N, C] in the compute dtype (float32 for half types), saved for the backward and not differentiable.
The backward is one kernel pass per plane:

    dbias = sum(dy),   dscale = sum(dy * xh),   dx = scale * rstd * (dy - mean(dy) - xh * mean(dy * xh)).

Its own derivative (a GAN's R1 or path-length term through a StyleGAN v1 generator) is the closed form
of :func:`_backward_vjp` in plain differentiable torch ops, which recomputes the statistics from ``x``,
so every higher order follows by autograd.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from ..library import Primitive
from ._common import Layout, compute_dtype, empty_like_format, finish

__all__ = ["ADAIN_FORWARD", "ADAIN_BACKWARD", "register_adain"]

ADAIN_FORWARD = Primitive(
    "adain_forward",
    "(Tensor x, Tensor scale, Tensor bias, float eps) -> (Tensor, Tensor, Tensor)",
    doc="adaptive instance norm per (n, c) plane; returns y and the plane statistics (mean, rstd)")

ADAIN_BACKWARD = Primitive(
    "adain_backward",
    "(Tensor dy, Tensor x, Tensor scale, Tensor mean, Tensor rstd, float eps) -> (Tensor, Tensor, Tensor)",
    doc="(dx, dscale, dbias) of adain_forward from the saved statistics")

_PLANE = (2, 3)


def _stats_like(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty(x.shape[:2], dtype=compute_dtype(x.dtype))


# ------------------------------------------------------------------------------------------- fake kernels

@ADAIN_FORWARD.register_fake
def _fake(x, scale, bias, eps, backend):
    return empty_like_format(x, x.shape), _stats_like(x), _stats_like(x)


@ADAIN_BACKWARD.register_fake
def _fake_backward(dy, x, scale, mean, rstd, eps, backend):
    return empty_like_format(x, x.shape), scale.new_empty(scale.shape), scale.new_empty(scale.shape)


# ------------------------------------------------------------------------------------------- autograd

def _setup(ctx, inputs, output):
    x, scale, bias, eps, backend = inputs
    _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(x, scale, mean, rstd)
    ctx.args = (eps, backend, bias.dtype)


def _backward(ctx, dy, _dmean, _drstd):
    x, scale, mean, rstd = ctx.saved_tensors
    eps, backend, bias_dtype = ctx.args
    dx, dscale, dbias = ADAIN_BACKWARD(dy, x, scale, mean, rstd, eps, backend=backend)
    return dx, dscale, dbias.to(bias_dtype), None, None


def _backward_vjp(dy: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, eps: float, g_dx: Optional[torch.Tensor],
                  g_dscale: Optional[torch.Tensor], g_dbias: Optional[torch.Tensor]):
    """Gradients w.r.t. (dy, x, scale) of ``<g_dx, dx> + <g_dscale, dscale> + <g_dbias, dbias>``.

    With ``a = mean(dy)``, ``c = mean(dy * xh)`` and per plane ``r = rstd``, ``s = scale``, and for ``g_dx``
    the means ``ga = mean(g)``, ``gx = mean(g * xh)``, ``gd = mean(g * dy)``:

        d_dy    = s r (g - ga - xh gx) + g_dscale xh + g_dbias       (the backward map is symmetric)
        d_scale = M r (gd - ga a - gx c)
        d_x     = v - mean(v),  v = r^2 s (3 gx c xh - (gd - ga a) xh - c g - gx dy) + r g_dscale (dy - c xh)

    ``d_x`` is the derivative through ``xh`` and through ``mean`` and ``rstd`` (centred, because ``x``
    enters through ``x - mean(x)`` only).
    """
    dt = compute_dtype(x.dtype)
    dy_, x_ = dy.to(dt), x.to(dt)
    s = scale.to(dt)[:, :, None, None]
    xc = x_ - x_.mean(_PLANE, keepdim=True)
    r = torch.rsqrt(xc.square().mean(_PLANE, keepdim=True) + eps)
    xh = xc * r
    a, c = dy_.mean(_PLANE, keepdim=True), (dy_ * xh).mean(_PLANE, keepdim=True)
    d_dy = torch.zeros_like(dy_)
    v = torch.zeros_like(x_)
    d_scale = None
    if g_dx is not None:
        g = g_dx.to(dt)
        ga, gx, gd = g.mean(_PLANE, keepdim=True), (g * xh).mean(_PLANE, keepdim=True), (g * dy_).mean(
            _PLANE, keepdim=True)
        d_dy = d_dy + s * r * (g - ga - xh * gx)
        d_scale = (r * (gd - ga * a - gx * c)).flatten(1) * (x.shape[2] * x.shape[3])
        v = v + r * r * s * ((3 * gx * c - (gd - ga * a)) * xh - c * g - gx * dy_)
    if g_dscale is not None:
        gs = g_dscale.to(dt)[:, :, None, None]
        d_dy = d_dy + gs * xh
        v = v + r * gs * (dy_ - c * xh)
    if g_dbias is not None:
        d_dy = d_dy + g_dbias.to(dt)[:, :, None, None]
    d_x = v - v.mean(_PLANE, keepdim=True)
    return (d_dy.to(dy.dtype), d_x.to(x.dtype),
            None if d_scale is None else d_scale.to(scale.dtype))


def _setup_backward(ctx, inputs, output):
    dy, x, scale, mean, rstd, eps, backend = inputs
    ctx.save_for_backward(dy, x, scale)
    ctx.eps = eps


def _backward_backward(ctx, g_dx, g_dscale, g_dbias):
    dy, x, scale = ctx.saved_tensors
    d_dy, d_x, d_scale = _backward_vjp(dy, x, scale, ctx.eps, g_dx, g_dscale, g_dbias)
    return d_dy, d_x, d_scale, None, None, None, None


ADAIN_FORWARD.register_autograd(_backward, setup_context=_setup)
ADAIN_BACKWARD.register_autograd(_backward_backward, setup_context=_setup_backward)


# ------------------------------------------------------------------------------------------- kernel registration

def register_adain(backend: str, forward: Callable[..., Tuple[torch.Tensor, ...]],
                   backward: Callable[..., Tuple[torch.Tensor, ...]], layout: Optional[Layout] = None) -> None:
    """Register ``backend``'s kernels of both operators.

    ``forward(x, scale, bias, eps) -> (y, mean, rstd)`` and ``backward(dy, x, scale, mean, rstd) ->
    (dx, dscale, dbias)`` are only called with a non-empty ``x`` and may return ``y``/``dx`` in the
    compute dtype and any memory format, ``dscale``/``dbias`` in the compute dtype: the kernels
    registered here give the results the memory format (with ``layout(t, channels_last)`` when given)
    and dtype of ``x`` (``scale`` for the [N, C] gradients), and handle empty inputs.
    """
    def fwd(x, scale, bias, eps):
        if x.numel() == 0:
            return empty_like_format(x, x.shape), _stats_like(x).zero_(), _stats_like(x).zero_()
        y, mean, rstd = forward(x, scale, bias, eps)
        return finish(y, x, layout), mean, rstd

    def bwd(dy, x, scale, mean, rstd, eps):
        if x.numel() == 0:  # sums over empty planes
            return empty_like_format(x, x.shape, zero=True), torch.zeros_like(scale), torch.zeros_like(scale)
        dx, dscale, dbias = backward(dy, x, scale, mean, rstd)
        return finish(dx, x, layout), dscale.to(scale.dtype), dbias.to(scale.dtype)

    ADAIN_FORWARD.kernel(backend)(fwd)
    ADAIN_BACKWARD.kernel(backend)(bwd)
