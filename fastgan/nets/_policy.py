"""How network layers run: compute dtype, activation memory format and the CPU host-cache scope.

One place decides all three for every network (StyleGAN2/3, StyleGAN v1, the discriminator):

* :func:`precision` scopes a compute dtype for every synthesis/discriminator layer called inside it;
* :func:`layer_dtype` resolves a layer's dtype (``force_fp32``, then the scope, then the NVlabs rule:
  layers marked for fp16 run in fp16 on CUDA, everything else in fp32);
* :func:`activation_format` is the memory format a block converts its activations to;
* :func:`cpu_host_cache` wraps a network ``forward`` in :func:`fastgan.backends.host_cache.scope` when it
  runs on the cpu backend.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Callable, Iterator, Optional, Union

import torch

from .. import backends
from ..backends import host_cache

__all__ = ["precision", "layer_dtype", "activation_format", "cpu_host_cache"]

_DTYPE_OF = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_scoped: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("fastgan_precision", default=None)


@contextlib.contextmanager
def precision(name: Optional[str]) -> Iterator[None]:
    """Run every synthesis/discriminator layer called inside the block in one compute dtype.

    ``'fp32'``, ``'bf16'`` or ``'fp16'`` (CUDA only); ``None`` restores the NVlabs rule (layers marked by
    ``num_fp16_res`` run in fp16 on CUDA, everything else and everything on CPU in fp32). Mapping
    networks, w and the output images stay fp32; ``conv_clamp`` keeps low-precision activations bounded.
    An explicit ``force_fp32=True`` still wins.
    """
    if name is not None and name not in _DTYPE_OF:
        raise ValueError(f"precision: name must be one of {', '.join(_DTYPE_OF)} or None, got {name!r}")
    token = _scoped.set(name)
    try:
        yield
    finally:
        _scoped.reset(token)


def layer_dtype(use_fp16: bool, force_fp32: bool, device: Union[torch.device, str]) -> torch.dtype:
    """Compute dtype of a layer: force_fp32, then the :func:`precision` scope, then the NVlabs rule."""
    on_cuda = torch.device(device).type == "cuda"
    if force_fp32:
        return torch.float32
    name = _scoped.get()
    if name is None:
        return torch.float16 if (use_fp16 and on_cuda) else torch.float32
    if name == "fp16" and not on_cuda:
        raise ValueError(f"precision('fp16') needs CUDA tensors, got tensors on {device}; use 'bf16' or 'fp32'")
    return _DTYPE_OF[name]


def activation_format(channels_last: bool, dtype: torch.dtype) -> torch.memory_format:
    """Memory format a block gives its activations: channels_last for blocks built with it when they run
    in reduced precision (NVlabs ``fp16_channels_last``); otherwise whatever layout the tensor has
    (values never depend on the layout, and the cpu backend keeps its activations channels_last)."""
    if channels_last and dtype != torch.float32:
        return torch.channels_last
    return torch.preserve_format


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
