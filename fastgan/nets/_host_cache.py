"""Network forwards leave torch's CPU allocator alone.

The networks used to swap in the caching host allocator around every CPU forward. Page-fault control is
now an explicit opt-in owned by the caller: ``with fastgan.backends.host_cache.arena(): G(z, c)`` (the
arena covers every network call the opening thread makes inside it).
"""
from __future__ import annotations

from typing import Callable, TypeVar

__all__ = ["cpu_host_cache"]

F = TypeVar("F", bound=Callable)


def cpu_host_cache(forward: F) -> F:
    """Method decorator kept for the networks' ``forward``: returns ``forward`` itself (no allocator
    change, nothing for ``torch.compile`` to trace). Open :func:`fastgan.backends.host_cache.arena`
    around the calls to opt in."""
    return forward
