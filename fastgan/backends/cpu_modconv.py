"""cpu-backend epilogue of the modulated convolution: ``torch.ops.fastgan_cpu.modconv_epilogue`` (C++,
csrc/cpu/modconv_epilogue.cpp) wrapped for autograd.

``out = clamp(act(y * d[n, c] + noise[n, h, w] + bias[c]) * gain)`` in one pass over ``y``, for
act in linear / relu / lrelu. :func:`epilogue` returns None when a case is not covered (another
activation, a non-positive gain, noise that varies over channels, a strided ``y``); the caller then
composes the generic ops.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch

from ..ops.fma import unbroadcast

_SLOPE = {"linear": lambda alpha: 1.0, "relu": lambda alpha: 0.0, "lrelu": lambda alpha: alpha}


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """True when fastgan._C is importable and registers the epilogue ops."""
    try:
        import fastgan._C  # noqa: F401  (loading it registers torch.ops.fastgan_cpu.*)
    except ImportError:
        return False
    return hasattr(torch.ops.fastgan_cpu, "modconv_epilogue")


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _noise3(noise: Optional[torch.Tensor], y: torch.Tensor) -> Optional[torch.Tensor]:
    """Channel-broadcast noise as an [N, H, W] view in the accumulation dtype, unit stride along W."""
    if noise is None:
        return None
    n, _, h, w = y.shape
    nz = noise.to(_acc(y.dtype)).expand(n, 1, h, w)[:, 0]
    return nz if nz.stride(2) == 1 else nz.contiguous()


class _EpilogueGrad(torch.autograd.Function):
    """``dt = dout * d out / d v``: linear in dout with a piecewise-constant factor taken from ``out``."""

    @staticmethod
    def forward(ctx, dout, out, alpha, gain, clamp):
        ctx.save_for_backward(out)
        ctx.args = (alpha, gain, clamp)
        if dout.stride() != out.stride():
            dout = torch.empty_like(out).copy_(dout)
        return torch.ops.fastgan_cpu.modconv_epilogue_grad(dout, out, *ctx.args)

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        return _EpilogueGrad.apply(g, out, *ctx.args), None, None, None, None


class _Epilogue(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, d, noise, bias, alpha, gain, clamp):
        acc = _acc(y.dtype)
        out = torch.ops.fastgan_cpu.modconv_epilogue(y, None if d is None else d.to(acc).contiguous(), _noise3(noise, y),
                                                 None if bias is None else bias.to(acc).contiguous(),
                                                 alpha, gain, clamp)
        need_y, need_d = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.save_for_backward(out, y if need_d else None, d if need_y else None)
        ctx.args = (alpha, gain, clamp)
        ctx.meta = (None if noise is None else noise.shape, None if bias is None else bias.dtype,
                    None if d is None else d.dtype, None if noise is None else noise.dtype)
        return out

    @staticmethod
    def backward(ctx, dout):
        out, y, d = ctx.saved_tensors
        noise_shape, bias_dtype, d_dtype, noise_dtype = ctx.meta
        dt = _EpilogueGrad.apply(dout, out, *ctx.args)
        need = ctx.needs_input_grad
        dy = dd = dnoise = db = None
        if need[0]:
            dy = dt if d is None else dt * d.to(dt.dtype).reshape(d.shape[0], d.shape[1], 1, 1)
        if need[1]:
            dd = (dt * y).sum(dim=[2, 3], dtype=d_dtype)
        if need[2]:
            dnoise = unbroadcast(dt, noise_shape).to(noise_dtype)
        if need[3]:
            db = dt.sum(dim=[0, 2, 3], dtype=bias_dtype)
        return dy, dd, dnoise, db, None, None, None


def _channel_broadcast(noise: torch.Tensor, y: torch.Tensor) -> bool:
    return noise.ndim <= 2 or (noise.ndim <= 4 and noise.shape[-3] == 1 and (noise.ndim < 4 or noise.shape[0] in
                                                                              (1, y.shape[0])))


def epilogue(y: torch.Tensor, d: Optional[torch.Tensor], noise: Optional[torch.Tensor], bias: Optional[torch.Tensor],
             act: str, alpha: float, gain: float, clamp: Optional[float]) -> Optional[torch.Tensor]:
    """``clamp(act(y * d + noise + bias) * gain)`` (see the module docstring), or None if not covered."""
    if act not in _SLOPE or not available() or y.device.type != "cpu":
        return None
    if act != "linear" and gain <= 0:   # the sign of the output must tell the activation's branch
        return None
    if noise is not None and not _channel_broadcast(noise, y):
        return None
    if not (y.is_contiguous() or y.is_contiguous(memory_format=torch.channels_last)):
        return None
    slope = float(_SLOPE[act](alpha))
    cl = -1.0 if clamp is None else float(clamp)
    tensors = [t for t in (y, d, noise, bias) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _Epilogue.apply(y, d, noise, bias, slope, float(gain), cl)
    acc = _acc(y.dtype)
    return torch.ops.fastgan_cpu.modconv_epilogue_(y, None if d is None else d.to(acc).contiguous(), _noise3(noise, y),
                                               None if bias is None else bias.to(acc).contiguous(),
                                               slope, float(gain), cl)
