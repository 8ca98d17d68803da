"""``bias_act``: fused bias, activation, gain and clamp.

Signature-compatible with ``torch_utils.ops.bias_act.bias_act`` of the NVlabs code. The kernels, their
derivatives and what the forward saves for backward are the operators of
:mod:`fastgan.backends.prims.bias_act`; ``ref`` is the PyTorch composite.
"""
from __future__ import annotations

from typing import Optional

import torch

from .. import backends
from ..backends import ref
from ..backends.activations import ACTIVATIONS
from ..backends.prims import bias_act as _prim
from ._args import check_float, check_same_device, check_tensor

__all__ = ["bias_act", "ACTIVATIONS"]


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
        Tensor of the shape, dtype and memory format of ``x``. A ``b`` of another dtype is rounded to
        x's dtype first (as the ref does), identically on every backend. Differentiable twice. Where
        the gradient can be read off the output (relu, lrelu, clamped linear) the kernel backends save
        the output for backward: modifying it in place before backward raises autograd's error.
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
        if x.ndim == 0:
            raise ValueError(f"{op}: b needs x with at least one dimension, got a 0-dim x")
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
    if b is not None and b.dtype != x.dtype:
        b = b.to(x.dtype)
    return _prim.BIAS_ACT(x, b, dim, act, alpha, gain, clamp, backend=name)
