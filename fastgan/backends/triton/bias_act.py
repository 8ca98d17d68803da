"""Triton bias_act: one elementwise pass over the storage of ``x`` (any layout) per call.

Every tensor of a call shares the strides of ``x`` (made dense first when it is not), so storage
offset ``k`` is the same logical element in each of them. A dense tensor's storage is
[outer, C, inner] with ``C = x.shape[dim]`` and ``inner = x.stride(dim)``, whatever ``dim`` and the
memory format are; tiles of that 3-D view get their bias channel for free.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ..activations import ACTIVATIONS
from ..prims import bias_act as ba
from ._util import INTERPRET, acc_type, needs_int64

# Elements per program. The interpreter pays per program, so it gets bigger blocks.
_BLOCK = 8192 if INTERPRET else 1024

_SELU_ALPHA = tl.constexpr(1.6732632423543772848170429916717)
_SELU_SCALE = tl.constexpr(1.0507009873554804934193349852946)
_SOFTPLUS_LINEAR = tl.constexpr(20.0)  # softplus(z) = z above this, as torch.nn.functional.softplus


@triton.jit
def _const(value: tl.constexpr, like):
    """A Python constant in the precision of ``like`` (a bare float literal would be rounded to float32)."""
    return tl.full([], value, like.dtype)


@triton.jit
def _expm1(z):
    """exp(z) - 1 without cancellation near 0 (Kahan's trick)."""
    u = tl.exp(z)
    um1 = u - 1.0
    exact = (u == 1.0) | (um1 == -1.0)    # the quotient below is 0/0 or 0*inf there
    r = um1 * z / tl.log(tl.where(exact, 2.0, u))
    return tl.where(u == 1.0, z, tl.where(um1 == -1.0, -1.0, r))


@triton.jit
def _log1p(u):
    """log(1 + u) for u >= 0 without cancellation for small u (Goldberg's trick)."""
    w = 1.0 + u
    return tl.where(w == 1.0, u, tl.log(w) * u / tl.where(w == 1.0, 1.0, w - 1.0))


@triton.jit
def _sigmoid(z):
    e = tl.exp(-tl.abs(z))                # never overflows
    r = 1.0 / (1.0 + e)
    return tl.where(z >= 0, r, e * r)


@triton.jit
def _tanh(z):
    e = _expm1(-2.0 * tl.abs(z))
    t = -e / (2.0 + e)
    return tl.where(z < 0, -t, t)


@triton.jit
def _act(z, alpha, ACT: tl.constexpr):
    """act(z); ACT is the code of fastgan.backends.activations."""
    if ACT == 0:
        y = z
    elif ACT == 1:
        y = tl.where(z > 0, z, 0.0)
    elif ACT == 2:
        y = tl.where(z > 0, z, z * alpha)
    elif ACT == 3:
        y = _tanh(z)
    elif ACT == 4:
        y = _sigmoid(z)
    elif ACT == 5:
        y = tl.where(z > 0, z, _expm1(tl.minimum(z, 0.0)))
    elif ACT == 6:
        y = _const(_SELU_SCALE, z) * tl.where(z > 0, z, _const(_SELU_ALPHA, z) * _expm1(tl.minimum(z, 0.0)))
    elif ACT == 7:
        y = tl.where(z > _SOFTPLUS_LINEAR, z, _log1p(tl.exp(tl.minimum(z, _SOFTPLUS_LINEAR))))
    else:
        y = z * _sigmoid(z)
    return y


@triton.jit
def _act_d1(z, alpha, ACT: tl.constexpr):
    """act'(z), with torch autograd's conventions at the kinks."""
    if ACT == 0:
        d = tl.full(z.shape, 1.0, z.dtype)
    elif ACT == 1:
        d = tl.where(z > 0, 1.0, 0.0)
    elif ACT == 2:
        d = tl.where(z > 0, 1.0, alpha)
    elif ACT == 3:
        t = _tanh(z)
        d = 1.0 - t * t
    elif ACT == 4:
        s = _sigmoid(z)
        d = s * (1.0 - s)
    elif ACT == 5:
        d = tl.where(z > 0, 1.0, tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 6:
        d = _const(_SELU_SCALE, z) * tl.where(z > 0, 1.0, _const(_SELU_ALPHA, z) * tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 7:
        d = tl.where(z > _SOFTPLUS_LINEAR, 1.0, _sigmoid(z))
    else:
        s = _sigmoid(z)
        d = s + z * s * (1.0 - s)
    return d.to(z.dtype)


@triton.jit
def _act_d2(z, alpha, ACT: tl.constexpr):
    """act''(z) of the smooth activations (0 for the piecewise-linear ones), as torch double backward."""
    if ACT == 3:
        t = _tanh(z)
        d = -2.0 * t * (1.0 - t * t)
    elif ACT == 4:
        s = _sigmoid(z)
        d = s * (1.0 - s) * (1.0 - 2.0 * s)
    elif ACT == 5:
        d = tl.where(z < 0, tl.exp(tl.minimum(z, 0.0)), 0.0)
    elif ACT == 6:
        scale = _const(_SELU_SCALE, z) * _const(_SELU_ALPHA, z)
        d = tl.where(z < 0, scale * tl.exp(tl.minimum(z, 0.0)), 0.0)
    elif ACT == 7:
        s = _sigmoid(z)
        d = tl.where(z < _SOFTPLUS_LINEAR, s * (1.0 - s), 0.0)
    elif ACT == 8:
        s = _sigmoid(z)
        ds = s * (1.0 - s)
        d = 2.0 * ds + z * ds * (1.0 - 2.0 * s)
    else:
        d = tl.zeros(z.shape, z.dtype)
    return d.to(z.dtype)


@triton.jit
def _tile(outer, C, inner, n_cb, n_ib,
          BO: tl.constexpr, BC: tl.constexpr, BI: tl.constexpr, IDX64: tl.constexpr):
    """Storage offsets, mask and channels of this program's [BO, BC, BI] tile of the [outer, C, inner] storage."""
    pid = tl.program_id(0)
    ib = pid % n_ib
    t = pid // n_ib
    cb = t % n_cb
    ob = t // n_cb
    o = ob * BO + tl.arange(0, BO)
    c = cb * BC + tl.arange(0, BC)
    i = ib * BI + tl.arange(0, BI)
    if IDX64:
        o = o.to(tl.int64)
        i = i.to(tl.int64)
    offs = (o * (C * inner))[:, None, None] + (c * inner)[None, :, None] + i[None, None, :]
    mask = (o < outer)[:, None, None] & (c < C)[None, :, None] & (i < inner)[None, None, :]
    return offs, mask, c


@triton.jit
def _load_z(x_ptr, b_ptr, offs, mask, c, C, HAS_B: tl.constexpr, ACC: tl.constexpr):
    """z = x + b[c] in the accumulator type; b is rounded to x's dtype first, like the ref."""
    z = tl.load(x_ptr + offs, mask=mask, other=0.0).to(ACC)
    if HAS_B:
        bias = tl.load(b_ptr + c, mask=c < C, other=0.0).to(x_ptr.dtype.element_ty).to(ACC)
        z += bias[None, :, None]
    return z


@triton.jit
def _scalars(alpha, gain, clamp, ACC: tl.constexpr):
    """The float64 scalar arguments in the accumulator type (float64 keeps them exact for float64 data)."""
    return tl.full([], alpha, ACC), tl.full([], gain, ACC), tl.full([], clamp, ACC)


@triton.jit
def _clamp_keep(z, alpha, gain, clamp, ACT: tl.constexpr):
    """1 where |gain * act(z)| <= clamp (torch.clamp passes the gradient there), else 0."""
    y = _act(z, alpha, ACT) * gain
    return tl.where(tl.abs(y) <= clamp, 1.0, 0.0).to(z.dtype)


@triton.jit
def _fwd_kernel(x_ptr, b_ptr, y_ptr, outer, C, inner, n_cb, n_ib,
                alpha: tl.float64, gain: tl.float64, clamp: tl.float64,
                ACT: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr, ACC: tl.constexpr,
                BO: tl.constexpr, BC: tl.constexpr, BI: tl.constexpr, IDX64: tl.constexpr):
    offs, mask, c = _tile(outer, C, inner, n_cb, n_ib, BO, BC, BI, IDX64)
    alpha, gain, clamp = _scalars(alpha, gain, clamp, ACC)
    z = _load_z(x_ptr, b_ptr, offs, mask, c, C, HAS_B, ACC)
    y = _act(z, alpha, ACT) * gain
    if HAS_CLAMP:
        y = tl.minimum(tl.maximum(y, -clamp), clamp)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grad_kernel(dy_ptr, x_ptr, b_ptr, dx_ptr, outer, C, inner, n_cb, n_ib,
                 alpha: tl.float64, gain: tl.float64, clamp: tl.float64,
                 ACT: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr, ACC: tl.constexpr,
                 BO: tl.constexpr, BC: tl.constexpr, BI: tl.constexpr, IDX64: tl.constexpr):
    offs, mask, c = _tile(outer, C, inner, n_cb, n_ib, BO, BC, BI, IDX64)
    alpha, gain, clamp = _scalars(alpha, gain, clamp, ACC)
    z = _load_z(x_ptr, b_ptr, offs, mask, c, C, HAS_B, ACC)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(ACC)
    dx = dy * gain * _act_d1(z, alpha, ACT)
    if HAS_CLAMP:
        dx *= _clamp_keep(z, alpha, gain, clamp, ACT)
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grad2_kernel(g_ptr, dy_ptr, x_ptr, b_ptr, out_ptr, outer, C, inner, n_cb, n_ib,
                  alpha: tl.float64, gain: tl.float64, clamp: tl.float64,
                  ACT: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr, ACC: tl.constexpr,
                  BO: tl.constexpr, BC: tl.constexpr, BI: tl.constexpr, IDX64: tl.constexpr):
    offs, mask, c = _tile(outer, C, inner, n_cb, n_ib, BO, BC, BI, IDX64)
    alpha, gain, clamp = _scalars(alpha, gain, clamp, ACC)
    z = _load_z(x_ptr, b_ptr, offs, mask, c, C, HAS_B, ACC)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(ACC)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(ACC)
    d = g * dy * gain * _act_d2(z, alpha, ACT)
    if HAS_CLAMP:
        d *= _clamp_keep(z, alpha, gain, clamp, ACT)
    tl.store(out_ptr + offs, d.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _grad_out_kernel(dy_ptr, y_ptr, dx_ptr, numel, neg_slope: tl.float64, gain: tl.float64, clamp: tl.float64,
                     HAS_CLAMP: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr, IDX64: tl.constexpr):
    """dx = dy * gain * (y > 0 ? 1 : neg_slope), zero where |y| >= the clamp bound as stored in y's dtype."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    if IDX64:
        offs = offs.to(tl.int64)
    mask = offs < numel
    y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(ACC)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(ACC)
    g_pos = tl.full([], gain, ACC)
    factor = tl.where(y > 0, g_pos, g_pos * tl.full([], neg_slope, ACC))
    if HAS_CLAMP:
        bound = tl.full([], clamp, ACC).to(y_ptr.dtype.element_ty).to(ACC)
        factor = tl.where(tl.abs(y) < bound, factor, 0.0)
    tl.store(dx_ptr + offs, (dy * factor).to(dx_ptr.dtype.element_ty), mask=mask)


def _pow2_at_most(n: int, cap: int) -> int:
    return max(1, min(triton.next_power_of_2(n), cap))


def _launch(kernel, tensors, x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float,
            gain: float, clamp: Optional[float]) -> None:
    """Run ``kernel(*tensors, ...)`` over the storage of the dense ``x``; ``tensors`` share its strides.

    The storage is seen as [outer, C, inner] with C = x.shape[dim] and inner = x.stride(dim), so the
    bias channel of a tile element is its middle index: no per-element integer division.
    """
    numel = x.numel()
    if numel == 0:
        return
    if b is None or x.shape[dim] == 1:
        outer, C, inner = 1, 1, numel
    else:
        C, inner = x.shape[dim], x.stride(dim)
        outer = numel // (C * inner)
    bi = _pow2_at_most(inner, _BLOCK)
    bc = _pow2_at_most(C, _BLOCK // bi)
    bo = _pow2_at_most(outer, _BLOCK // (bi * bc))
    n_ob, n_cb, n_ib = triton.cdiv(outer, bo), triton.cdiv(C, bc), triton.cdiv(inner, bi)
    kernel[(n_ob * n_cb * n_ib,)](
        *tensors, outer, C, inner, n_cb, n_ib,
        float(alpha), float(gain), float(clamp if clamp is not None else 0.0),
        ACT=ACTIVATIONS[act].code, HAS_B=b is not None, HAS_CLAMP=clamp is not None, ACC=acc_type(x.dtype),
        BO=bo, BC=bc, BI=bi, IDX64=needs_int64(numel + bo * C * inner + bc * inner + bi))  # masked lanes overshoot


def _bias_arg(b: Optional[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return x if b is None else b.contiguous()  # x is a never-read placeholder when there is no bias


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
             clamp: Optional[float]) -> torch.Tensor:
    """``clamp(gain * act(x + b))``; output in the dtype and layout of ``x`` (dense)."""
    x = ba.dense(x)
    y = torch.empty_like(x)
    _launch(_fwd_kernel, (x, _bias_arg(b, x), y), x, b, dim, act, alpha, gain, clamp)
    return y


def _grad_from_output(dy: torch.Tensor, y: torch.Tensor, act: str, alpha: float, gain: float,
                      clamp: Optional[float]) -> torch.Tensor:
    dx = torch.empty_like(y)
    numel = y.numel()
    if numel:
        _grad_out_kernel[(triton.cdiv(numel, _BLOCK),)](
            ba.strided_like(dy, y), y, dx, numel, float(ba.negative_slope(act, alpha)), float(gain),
            float(clamp if clamp is not None else 0.0), HAS_CLAMP=clamp is not None, ACC=acc_type(y.dtype),
            BLOCK=_BLOCK, IDX64=needs_int64(numel + _BLOCK))
    return dx


def bias_act_grad(dy: torch.Tensor, saved: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                  alpha: float, gain: float, clamp: Optional[float],
                  from_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(dx, db)``: ``dx = dy * gain * act'(x + b)``, zero where the output was clamped, computed from
    ``saved`` = ``x`` or (``from_output``) the output ``y``; ``db`` sums ``dx`` over every dimension but
    ``dim`` (a torch reduction, see docs/kernels.md) or is empty without a bias."""
    saved = ba.dense(saved)
    if from_output:
        dx = _grad_from_output(dy, saved, act, alpha, gain, clamp)
    else:
        dx = torch.empty_like(saved)
        tensors = (ba.strided_like(dy, saved), saved, _bias_arg(b, saved), dx)
        _launch(_grad_kernel, tensors, saved, b, dim, act, alpha, gain, clamp)
    return dx, ba.bias_grad(dx, b, dim)


def bias_act_grad2(g: torch.Tensor, dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int,
                   act: str, alpha: float, gain: float, clamp: Optional[float]) -> torch.Tensor:
    """``g * dy * gain * act''(x + b)``, zero where the output was clamped: d(sum(g * dx)) / dx."""
    x = ba.dense(x)
    out = torch.empty_like(x)
    tensors = (ba.strided_like(g, x), ba.strided_like(dy, x), x, _bias_arg(b, x), out)
    _launch(_grad2_kernel, tensors, x, b, dim, act, alpha, gain, clamp)
    return out


ba.BIAS_ACT.kernel("triton")(bias_act)
ba.BIAS_ACT_GRAD.kernel("triton")(bias_act_grad)
ba.BIAS_ACT_GRAD2.kernel("triton")(bias_act_grad2)
