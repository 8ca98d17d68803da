"""Reference filtered_lrelu: bias, FIR upsampling, leaky ReLU, FIR downsampling as separate ops.

It materialises the full-resolution intermediate image, exactly like the NVlabs reference path,
and gets every order of gradient from autograd. Autocast is off inside, so it returns the dtype of
``x`` like the fused kernels.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ._amp import outside_autocast
from .bias_act import bias_act
from .upfirdn2d import upfirdn2d


def filtered_lrelu(x: torch.Tensor, fu: torch.Tensor, fd: torch.Tensor, b: Optional[torch.Tensor], up: int,
                   down: int, pad: Tuple[int, int, int, int], gain: float, slope: float, clamp: Optional[float],
                   flip_filter: bool) -> torch.Tensor:
    """``x`` [N,C,H,W]; ``fu``/``fd`` [fh,fw] or [ft] (identity = ones [1,1]); pad (x0, x1, y0, y1)."""
    with outside_autocast(x.device):
        if b is not None:
            x = bias_act(x, b, 1, "linear", 0.0, 1.0, None)
        x = upfirdn2d(x, fu, (up, up), (1, 1), pad, flip_filter, float(up * up))
        x = bias_act(x, None, 1, "lrelu", slope, gain, clamp)
        return upfirdn2d(x, fd, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1.0)
