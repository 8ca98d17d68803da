"""Routing policy of the cpu backend's convolutions, and every measured constant it uses.

Which memory format and dtype oneDNN convolves in, which layouts the convolution gradients take, and
when the GEMM transposed convolution (:mod:`fastgan.backends.cpu_conv_transpose`) replaces oneDNN's.
Each measured constant names the command that measures it: ``fastgan bench conv`` prints one
``policy ...`` row per candidate, so a new CPU class can be re-tuned here. The numbers measured so far
are in ``docs/cpu_policy.md``.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .prims.layout import memory_format_of

__all__ = ["NCHW_CONV_MAX_PIXELS", "GEMM_DECONV_MAX_OUT_CHANNELS", "GEMM_DECONV_TILE_ROWS", "DGRAD_CHANNELS_LAST",
           "WGRAD_CHANNELS_LAST", "conv_dtype", "conv_memory_format", "gemm_deconv_pays", "wgrad_channels_last"]

NCHW_CONV_MAX_PIXELS = 100 * 100
"""Largest image (H * W) whose plain convolution (no resampling) of an NCHW input runs NCHW; larger
ones run channels_last between two relayouts. Measured by ``fastgan bench conv``, rows
``policy nchw HxW`` (backends ``cpu/nchw`` and ``cpu/cl``)."""

GEMM_DECONV_MAX_OUT_CHANNELS = 128
"""Strided transposed convolutions with at most this many output channels run as tiled GEMMs plus a
col2im scatter instead of oneDNN's deconvolution. Measured by ``fastgan bench conv``, rows
``policy deconv O=...`` (backends ``cpu/gemm`` and ``cpu/onednn``)."""

GEMM_DECONV_TILE_ROWS = 2048
"""GEMM rows (input positions) per tile of the GEMM transposed convolution. Measured by
``fastgan bench conv``, rows ``policy deconv tile=...``."""

DGRAD_CHANNELS_LAST = True
WGRAD_CHANNELS_LAST = torch.backends.cpu.get_cpu_capability() != "AVX2"
"""Layouts of the convolution gradients: the data gradient channels_last; the weight gradient
channels_last where oneDNN has AVX-512 kernels (there both layouts run alike, and relaying channels_last
activations and output gradients to NCHW is pure cost), except for padding wider than the kernel's half
(:func:`wgrad_channels_last`); NCHW on AVX2-only CPUs, whose channels_last weight-gradient kernel runs at
half the speed. Measured by ``fastgan bench conv``, rows ``policy dgrad`` and ``policy wgrad`` (backends
``cpu/nchw``, ``cpu/cl``), and ``python benchmarks/cpu_train_ab.py`` for whole training steps."""


def wgrad_channels_last(kernel_size: Sequence[int], padding: Sequence[int], transpose: bool) -> bool:
    """Whether the weight gradient of a convolution with this kernel (kh, kw) and padding (ph, pw) runs
    channels_last: :data:`WGRAD_CHANNELS_LAST`, but NCHW when a padding exceeds ``(k - 1) // 2`` (the
    StyleGAN3 layers pad by ``k - 1``), where oneDNN's channels_last weight gradient runs at about half
    the speed of its NCHW one even on AVX-512."""
    if not WGRAD_CHANNELS_LAST:
        return False
    wide = any(p > (k - 1) // 2 for p, k in zip(padding, kernel_size))
    return transpose or not wide

# Half types convolve natively only where the CPU has AVX512-BF16/AMX/FP16; elsewhere oneDNN emulates
# them, much slower than float32.
_NATIVE = {torch.bfloat16: bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
           torch.float16: bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())}


def conv_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype to convolve ``dtype`` activations in: a half type only where the CPU supports it
    natively, float32 otherwise (the result is rounded back)."""
    return dtype if _NATIVE.get(dtype, True) else torch.float32


def conv_memory_format(x: torch.Tensor, up: int, down: int) -> torch.memory_format:
    """The memory format oneDNN convolves ``x`` [N, C, H, W] in: channels_last (its native layout),
    except NCHW for an NCHW ``x`` of at most :data:`NCHW_CONV_MAX_PIXELS` pixels without resampling."""
    small = x.shape[2] * x.shape[3] <= NCHW_CONV_MAX_PIXELS
    if memory_format_of(x) == torch.contiguous_format and up == 1 and down == 1 and small:
        return torch.contiguous_format
    return torch.channels_last


def gemm_deconv_pays(x: torch.Tensor, w: torch.Tensor, stride: int, padding: Sequence[int], groups: int) -> bool:
    """True when the GEMM transposed convolution is the faster way to compute ``F.conv_transpose2d``
    here. It is not differentiable and is an eager-mode optimisation, so it is skipped under autograd
    and inside ``torch.compile``."""
    return (x.dtype in (torch.float32, torch.float64) and w.dtype == x.dtype and groups == 1
            and tuple(padding) == (0, 0) and stride > 1 and w.shape[1] <= GEMM_DECONV_MAX_OUT_CHANNELS
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
            and not torch.compiler.is_compiling())
