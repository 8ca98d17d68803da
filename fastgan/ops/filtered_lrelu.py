"""``filtered_lrelu``: bias, FIR upsampling, leaky ReLU and clamp, FIR downsampling in one op (StyleGAN3).

Signature-compatible with ``torch_utils.ops.filtered_lrelu.filtered_lrelu`` of the NVlabs StyleGAN3 code.

The fast backends implement one fused primitive and get every derivative from it. With the
intermediate (upsampled, filtered) image ``u`` and the activation mask ``m`` (0 where the output
was clamped, ``slope`` where ``u <= 0``, 1 elsewhere; stored as 2 bits per value by the forward):

    forward      y  = D(act(G * U(x + b)))                 G = gain * up**2
    backward     dx = U^T(G * m * D^T(dy)),  db = sum(dx)
    d(dx)/d(dy)  is the masked op D(G * m * U(.)), whose own transpose is the backward again,

so gradients of every order are the same fused kernel with the roles of (fu, up) and (fd, down)
swapped. The derivative of ``dx`` with respect to ``x`` and ``b`` is zero almost everywhere.
"""
from __future__ import annotations

import importlib
import logging
import operator
from typing import Optional, Tuple

import numpy as np
import torch

from .. import backends
from ..backends.ref.filtered_lrelu import filtered_lrelu as _ref_filtered_lrelu
from ._args import Padding, check_filter, check_float, check_same_device, check_tensor, filter_size, parse_padding

__all__ = ["filtered_lrelu"]

_log = logging.getLogger(__name__)

_KERNEL_MODULES = {"cpu": "fastgan.backends.cpu_filtered_lrelu", "triton": "fastgan.backends.triton.filtered_lrelu",
                   "cuda": "fastgan.backends.cuda_filtered_lrelu"}


def _explicit(impl: Optional[str]) -> bool:
    return (impl is not None and impl != "cuda") or backends.current() != "auto"


def kernels_for(name: str, impl: Optional[str], op: str, modules=_KERNEL_MODULES, strict: Optional[bool] = None):
    """The op's kernel module of backend ``name``, or None to run ``ref``.

    A backend without this op (an extension built before it existed, or a CUDA extension without
    it, which then borrows triton's kernel) falls back when it was chosen automatically and raises
    :class:`~fastgan.backends.BackendUnavailable` when it was asked for explicitly.
    """
    if name == "ref":
        return None
    strict = _explicit(impl) if strict is None else strict
    try:
        if name not in modules:
            raise backends.BackendUnavailable(f"{op}: backend {name!r} has no kernel for this op")
        if name == "triton":
            backends.get("triton")
        return importlib.import_module(modules[name])
    except (backends.BackendUnavailable, ImportError) as e:
        if name == "cuda":
            _log.debug("%s: no CUDA kernel (%s); trying triton", op, e)
            return kernels_for("triton", None, op, modules, strict=False)
        if strict:
            raise backends.BackendUnavailable(str(e)) from e
        _log.debug("%s: %s; using the ref backend", op, e)
        return None


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


def _size(n: int, up: int, down: int, p0: int, p1: int, f1: int, f2: int) -> Tuple[int, int]:
    """(intermediate, output) length on one axis."""
    mid = n * up + p0 + p1 - f1 + 1
    return mid, (mid - f2 + down) // down


def _corr(f: torch.Tensor, flip_filter: bool) -> torch.Tensor:
    """Taps in correlation order (kernels never flip), float32, contiguous."""
    f = f.to(torch.float32)
    return (f if flip_filter else f.flip(list(range(f.ndim)))).contiguous()


class _Plan:
    """Static arguments of one fused call: geometry of the forward and of its transpose."""

    def __init__(self, xshape, fu, fd, up, down, pad, gain, slope, clamp, flip_filter):
        self.up, self.down, self.pad = up, down, pad
        self.gain = float(gain) * up * up
        self.slope, self.clamp = slope, clamp
        self.fu, self.fd = _corr(fu, flip_filter), _corr(fd, flip_filter)
        self.fu_t, self.fd_t = _corr(fu, not flip_filter), _corr(fd, not flip_filter)
        (fuw, fuh), (fdw, fdh) = filter_size(fu), filter_size(fd)
        h, w = xshape[2], xshape[3]
        px0, px1, py0, py1 = pad
        self.mid_w, self.out_w = _size(w, up, down, px0, px1, fuw, fdw)
        self.mid_h, self.out_h = _size(h, up, down, py0, py1, fuh, fdh)
        self.pad_t1 = (fdw - 1, self.mid_w - self.out_w * down, fdh - 1, self.mid_h - self.out_h * down)
        self.pad_t2 = (fuw - px0 - 1, w * up - self.mid_w + px0 - up + 1,
                       fuh - py0 - 1, h * up - self.mid_h + py0 - up + 1)

    def _geometry(self, transposed):
        if transposed:
            return self.fd_t, self.fu_t, self.down, self.up, self.pad_t1, self.pad_t2
        return self.fu, self.fd, self.up, self.down, self.pad, (0, 0, 0, 0)

    def forward(self, kernels, x, b, write_signs):
        return kernels.fused(x, b, *self._geometry(False), self.gain, self.slope, self.clamp, None, write_signs)

    def masked(self, kernels, t, signs, transposed):
        return kernels.fused(t, None, *self._geometry(transposed), self.gain, self.slope, self.clamp, signs,
                             False)[0]


class _FilteredLReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, kernels, plan):
        need = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        y, signs = plan.forward(kernels, x, b, need)
        if need:
            ctx.save_for_backward(signs)
        ctx.args = (kernels, plan, None if b is None else b.dtype)
        return y

    @staticmethod
    def backward(ctx, dy):
        (signs,) = ctx.saved_tensors
        kernels, plan, b_dtype = ctx.args
        dx = _Masked.apply(dy, signs, kernels, plan, True)
        db = dx.sum(dim=(0, 2, 3)).to(b_dtype) if b_dtype is not None and ctx.needs_input_grad[1] else None
        return dx, db, None, None


class _Masked(torch.autograd.Function):
    """The linear op with fixed activation mask; its derivative is the other orientation."""

    @staticmethod
    def forward(ctx, t, signs, kernels, plan, transposed):
        ctx.save_for_backward(signs)
        ctx.args = (kernels, plan, transposed)
        return plan.masked(kernels, t, signs, transposed)

    @staticmethod
    def backward(ctx, g):
        (signs,) = ctx.saved_tensors
        kernels, plan, transposed = ctx.args
        return _Masked.apply(g, signs, kernels, plan, not transposed), None, None, None, None


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
        [N, C, H', W'] in the dtype of ``x``, per axis ``(n*up + p0 + p1 - (f_u - 1) - (f_d - 1) + down - 1) // down``
        where ``f_u``, ``f_d`` are the filter lengths on that axis.
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
    up = _scale(up, "up", op)
    down = _scale(down, "down", op)
    pad = parse_padding(padding, op)
    gain = check_float(gain, "gain", op)
    slope = check_float(slope, "slope", op)
    if clamp is not None:
        clamp = check_float(clamp, "clamp", op)
        if clamp < 0:
            raise ValueError(f"{op}: clamp must be None or >= 0, got {clamp}")
    (fuw, fuh), (fdw, fdh) = filter_size(fu), filter_size(fd)
    out_h = _size(x.shape[2], up, down, pad[2], pad[3], fuh, fdh)[1]
    out_w = _size(x.shape[3], up, down, pad[0], pad[1], fuw, fdw)[1]
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{op}: empty output {out_h}x{out_w} for x {list(x.shape)}, fu {list(fu.shape)}, "
                         f"fd {list(fd.shape)}, up {up}, down {down}, padding {pad}; the padded upsampled image "
                         f"must be at least as large as the two filters together")
    kernels = kernels_for(backends.resolve(impl, x, op), impl, op)
    if kernels is None:
        return _ref_filtered_lrelu(x, fu, fd, b, up, down, pad, gain, slope, clamp, bool(flip_filter))
    plan = _Plan(x.shape, fu, fd, up, down, pad, gain, slope, clamp, bool(flip_filter))
    return _FilteredLReLU.apply(x, b, kernels, plan)
