"""``conv2d_resample``: 2-D convolution with FIR up/downsampling, and ``no_weight_gradients``.

Signature-compatible with ``torch_utils.ops.conv2d_resample.conv2d_resample`` of the NVlabs code.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Optional, Tuple

import torch

from .. import backends
from ..backends.ref import conv2d_resample as _ref
from ._args import Padding, check_filter, check_same_device, check_tensor, parse_padding
from .upfirdn2d import upfirdn2d

__all__ = ["conv2d_resample", "no_weight_gradients", "weight_gradients_disabled"]

# A process-wide depth counter, not a thread-local: autograd runs CUDA backward passes on its own
# device threads, which must see the flag set by the thread that called autograd.grad.
_wgrad_depth = 0
_wgrad_lock = threading.Lock()


def weight_gradients_disabled() -> bool:
    """True while any :func:`no_weight_gradients` block is active."""
    return _wgrad_depth > 0


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """Skip convolution weight gradients in backward passes run inside the block.

    Meant for the inner ``torch.autograd.grad(..., inputs=images, create_graph=True)`` of a gradient
    penalty: that pass needs only input gradients, and the weight gradients it would compute are
    thrown away. Gradients taken later (outside the block) through the graph it created are exact.
    Do not differentiate w.r.t. convolution weights inside the block: they would be missing.
    Affects fastgan's kernel backends (the ref backend's plain convolutions skip them by themselves).
    The flag is process-wide (like NVlabs' ``conv2d_gradfix``): do not differentiate w.r.t. weights in
    other threads meanwhile.
    """
    global _wgrad_depth
    if not disable:
        yield
        return
    with _wgrad_lock:
        _wgrad_depth += 1
    try:
        yield
    finally:
        with _wgrad_lock:
            _wgrad_depth -= 1


class _Conv(torch.autograd.Function):
    """F.conv2d / F.conv_transpose2d whose backward honours :func:`no_weight_gradients`.

    The backward is :class:`_ConvGrad`, whose own backward is written with the same two kernels
    (convolution and ``aten.convolution_backward``), so every order of gradient stays on them.
    """

    @staticmethod
    def forward(ctx, x, w, stride, padding, groups, transpose):
        ctx.save_for_backward(x, w)
        ctx.args = (stride, tuple(padding), groups, transpose)
        return _ref.torch_conv(x, w, stride, padding, groups, transpose)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1] and not weight_gradients_disabled()
        if not (need_x or need_w):
            return None, None, None, None, None, None
        dx, dw = _ConvGrad.apply(dy, x, w, ctx.args, need_x, need_w)
        return dx, dw, None, None, None, None


def _layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``t`` in the requested memory format on CPU (see :func:`fastgan.backends.cpu.as_layout`; the
    relayout kernel is not differentiable, so tensors that autograd tracks use ``contiguous``);
    other devices keep their layout."""
    if t.device.type != "cpu":
        return t
    if backends.available("cpu") and not (torch.is_grad_enabled() and t.requires_grad):
        from ..backends.cpu import as_layout
        return as_layout(t, channels_last)
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _conv_grads(dy, x, w, args, need_x: bool, need_w: bool):
    """``(dx, dw)`` of the convolution (None where not needed). On CPU the data gradient runs
    channels_last and the weight gradient NCHW: oneDNN's weight-gradient kernel is up to 2x slower
    on channels_last activations on this class of CPU (``fastgan bench conv``, R1 step)."""
    stride, padding, groups, transpose = args

    def grads(dy_, x_, mask):
        return torch.ops.aten.convolution_backward(
            dy_, x_, w, None, [stride, stride], list(padding), [1, 1], transpose, [0, 0], groups, mask + [False])

    if dy.device.type != "cpu":
        dx, dw, _ = grads(dy, x, [need_x, need_w])
        return (dx if need_x else None), (dw if need_w else None)
    dx = grads(_layout(dy, True), _layout(x, True), [True, False])[0] if need_x else None
    dw = grads(_layout(dy, False), _layout(x, False), [False, True])[1] if need_w else None
    return dx, dw


class _ConvGrad(torch.autograd.Function):
    """``(dx, dw)`` of a convolution ``y = C(x, w)`` given ``dy`` (either may be skipped).

    Both are linear in ``dy``, and ``C`` is bilinear, so for incoming ``(gx, gw)``:
    ``d dy = C(gx, w) + C(x, gw)``, ``d w = dw(dy; input=gx)``, ``d x = dx(dy; weight=gw)``.
    ATen's generic double backward computes the last two as convolutions over the batch axis with
    image-sized kernels, which oneDNN runs at a fraction of its speed; here they are ordinary
    weight and data gradients.
    """

    @staticmethod
    def forward(ctx, dy, x, w, args, need_x, need_w):
        ctx.save_for_backward(dy, x, w)
        ctx.args = args
        return _conv_grads(dy, x, w, args, need_x, need_w)

    @staticmethod
    def backward(ctx, gx, gw):
        dy, x, w = ctx.saved_tensors
        args = ctx.args
        need_dy, need_x, need_w = ctx.needs_input_grad[:3]
        d_dy = d_x = d_w = None
        if need_dy:
            if gx is not None:
                d_dy = _Conv.apply(_layout(gx, True), w, *args)
            if gw is not None:
                term = _Conv.apply(_layout(x, True), gw, *args)
                d_dy = term if d_dy is None else d_dy + term
        if need_w and gx is not None:
            d_w = _ConvGrad.apply(dy, gx, w, args, False, True)[1]
        if need_x and gw is not None:
            d_x = _ConvGrad.apply(dy, x, gw, args, True, False)[0]
        return d_dy, d_x, d_w, None, None, None


def kernel_conv(x: torch.Tensor, w: torch.Tensor, stride: int, padding: Tuple[int, int], groups: int,
                transpose: bool) -> torch.Tensor:
    """The convolution primitive of the kernel backends (see :class:`_Conv`).

    CPU activations are convolved channels_last (oneDNN's native layout: no reorders per call); the
    output stays channels_last, so a network pays the layout change once, at its first convolution.
    Strided transposed convolutions with few output channels run as tiled GEMMs outside autograd
    (:mod:`fastgan.backends.cpu_conv_transpose`).
    """
    x = _layout(x, channels_last=True)
    if transpose and x.device.type == "cpu":
        from ..backends import cpu_conv_transpose
        if cpu_conv_transpose.applies(x, w, stride, padding, groups):
            return cpu_conv_transpose.conv_transpose2d(x, w, stride)
    if not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)):
        return _ref.torch_conv(x, w, stride, padding, groups, transpose)
    return _Conv.apply(x, w, stride, padding, groups, transpose)


def _kernel_fir(name: str):
    def fir(x, f, up, down, pad, flip_filter, gain):
        return upfirdn2d(x, f, up=up, down=down, padding=list(pad), flip_filter=flip_filter, gain=gain, impl=name)
    return fir


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
        [N, O, (H*up + y0 + y1 - kh + 1) // down, (W*up + x0 + x1 - kw + 1) // down]. On the cpu
        backend the output is channels_last (the convolutions run in oneDNN's native layout).
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
    return _ref.conv2d_resample(x, w, f, up, down, pad, groups, bool(flip_weight), bool(flip_filter),
                                conv=kernel_conv, fir=_kernel_fir(name))
