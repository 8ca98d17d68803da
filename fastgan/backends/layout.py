"""Which activation memory format each backend runs fastest in.

Every fastgan op returns its input's memory format, so a network chooses the layout of its
activations once, at its input, and keeps it: :func:`preferred_memory_format` says which to choose.
"""
from __future__ import annotations

import torch

from ._loader import load_backend

__all__ = ["preferred_memory_format"]


def preferred_memory_format(backend_name: str) -> torch.memory_format:
    """The activation memory format the convolutions of backend ``backend_name`` run fastest in.

    ``backend_name`` is a resolved backend (``'ref'``, ``'cpu'``, ``'triton'`` or ``'cuda'``, e.g.
    from :func:`fastgan.backends.resolve`). ``torch.channels_last`` for ``'cpu'`` (oneDNN's native
    layout: no reorder per convolution), ``torch.contiguous_format`` for the others. On ``'cpu'``
    StyleGAN3's ``filtered_lrelu`` reads NCHW planes, so SG3 synthesis keeps NCHW activations there.
    Raises :class:`~fastgan.backends.BackendUnavailable` when the backend cannot run here.
    """
    if backend_name not in ("ref", "cpu", "triton", "cuda"):
        raise ValueError(f"preferred_memory_format: backend_name must be one of 'ref', 'cpu', 'triton', 'cuda', "
                         f"got {backend_name!r}")
    from .kernel_conv import conv_strategy   # here, so that fastgan.backends can re-export this function

    load_backend(backend_name)   # importing a backend registers its strategy
    return conv_strategy(backend_name).memory_format
