"""``fastgan::modconv_epilogue``: everything a synthesis layer does after its convolution, in one pass.

``modconv_epilogue(y, d, noise, bias, slope, gain, clamp)`` with ``y`` [N, C, H, W] returns::

    v   = y * d[n, c] + noise[n, h, w] + bias[c]          (absent terms drop out)
    out = clamp((v if v > 0 else slope * v) * gain, -clamp, clamp)     (no clamping when clamp < 0)

``d`` is [N, C], ``noise`` [N, H, W] (any strides; a broadcast view is fine), ``bias`` [C]. Each
operand is first rounded to ``y.dtype``, then everything is computed in float32 (float64 for float64
``y``) and the result rounded once to ``y.dtype`` -- the operands round like the ``ref`` composition
``bias_act(y * d.to(y.dtype) + noise.to(y.dtype), bias.to(y.dtype))``. The output keeps ``y``'s memory
format (contiguous or channels_last). Under autocast the op is not listed, so it runs in the dtype of
``y`` it is given. Covers linear (``slope = 1``), relu (0) and leaky relu; the derivative reads the
branch from the sign of ``out``, so ``slope >= 0`` and, unless ``slope == 1``, ``gain > 0``.

``modconv_epilogue_`` is the same computation written into ``y`` (inference only: no autograd).
``modconv_epilogue_grad(dout, out, slope, gain, clamp) = dout * d out / d v``, recovered from ``out``:
``gain`` where ``out > 0``, ``slope * gain`` elsewhere, zero where the output was clamped. It is
linear in ``dout`` and piecewise constant in ``out``, so it is its own derivative w.r.t. ``dout``:
every order of derivative of the epilogue runs on the kernels. Autograd saves ``out`` and, only when
their gradients are needed, ``y`` (for ``d``) and ``d`` (for ``y``). Everything is elementwise except
the gradients of ``d``, ``noise`` and ``bias`` (PyTorch sums over disjoint output elements; the bias
gradient, a sum over all but one dim, is :func:`~fastgan.backends.prims.bias_act.channel_sum`, of
fixed order under ``torch.use_deterministic_algorithms(True)``).
"""
from __future__ import annotations

import torch

from ..library import Primitive
from .bias_act import channel_sum

__all__ = ["EPILOGUE", "EPILOGUE_", "EPILOGUE_GRAD", "check_branch_args"]

_ARGS = "Tensor? d, Tensor? noise, Tensor? bias, float slope, float gain, float clamp"
EPILOGUE = Primitive("modconv_epilogue", f"(Tensor y, {_ARGS}) -> Tensor",
                     doc="clamp(act(y * d + noise + bias) * gain) for linear, relu and leaky relu")
EPILOGUE_ = Primitive("modconv_epilogue_", f"(Tensor(a!) y, {_ARGS}) -> ()",
                      doc="modconv_epilogue written into y (inference)")
EPILOGUE_GRAD = Primitive("modconv_epilogue_grad", "(Tensor dout, Tensor out, float slope, float gain, float clamp)"
                          " -> Tensor", doc="dout * d out / d v of modconv_epilogue, from its output")


def check_branch_args(op: str, slope: float, gain: float) -> None:
    """The activation's branch must be readable from the sign of the output (see the module docstring)."""
    if slope < 0:
        raise ValueError(f"{op}: slope must be >= 0, got {slope}")
    if slope != 1 and gain <= 0:
        raise ValueError(f"{op}: gain must be > 0 for a non-linear activation (slope {slope}), got {gain}")


@EPILOGUE.register_fake
def _fake(y, d, noise, bias, slope, gain, clamp, backend):
    return torch.empty_like(y)


@EPILOGUE_.register_fake
def _fake_inplace(y, d, noise, bias, slope, gain, clamp, backend):
    return None


@EPILOGUE_GRAD.register_fake
def _fake_grad(dout, out, slope, gain, clamp, backend):
    return torch.empty_like(out)


def _setup_context(ctx, inputs, output):
    y, d, noise, bias, slope, gain, clamp, backend = inputs
    need_y, need_d = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    ctx.save_for_backward(output, y if need_d else None, d if need_y else None)
    ctx.branch = (slope, gain, clamp, backend)
    ctx.dtypes = tuple(None if t is None else t.dtype for t in (d, noise, bias))


def _backward(ctx, dout):
    out, y, d = ctx.saved_tensors
    need = ctx.needs_input_grad
    slope, gain, clamp, backend = ctx.branch
    d_dtype, noise_dtype, bias_dtype = ctx.dtypes
    dv = EPILOGUE_GRAD(dout, out, slope, gain, clamp, backend=backend)
    dy = dd = dnoise = dbias = None
    if need[0]:
        dy = dv if d is None else dv * d.to(dv.dtype)[:, :, None, None]
    if need[1]:
        dd = (dv * y).sum(dim=(2, 3), dtype=d_dtype)
    if need[2]:
        dnoise = dv.sum(dim=1, dtype=noise_dtype)
    if need[3]:
        dbias = channel_sum(dv, 1, bias_dtype)
    return dy, dd, dnoise, dbias, None, None, None, None


EPILOGUE.register_autograd(_backward, setup_context=_setup_context)


def _setup_grad_context(ctx, inputs, output):
    dout, out, slope, gain, clamp, backend = inputs
    ctx.save_for_backward(out)
    ctx.branch = (slope, gain, clamp, backend)


def _grad_backward(ctx, g):
    (out,) = ctx.saved_tensors
    slope, gain, clamp, backend = ctx.branch
    dg = EPILOGUE_GRAD(g, out, slope, gain, clamp, backend=backend) if ctx.needs_input_grad[0] else None
    return dg, None, None, None, None, None   # piecewise constant in out: no gradient flows to it


EPILOGUE_GRAD.register_autograd(_grad_backward, setup_context=_setup_grad_context)
