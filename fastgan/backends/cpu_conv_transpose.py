"""Strided transposed convolution on CPU as tiled GEMMs plus a scatter-add (col2im), for the shapes
where oneDNN's deconvolution is slow (few output channels; :func:`fastgan.backends.cpu_policy.gemm_deconv_pays`
decides).

``y[n, s*i + kh, s*j + kw, :] += x[n, i, j, :] @ w[:, :, kh, kw]`` over the input rows, tile by tile:
one GEMM ``[rows*W, C] @ [C, kh*kw*O]`` into a cache-sized buffer, then kh*kw strided adds into the
channels_last output. Same FLOPs as the transposed convolution, at GEMM speed.
"""
from __future__ import annotations

import torch

from . import cpu_policy

__all__ = ["conv_transpose2d"]


def conv_transpose2d(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.conv_transpose2d(x, w, stride=stride)`` (no padding, groups 1, not differentiable).

    x: [N, C, H, W] (channels_last avoids a copy). w: [C, O, kh, kw].
    Returns [N, O, stride*(H-1)+kh, stride*(W-1)+kw], channels_last.
    """
    n, c, h, wd = x.shape
    o, kh, kw = w.shape[1], w.shape[2], w.shape[3]
    xm = x.permute(0, 2, 3, 1)
    if not xm.is_contiguous():
        xm = xm.contiguous()
    wm = w.permute(0, 2, 3, 1).reshape(c, kh * kw * o)
    oh, ow = stride * (h - 1) + kh, stride * (wd - 1) + kw
    out = torch.zeros(n, oh, ow, o, dtype=x.dtype)
    rows = max(1, min(h, cpu_policy.GEMM_DECONV_TILE_ROWS // wd))
    buf = torch.empty(rows * wd, kh * kw * o, dtype=x.dtype)
    for img in range(n):
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            cols = buf[:(r1 - r0) * wd]
            torch.mm(xm[img, r0:r1].reshape(-1, c), wm, out=cols)
            taps = cols.view(r1 - r0, wd, kh, kw, o)
            for a in range(kh):
                dst_rows = out[img, stride * r0 + a:stride * (r1 - 1) + a + 1:stride]
                for b in range(kw):
                    dst_rows[:, b:b + stride * (wd - 1) + 1:stride].add_(taps[:, :, a, b])
    return out.permute(0, 3, 1, 2)
