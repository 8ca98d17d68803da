"""Autocast neutrality of the ref composites whose kernels are outside autocast's cast lists."""
from __future__ import annotations

import contextlib

import torch

_AUTOCAST_DEVICES = ("cpu", "cuda")


def outside_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """A scope in which autocast is off on ``device``, so a composite of ops runs in its inputs' dtype like
    the fused kernels it specifies (autocast would otherwise cast e.g. its convolutions)."""
    if device.type in _AUTOCAST_DEVICES:
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
