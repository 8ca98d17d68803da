"""``fma(a, b, c) = a * b + c`` with a lean backward (signature-compatible with NVlabs ``fma.fma``)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import backends
from ._args import check_tensor

__all__ = ["fma", "unbroadcast"]


def unbroadcast(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Sum ``t`` over the dimensions that broadcasting a tensor of ``shape`` up to ``t.shape`` added."""
    shape = tuple(shape)
    if tuple(t.shape) == shape:
        return t
    lead = t.ndim - len(shape)
    dims = [d for d in range(t.ndim) if t.shape[d] > 1 and (d < lead or shape[d - lead] == 1)]
    if dims:
        t = t.sum(dim=dims, keepdim=True)
    return t.reshape(shape)


class _Fma(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, c):
        ctx.save_for_backward(a, b)
        ctx.shapes = (a.shape, b.shape, c.shape)
        return torch.addcmul(c, a, b)

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        sa, sb, sc = ctx.shapes
        da = unbroadcast(dout * b, sa) if ctx.needs_input_grad[0] else None
        db = unbroadcast(dout * a, sb) if ctx.needs_input_grad[1] else None
        dc = unbroadcast(dout, sc) if ctx.needs_input_grad[2] else None
        return da, db, dc


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, impl: Optional[str] = None) -> torch.Tensor:
    """``a * b + c`` with broadcasting; gradients are summed back to each input's shape.

    The backward is written in differentiable PyTorch ops, so every order of gradient works.
    ``impl='ref'`` uses ``torch.addcmul`` with plain autograd.
    """
    op = "fma"
    for name, t in (("a", a), ("b", b), ("c", c)):
        check_tensor(t, name, op)
    try:
        torch.broadcast_shapes(a.shape, b.shape, c.shape)
    except RuntimeError:
        raise ValueError(f"fma: shapes of a {list(a.shape)}, b {list(b.shape)} and c {list(c.shape)} "
                         f"do not broadcast together") from None
    if backends.resolve(impl, a, op) == "ref":
        return torch.addcmul(c, a, b)
    return _Fma.apply(a, b, c)
