"""Import of backend kernel modules, with the reason recorded when one cannot load."""
from __future__ import annotations

import importlib
import os
import warnings
from typing import Dict

import torch


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here; the message says why."""


_modules: Dict[str, object] = {}
_errors: Dict[str, str] = {}
_warned = False

_REBUILD = "rebuild with: pip install --no-build-isolation -e .  (or: make install)"


def _import(name: str):
    if name == "ref":
        return importlib.import_module("fastgan.backends.ref")
    if name == "cpu":
        return importlib.import_module("fastgan.backends.cpu")
    if name == "triton":
        if not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "") == "1"):
            raise BackendUnavailable("no CUDA device (set TRITON_INTERPRET=1 to run Triton kernels on CPU)")
        return importlib.import_module("fastgan.backends.triton")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device")
        return importlib.import_module("fastgan.backends.cuda")
    raise ValueError(f"unknown backend {name!r}")


def load_backend(name: str):
    """Return the kernel module of ``name`` or raise :class:`BackendUnavailable` with the cause."""
    global _warned
    mod = _modules.get(name)
    if mod is not None:
        return mod
    if name in _errors:
        raise BackendUnavailable(_errors[name])
    try:
        mod = _import(name)
    except BackendUnavailable as e:
        _errors[name] = str(e)
        raise
    except ImportError as e:
        _errors[name] = f"{type(e).__name__}: {e}"
        if name == "cpu":
            msg = f"fastgan._C could not be imported ({e}); ops fall back to the slow 'ref' backend; {_REBUILD}"
            _errors[name] = msg
            if os.environ.get("FASTGAN_STRICT", "") == "1":
                raise ImportError(msg + " [FASTGAN_STRICT=1]") from e
            if not _warned:
                _warned = True
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
        raise BackendUnavailable(_errors[name]) from e
    _modules[name] = mod
    return mod


def cpu_isa() -> str:
    """The SIMD level the cpu backend dispatches to (or torch's, if the extension is missing)."""
    try:
        return load_backend("cpu").isa()
    except BackendUnavailable:
        return f"{torch.backends.cpu.get_cpu_capability()} (torch; fastgan._C not loaded)"
