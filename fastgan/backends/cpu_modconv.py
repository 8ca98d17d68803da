"""The cpu backend's convolutions: kernels of ``fastgan::modconv_epilogue*`` and ``fastgan::relayout``
(from ``torch.ops.fastgan_cpu``) and the cpu :class:`~fastgan.backends.kernel_conv.ConvStrategy`.

The strategy follows :mod:`fastgan.backends.cpu_policy`: oneDNN convolves channels_last (small NCHW
images without resampling stay NCHW), the modulation changes layout and dtype in the same pass
(``relayout`` with a scale), the convolution gradients take the layouts measured fastest, strided
transposed convolutions with few output channels run as GEMMs, and demodulation, noise, bias,
activation, gain and clamp are one pass (``modconv_epilogue``; in place outside autograd). Results
come back in the input's memory format; a result that changes layout with nothing but demodulation
to apply gets both in one ``relayout`` pass. Imported by :mod:`fastgan.backends.cpu`.
"""
from __future__ import annotations

from typing import Optional

import torch

import fastgan._C  # noqa: F401  (registers torch.ops.fastgan_cpu.*)

from . import cpu_policy
from .cpu_conv_transpose import conv_transpose2d as _gemm_conv_transpose2d
from .kernel_conv import ConvStrategy, register_conv_strategy
from .prims.layout import RELAYOUT, as_layout
from .prims.modconv import EPILOGUE, EPILOGUE_, EPILOGUE_GRAD, check_branch_args

__all__ = ["CpuConv"]

_raw = torch.ops.fastgan_cpu


def _operand(t: Optional[torch.Tensor], y: torch.Tensor) -> Optional[torch.Tensor]:
    """An epilogue operand rounded to ``y.dtype``, then widened to the kernel's accumulation dtype."""
    if t is None:
        return None
    return t.to(y.dtype).to(torch.float64 if y.dtype == torch.float64 else torch.float32)


def _operands(y, d, noise, bias):
    d, noise, bias = _operand(d, y), _operand(noise, y), _operand(bias, y)
    if noise is not None and noise.stride(2) != 1:   # the kernel needs unit stride along W only
        noise = noise.contiguous()
    return (None if d is None else d.contiguous()), noise, (None if bias is None else bias.contiguous())


@EPILOGUE.kernel("cpu")
def _epilogue(y, d, noise, bias, slope, gain, clamp):
    check_branch_args("modconv_epilogue", slope, gain)
    return _raw.modconv_epilogue(y, *_operands(y, d, noise, bias), slope, gain, clamp)


@EPILOGUE_.kernel("cpu")
def _epilogue_inplace(y, d, noise, bias, slope, gain, clamp):
    check_branch_args("modconv_epilogue_", slope, gain)
    _raw.modconv_epilogue_(y, *_operands(y, d, noise, bias), slope, gain, clamp)


@EPILOGUE_GRAD.kernel("cpu")
def _epilogue_grad(dout, out, slope, gain, clamp):
    if dout.stride() != out.stride():   # the kernel walks both in out's order
        dout = torch.empty_like(out).copy_(dout)
    return _raw.modconv_epilogue_grad(dout, out, slope, gain, clamp)


RELAYOUT.kernel("cpu")(_raw.relayout)


def _slope(act: str, alpha: float) -> Optional[float]:
    """The negative-side slope of an activation the epilogue kernel covers (None: not covered)."""
    return {"linear": 1.0, "relu": 0.0, "lrelu": float(alpha)}.get(act)


def _channel_noise(noise: torch.Tensor, y: torch.Tensor) -> Optional[torch.Tensor]:
    """``noise`` as the [N, H, W] (broadcast) view the epilogue reads, or None if it varies over channels."""
    n, _, h, w = y.shape
    if noise.ndim >= 3 and noise.shape[-3] != 1:
        return None
    return noise.expand(n, 1, h, w)[:, 0]


class CpuConv(ConvStrategy):
    """The cpu backend's :class:`ConvStrategy` (see the module docstring)."""

    memory_format = torch.channels_last

    def grad_layouts(self, w, padding, transpose):
        return cpu_policy.DGRAD_CHANNELS_LAST, cpu_policy.wgrad_channels_last(w.shape[2:], padding, transpose)

    def compute_dtype(self, dtype):
        return cpu_policy.conv_dtype(dtype)

    def convolve(self, x, w, stride, padding, groups, transpose):
        if transpose and cpu_policy.gemm_deconv_pays(x, w, stride, padding, groups):
            return _gemm_conv_transpose2d(x, w, stride)
        return super().convolve(x, w, stride, padding, groups, transpose)

    def work_layout(self, x, up, down):
        return cpu_policy.conv_memory_format(x, up, down)

    def to_layout(self, t, fmt):
        return as_layout(t, fmt == torch.channels_last, self.backend)

    def modulate(self, x, styles, up, down):
        """One pass: scale the input channels, change to the layout and dtype oneDNN convolves in."""
        cdt = cpu_policy.conv_dtype(x.dtype)
        fmt = self.work_layout(x, up, down)
        if x.dtype == cdt and cdt in (torch.float32, torch.float64):
            xd = x if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last) else x.contiguous()
            return RELAYOUT(xd, styles, fmt == torch.channels_last, backend=self.backend)
        s4 = styles.to(cdt).reshape(x.shape[0], x.shape[1], 1, 1)
        if torch.is_grad_enabled() and (x.requires_grad or styles.requires_grad):
            return x.to(dtype=cdt, memory_format=fmt) * s4
        xs = torch.empty(x.shape, dtype=cdt, device=x.device, memory_format=fmt)
        return torch.mul(x, s4, out=xs)

    def epilogue(self, y, dcoefs, noise, epilogue, fmt):
        if noise is None and epilogue.is_identity():
            if dcoefs is None:
                return self.to_layout(y, fmt)
            if y.dtype in (torch.float32, torch.float64) and not y.is_contiguous(memory_format=fmt):
                return RELAYOUT(y, dcoefs, fmt == torch.channels_last, backend=self.backend)   # demodulate + relayout
        slope = _slope(epilogue.act, epilogue.alpha)
        nz = None if noise is None else _channel_noise(noise, y)
        dense = y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last)
        if (slope is None or slope < 0 or (slope != 1 and epilogue.gain <= 0) or (noise is not None and nz is None)
                or not dense):
            return super().epilogue(y, dcoefs, noise, epilogue, fmt)
        clamp = -1.0 if epilogue.clamp is None else float(epilogue.clamp)
        args = (y, dcoefs, nz, epilogue.bias, slope, float(epilogue.gain), clamp)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args[:4]):
            out = EPILOGUE(*args, backend=self.backend)
        else:
            EPILOGUE_(*args, backend=self.backend)
            out = y
        return self.to_layout(out, fmt)


register_conv_strategy(CpuConv("cpu"))
