"""Reference bias_act: bias add, activation, gain and clamp as separate PyTorch ops."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _act(x: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return x
    if act == "relu":
        return F.relu(x)
    if act == "lrelu":
        return F.leaky_relu(x, alpha)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    if act == "elu":
        return F.elu(x)
    if act == "selu":
        return F.selu(x)
    if act == "softplus":
        return F.softplus(x)
    if act == "swish":
        return torch.sigmoid(x) * x
    raise ValueError(f"unknown activation {act!r}")


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float,
             gain: float, clamp: Optional[float]) -> torch.Tensor:
    """``y = clamp(act(x + b) * gain)``; ``b`` [x.shape[dim]] is broadcast along ``dim``."""
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        x = x + b.to(x.dtype).reshape(shape)
    x = _act(x, act, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x
