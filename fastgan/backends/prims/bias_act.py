"""``fastgan::bias_act`` and its derivatives: bias, activation, gain and clamp in one elementwise pass.

Arguments arrive validated and normalised by :func:`fastgan.ops.bias_act`: ``b`` is None or a 1-D
tensor of ``x.shape[dim]`` elements **in the dtype of x** (the public op rounds a float32 bias to a
float16/bfloat16 ``x`` first, once, for every backend), ``act`` is a name of
:data:`fastgan.backends.activations.ACTIVATIONS` and ``clamp`` is None or >= 0.

Operators (every output is a new tensor laid out like the dense form of its first array argument,
see :func:`dense`; float16/bfloat16 compute in float32 inside the kernels):

``bias_act(x, b, dim, act, alpha, gain, clamp)``
    ``y = clamp(gain * act(x + b), -clamp, clamp)``.
``bias_act_grad(dy, saved, b, dim, act, alpha, gain, clamp, from_output) -> (dx, db)``
    ``dx = dy * gain * act'(x + b)``, zero where the output was clamped; ``db`` is ``dx`` summed over
    every dim but ``dim`` in the dtype of ``b`` (an empty tensor when ``b`` is None). ``saved`` is
    what the forward kept: ``x`` (``from_output=False``) or the output ``y`` (``from_output=True``).
``bias_act_grad2(g, dy, x, b, dim, act, alpha, gain, clamp)``
    ``g * dy * gain * act''(x + b)``, zero where clamped: the x-derivative of ``sum(g * dx)``.

**What the forward saves.** linear, relu and lrelu have a derivative that is a function of the
output (:func:`from_output`): the forward saves ``y`` (which the next layer keeps alive anyway), not
``x``; linear without clamp saves nothing. The smooth activations save ``x``. Reading the derivative
off ``y``: ``act'(z)`` is 1 where ``y > 0`` and the negative slope (0 for relu, ``alpha`` for lrelu,
1 for linear) elsewhere, and the gradient passes where ``|y| < c``, ``c`` the clamp bound as stored
in y's dtype (:func:`saturation`). At an exact tie ``|gain * act(x + b)| == clamp`` the ref
(``torch.clamp``, closed interval) passes the gradient and these kernels do not; for
float16/bfloat16 every value that rounds to the bound counts as clamped.

**Double backward.** ``bias_act_grad`` is differentiable again (R1 and path-length regularisation
need it): w.r.t. ``dy`` it is itself; w.r.t. ``x`` it is ``bias_act_grad2`` for the smooth
activations and zero for the piecewise-linear ones. For relu and lrelu a ``b`` that requires grad
receives a zero tensor (not None), as torch autograd of the ref composite gives it: an optimiser
then treats that bias exactly as in the NVlabs reference (Adam applies its momentum). Third-order
derivatives of the smooth activations are not supported (``bias_act_grad2`` raises), as in NVlabs.

**Determinism.** Every output is elementwise except the bias gradient. Under
``torch.use_deterministic_algorithms(True)`` it is summed by :func:`channel_sum`: on CPU in a fixed
pairwise order that does not depend on the thread count, on CUDA by torch's (deterministic)
reduction instead of the ``atomicAdd`` kernel.
"""
from __future__ import annotations

from typing import List, Optional

import torch

from ..activations import ACTIVATIONS
from ..library import Primitive
from ._common import compute_dtype

_ARGS = "int dim, str act, float alpha, float gain, float? clamp"

BIAS_ACT = Primitive("bias_act", f"(Tensor x, Tensor? b, {_ARGS}) -> Tensor",
                     doc="bias, activation, gain, clamp (elementwise)")
BIAS_ACT_GRAD = Primitive("bias_act_grad",
                          f"(Tensor dy, Tensor saved, Tensor? b, {_ARGS}, bool from_output) -> (Tensor, Tensor)",
                          doc="(dx, db) of bias_act from x or from its output")
BIAS_ACT_GRAD2 = Primitive("bias_act_grad2", f"(Tensor g, Tensor dy, Tensor x, Tensor? b, {_ARGS}) -> Tensor",
                           doc="second derivative of bias_act (smooth activations)")

_PIECEWISE_LINEAR = ("linear", "relu", "lrelu")


def from_output(act: str, alpha: float, gain: float) -> bool:
    """True when the gradient of bias_act can be read off its output (what the forward then saves).

    linear always; relu and lrelu when ``gain > 0`` (and ``alpha >= 0`` for lrelu), so that the sign
    of ``y`` is the sign of ``x + b``.
    """
    if act == "linear":
        return True
    return act in _PIECEWISE_LINEAR and gain > 0 and (act != "lrelu" or alpha >= 0)


def negative_slope(act: str, alpha: float) -> float:
    """``act'`` where ``x + b <= 0`` for a piecewise-linear activation: 1, 0 or ``alpha``."""
    return {"linear": 1.0, "relu": 0.0}.get(act, alpha)


def saturation(clamp: float, dtype: torch.dtype) -> float:
    """The value a clamped output holds in ``dtype``: ``clamp`` rounded to the compute dtype, then to ``dtype``."""
    return float(torch.tensor(clamp, dtype=compute_dtype(dtype)).to(dtype))


def dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` if it covers its storage densely in some dimension order, else a dense copy.

    The copy follows ``torch.empty_like`` (contiguous, or channels_last when ``t``'s strides suggest
    it), which is also what the fake kernels return, so every backend lays outputs out alike.
    """
    like = torch.empty_like(t)
    return t if like.stride() == t.stride() else like.copy_(t)


def strided_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (shape of the dense ``like``) with the dtype and strides of ``like``; copies only when they differ."""
    if t.dtype == like.dtype and t.stride() == like.stride():
        return t
    return torch.empty_like(like).copy_(t)


def bias_shape(ndim: int, dim: int) -> List[int]:
    """The shape that broadcasts a bias vector along ``dim`` of an ``ndim``-D tensor."""
    shape = [1] * ndim
    shape[dim] = -1
    return shape


def _fixed_order_sum(t: torch.Tensor, dim: int) -> torch.Tensor:
    """float64 sums of ``t`` over every dim but ``dim``, added pairwise in an order fixed by the shape.

    Only elementwise additions: the result is bitwise the same for any number of threads.
    """
    rows = t.movedim(dim, 0).to(torch.float64, memory_format=torch.contiguous_format)
    rows = rows.reshape(t.shape[dim], -1)
    if rows.shape[1] == 0:
        return rows.new_zeros(rows.shape[0])
    while rows.shape[1] > 1:
        half = rows.shape[1] // 2
        folded = rows[:, :half] + rows[:, half:2 * half]
        if rows.shape[1] % 2:
            folded[:, :1] += rows[:, 2 * half:]
        rows = folded
    return rows[:, 0]


def channel_sum(t: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """``t`` summed over every dim but ``dim``, as ``dtype`` (the bias gradient).

    Accumulates in float32 (float64 for float64 data); deterministic under
    ``torch.use_deterministic_algorithms(True)`` (see the module docstring).
    """
    if t.device.type == "cpu" and torch.are_deterministic_algorithms_enabled():
        return _fixed_order_sum(t, dim).to(dtype)
    dims = [i for i in range(t.ndim) if i != dim]
    return t.sum(dims, dtype=compute_dtype(t.dtype)).to(dtype)


def bias_grad(dx: torch.Tensor, b: Optional[torch.Tensor], dim: int) -> torch.Tensor:
    """The ``db`` output of ``bias_act_grad``: :func:`channel_sum` of ``dx``, or an empty tensor without ``b``."""
    return dx.new_empty(0) if b is None else channel_sum(dx, dim, b.dtype)


def grad_from_output(dy: torch.Tensor, y: torch.Tensor, act: str, alpha: float, gain: float,
                     clamp: Optional[float]) -> torch.Tensor:
    """``dx`` of a piecewise-linear bias_act read off its output ``y``, in PyTorch ops (any device).

    ``dy * gain * (y > 0 ? 1 : negative_slope)``, zero where ``|y| >= saturation(clamp)`` (and where
    ``y`` is NaN), computed in the compute dtype and rounded once: the same numbers as the fused
    kernels. The layout of the dense ``y``.
    """
    y = dense(y)
    acc = compute_dtype(y.dtype)
    g_pos = torch.tensor(gain, dtype=acc, device=y.device)
    g_neg = g_pos * negative_slope(act, alpha)
    factor = torch.where(y > 0, g_pos, g_neg)
    if clamp is not None:
        factor = torch.where(y.abs() < saturation(clamp, y.dtype), factor, torch.zeros((), dtype=acc, device=y.device))
    return (strided_like(dy, y).to(acc) * factor).to(y.dtype)


# ---------------------------------------------------------------------------------------------- fake kernels
@BIAS_ACT.register_fake
def _fake(x, b, dim, act, alpha, gain, clamp, backend):
    return torch.empty_like(x)


@BIAS_ACT_GRAD.register_fake
def _fake_grad(dy, saved, b, dim, act, alpha, gain, clamp, from_output_, backend):
    return torch.empty_like(saved), (saved.new_empty(0) if b is None else b.new_empty(b.shape))


@BIAS_ACT_GRAD2.register_fake
def _fake_grad2(g, dy, x, b, dim, act, alpha, gain, clamp, backend):
    return torch.empty_like(x)


# ------------------------------------------------------------------------------------------------- autograd
def _setup(ctx, inputs, output):
    x, b, dim, act, alpha, gain, clamp, backend = inputs
    use_y = from_output(act, alpha, gain)
    if not use_y:
        saved = x
    elif act == "linear" and clamp is None:
        saved = None  # dx = dy * gain: nothing to keep
    else:
        saved = output
    ctx.save_for_backward(saved, b)
    ctx.cfg = (dim, act, alpha, gain, clamp, use_y, backend)
    ctx.set_materialize_grads(False)  # no zero-filled backward pass when no gradient arrives


def _backward(ctx, dy):
    if dy is None:
        return (None,) * 8
    saved, b = ctx.saved_tensors
    dim, act, alpha, gain, clamp, use_y, backend = ctx.cfg
    want_x, want_b = ctx.needs_input_grad[:2]
    # From the output, b is only needed for db; from x, the kernel needs its values.
    bias = b if (want_b or not use_y) else None
    dx, db = BIAS_ACT_GRAD(dy, dy if saved is None else saved, bias, dim, act, alpha, gain, clamp, use_y,
                           backend=backend)
    return dx if want_x else None, db if want_b else None, None, None, None, None, None, None


BIAS_ACT.register_autograd(_backward, setup_context=_setup)


def _setup_grad(ctx, inputs, output):
    dy, saved, b, dim, act, alpha, gain, clamp, use_y, backend = inputs
    smooth = ACTIVATIONS[act].smooth
    ctx.save_for_backward(saved, b, dy if smooth else None)
    ctx.cfg = (dim, act, alpha, gain, clamp, use_y, backend)
    ctx.set_materialize_grads(False)


def _backward_grad(ctx, g_dx, g_db):
    saved, b, dy = ctx.saved_tensors
    dim, act, alpha, gain, clamp, use_y, backend = ctx.cfg
    want_dy, want_saved, want_b = ctx.needs_input_grad[:3]
    none = (None,) * 7
    g = g_dx
    if b is not None and g_db is not None and g_db.numel():  # db = sum(dx): its gradient spreads over dx
        spread = g_db.to(saved.dtype).reshape(bias_shape(saved.ndim, dim))
        g = spread.expand(saved.shape) if g is None else g + spread
    if g is None:
        return (None, None, None) + none
    d_dy = d_saved = d_b = None
    if want_dy:
        d_dy = BIAS_ACT_GRAD(g, saved, None if use_y else b, dim, act, alpha, gain, clamp, use_y,
                             backend=backend)[0]
    if ACTIVATIONS[act].smooth:
        if want_saved or want_b:
            d_x = BIAS_ACT_GRAD2(g, dy, saved, b, dim, act, alpha, gain, clamp, backend=backend)
            d_saved = d_x if want_saved else None
            d_b = channel_sum(d_x, dim, b.dtype) if want_b else None
    elif want_b and act != "linear":
        d_b = torch.zeros_like(b)  # relu/lrelu: act'' = 0, given as a tensor like torch autograd of the ref
    return (d_dy, d_saved, d_b) + none


BIAS_ACT_GRAD.register_autograd(_backward_grad, setup_context=_setup_grad)


def _backward_grad2(ctx, grad):
    raise NotImplementedError("fastgan::bias_act supports first and second derivatives only "
                              "(a third derivative of a smooth activation was requested)")


BIAS_ACT_GRAD2.register_autograd(_backward_grad2)
