"""Page-fault control for CPU network forwards (the caching host allocator scope).

:func:`cpu_host_cache` wraps a network ``forward`` in :func:`fastgan.backends.host_cache.scope` when it
runs on the cpu backend.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch

from .. import backends
from ..backends import host_cache

__all__ = ["cpu_host_cache"]


def _runs_on_cpu_backend(x: torch.Tensor) -> bool:
    if not isinstance(x, torch.Tensor) or x.device.type != "cpu":
        return False
    try:
        return backends.resolve(None, x, "network") == "cpu"
    except backends.BackendUnavailable:   # the first op reports it
        return False


def cpu_host_cache(forward: Callable) -> Callable:
    """Method decorator for a network's ``forward(self, x, ...)``: when ``x`` is a CPU tensor and the ops
    resolve to the cpu backend, run it inside :func:`fastgan.backends.host_cache.scope` (large
    temporaries reuse freed blocks instead of faulting in fresh pages). ``FASTGAN_HOST_CACHE=0`` opts out."""

    @functools.wraps(forward)
    def run(self, *args, **kwargs):
        if args and host_cache.wanted() and _runs_on_cpu_backend(args[0]):
            with host_cache.scope():
                return forward(self, *args, **kwargs)
        return forward(self, *args, **kwargs)

    return run
