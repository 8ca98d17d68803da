"""``upfirdn2d`` and its helpers: upsample, pad/crop, FIR filter and downsample a batch of images.

Signature-compatible with ``torch_utils.ops.upfirdn2d`` of the NVlabs StyleGAN2-ADA/StyleGAN3 code.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .. import backends
from ..backends import ref
from ..backends.prims import upfirdn2d as _prim
from ._args import (IntPair, Padding, check_filter, check_float, check_tensor, filter_size,
                    parse_padding, parse_scaling)

__all__ = ["setup_filter", "upfirdn2d", "filter2d", "upsample2d", "downsample2d"]

FilterLike = Union[None, float, Sequence[float], Sequence[Sequence[float]], np.ndarray, torch.Tensor]


def setup_filter(f: FilterLike, device: Union[str, torch.device] = torch.device("cpu"), normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Prepare FIR taps for :func:`upfirdn2d`.

    Args:
        f: None (identity), a scalar, 1-D taps [ft] or a 2-D filter [fh, fw].
        normalize: divide by the sum of the taps.
        flip_filter: flip the taps on every axis.
        gain: overall gain; a separable result carries ``sqrt(gain)`` per axis.
        separable: keep 1-D taps as a separable filter. ``None`` keeps them 1-D only when there are
            at least 8 taps; shorter ones become their 2-D outer product.

    Returns:
        float32 tensor [ft] (separable) or [fh, fw] on ``device``.
    """
    op = "setup_filter"
    taps = torch.as_tensor(1.0 if f is None else f, dtype=torch.float32)
    if taps.ndim == 0:
        taps = taps.reshape(1)
    if taps.ndim > 2:
        raise ValueError(f"{op}: f must be None, a scalar, 1-D or 2-D, got shape {list(taps.shape)}")
    if taps.numel() == 0:
        raise ValueError(f"{op}: f must have at least one tap, got shape {list(taps.shape)}")
    if separable is None:
        separable = taps.ndim == 1 and taps.numel() >= 8
    if separable and taps.ndim != 1:
        raise ValueError(f"{op}: separable=True needs 1-D taps, got shape {list(taps.shape)}")
    if taps.ndim == 1 and not separable:
        taps = torch.outer(taps, taps)
    if normalize:
        taps = taps / taps.sum()
    if flip_filter:
        taps = taps.flip(list(range(taps.ndim)))
    taps = taps * (gain ** (taps.ndim / 2))
    return taps.to(device=device)


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 1, down: IntPair = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1, impl: Optional[str] = None) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample each channel of a batch of images.

    Per channel: insert ``up-1`` zeros after each pixel, pad (negative padding crops), convolve with
    ``f`` keeping the valid region, then keep every ``down``-th pixel (like ``scipy.signal.upfirdn``).

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64, any memory format.
        f: float32 filter [fh, fw], separable taps [ft], or None (identity). Must not require grad.
        up, down: int or [x, y], each >= 1.
        padding: int, [px, py] or [x0, x1, y0, y1], applied to the upsampled image; negative crops.
        flip_filter: False convolves, True correlates.
        gain: overall scale of the output.
        impl: backend ('ref', 'cpu', 'triton', 'cuda', 'auto'); None defers to ``fastgan.backends``.

    Returns:
        [N, C, (H*upy + y0 + y1 - fh + downy) // downy, (W*upx + x0 + x1 - fw + downx) // downx],
        in the dtype and memory format of ``x``.
    """
    op = "upfirdn2d"
    check_tensor(x, "x", op, ndim=4)
    f = check_filter(f, x, op)
    up_ = parse_scaling(up, "up", op)
    down_ = parse_scaling(down, "down", op)
    pad = parse_padding(padding, op)
    gain = check_float(gain, "gain", op)
    oh, ow = _prim.output_size(x.shape[2], x.shape[3], f, up_, down_, pad)
    if oh < 1 or ow < 1:
        fw, fh = filter_size(f)
        raise ValueError(f"{op}: empty output {oh}x{ow} for x {list(x.shape)}, filter {fh}x{fw}, up {up_}, "
                         f"down {down_}, padding {pad}; the padded image must be at least as large as the filter")
    name = backends.resolve(impl, x, op)
    if name == "ref":
        return ref.upfirdn2d(x, f, up_, down_, pad, bool(flip_filter), gain)
    return _prim.UPFIRDN2D(x, f, list(up_), list(down_), list(pad), bool(flip_filter), gain, backend=name)


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1, impl: Optional[str] = None) -> torch.Tensor:
    """FIR-filter ``x`` [N, C, H, W]; with ``padding=0`` the output keeps the input size."""
    op = "filter2d"
    check_tensor(x, "x", op, ndim=4)
    f = check_filter(f, x, op)
    px0, px1, py0, py1 = parse_padding(padding, op)
    fw, fh = filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: IntPair = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1, impl: Optional[str] = None) -> torch.Tensor:
    """Upsample ``x`` [N, C, H, W] by ``up`` with FIR ``f``; output [N, C, H*upy, W*upx] at ``padding=0``.

    The gain is multiplied by ``upx*upy`` so that the mean of the signal is preserved.
    """
    op = "upsample2d"
    check_tensor(x, "x", op, ndim=4)
    f = check_filter(f, x, op)
    upx, upy = parse_scaling(up, "up", op)
    px0, px1, py0, py1 = parse_padding(padding, op)
    fw, fh = filter_size(f)
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter,
                     gain=check_float(gain, "gain", op) * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: IntPair = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1, impl: Optional[str] = None) -> torch.Tensor:
    """Anti-aliased downsampling of ``x`` [N, C, H, W]; output [N, C, H//downy, W//downx] at ``padding=0``."""
    op = "downsample2d"
    check_tensor(x, "x", op, ndim=4)
    f = check_filter(f, x, op)
    downx, downy = parse_scaling(down, "down", op)
    px0, px1, py0, py1 = parse_padding(padding, op)
    fw, fh = filter_size(f)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
