"""How network layers run: compute dtype and activation memory format.

One place decides both for every network (StyleGAN2/3, StyleGAN v1, the discriminator):

* :func:`precision` scopes a compute dtype for every synthesis/discriminator layer called inside it;
* :func:`layer_dtype` resolves a layer's dtype (``force_fp32``, then the scope, then the NVlabs rule:
  layers marked for fp16 run in fp16 on CUDA, everything else in fp32);
* :func:`activation_format` is the memory format a block converts its activations to.

The CPU host-cache scope of network forwards is :mod:`fastgan.nets._host_cache`.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional, Union

import torch


__all__ = ["precision", "layer_dtype", "activation_format"]

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
