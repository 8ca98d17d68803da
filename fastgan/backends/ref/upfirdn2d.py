"""Reference upfirdn2d, written as the four steps of its definition (network-spec §1.2).

1. zero insertion: ``up - 1`` zeros after every sample;
2. pad (negative values crop);
3. FIR: a depthwise *true* convolution with ``f`` (a correlation when ``flip_filter``), valid part only;
4. decimation: every ``down``-th sample, starting with the first.

Steps 3 and 4 run as one strided depthwise convolution (it evaluates exactly the samples that
decimation keeps). Autograd provides every order of gradient.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from ._amp import outside_autocast


def _layout(x: torch.Tensor) -> torch.memory_format:
    """The memory format to give tensors derived from ``x`` (channels_last stays channels_last)."""
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _insert_zeros(x: torch.Tensor, upx: int, upy: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, H*upy, W*upx] with x at the multiples of (upy, upx) and zeros elsewhere."""
    if upx == 1 and upy == 1:
        return x
    n, c, h, w = x.shape
    grid = torch.empty((n, c, h * upy, w * upx), dtype=x.dtype, device=x.device, memory_format=_layout(x))
    grid.zero_()
    grid[:, :, ::upy, ::upx] = x
    return grid


def pad_or_crop(x: torch.Tensor, pad: Tuple[int, int, int, int]) -> torch.Tensor:
    """Zero-pad by the positive entries of (x0, x1, y0, y1), then drop as many samples as the negative ones ask.

    Padding first keeps crops that reach past the original image well defined.
    """
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    h, w = x.shape[2], x.shape[3]
    return x[:, :, max(-y0, 0):h - max(-y1, 0), max(-x0, 0):w - max(-x1, 0)]


def _depthwise(x: torch.Tensor, taps: torch.Tensor, stride: Tuple[int, int]) -> torch.Tensor:
    """Valid correlation of every channel of ``x`` with the 2-D ``taps`` [kh, kw], strided (sy, sx)."""
    c = x.shape[1]
    kernel = taps.reshape(1, 1, *taps.shape).expand(c, 1, *taps.shape)
    return F.conv2d(x, kernel, stride=stride, groups=c)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
              pad: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every channel of ``x`` [N, C, H, W].

    ``f`` is a 2-D filter [fh, fw] or separable 1-D taps [ft] (applied along x, then along y);
    ``up``/``down`` are (x, y) factors; ``pad`` is (x0, x1, y0, y1) on the upsampled image. The filter
    carries ``gain`` in total (``sqrt(gain)`` per axis when separable). Arguments are assumed valid
    (see :func:`fastgan.ops.upfirdn2d`). Returns
    [N, C, (H*upy + y0 + y1 - fh + downy) // downy, (W*upx + x0 + x1 - fw + downx) // downx].
    """
    (upx, upy), (downx, downy) = up, down
    # scale in the wider of the two dtypes: float32 like NVlabs for float32/16 inputs, float64 for float64
    taps = (f.to(torch.promote_types(f.dtype, x.dtype)) * gain ** (f.ndim / 2)).to(x.dtype)
    # conv2d correlates: a true convolution with f is a correlation with f reversed on every axis
    if not flip_filter:
        taps = taps.flip(list(range(f.ndim)))
    with outside_autocast(x.device):  # like the kernels: computed and returned in x's dtype under autocast
        z = pad_or_crop(_insert_zeros(x, upx, upy), pad)
        if f.ndim == 2:
            return _depthwise(z, taps, (downy, downx))
        z = _depthwise(z, taps.reshape(1, -1), (1, downx))
        return _depthwise(z, taps.reshape(-1, 1), (downy, 1))
