"""Triton kernels of ``fastgan::adain_forward`` / ``adain_backward`` (:mod:`fastgan.backends.prims.adain`).

One program per (n, c) plane, reading NCHW planes (other layouts are made contiguous first).

The forward makes a pass for the mean, one for the biased variance of ``x - mean`` (no
cancellation) and one for ``y``; the backward a pass for ``sum(dy)``, ``sum(dy * (x - mean))``
and one for ``dx``.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..prims.adain import register_adain
from ._util import INTERPRET, acc_torch_dtype

_BLOCK = 4096 if INTERPRET else 1024


@triton.jit
def _fwd(x_ptr, s_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr, n, eps, BLOCK: tl.constexpr):
    pl = tl.program_id(0)
    base = pl.to(tl.int64) * n
    offs = tl.arange(0, BLOCK)
    acc = tl.zeros([BLOCK], dtype=y_ptr.dtype.element_ty)
    for k in range(0, n, BLOCK):
        acc += tl.load(x_ptr + base + k + offs, mask=k + offs < n, other=0.0).to(acc.dtype)
    mu = tl.sum(acc, axis=0) / n
    acc = tl.zeros([BLOCK], dtype=y_ptr.dtype.element_ty)
    for k in range(0, n, BLOCK):
        m = k + offs < n
        d = tl.load(x_ptr + base + k + offs, mask=m, other=0.0).to(acc.dtype) - mu
        acc += tl.where(m, d * d, 0.0)
    r = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / n + eps)
    a = r * tl.load(s_ptr + pl).to(acc.dtype)
    c = tl.load(b_ptr + pl).to(acc.dtype)
    for k in range(0, n, BLOCK):
        m = k + offs < n
        v = tl.load(x_ptr + base + k + offs, mask=m, other=0.0).to(acc.dtype)
        tl.store(y_ptr + base + k + offs, (v - mu) * a + c, mask=m)
    tl.store(mean_ptr + pl, mu)
    tl.store(rstd_ptr + pl, r)


@triton.jit
def _bwd(g_ptr, x_ptr, s_ptr, mean_ptr, rstd_ptr, dx_ptr, ds_ptr, db_ptr, n, BLOCK: tl.constexpr):
    pl = tl.program_id(0)
    base = pl.to(tl.int64) * n
    offs = tl.arange(0, BLOCK)
    mu = tl.load(mean_ptr + pl)
    r = tl.load(rstd_ptr + pl)
    sg = tl.zeros([BLOCK], dtype=dx_ptr.dtype.element_ty)
    sgx = tl.zeros([BLOCK], dtype=dx_ptr.dtype.element_ty)
    for k in range(0, n, BLOCK):
        m = k + offs < n
        g = tl.load(g_ptr + base + k + offs, mask=m, other=0.0).to(sg.dtype)
        x = tl.load(x_ptr + base + k + offs, mask=m, other=0.0).to(sg.dtype)
        sg += g
        sgx += tl.where(m, g * (x - mu), 0.0)
    tot = tl.sum(sg, axis=0)
    totx = tl.sum(sgx, axis=0) * r
    tl.store(ds_ptr + pl, totx)
    tl.store(db_ptr + pl, tot)
    kk = r * tl.load(s_ptr + pl).to(sg.dtype)
    mg = tot / n
    kx = totx / n * r
    for k in range(0, n, BLOCK):
        m = k + offs < n
        g = tl.load(g_ptr + base + k + offs, mask=m, other=0.0).to(sg.dtype)
        x = tl.load(x_ptr + base + k + offs, mask=m, other=0.0).to(sg.dtype)
        tl.store(dx_ptr + base + k + offs, kk * (g - mg - (x - mu) * kx), mask=m)


def _block(n: int) -> int:
    return min(_BLOCK, triton.next_power_of_2(max(n, 16)))


def adain_fwd(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float):
    """(y, mean, rstd) with y in the compute dtype and stats [N, C]."""
    x = x.contiguous()
    dt = acc_torch_dtype(x.dtype)
    n = x.shape[2] * x.shape[3]
    y = torch.empty(x.shape, dtype=dt, device=x.device)
    mean = torch.empty(x.shape[:2], dtype=dt, device=x.device)
    rstd = torch.empty_like(mean)
    _fwd[(x.shape[0] * x.shape[1],)](x, scale.contiguous(), bias.contiguous(), y, mean, rstd, n, float(eps),
                                     BLOCK=_block(n))
    return y, mean, rstd


def adain_bwd(dy: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor):
    """(dx, dscale, dbias) of ``sum(y * dy)`` in the compute dtype."""
    x = x.contiguous()
    n = x.shape[2] * x.shape[3]
    dx = torch.empty(x.shape, dtype=acc_torch_dtype(x.dtype), device=x.device)
    ds = torch.empty(x.shape[:2], dtype=dx.dtype, device=x.device)
    db = torch.empty_like(ds)
    _bwd[(x.shape[0] * x.shape[1],)](dy.contiguous(), x, scale.contiguous(), mean, rstd, dx, ds, db, n,
                                     BLOCK=_block(n))
    return dx, ds, db


register_adain("triton", adain_fwd, adain_bwd)
