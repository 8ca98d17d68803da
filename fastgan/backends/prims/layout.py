"""``fastgan::relayout``: copy a 4-D tensor into NCHW or channels_last order, optionally scaling every
(sample, channel) plane in the same pass; plus the memory-format helpers built on it.

``relayout(x, scale, channels_last)`` returns a new tensor equal to ``x * scale[n, c]`` (``x`` when
``scale`` is None) whose memory format is channels_last or contiguous as asked. ``x`` is a float32 or
float64 [N, C, H, W] tensor, contiguous or channels_last; ``scale`` holds N*C numbers (any float
dtype; rounded to ``x.dtype`` first). It is linear in ``x`` and in ``scale``: the derivative w.r.t.
``x`` is the same operator back into ``x``'s memory format, so every order of derivative stays on the
kernel. Only the cpu backend has a kernel (a tiled transpose, much faster than
``x.contiguous(memory_format=...)`` across layouts); other backends raise ``BackendUnavailable``.
"""
from __future__ import annotations

import torch

from ..library import Primitive

__all__ = ["RELAYOUT", "memory_format_of", "as_layout"]

RELAYOUT = Primitive("relayout", "(Tensor x, Tensor? scale, bool channels_last) -> Tensor",
                     doc="copy into NCHW or channels_last order, optionally scaled per (sample, channel)")

_KERNEL_DTYPES = (torch.float32, torch.float64)


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """The memory format an op keeps for ``t``: channels_last when the 4-D ``t`` is channels_last
    contiguous and not also plain contiguous (size-1 dims make a tensor both), else contiguous."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` if it is contiguous or channels_last (what the kernel reads), else a contiguous copy."""
    if t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last):
        return t
    return t.contiguous()


def as_layout(t: torch.Tensor, channels_last: bool, backend: str) -> torch.Tensor:
    """``t`` in the requested memory format: ``t`` itself when it already is, through
    :data:`RELAYOUT` on ``backend`` for float32/float64 4-D tensors, through ``contiguous`` otherwise.
    Differentiable."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if t.is_contiguous(memory_format=fmt):
        return t
    if t.dim() == 4 and t.dtype in _KERNEL_DTYPES:
        return RELAYOUT(_dense(t), None, channels_last, backend=backend)
    return t.contiguous(memory_format=fmt)


@RELAYOUT.register_fake
def _fake(x, scale, channels_last, backend):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def _setup_context(ctx, inputs, output):
    x, scale, channels_last, backend = inputs
    need_x, need_scale = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    ctx.save_for_backward(x if need_scale else None, scale if need_x else None)
    ctx.x_channels_last = memory_format_of(x) == torch.channels_last
    ctx.scale_meta = None if scale is None else (tuple(scale.shape), scale.dtype)
    ctx.backend = backend


def _backward(ctx, dout):
    x, scale = ctx.saved_tensors
    dx = dscale = None
    if ctx.needs_input_grad[0]:
        if scale is None:
            dx = as_layout(dout, ctx.x_channels_last, ctx.backend)
        else:
            dx = RELAYOUT(_dense(dout), scale, ctx.x_channels_last, backend=ctx.backend)
    if ctx.needs_input_grad[1]:
        shape, dtype = ctx.scale_meta
        dscale = (dout * x).sum(dim=(2, 3)).reshape(shape).to(dtype)
    return dx, dscale, None, None


RELAYOUT.register_autograd(_backward, setup_context=_setup_context)
