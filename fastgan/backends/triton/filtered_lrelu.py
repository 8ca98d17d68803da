"""Triton kernel of ``fastgan::filtered_lrelu`` (:mod:`fastgan.backends.prims.filtered_lrelu`) in two passes.

``_stage1`` computes the activated intermediate image straight from ``x`` (polyphase: only the
filter taps that meet real, not zero-inserted, samples are visited) and writes the 2-bit signs,
four values per byte, or applies stored ones; ``_stage2`` filters and decimates it. The
intermediate image is kept in the compute dtype between the two kernels.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton
import triton.language as tl

from ..prims.filtered_lrelu import register_fused
from ._util import INTERPRET, acc_torch_dtype

_BLOCK = 4096 if INTERPRET else 256


@triton.jit
def _stage1(x_ptr, b_ptr, f_ptr, mid_ptr, sg_ptr, C, H, W, Hm, Wm, Ws, total, up, p1x0, p1y0, f1h, f1w, KY, KX,
            prm_ptr, HAS_B: tl.constexpr, SEP: tl.constexpr, READ: tl.constexpr,
            WRITE: tl.constexpr, CLAMP: tl.constexpr, BLOCK: tl.constexpr):
    q = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)          # sign byte index over planes * Hm * Ws
    qmask = q < total
    jb = q % Ws
    i = (q // Ws) % Hm
    plane = q // (Ws * Hm)
    e = tl.arange(0, 4)
    j = jb[:, None] * 4 + e[None, :]
    valid = qmask[:, None] & (j < Wm)
    a0 = ((p1y0 - i) % up + up) % up
    c0 = ((p1x0 - j) % up + up) % up
    xbase = x_ptr + plane * H * W
    gain = tl.load(prm_ptr)           # scalars in the compute dtype (a float argument would be float32)
    gslope = tl.load(prm_ptr + 1)
    clamp = tl.load(prm_ptr + 2)
    acc = tl.zeros([BLOCK, 4], dtype=mid_ptr.dtype.element_ty)
    for ky in range(0, KY):
        a = a0 + ky * up
        r = (i + a - p1y0) // up
        rok = (a < f1h) & (r >= 0) & (r < H)
        for kx in range(0, KX):
            c = c0 + kx * up
            s = (j + c - p1x0) // up
            ok = valid & rok[:, None] & (c < f1w) & (s >= 0) & (s < W)
            if SEP:
                wgt = (tl.load(f_ptr + a, mask=rok, other=0.0).to(acc.dtype)[:, None]
                       * tl.load(f_ptr + c, mask=ok, other=0.0).to(acc.dtype))
            else:
                wgt = tl.load(f_ptr + a[:, None] * f1w + c, mask=ok, other=0.0)
            v = tl.load(xbase[:, None] + r[:, None] * W + s, mask=ok, other=0.0).to(acc.dtype)
            if HAS_B:
                v = v + tl.load(b_ptr + plane % C, mask=qmask, other=0.0).to(acc.dtype)[:, None]
            acc += tl.where(ok, wgt.to(acc.dtype) * v, 0.0)
    sg_off = (plane * Hm + i) * Ws + jb
    if READ:
        byte = tl.load(sg_ptr + sg_off, mask=qmask, other=0).to(tl.int32)
        code = (byte[:, None] >> (2 * e[None, :])) & 3
        out = acc * tl.where(code >= 2, 0.0, tl.where(code == 1, gslope, gain))
    else:
        neg = acc <= 0
        out = acc * tl.where(neg, gslope, gain)
        code = tl.where(neg, 1, 0)
        if CLAMP:
            code += tl.where((out > clamp) | (out < -clamp), 2, 0)
            out = tl.minimum(tl.maximum(out, -clamp), clamp)
        if WRITE:
            code = tl.where(valid, code, 0) << (2 * e[None, :])
            tl.store(sg_ptr + sg_off, tl.sum(code, axis=1).to(tl.uint8), mask=qmask)
    tl.store(mid_ptr + (plane * Hm + i)[:, None] * Wm + j, out, mask=valid)


@triton.jit
def _stage2(mid_ptr, f_ptr, y_ptr, Hm, Wm, Ho, Wo, total, down, p2x0, p2y0, f2h, f2w,
            SEP: tl.constexpr, BLOCK: tl.constexpr):
    k = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    kmask = k < total
    ox = k % Wo
    oy = (k // Wo) % Ho
    plane = k // (Wo * Ho)
    base = mid_ptr + plane * Hm * Wm
    acc = tl.zeros([BLOCK], dtype=mid_ptr.dtype.element_ty)
    for ky in range(0, f2h):
        i = oy * down + ky - p2y0
        rok = kmask & (i >= 0) & (i < Hm)
        for kx in range(0, f2w):
            j = ox * down + kx - p2x0
            ok = rok & (j >= 0) & (j < Wm)
            if SEP:
                wgt = tl.load(f_ptr + ky).to(acc.dtype) * tl.load(f_ptr + kx).to(acc.dtype)
            else:
                wgt = tl.load(f_ptr + ky * f2w + kx)
            acc += wgt.to(acc.dtype) * tl.load(base + i * Wm + j, mask=ok, other=0.0)
    tl.store(y_ptr + k, acc, mask=kmask)


def fused(x: torch.Tensor, b: Optional[torch.Tensor], f1: torch.Tensor, f2: torch.Tensor, up: int, down: int,
          pad1, pad2, gain: float, slope: float, clamp: Optional[float], signs: Optional[torch.Tensor],
          write_signs: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """(y, signs) of the fused pipeline (see :func:`fastgan.backends.prims.filtered_lrelu.register_fused`);
    ``y`` comes back NCHW in the accumulation dtype."""
    x = x.contiguous()
    n, c, h, w = x.shape
    f1h, f1w = (f1.shape[0], f1.shape[-1])
    f2h, f2w = (f2.shape[0], f2.shape[-1])
    hm = h * up + pad1[2] + pad1[3] - f1h + 1
    wm = w * up + pad1[0] + pad1[1] - f1w + 1
    ho = (hm + pad2[2] + pad2[3] - f2h + down) // down
    wo = (wm + pad2[0] + pad2[1] - f2w + down) // down
    ws = (wm + 3) // 4
    acc = acc_torch_dtype(x.dtype)
    mid = torch.empty(n, c, hm, wm, dtype=acc, device=x.device)
    read = signs is not None
    if read:
        sg = signs.contiguous()
    elif write_signs:
        sg = torch.empty(n, c, hm, ws, dtype=torch.uint8, device=x.device)
    else:
        sg = torch.empty(1, dtype=torch.uint8, device=x.device)
    total = n * c * hm * ws
    prm = torch.tensor([gain, gain * slope, 0.0 if clamp is None else clamp], dtype=acc, device=x.device)
    _stage1[(triton.cdiv(total, _BLOCK // 4),)](
        x, b if b is not None else x, f1.to(device=x.device, dtype=torch.float32).contiguous(), mid, sg, c, h, w, hm,
        wm, ws, total, up, pad1[0], pad1[2], f1h, f1w, triton.cdiv(f1h, up), triton.cdiv(f1w, up), prm,
        HAS_B=b is not None, SEP=f1.ndim == 1, READ=read, WRITE=write_signs and not read, CLAMP=clamp is not None,
        BLOCK=_BLOCK // 4)
    y = torch.empty(n, c, ho, wo, dtype=acc, device=x.device)
    total = y.numel()
    _stage2[(triton.cdiv(total, _BLOCK),)](
        mid, f2.to(device=x.device, dtype=torch.float32).contiguous(), y, hm, wm, ho, wo, total, down, pad2[0],
        pad2[2], f2h, f2w, SEP=f2.ndim == 1, BLOCK=_BLOCK)
    out_signs = sg if (write_signs and not read) else torch.empty(0, dtype=torch.uint8, device=x.device)
    return y, out_signs


register_fused("triton", fused)
