"""Backend registry and dispatch.

Every fastgan op has four implementations behind one dispatcher:

``ref``     pure PyTorch, the executable specification (autograd, ONNX and ``torch.compile`` friendly);
``cpu``     the C++ extension ``fastgan._C`` (OpenMP + SIMD), CPU tensors;
``triton``  Triton kernels, CUDA tensors (or CPU tensors under ``TRITON_INTERPRET=1``);
``cuda``    the CUDA extension ``fastgan._C_cuda``, CUDA tensors.

Choice, highest priority first: the op's ``impl=`` argument, the innermost :func:`use` scope,
the ``FASTGAN_BACKEND`` environment variable (read at call time), then ``auto``.
``auto`` picks triton, then cuda, then ref for CUDA tensors and cpu, then ref for CPU tensors.
``impl='cuda'`` (the default argument of NVlabs code) counts as no preference, never an error; to force
the CUDA extension use ``use('cuda')`` or ``FASTGAN_BACKEND=cuda`` (CPU tensors then still take auto).
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from typing import Iterator, Optional

import torch

from ._loader import BackendUnavailable, load_backend
from .layout import preferred_memory_format

NAMES = ("ref", "cpu", "triton", "cuda")
_CHOICES = NAMES + ("auto",)

_scope: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("fastgan_backend", default=None)

__all__ = ["NAMES", "BackendUnavailable", "use", "current", "resolve", "info", "available", "get",
           "preferred_memory_format"]


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or name.lower() not in _CHOICES:
        raise ValueError(f"{what}: expected one of {', '.join(_CHOICES)}, got {name!r}")
    return name.lower()


@contextlib.contextmanager
def use(name: str) -> Iterator[None]:
    """Scope a backend choice (``'ref'``, ``'cpu'``, ``'triton'``, ``'cuda'`` or ``'auto'``).

    Every op called inside the ``with`` block, networks included, uses it unless the call passes
    its own ``impl=``. Scopes nest; the innermost wins.
    """
    token = _scope.set(_check_name(name, "fastgan.backends.use(name)"))
    try:
        yield
    finally:
        _scope.reset(token)


def current() -> str:
    """The backend request in force without an ``impl=`` argument: scope, then env, then ``'auto'``."""
    scoped = _scope.get()
    if scoped is not None:
        return scoped
    env = os.environ.get("FASTGAN_BACKEND", "").strip()
    if env:
        return _check_name(env, "environment variable FASTGAN_BACKEND")
    return "auto"


def get(name: str):
    """The kernel module of backend ``name``; raises :class:`BackendUnavailable` saying why not."""
    return load_backend(_check_name(name, "backend"))


def available(name: str) -> bool:
    try:
        get(name)
        return True
    except BackendUnavailable:
        return False


def _triton_runs_on(device: torch.device) -> bool:
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET", "") == "1"


def _auto(device: torch.device) -> str:
    order = ("triton", "cuda") if device.type == "cuda" else ("cpu",)
    for name in order:
        if available(name):
            return name
    return "ref"


def resolve(impl: Optional[str], x: torch.Tensor, op: str = "op") -> str:
    """Name of the backend that runs ``op`` on tensors on ``x.device``.

    ``impl=None`` and ``impl='cuda'`` (the NVlabs default argument) defer to :func:`current`.
    A ``'cuda'`` choice from a scope or the environment selects the CUDA extension for CUDA tensors
    and the fastest available backend for CPU tensors. Any other explicit request that cannot run
    raises :class:`BackendUnavailable` naming the reason. Under ``torch.compile`` the choice is made
    once, when the function is traced, and is a constant of the compiled graph.
    """
    return _resolve(impl, x.device.type, op)


@torch.compiler.assume_constant_result
def _resolve(impl: Optional[str], device_type: str, op: str) -> str:
    if impl is not None and impl == "cuda":
        impl = None
    req = current() if impl is None else _check_name(impl, f"{op}(impl)")
    device = torch.device(device_type)
    if req == "auto":
        return _auto(device)
    if req == "ref":
        return "ref"
    if req == "cuda":
        if device.type != "cuda":
            return _auto(device)
        get("cuda")
        return "cuda"
    if req == "cpu":
        if device.type != "cpu":
            raise BackendUnavailable(f"{op}: backend 'cpu' needs CPU tensors, got a tensor on {device}")
        get("cpu")
        return "cpu"
    if not _triton_runs_on(device):
        raise BackendUnavailable(
            f"{op}: backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), "
            f"got a tensor on {device}")
    get("triton")
    return "triton"


def info() -> str:
    """A human-readable report: which backends are usable here and why not, CPU ISA and threads."""
    from ._loader import cpu_isa

    lines = [f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
             f"CPU ISA: {cpu_isa()}, torch threads: {torch.get_num_threads()}",
             f"selected without impl=: {current()}"]
    for name in NAMES:
        try:
            get(name)
            lines.append(f"  {name:7s} usable")
        except BackendUnavailable as e:
            lines.append(f"  {name:7s} unavailable: {e}")
    return "\n".join(lines)
