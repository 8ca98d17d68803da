"""Argument checks and normalisation shared by every op, so all backends fail the same way."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

IntPair = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(t, name: str, op: str, ndim: Optional[Union[int, Tuple[int, ...]]] = None) -> torch.Tensor:
    """``t`` must be a floating-point tensor (and have ``ndim`` dimensions when given)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float16, bfloat16, float32 or float64, got {t.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if t.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(f"{op}: {name} must have {want} dimensions, got shape {list(t.shape)}")
    return t


def check_same_device(t: torch.Tensor, name: str, x: torch.Tensor, op: str) -> None:
    if t.device != x.device:
        raise ValueError(f"{op}: {name} is on {t.device} but x is on {x.device}; move both to one device")


def _ints(v, name: str, op: str, lengths: Tuple[int, ...]) -> Tuple[int, ...]:
    if isinstance(v, bool):
        raise TypeError(f"{op}: {name} must be an int or a list of ints, got a bool")
    if isinstance(v, int):
        return (v,)
    if isinstance(v, torch.Tensor) and v.ndim == 0:
        return (int(v),)
    try:
        vals = tuple(v)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or a list of {lengths} ints, got {type(v).__name__}") from None
    if len(vals) not in lengths or not all(isinstance(a, int) and not isinstance(a, bool) for a in vals):
        raise ValueError(f"{op}: {name} must be an int or a list of {' or '.join(map(str, lengths))} ints, got {v!r}")
    return vals


def parse_scaling(v: IntPair, name: str, op: str) -> Tuple[int, int]:
    """``up``/``down``: int or [x, y], each >= 1. Returns (x, y)."""
    vals = _ints(v, name, op, (1, 2))
    sx, sy = (vals[0], vals[0]) if len(vals) == 1 else vals
    if sx < 1 or sy < 1:
        raise ValueError(f"{op}: {name} must be >= 1 on both axes, got {v!r}")
    return sx, sy


def parse_padding(v: Padding, op: str) -> Tuple[int, int, int, int]:
    """``padding``: int, [px, py] or [x0, x1, y0, y1]; negative values crop. Returns (x0, x1, y0, y1)."""
    vals = _ints(v, "padding", op, (1, 2, 4))
    if len(vals) == 1:
        return (vals[0],) * 4
    if len(vals) == 2:
        px, py = vals
        return px, px, py, py
    return vals  # type: ignore[return-value]


def check_filter(f: Optional[torch.Tensor], x: torch.Tensor, op: str, name: str = "f") -> torch.Tensor:
    """A FIR filter: None (identity, returned as ones [1, 1]), 1-D separable taps or 2-D [fh, fw]."""
    if f is None:
        return torch.ones(1, 1, dtype=torch.float32, device=x.device)
    check_tensor(f, name, op, ndim=(1, 2))
    if f.numel() == 0:
        raise ValueError(f"{op}: {name} must have at least one tap, got shape {list(f.shape)}")
    if f.requires_grad:
        raise ValueError(f"{op}: {name} must not require grad (filter gradients are not supported); "
                         f"pass {name}.detach()")
    check_same_device(f, name, x, op)
    return f


def filter_size(f: torch.Tensor) -> Tuple[int, int]:
    """(fw, fh) of a 1-D separable or 2-D [fh, fw] filter."""
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    return f.shape[1], f.shape[0]


def check_float(v, name: str, op: str) -> float:
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{op}: {name} must be a number, got {type(v).__name__}")
    return float(v)
