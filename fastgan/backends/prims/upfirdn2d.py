"""``fastgan::upfirdn2d``: zero-insert upsampling, pad/crop, FIR filter, decimation (one kernel pass).

Arguments arrive validated and normalised by :func:`fastgan.ops.upfirdn2d`: ``f`` is a float32
[fh, fw] or separable [ft] filter that does not require grad, ``up``/``down`` are (x, y) factors,
``pad`` is (x0, x1, y0, y1) relative to the upsampled image and ``gain`` the total gain. The output
keeps the dtype and memory format of ``x``. The derivative w.r.t. ``x`` is the same operator with
``up``/``down`` swapped, the filter flipped and the padding transposed, so every order of
derivative runs on the kernel backend; no gradient flows to ``f``.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch

from ..library import Primitive

UPFIRDN2D = Primitive(
    "upfirdn2d",
    "(Tensor x, Tensor f, int[2] up, int[2] down, int[4] pad, bool flip_filter, float gain) -> Tensor",
    doc="upsample, pad, FIR, downsample per channel")


def filter_extent(f: torch.Tensor) -> Tuple[int, int]:
    """(fw, fh) of a separable [ft] or 2-D [fh, fw] filter."""
    return (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])


def output_size(h: int, w: int, f: torch.Tensor, up: Sequence[int], down: Sequence[int],
                pad: Sequence[int]) -> Tuple[int, int]:
    """(out_h, out_w) of upfirdn2d on an h x w image."""
    fw, fh = filter_extent(f)
    return ((h * up[1] + pad[2] + pad[3] - fh + down[1]) // down[1],
            (w * up[0] + pad[0] + pad[1] - fw + down[0]) // down[0])


def transposed_padding(xshape: Sequence[int], yshape: Sequence[int], f: torch.Tensor, up: Sequence[int],
                       down: Sequence[int], pad: Sequence[int]) -> List[int]:
    """Padding of the adjoint upfirdn2d (up and down swapped) that maps dy back onto x's grid."""
    fw, fh = filter_extent(f)
    (ih, iw), (oh, ow) = xshape[-2:], yshape[-2:]
    return [fw - pad[0] - 1, iw * up[0] - ow * down[0] + pad[0] - up[0] + 1,
            fh - pad[2] - 1, ih * up[1] - oh * down[1] + pad[2] - up[1] + 1]


@UPFIRDN2D.register_fake
def _fake(x, f, up, down, pad, flip_filter, gain, backend):
    oh, ow = output_size(x.shape[2], x.shape[3], f, up, down, pad)
    fmt = torch.channels_last if (x.dim() == 4 and not x.is_contiguous()
                                  and x.is_contiguous(memory_format=torch.channels_last)) else torch.contiguous_format
    return x.new_empty((x.shape[0], x.shape[1], oh, ow)).contiguous(memory_format=fmt)


def _setup_context(ctx, inputs, output):
    x, f, up, down, pad, flip_filter, gain, backend = inputs
    ctx.save_for_backward(f)
    ctx.args = (tuple(x.shape), tuple(up), tuple(down), tuple(pad), bool(flip_filter), float(gain), backend)


def _backward(ctx, dy):
    (f,) = ctx.saved_tensors
    xshape, up, down, pad, flip_filter, gain, backend = ctx.args
    dx = UPFIRDN2D(dy, f, list(down), list(up), transposed_padding(xshape, dy.shape, f, up, down, pad),
                   not flip_filter, gain, backend=backend)
    return dx, None, None, None, None, None, None, None


UPFIRDN2D.register_autograd(_backward, setup_context=_setup_context)
