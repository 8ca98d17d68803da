"""``conv2d_resample``: 2-D convolution with FIR up/downsampling, and ``no_weight_gradients``.

Signature-compatible with ``torch_utils.ops.conv2d_resample.conv2d_resample`` of the NVlabs code.

Autocast: the convolutions follow it like ``F.conv2d`` does, so under ``torch.autocast`` the result
has autocast's dtype on every backend (``ref`` included); otherwise the dtype of ``x``.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from ..backends.kernel_conv import conv_strategy, no_weight_gradients, weight_gradients_disabled
from ..backends.ref import conv2d_resample as _ref
from ._args import Padding, check_filter, check_same_device, check_tensor, parse_padding

__all__ = ["conv2d_resample", "no_weight_gradients", "weight_gradients_disabled"]


def _int_factor(v, name: str, op: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{op}: {name} must be an int, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{op}: {name} must be >= 1, got {v}")
    return v


def check_conv_args(x: torch.Tensor, w: torch.Tensor, groups: int, op: str, wname: str = "w") -> None:
    """x [N, C, H, W] and weight [O, C/groups, kh, kw] of matching dtype, device and channels."""
    check_tensor(x, "x", op, ndim=4)
    check_tensor(w, wname, op, ndim=4)
    check_same_device(w, wname, x, op)
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    if w.shape[1] * groups != x.shape[1] or w.shape[0] % groups != 0:
        raise ValueError(f"{op}: {wname} of shape {list(w.shape)} does not fit x of shape {list(x.shape)} with "
                         f"groups={groups}: need {wname}.shape[1] * groups == x.shape[1] and "
                         f"{wname}.shape[0] divisible by groups")


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding: Padding = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False, impl: Optional[str] = None) -> torch.Tensor:
    """2-D convolution with optional FIR upsampling before and FIR downsampling after it.

    Equivalent to ``upfirdn2d(x, f, up=up, padding=...)``, then ``conv2d(w)``, then
    ``upfirdn2d(f, down=down)``, computed by the cheapest equivalent formulation (strided or
    transposed convolutions where possible).

    Args:
        x: [N, C, H, W].
        w: [O, C // groups, kh, kw], same dtype as x.
        f: FIR filter from :func:`fastgan.ops.setup_filter` ([fh, fw] or separable [ft]), or None.
        up, down: integer factors >= 1.
        padding: int, [px, py] or [x0, x1, y0, y1], relative to the upsampled image; negative crops.
        groups: convolution groups.
        flip_weight: True correlates with ``w`` like ``F.conv2d``; False convolves (flips ``w``).
        flip_filter: False convolves with ``f``, True correlates.
        impl: backend; None defers to ``fastgan.backends``.

    Returns:
        [N, O, (H*up + y0 + y1 - kh + 1) // down, (W*up + x0 + x1 - kw + 1) // down], in the dtype
        and memory format of x.
    """
    op = "conv2d_resample"
    check_conv_args(x, w, groups, op)
    if w.dtype != x.dtype:
        raise TypeError(f"{op}: w must have the dtype of x ({x.dtype}), got {w.dtype}")
    f = check_filter(f, x, op)
    up = _int_factor(up, "up", op)
    down = _int_factor(down, "down", op)
    pad = parse_padding(padding, op)
    kh, kw = w.shape[2], w.shape[3]
    oh = (x.shape[2] * up + pad[2] + pad[3] - kh + 1) // down
    ow = (x.shape[3] * up + pad[0] + pad[1] - kw + 1) // down
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: empty output for x {list(x.shape)}, w {list(w.shape)}, up {up}, down {down}, "
                         f"padding {pad}")
    name = backends.resolve(impl, x, op)
    if name == "ref":
        return _ref.conv2d_resample(x, w, f, up, down, pad, groups, bool(flip_weight), bool(flip_filter))
    return conv_strategy(name).conv2d_resample(x, w, f, up, down, pad, groups, bool(flip_weight), bool(flip_filter))
