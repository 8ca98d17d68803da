"""How network layers run: compute dtype and activation memory format.

One place decides both for every network (StyleGAN2/3, StyleGAN v1, the discriminator):

* :func:`precision` scopes a compute dtype for every synthesis/discriminator layer called inside it;
* :func:`layer_dtype` resolves a layer's dtype (``force_fp32``, then the scope, then the NVlabs rule:
  layers marked for fp16 run in fp16 on CUDA, everything else in fp32);
* :func:`activation_format` is the memory format a block converts its activations to;
* :func:`input_format` is the memory format a network converts its input (or first activation) to, once:
  the format the backend running its ops convolves fastest in (channels_last on the cpu backend). Every
  op returns its input's format, so the activations keep it from layer to layer.

Under ``torch.compile``/``torch.export`` the :func:`precision` scope and the backend's memory format are
read once, when a network is traced (``torch.compiler.assume_constant_result`` functions, like
:func:`fastgan.backends.resolve`): compute dtypes and layouts are constants of the compiled graph, and a
graph compiled outside a scope keeps them inside one. Compile again (a fresh ``torch.compile`` or
``torch._dynamo.reset()``) to change them.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Optional, Union

import torch

from .. import backends
from ..backends.layout import preferred_memory_format


__all__ = ["precision", "scoped_precision", "layer_dtype", "activation_format", "input_format"]

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


@torch.compiler.assume_constant_result
def scoped_precision() -> Optional[str]:
    """The name given to the innermost :func:`precision` scope (None outside any); a trace-time constant."""
    return _scoped.get()


def layer_dtype(use_fp16: bool, force_fp32: bool, device: Union[torch.device, str]) -> torch.dtype:
    """Compute dtype of a layer: force_fp32, then the :func:`precision` scope, then the NVlabs rule."""
    on_cuda = torch.device(device).type == "cuda"
    if force_fp32:
        return torch.float32
    name = scoped_precision()
    if name is None:
        return torch.float16 if (use_fp16 and on_cuda) else torch.float32
    if name == "fp16" and not on_cuda:
        raise ValueError(f"precision('fp16') needs CUDA tensors, got tensors on {device}; use 'bf16' or 'fp32'")
    return _DTYPE_OF[name]


def activation_format(channels_last: bool, dtype: torch.dtype) -> torch.memory_format:
    """Memory format a block gives its activations: channels_last for blocks built with it when they run
    in reduced precision (NVlabs ``fp16_channels_last``); otherwise the layout the activations already have
    (the network's :func:`input_format`; values never depend on the layout)."""
    if channels_last and dtype != torch.float32:
        return torch.channels_last
    return torch.preserve_format


@torch.compiler.assume_constant_result
def _format_of_backend(name: str) -> torch.memory_format:
    return preferred_memory_format(name)


def input_format(x: torch.Tensor) -> torch.memory_format:
    """The memory format a network gives its input ``x`` (or its first activation, made on ``x``'s
    device): :func:`fastgan.backends.preferred_memory_format` of the backend its ops resolve to."""
    return _format_of_backend(backends.resolve(None, x, "network"))
