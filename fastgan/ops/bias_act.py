"""``bias_act``: fused bias, activation, gain and clamp.

Signature-compatible with ``torch_utils.ops.bias_act.bias_act`` of the NVlabs code.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from ..backends import ref
from ..backends.activations import ACTIVATIONS
from ._args import check_float, check_same_device, check_tensor

__all__ = ["bias_act", "ACTIVATIONS"]


def _bias_shape(x: torch.Tensor, dim: int):
    shape = [1] * x.ndim
    shape[dim] = -1
    return shape


class _BiasAct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, kernels, dim, act, alpha, gain, clamp):
        ctx.save_for_backward(x, b)
        ctx.args = (kernels, dim, act, alpha, gain, clamp)
        return kernels.bias_act(x, b, dim, act, alpha, gain, clamp)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        dx, db = _BiasActGrad.apply(dy, x, b, *ctx.args)
        return dx, (db if b is not None else None), None, None, None, None, None, None


class _BiasActGrad(torch.autograd.Function):
    """``(dx, db)`` of bias_act given ``dy``; differentiable once more (R1 needs it)."""

    @staticmethod
    def forward(ctx, dy, x, b, kernels, dim, act, alpha, gain, clamp):
        ctx.save_for_backward(dy, x, b)
        ctx.args = (kernels, dim, act, alpha, gain, clamp)
        dx, db = kernels.bias_act_grad(dy, x, b, dim, act, alpha, gain, clamp)
        if db is None:
            db = dx.new_zeros(0)
        return dx, db

    @staticmethod
    def backward(ctx, g_dx, g_db):
        dy, x, b = ctx.saved_tensors
        kernels, dim, act, alpha, gain, clamp = ctx.args
        g = g_dx
        if b is not None and g_db is not None and g_db.numel() == b.numel():
            g = g + g_db.reshape(_bias_shape(x, dim)).to(g.dtype)
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _BiasActGrad.apply(g, x, b, *ctx.args)[0]
        if ACTIVATIONS[act].smooth and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = kernels.bias_act_grad2(g, dy, x, b, dim, act, alpha, gain, clamp)
            if b is not None and ctx.needs_input_grad[2]:
                d_b = d_x.sum([i for i in range(x.ndim) if i != dim]).to(b.dtype)
        return d_dy, d_x, d_b, None, None, None, None, None, None


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = "linear",
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: Optional[str] = None) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` in one pass.

    Args:
        x: any shape, floating point, any memory format (kept in the output).
        b: bias [x.shape[dim]] broadcast along ``dim``, or None.
        dim: the dimension of ``x`` that ``b`` runs along.
        act: 'linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus' or 'swish'.
        alpha: negative slope of 'lrelu' (default 0.2); ignored by the others.
        gain: scale after the activation; default sqrt(2) for relu/lrelu/swish, else 1.
        clamp: clamp the output to [-clamp, clamp]; None or a negative value disables it. The
            gradient is zero where the output was clamped.
        impl: backend; None defers to ``fastgan.backends``.

    Returns:
        Tensor of the shape, dtype and memory format of ``x``.
    """
    op = "bias_act"
    check_tensor(x, "x", op)
    if act not in ACTIVATIONS:
        raise ValueError(f"{op}: act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or not 0 <= dim < max(x.ndim, 1):
        raise ValueError(f"{op}: dim must be an int in [0, {x.ndim - 1}] for x of shape {list(x.shape)}, got {dim!r}")
    if b is not None:
        check_tensor(b, "b", op, ndim=1)
        check_same_device(b, "b", x, op)
        if b.shape[0] != x.shape[dim]:
            raise ValueError(f"{op}: b must have x.shape[{dim}] = {x.shape[dim]} elements, got {b.shape[0]}")
    spec = ACTIVATIONS[act]
    alpha = spec.def_alpha if alpha is None else check_float(alpha, "alpha", op)
    gain = spec.def_gain if gain is None else check_float(gain, "gain", op)
    clamp = None if clamp is None else check_float(clamp, "clamp", op)
    if clamp is not None and clamp < 0:
        clamp = None
    if act == "linear" and b is None and gain == 1 and clamp is None:
        return x
    name = backends.resolve(impl, x, op)
    if name == "ref":
        return ref.bias_act(x, b, dim, act, alpha, gain, clamp)
    return _BiasAct.apply(x, b, backends.get(name), dim, act, alpha, gain, clamp)
