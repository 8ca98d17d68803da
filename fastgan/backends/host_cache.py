"""Caching host allocator for large CPU tensors (csrc/cpu/host_cache.cpp).

Large CPU tensors come from fresh ``mmap`` regions in glibc, so each use pays page faults and kernel
zeroing of the whole block; a network forward that frees and re-creates hundreds of MB per layer spends
more time in the kernel than in arithmetic. While :func:`scope` is active, fastgan's allocator serves
tensors of 1 MiB and more from blocks freed earlier (best fit, 2 MiB granules on transparent huge
pages), like the CUDA caching allocator does on the GPU. Blocks handed out stay valid after the scope
ends and return to the cache when freed.

The networks enter :func:`scope` on their own when they run on the cpu backend. Knobs:
``FASTGAN_HOST_CACHE=0`` turns that off; ``FASTGAN_HOST_CACHE_MB`` caps the bytes the cache keeps
(default: a quarter of physical memory, at most 8 GiB). :func:`empty` releases the cache.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Dict, Iterator

__all__ = ["available", "scope", "empty", "stats", "set_limit"]

_lock = threading.Lock()
_depth = 0


@functools.lru_cache(maxsize=None)
def _ext():
    try:
        from .. import _C
    except ImportError:
        return None
    return _C if hasattr(_C, "host_cache_set_enabled") else None


def available() -> bool:
    """True when fastgan._C (built with the host cache) is importable."""
    return _ext() is not None


def _default_limit() -> int:
    env = os.environ.get("FASTGAN_HOST_CACHE_MB")
    if env:
        try:
            mb = int(env)
        except ValueError:
            raise ValueError(f"FASTGAN_HOST_CACHE_MB must be an integer number of MiB, got {env!r}") from None
        if mb < 0:
            raise ValueError(f"FASTGAN_HOST_CACHE_MB must be >= 0, got {mb}")
        return mb << 20
    try:
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        phys = 16 << 30
    return min(phys // 4, 8 << 30)


def wanted() -> bool:
    """False when ``FASTGAN_HOST_CACHE=0`` asks the networks not to use the cache."""
    return os.environ.get("FASTGAN_HOST_CACHE", "1").strip().lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Serve large CPU allocations from the cache inside the block (nests; a no-op without fastgan._C)."""
    global _depth
    ext = _ext()
    if ext is None:
        yield
        return
    with _lock:
        if _depth == 0:
            ext.host_cache_set_limit(_default_limit())
            ext.host_cache_set_enabled(True)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                ext.host_cache_set_enabled(False)


def set_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of freed blocks (the excess is released now)."""
    if nbytes < 0:
        raise ValueError(f"set_limit: nbytes must be >= 0, got {nbytes}")
    if _ext() is not None:
        _ext().host_cache_set_limit(int(nbytes))


def empty() -> None:
    """Release every cached block to the system (blocks in use are unaffected)."""
    if _ext() is not None:
        _ext().host_cache_empty()


def stats() -> Dict[str, int]:
    """Counters: enabled, cached_bytes, live_bytes, limit_bytes, hits, misses (empty without fastgan._C)."""
    return dict(_ext().host_cache_stats()) if _ext() is not None else {}
