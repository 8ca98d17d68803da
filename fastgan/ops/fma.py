"""``fma(a, b, c) = a * b + c`` with a lean backward (signature-compatible with NVlabs ``fma.fma``)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .. import backends
from ._args import check_tensor

__all__ = ["fma", "unbroadcast"]


def unbroadcast(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Sum ``t`` over the dimensions that broadcasting a tensor of ``shape`` up to ``t.shape`` added.

    The result has exactly ``shape``: it is the gradient of that smaller tensor when ``t`` is the
    gradient of the broadcast one.
    """
    target = tuple(shape)
    lead = t.ndim - len(target)
    if lead < 0:
        raise ValueError(f"unbroadcast: shape {list(target)} has more dimensions than t {list(t.shape)}")
    widened = [lead + k for k, size in enumerate(target) if size == 1 and t.shape[lead + k] != 1]
    summed = list(range(lead)) + widened
    if summed:
        t = t.sum(dim=summed, keepdim=True)
    return t.reshape(target)


class _Fma(torch.autograd.Function):
    """``a * b + c``; the backward multiplies and un-broadcasts with differentiable ops."""

    @staticmethod
    def forward(ctx, factor0, factor1, addend):
        ctx.save_for_backward(factor0, factor1)
        ctx.addend_shape = addend.shape
        return torch.addcmul(addend, factor0, factor1)

    @staticmethod
    def backward(ctx, grad):
        factor0, factor1 = ctx.saved_tensors
        want0, want1, want_addend = ctx.needs_input_grad
        return (unbroadcast(grad * factor1, factor0.shape) if want0 else None,
                unbroadcast(grad * factor0, factor1.shape) if want1 else None,
                unbroadcast(grad, ctx.addend_shape) if want_addend else None)


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, impl: Optional[str] = None) -> torch.Tensor:
    """``a * b + c`` with broadcasting; gradients are summed back to each input's shape.

    The backward is written in differentiable PyTorch ops, so every order of gradient works.
    ``impl='ref'`` uses ``torch.addcmul`` with plain autograd.
    """
    op = "fma"
    for t, name in ((a, "a"), (b, "b"), (c, "c")):
        check_tensor(t, name, op)
    for t, name in ((b, "b"), (c, "c")):
        if t.device != a.device:
            raise ValueError(f"{op}: {name} is on {t.device} but a is on {a.device}; move all to one device")
    try:
        torch.broadcast_shapes(a.shape, b.shape, c.shape)
    except RuntimeError as err:
        raise ValueError(f"{op}: a {list(a.shape)}, b {list(b.shape)} and c {list(c.shape)} "
                         f"must broadcast to one shape") from err
    if backends.resolve(impl, a, op) == "ref":
        return torch.addcmul(c, a, b)
    return _Fma.apply(a, b, c)
