"""Triton upfirdn2d: a polyphase FIR kernel that never materialises the zero-upsampled image.

Along one axis, output ``o`` correlates the flipped taps ``w`` with the padded, zero-upsampled input
``U``: ``y[o] = sum_k w[k] * U[o*down + k - pad0]``, where ``U[q] = x[q/up]`` when ``up`` divides
``q``. Only the taps ``k = k0 + j*up`` hit real samples, with ``k0 = (pad0 - o*down) mod up``, and
they read ``x[base + j]``. ``k0`` repeats with period ``P = up / gcd(up, down)`` in ``o``, so the
outputs ``o = r + P*i`` of one phase ``r`` share their taps and read ``x[base_r + (P*down/up)*i + j]``.

A program owns a [BC, BH, BW] tile of phase-local indices (channels, i_y, i_x) and computes it for
every phase pair in turn, so all the taps of a tile are loaded once per program and the phases of
one output region are written by the same program (their stores interleave in the same cache lines).
A 1-D (separable) filter runs as two passes of the same kernel, the smaller intermediate first.
"""
from __future__ import annotations

import math
from typing import Tuple

import torch
import triton
import triton.language as tl

from ._util import INTERPRET, acc_torch_dtype, acc_type, extent, needs_int64

# Elements per program tile: the interpreter pays per program, a GPU wants ~1-2K outputs per CTA.
_TILE = 8192 if INTERPRET else 1024
_MAX_BW = 64  # widest tile along W in NCHW (two 128-byte lines of float32 per row of a warp)


@triton.jit
def _axis_phase(r, pad0, UP: tl.constexpr, DOWN: tl.constexpr):
    """(first tap k0, first input index) of the outputs of phase ``r`` along one axis."""
    q0 = r * DOWN - pad0                      # upsampled coordinate under tap 0 of output r
    k0 = ((-q0) % UP + UP) % UP               # first tap landing on a real sample (mod in C or Python style)
    return k0, (q0 + k0) // UP                # exact division


@triton.jit
def _tile_phases(x_nc, y_nc, f_ptr, f_off, sfh, sfw, iy, ix, c_ok, H, W, OH, OW, sxh, sxw, syh, syw,
                 px0, py0, g,
                 FH: tl.constexpr, FW: tl.constexpr, UPX: tl.constexpr, UPY: tl.constexpr,
                 DOWNX: tl.constexpr, DOWNY: tl.constexpr, PX: tl.constexpr, PY: tl.constexpr,
                 SX: tl.constexpr, SY: tl.constexpr, TX: tl.constexpr, TY: tl.constexpr,
                 BC: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr, ACC: tl.constexpr, MASKED: tl.constexpr):
    """Compute and store one tile for every phase pair; MASKED=False when no read can leave x."""
    for ry in tl.static_range(PY):
        k0y, by = _axis_phase(ry, py0, UPY, DOWNY)
        oy = ry + PY * iy
        iy0 = by + SY * iy
        for rx in tl.static_range(PX):
            k0x, bx = _axis_phase(rx, px0, UPX, DOWNX)
            ox = rx + PX * ix
            ix0 = bx + SX * ix
            w_ph = f_ptr + (f_off + k0y * sfh + k0x * sfw)      # tap (k0y, k0x) of this phase
            acc = tl.zeros([BC, BH, BW], ACC)
            for jy in tl.static_range(TY):
                row = iy0 + jy
                x_row = x_nc + (row * sxh)[None, :, None]
                if MASKED:
                    row_ok = c_ok & ((row >= 0) & (row < H))[None, :, None]
                for jx in tl.static_range(TX):
                    w_ptr = w_ph + (jy * UPY * sfh + jx * UPX * sfw)
                    if (jy + 1) * UPY <= FH and (jx + 1) * UPX <= FW:  # this tap exists in every phase
                        w = tl.load(w_ptr)
                    else:
                        w = tl.load(w_ptr, mask=(k0y + jy * UPY < FH) & (k0x + jx * UPX < FW), other=0.0)
                    col = ix0 + jx
                    src = x_row + (col * sxw)[None, None, :]
                    if MASKED:
                        v = tl.load(src, mask=row_ok & ((col >= 0) & (col < W))[None, None, :], other=0.0)
                    else:
                        v = tl.load(src)
                    acc += v.to(ACC) * w.to(ACC)
            dst = y_nc + (oy * syh)[None, :, None] + (ox * syw)[None, None, :]
            if MASKED:
                tl.store(dst, (acc * g).to(y_nc.dtype.element_ty),
                         mask=c_ok & (oy < OH)[None, :, None] & (ox < OW)[None, None, :])
            else:
                tl.store(dst, (acc * g).to(y_nc.dtype.element_ty))


@triton.jit
def _upfirdn2d_kernel(
    x_ptr, f_ptr, y_ptr,
    C, H, W, OH, OW,
    sxn, sxc, sxh, sxw, syn, syc, syh, syw,
    f_off, sfh, sfw,
    px0, py0, gain: tl.float64,
    n_cb, n_ty, n_tx, ty_lo, ty_hi, tx_lo, tx_hi,
    FH: tl.constexpr, FW: tl.constexpr, UPX: tl.constexpr, UPY: tl.constexpr,
    DOWNX: tl.constexpr, DOWNY: tl.constexpr,
    PX: tl.constexpr, PY: tl.constexpr, SX: tl.constexpr, SY: tl.constexpr, TX: tl.constexpr, TY: tl.constexpr,
    BC: tl.constexpr, BH: tl.constexpr, BW: tl.constexpr, ACC: tl.constexpr, IDX64: tl.constexpr,
):
    # PX, PY: phase periods; SX, SY: input step per phase-local output step; TX, TY: taps per phase.
    # Tiles ty in [ty_lo, ty_hi] x tx in [tx_lo, tx_hi] with a full channel block read and write in bounds.
    pid = tl.program_id(0)
    tx = pid % n_tx
    t = pid // n_tx
    ty = t % n_ty
    t = t // n_ty
    cb = t % n_cb
    n = t // n_cb

    c = cb * BC + tl.arange(0, BC)
    iy = ty * BH + tl.arange(0, BH)
    ix = tx * BW + tl.arange(0, BW)
    if IDX64:  # every offset derived from iy, ix (and c, n below) is then computed in int64
        iy = iy.to(tl.int64)
        ix = ix.to(tl.int64)
    c_ok = (c < C)[:, None, None]
    x_nc = x_ptr + n.to(tl.int64) * sxn + (c.to(tl.int64) * sxc)[:, None, None]
    y_nc = y_ptr + n.to(tl.int64) * syn + (c.to(tl.int64) * syc)[:, None, None]
    g = tl.full([], gain, ACC)
    inside = (ty >= ty_lo) & (ty <= ty_hi) & (tx >= tx_lo) & (tx <= tx_hi) & (cb * BC + BC <= C)
    if inside:
        _tile_phases(x_nc, y_nc, f_ptr, f_off, sfh, sfw, iy, ix, c_ok, H, W, OH, OW, sxh, sxw, syh, syw, px0, py0, g,
                     FH, FW, UPX, UPY, DOWNX, DOWNY, PX, PY, SX, SY, TX, TY, BC, BH, BW, ACC, False)
    else:
        _tile_phases(x_nc, y_nc, f_ptr, f_off, sfh, sfw, iy, ix, c_ok, H, W, OH, OW, sxh, sxw, syh, syw, px0, py0, g,
                     FH, FW, UPX, UPY, DOWNX, DOWNY, PX, PY, SX, SY, TX, TY, BC, BH, BW, ACC, True)


def _inner_tiles(n_in: int, n_out: int, pad0: int, up: int, down: int, taps: int, block: int) -> Tuple[int, int]:
    """Along one axis, the tile indices [lo, hi] (empty if lo > hi) whose outputs exist in every phase and
    whose ``taps`` taps per phase all read inside the ``n_in`` input samples (phases as in ``_axis_phase``)."""
    p = up // math.gcd(up, down)
    s = p * down // up
    lo, hi = 0, (n_out // p) // block - 1
    for r in range(p):
        k0 = (pad0 - r * down) % up
        base = (r * down - pad0 + k0) // up
        lo = max(lo, -(base // (s * block)))                                   # first read >= 0
        hi = min(hi, (n_in - taps - base - s * (block - 1)) // (s * block))   # last read < n_in
    return lo, hi


def _pow2_at_most(n: int, cap: int) -> int:
    return max(1, min(triton.next_power_of_2(max(n, 1)), cap))


def _tile(c: int, ny: int, nx: int, channels_last: bool) -> Tuple[int, int, int]:
    """[BC, BH, BW] for ``c`` channels and ``ny`` x ``nx`` phase-local outputs per phase."""
    if channels_last:  # channels are the contiguous axis: make them the wide one
        bc = _pow2_at_most(c, 64)
        bw = _pow2_at_most(nx, max(1, _TILE // bc))
        bh = _pow2_at_most(ny, max(1, _TILE // (bc * bw)))
        return bc, bh, bw
    bw = _pow2_at_most(nx, min(_MAX_BW, _TILE))
    bh = _pow2_at_most(ny, max(1, _TILE // bw))
    bc = _pow2_at_most(c, max(1, _TILE // (bh * bw)))
    return bc, bh, bw


def _pass(x: torch.Tensor, f: torch.Tensor, fh: int, fw: int, sfh: int, sfw: int, flip: bool,
          up: Tuple[int, int], down: Tuple[int, int], pad: Tuple[int, int, int, int], gain: float,
          out: torch.Tensor) -> None:
    """One kernel launch writing ``out``; the filter is seen as [fh, fw] with strides (sfh, sfw)."""
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    (upx, upy), (downx, downy) = up, down
    px = upx // math.gcd(upx, downx)
    py = upy // math.gcd(upy, downy)
    ny, nx = triton.cdiv(oh, py), triton.cdiv(ow, px)
    channels_last = x.stride(1) == 1 and c > 1
    bc, bh, bw = _tile(c, ny, nx, channels_last)
    n_cb, n_ty, n_tx = triton.cdiv(c, bc), triton.cdiv(ny, bh), triton.cdiv(nx, bw)
    # A true convolution (flip_filter=False) walks the taps backwards: start at the last tap, negate the strides.
    f_off, sfh, sfw = (0, sfh, sfw) if flip else ((fh - 1) * sfh + (fw - 1) * sfw, -sfh, -sfw)
    tx_taps, ty_taps = triton.cdiv(fw, upx), triton.cdiv(fh, upy)
    _upfirdn2d_kernel[(n * n_cb * n_ty * n_tx,)](
        x, f, out, c, h, w, oh, ow, *x.stride(), *out.stride(), f_off, sfh, sfw,
        pad[0], pad[2], float(gain), n_cb, n_ty, n_tx,
        *_inner_tiles(h, oh, pad[2], upy, downy, ty_taps, bh), *_inner_tiles(w, ow, pad[0], upx, downx, tx_taps, bw),
        FH=fh, FW=fw, UPX=upx, UPY=upy, DOWNX=downx, DOWNY=downy,
        PX=px, PY=py, SX=px * downx // upx, SY=py * downy // upy, TX=tx_taps, TY=ty_taps,
        BC=bc, BH=bh, BW=bw, ACC=acc_type(x.dtype),
        # masked lanes of edge tiles form offsets beyond the tensors: keep a wide margin
        IDX64=needs_int64(2 * extent(x) + _TILE * max(x.stride()), 2 * extent(out) + _TILE * max(out.stride())),
        num_warps=4)


def _empty(x: torch.Tensor, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """[N, C, h, w] in channels_last when ``x`` is channels_last (and not also contiguous), else contiguous."""
    fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
           else torch.contiguous_format)
    return torch.empty((x.shape[0], x.shape[1], h, w), dtype=dtype, device=x.device, memory_format=fmt)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
              pad: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """``x`` [N,C,H,W]; ``f`` [fh,fw] or separable [ft]; up/down (x, y); pad (x0, x1, y0, y1); total ``gain``.

    Output in the dtype and memory format of ``x``; accumulation in float32 (float64 for float64).
    """
    n, c, h, w = x.shape
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = up, down, pad
    if f.ndim == 2:
        fh, fw = f.shape
    else:
        fh = fw = f.shape[0]
    oh = (h * upy + py0 + py1 - fh + downy) // downy
    ow = (w * upx + px0 + px1 - fw + downx) // downx
    out = _empty(x, oh, ow, x.dtype)
    if out.numel() == 0:
        return out
    flip = bool(flip_filter)
    if f.ndim == 2:
        _pass(x, f, fh, fw, f.stride(0), f.stride(1), flip, up, down, pad, gain, out)
        return out
    ft, st = f.shape[0], f.stride(0)
    acc = acc_torch_dtype(x.dtype)
    if h * ow <= oh * w:  # horizontal pass first: it leaves the smaller intermediate
        mid = _empty(x, h, ow, acc)
        _pass(x, f, 1, ft, 0, st, flip, (upx, 1), (downx, 1), (px0, px1, 0, 0), 1.0, mid)
        _pass(mid, f, ft, 1, st, 0, flip, (1, upy), (1, downy), (0, 0, py0, py1), gain, out)
    else:
        mid = _empty(x, oh, w, acc)
        _pass(x, f, ft, 1, st, 0, flip, (1, upy), (1, downy), (0, 0, py0, py1), 1.0, mid)
        _pass(mid, f, 1, ft, 0, st, flip, (upx, 1), (downx, 1), (px0, px1, 0, 0), gain, out)
    return out
