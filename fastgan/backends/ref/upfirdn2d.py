"""Reference upfirdn2d: zero-insertion, pad/crop, depthwise FIR convolution, decimation."""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def upfirdn2d(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
              pad: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """``x`` [N,C,H,W]; ``f`` [fh,fw] or [ft] (separable); up/down (x, y); pad (x0, x1, y0, y1)."""
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad

    if upx > 1 or upy > 1:  # zero-insertion: each pixel followed by up-1 zeros on each axis
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)

    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]

    # conv2d computes a correlation, so a true convolution flips the taps.
    f = f.to(x.dtype) * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    weight = f.reshape(1, 1, *f.shape).expand(c, 1, *f.shape)
    if f.ndim == 2:
        x = F.conv2d(x, weight, groups=c)
    else:
        x = F.conv2d(x, weight.unsqueeze(2), groups=c)
        x = F.conv2d(x, weight.unsqueeze(3), groups=c)

    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x
