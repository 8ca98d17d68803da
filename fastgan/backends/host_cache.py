"""Opt-in arena for large CPU tensors (csrc/cpu/host_cache.cpp): page-fault control for CPU inference.

Large CPU tensors come from fresh ``mmap`` regions in glibc, so each use pays page faults and kernel
zeroing of the whole block; a network forward that frees and re-creates hundreds of MB per layer spends
much of its time in the kernel. Inside ``with arena():`` the calling thread's tensors of 1 MiB and more
reuse blocks it freed earlier (best fit, 2 MiB granules on transparent huge pages).

Nothing in fastgan opens an arena on its own: torch's allocator is untouched unless you ask. The rules:

- one arena at a time, owned by the thread that opened it (that thread may nest ``arena()`` freely);
  another thread that tries to open one gets a ``RuntimeError``. While it is open, c10's process-wide
  CPU allocator is swapped, but allocations from every other thread still go to the previous allocator;
- at the outermost exit the previous allocator comes back and every cached block is unmapped; tensors
  made inside stay valid and their memory is unmapped when they are freed;
- a forked child (a ``fork`` DataLoader worker, ``multiprocessing``) starts with no arena open and
  without the parent's cached blocks, even when the fork happened inside an arena;
- the footprint beyond live tensors is at most the limit: ``arena(limit_bytes=...)`` for that scope,
  else :func:`set_limit` (persists until changed), else ``FASTGAN_HOST_CACHE_MB`` (MiB), else a quarter
  of physical memory, at most 8 GiB.

Without fastgan._C, :func:`arena` is a no-op (:func:`available` says which).
"""
from __future__ import annotations

import contextlib
import functools
import operator
import os
import threading
from typing import Dict, Iterator, List, Optional

__all__ = ["available", "arena", "scope", "paused", "set_limit", "empty", "stats"]

_state = threading.Lock()
_owner: Optional[int] = None            # threading.get_ident() of the thread whose arena is open
_frames: List[Optional[int]] = []       # limit_bytes of each open (nested) arena() of the owner
_limit: Optional[int] = None            # set_limit(); None: the environment / memory default
_epoch = 0                              # bumped in a forked child: arenas entered before fork are void


@functools.lru_cache(maxsize=None)
def _ext():
    try:
        from .. import _C
    except ImportError:
        return None
    return _C if hasattr(_C, "host_cache_open") else None


def available() -> bool:
    """True when fastgan._C (built with the arena) is importable."""
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


def _effective_limit() -> int:
    """The innermost open arena's ``limit_bytes``, else set_limit's value, else the default."""
    for frame in reversed(_frames):
        if frame is not None:
            return frame
    return _limit if _limit is not None else _default_limit()


def _check_bytes(value, name: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int number of bytes, got {type(value).__name__}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


@contextlib.contextmanager
def arena(limit_bytes: Optional[int] = None) -> Iterator[None]:
    """Serve the calling thread's CPU tensors of 1 MiB and more from reused blocks inside the block.

    ``limit_bytes`` caps the freed bytes kept for reuse while this scope is the innermost open one
    (default: :func:`set_limit`'s value, see the module doc). Nests within one thread; raises
    ``RuntimeError`` when another thread has an arena open. At the outermost exit torch's previous
    allocator is restored and every cached block is released to the system."""
    global _owner
    if limit_bytes is not None:
        limit_bytes = _check_bytes(limit_bytes, "arena: limit_bytes")
    ext = _ext()
    if ext is None:
        yield
        return
    me = threading.get_ident()
    with _state:
        if _owner is not None and _owner != me:
            raise RuntimeError("host_cache.arena: another thread has an arena open; torch has one CPU "
                               "allocator per process, so only one thread may hold an arena at a time")
        _frames.append(limit_bytes)
        try:
            cap = _effective_limit()
            if _owner is None:
                ext.host_cache_open(cap)
                _owner = me
            else:
                ext.host_cache_set_limit(cap)
        except BaseException:
            _frames.pop()
            raise
        epoch = _epoch
    try:
        yield
    finally:
        with _state:
            if epoch == _epoch:   # else this is a forked child: the arena was reset at fork
                _frames.pop()
                if _frames:
                    ext.host_cache_set_limit(_effective_limit())
                else:
                    _owner = None
                    ext.host_cache_close()


scope = arena   # the name fastgan.bench.conv still uses


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Inside the calling thread's open arena, send its allocations to torch's previous allocator for the
    block; cached blocks stay for after it (e.g. a benchmark timing a reference path between arena
    steps). Nests; a no-op when no arena is open; ``RuntimeError`` from a thread that does not own it."""
    ext = _ext()
    with _state:
        if ext is None or _owner is None:
            owner = None
        elif _owner != threading.get_ident():
            raise RuntimeError("host_cache.paused: the open arena belongs to another thread")
        else:
            owner, was = _owner, ext.host_cache_pause(True)
            epoch = _epoch
    if owner is None:
        yield
        return
    try:
        yield
    finally:
        with _state:
            if epoch == _epoch and _owner == owner:
                ext.host_cache_pause(was)


def set_limit(nbytes: int) -> None:
    """Keep at most ``nbytes`` of freed blocks in arenas opened without ``limit_bytes`` (persists until the
    next call; an open arena's own ``limit_bytes`` takes precedence while it is open). Excess cached
    blocks are released now."""
    global _limit
    nbytes = _check_bytes(nbytes, "set_limit: nbytes")
    with _state:
        _limit = nbytes
        if _ext() is not None:
            _ext().host_cache_set_limit(_effective_limit())


def empty() -> None:
    """Release every cached block to the system (blocks in use are unaffected; the arena stays open)."""
    if _ext() is not None:
        _ext().host_cache_empty()


def stats() -> Dict[str, int]:
    """Counters: ``enabled`` (an arena is open), ``installed`` (torch's CPU allocator is the arena now),
    ``cached_bytes``, ``live_bytes``, ``limit_bytes`` (the limit an arena opened now would use, or the
    open one's), ``hits``, ``misses``. Empty without fastgan._C."""
    if _ext() is None:
        return {}
    out = dict(_ext().host_cache_stats())
    with _state:
        out["limit_bytes"] = _effective_limit()
    return out


def _after_fork_in_child() -> None:
    global _state, _owner, _epoch
    _state = threading.Lock()   # another thread may have held it at fork time
    _owner = None
    _frames.clear()
    _epoch += 1


os.register_at_fork(after_in_child=_after_fork_in_child)
