"""``filtered_lrelu``: bias, FIR upsampling, leaky ReLU and clamp, FIR downsampling in one op (StyleGAN3).

Signature-compatible with ``torch_utils.ops.filtered_lrelu.filtered_lrelu`` of the NVlabs StyleGAN3 code.
The kernel backends run the device-neutral operators of :mod:`fastgan.backends.prims.filtered_lrelu`
(the forward keeps 2-bit activation signs, the backward and every higher derivative are the same
fused kernel with the stored signs); ``ref`` runs the composite of separate ops.

Autocast: the op is outside autocast's cast lists on every backend (``ref`` included): it computes
half types in float32 and returns the dtype of ``x``.
"""
from __future__ import annotations

import operator
from typing import Optional

import numpy as np
import torch

from .. import backends
from ..backends.prims import filtered_lrelu as _prim
from ..backends.prims._common import kernel_backend
from ..backends.ref.filtered_lrelu import filtered_lrelu as _ref_filtered_lrelu
from ._args import Padding, check_filter, check_float, check_same_device, check_tensor, parse_padding

__all__ = ["filtered_lrelu"]


def _scale(v, name: str, op: str) -> int:
    if isinstance(v, bool):
        raise TypeError(f"{op}: {name} must be an int, got a bool")
    try:
        v = operator.index(v)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int >= 1, got {type(v).__name__}") from None
    if v < 1:
        raise ValueError(f"{op}: {name} must be >= 1, got {v}")
    return v


def _taps(f: torch.Tensor, flip_filter: bool) -> torch.Tensor:
    """float32 taps in correlation order (the kernels never flip), contiguous."""
    f = f.to(torch.float32)
    return (f if flip_filter else f.flip(list(range(f.ndim)))).contiguous()


def filtered_lrelu(x: torch.Tensor, fu: Optional[torch.Tensor] = None, fd: Optional[torch.Tensor] = None,
                   b: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: Padding = 0,
                   gain: float = float(np.sqrt(2)), slope: float = 0.2, clamp: Optional[float] = None,
                   flip_filter: bool = False, impl: Optional[str] = None) -> torch.Tensor:
    """Bias, upsample + FIR ``fu``, leaky ReLU with gain and clamp, FIR ``fd`` + downsample.

    Equivalent to ``upfirdn2d(clamp(lrelu(upfirdn2d(x + b, fu, up, padding, gain=up**2), slope) * gain),
    fd, down)``, computed without materialising the upsampled image on the fast backends.

    Args:
        x: [N, C, H, W], float16/bfloat16/float32/float64.
        fu, fd: float32 up/down filters, 1-D separable taps [ft] or 2-D [fh, fw]; None is identity.
        b: bias [C] added before upsampling, or None.
        up, down: integer up/down factors (>= 1).
        padding: int, [px, py] or [x0, x1, y0, y1] on the upsampled image; negative crops.
        gain: scale applied after the leaky ReLU.
        slope: leaky ReLU slope for ``u <= 0``.
        clamp: clamp the activation to [-clamp, clamp] (gradient 0 there), or None.
        flip_filter: False convolves, True correlates.
        impl: backend ('ref', 'cpu', 'triton', 'cuda', 'auto'); None defers to ``fastgan.backends``.

    Returns:
        [N, C, H', W'] in the dtype and memory format of ``x``, per axis
        ``(n*up + p0 + p1 - (f_u - 1) - (f_d - 1) + down - 1) // down`` where ``f_u``, ``f_d`` are the
        filter lengths on that axis.
    """
    op = "filtered_lrelu"
    check_tensor(x, "x", op, ndim=4)
    fu = check_filter(fu, x, op, "fu")
    fd = check_filter(fd, x, op, "fd")
    if b is not None:
        check_tensor(b, "b", op, ndim=1)
        check_same_device(b, "b", x, op)
        if b.shape[0] != x.shape[1]:
            raise ValueError(f"{op}: b must have x.shape[1] = {x.shape[1]} elements, got {b.shape[0]}")
        b = b.to(x.dtype)  # every backend adds the bias rounded to the input dtype, as ref does
    up = _scale(up, "up", op)
    down = _scale(down, "down", op)
    pad = parse_padding(padding, op)
    gain = check_float(gain, "gain", op)
    slope = check_float(slope, "slope", op)
    if clamp is not None:
        clamp = check_float(clamp, "clamp", op)
        if clamp < 0:
            raise ValueError(f"{op}: clamp must be None or >= 0, got {clamp}")
    _, (out_h, out_w) = _prim.sizes(x.shape[2], x.shape[3], fu, fd, up, down, pad)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: empty output {out_h}x{out_w} for x {list(x.shape)}, fu {list(fu.shape)}, "
                         f"fd {list(fd.shape)}, up {up}, down {down}, padding {pad}; the padded upsampled image "
                         f"must be at least as large as the two filters together")
    name = kernel_backend("filtered_lrelu", backends.resolve(impl, x, op), impl)
    if name == "ref":
        return _ref_filtered_lrelu(x, fu, fd, b, up, down, pad, gain, slope, clamp, bool(flip_filter))
    write_signs = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    y, _ = _prim.FILTERED_LRELU(x, b, _taps(fu, flip_filter), _taps(fd, flip_filter), up, down, list(pad),
                                gain * up * up, slope, clamp, write_signs, backend=name)
    return y
