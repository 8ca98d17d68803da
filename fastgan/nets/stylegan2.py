"""StyleGAN2 generator and discriminator on fastgan ops (architectures orig, skip and resnet).

Constructor keyword arguments, attributes, call signatures and state-dict names match the NVlabs
StyleGAN2-ADA / StyleGAN3 (``networks_stylegan2``) releases, so their weights load with ``strict=True``
and code written against those networks runs unchanged. The ``synthesis_kwargs`` dict of StyleGAN2-ADA
pickles is accepted as well.

A synthesis layer is one :func:`fastgan.ops.modconv_bias_act` call (modulated convolution, noise, bias,
activation, gain and clamp), which the kernel backends run as one convolution plus one epilogue pass.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch

from .. import ops
from .layers import (Conv2dLayer, FullyConnectedLayer, MappingNetwork, activation_format, activation_gain,
                     fir_filter, input_format, layer_dtype, records_init, scaled_clamp)

__all__ = ["Generator", "Discriminator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
           "ToRGBLayer", "DiscriminatorBlock", "DiscriminatorEpilogue", "MinibatchStdLayer", "FullyConnectedLayer",
           "Conv2dLayer"]

NOISE_MODES = ("random", "const", "none")
ARCHITECTURES = ("orig", "skip", "resnet")
_RESNET_GAIN = math.sqrt(0.5)   # keeps the variance of skip + residual equal to that of each branch


def _check_architecture(architecture: str, who: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{who}: architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}")


def _resolution_log2(img_resolution: int, who: str) -> int:
    if not isinstance(img_resolution, int) or img_resolution < 4 or img_resolution & (img_resolution - 1):
        raise ValueError(f"{who}: img_resolution must be a power of 2 >= 4, got {img_resolution!r}")
    return img_resolution.bit_length() - 1


def _channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at resolution ``res``: ``min(channel_base // res, channel_max)``."""
    return min(channel_base // res, channel_max)


def _first_fp16_resolution(resolution_log2: int, num_fp16_res: int) -> int:
    """Smallest of the ``num_fp16_res`` highest resolutions, which are marked for fp16 (never below 8)."""
    return max(2 ** (resolution_log2 + 1 - num_fp16_res), 8)


def _blocks(net: torch.nn.Module) -> List[torch.nn.Module]:
    """The children ``b{res}`` of a network, in the order of its ``block_resolutions``."""
    return [getattr(net, f"b{res}") for res in net.block_resolutions]


def _check_ws(ws: torch.Tensor, num_ws: int, w_dim: int, who: str) -> None:
    """ws must be [N, num_ws, w_dim]."""
    if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or tuple(ws.shape[1:]) != (num_ws, w_dim):
        got = list(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
        raise ValueError(f"{who}: ws must have shape [N, {num_ws}, {w_dim}], got {got}")


class SynthesisLayer(torch.nn.Module):
    """Modulated 3x3 convolution (optionally 2x upsampling), noise, bias, lrelu and clamp.

    ``forward(x, w, noise_mode='random', fused_modconv=True, gain=1)``: x [N, in, R/up, R/up] and
    w [N, w_dim] -> [N, out, R, R].
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 channels_last: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = activation_gain(activation)
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=layout))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def _scaled_noise(self, batch: int, device: torch.device, noise_mode: str) -> Optional[torch.Tensor]:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"SynthesisLayer: noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
        if not self.use_noise or noise_mode == "none":
            return None
        if noise_mode == "const":
            return self.noise_const * self.noise_strength
        return torch.randn([batch, 1, self.resolution, self.resolution], device=device) * self.noise_strength

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        noise = self._scaled_noise(x.shape[0], x.device, noise_mode)
        return ops.modconv_bias_act(x, self.weight, self.affine(w), self.bias.to(x.dtype), noise=noise, up=self.up,
                                    padding=self.padding, resample_filter=self.resample_filter,
                                    flip_weight=self.up == 1, act=self.activation, gain=self.act_gain * gain,
                                    clamp=scaled_clamp(self.conv_clamp, gain), fused_modconv=fused_modconv)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}, "
                f"resolution={self.resolution}, up={self.up}, activation={self.activation}")


class ToRGBLayer(torch.nn.Module):
    """Modulated (not demodulated) 1x1 convolution to image channels, bias and clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None, channels_last: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=layout))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain   # the equalised-lr gain moves onto the styles
        return ops.modconv_bias_act(x, self.weight, styles, self.bias.to(x.dtype), padding=0, demodulate=False,
                                    flip_weight=True, act="linear", clamp=self.conv_clamp,
                                    fused_modconv=fused_modconv)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}"


class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network: (const |) conv0 (up 2x), conv1, toRGB / skip path.

    ``forward(x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, noise_mode=...)``
    with ws [N, num_conv + num_torgb, w_dim]; returns (x, img).
    ``fused_modconv=None`` takes ``fused_modconv_default``; ``'inference_only'`` means fused in eval mode.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: Sequence[float] = (1, 3, 3, 1),
                 conv_clamp: Optional[float] = 256, use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default: Union[bool, str] = True, **layer_kwargs: Any):
        super().__init__()
        _check_architecture(architecture, "SynthesisBlock")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        shared = dict(conv_clamp=conv_clamp, channels_last=self.channels_last)
        first = in_channels == 0
        if first:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, **shared, **layer_kwargs)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **shared, **layer_kwargs)
        self.num_conv = 1 if first else 2
        self.num_torgb = 1 if (is_last or architecture == "skip") else 0
        if self.num_torgb:
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, **shared)
        self.residual = not first and architecture == "resnet"   # adds the skip path
        if self.residual:
            self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, up=2, resample_filter=resample_filter,
                                    channels_last=self.channels_last)

    def _fused(self, fused_modconv: Optional[Union[bool, str]]) -> bool:
        choice = self.fused_modconv_default if fused_modconv is None else fused_modconv
        if isinstance(choice, str):
            if choice != "inference_only":
                raise ValueError(f"SynthesisBlock: fused_modconv must be a bool, None or 'inference_only', "
                                 f"got {choice!r}")
            return not self.training
        return bool(choice)

    def _block_input(self, x: Optional[torch.Tensor], batch: int, dtype: torch.dtype,
                     layout: torch.memory_format) -> torch.Tensor:
        """The features entering the convolutions: ``x``, or in the first block the learned constant in the
        network's :func:`input_format`."""
        if not self.in_channels:
            x = self.const.unsqueeze(0).repeat([batch, 1, 1, 1]).to(memory_format=input_format(self.const))
        return x.to(dtype=dtype, memory_format=layout)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                force_fp32: bool = False, fused_modconv: Optional[Union[bool, str]] = None,
                update_emas: bool = False, **layer_kwargs: Any) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        dtype = layer_dtype(self.use_fp16, force_fp32, ws.device)
        fused = self._fused(fused_modconv)
        w_next: Iterator[torch.Tensor] = iter(ws.unbind(dim=1))
        x = self._block_input(x, ws.shape[0], dtype, activation_format(self.channels_last, dtype))
        shortcut = self.skip(x, gain=_RESNET_GAIN) if self.residual else None
        if self.in_channels:
            x = self.conv0(x, next(w_next), fused_modconv=fused, **layer_kwargs)
        x = self.conv1(x, next(w_next), fused_modconv=fused, gain=_RESNET_GAIN if self.residual else 1,
                       **layer_kwargs)
        if shortcut is not None:
            x = shortcut.add_(x)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.num_torgb:
            rgb = self.torgb(x, next(w_next), fused_modconv=fused)
            rgb = rgb.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = rgb if img is None else img + rgb
        return x, img

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}, "
                f"num_conv={self.num_conv}, num_torgb={self.num_torgb}")


class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, img_channels, R, R] (fp32, roughly in [-1, 1]).

    Channels at resolution r: ``min(channel_base // r, channel_max)``. The ``num_fp16_res`` highest
    resolutions (at least 8x8) are marked for reduced precision (fp16 on CUDA; see
    :func:`fastgan.nets.precision`). Block keyword arguments: architecture, resample_filter, conv_clamp,
    fp16_channels_last, fused_modconv_default, and SynthesisLayer's kernel_size, use_noise, activation.
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs: Any):
        super().__init__()
        log2 = _resolution_log2(img_resolution, "SynthesisNetwork")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        fp16_from = _first_fp16_resolution(log2, num_fp16_res)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(_channels_at(res // 2, channel_base, channel_max) if res > 4 else 0,
                                   _channels_at(res, channel_base, channel_max), w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=res == img_resolution,
                                   use_fp16=res >= fp16_from, **block_kwargs)
            self.add_module(f"b{res}", block)
            self.num_ws += block.num_conv + (block.num_torgb if block.is_last else 0)

    def forward(self, ws: torch.Tensor, **block_kwargs: Any) -> torch.Tensor:
        _check_ws(ws, self.num_ws, self.w_dim, "SynthesisNetwork")
        ws = ws.float()
        x = img = None
        first_w = 0
        for block in _blocks(self):
            # a block's torgb shares its w with the next block's conv0
            x, img = block(x, img, ws.narrow(1, first_w, block.num_conv + block.num_torgb), **block_kwargs)
            first_w += block.num_conv
        return img

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}")


class _GeneratorBase(torch.nn.Module):
    """Mapping + synthesis; shared by the StyleGAN, StyleGAN2 and StyleGAN3 generators."""

    def _build(self, synthesis_cls, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
               mapping_kwargs: Dict[str, Any], synthesis_kwargs: Dict[str, Any],
               mapping_cls=MappingNetwork) -> None:
        """Set the NVlabs attributes and create ``synthesis`` then ``mapping`` (the state-dict order)."""
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = synthesis_cls(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                       **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = mapping_cls(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs: Any) -> torch.Tensor:
        """z [N, z_dim], c [N, c_dim] (or None when c_dim is 0) -> images [N, img_channels, R, R] in ~[-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)

    def extra_repr(self) -> str:
        return (f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, "
                f"img_resolution={self.img_resolution}, img_channels={self.img_channels}")


def _merge_nested(flat: Dict[str, Any], key: str) -> Dict[str, Any]:
    """``flat`` with the dict under ``key`` (StyleGAN2-ADA's nested ``synthesis_kwargs``) merged into it."""
    flat = dict(flat)
    nested = flat.pop(key, None) or {}
    clash = sorted(set(nested) & set(flat))
    if clash:
        raise ValueError(f"Generator: {clash} given both directly and inside {key}")
    return {**flat, **nested}


@records_init
class Generator(_GeneratorBase):
    """StyleGAN2 generator: ``G(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False,
    noise_mode='random', force_fp32=False, fused_modconv=None)`` -> [N, img_channels, R, R].

    Keyword arguments other than mapping_kwargs go to :class:`SynthesisNetwork` (a StyleGAN2-ADA style
    ``synthesis_kwargs`` dict is merged into them).
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[Dict[str, Any]] = None, **synthesis_kwargs: Any):
        super().__init__()
        self._build(SynthesisNetwork, z_dim, c_dim, w_dim, img_resolution, img_channels, dict(mapping_kwargs or {}),
                    _merge_nested(synthesis_kwargs, "synthesis_kwargs"))


class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the discriminator: (fromRGB), conv0, conv1 with 2x downsampling, resnet skip.

    Layers are numbered across the network from ``first_layer_idx``; those numbered below
    ``freeze_layers`` are frozen (weights and biases stored as buffers). ``num_layers`` counts this
    block's layers.
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int, architecture: str = "resnet", activation: str = "lrelu",
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, freeze_layers: int = 0):
        super().__init__()
        _check_architecture(architecture, "DiscriminatorBlock")
        if in_channels not in (0, tmp_channels):
            raise ValueError(f"DiscriminatorBlock: in_channels must be 0 (first block) or tmp_channels = "
                             f"{tmp_channels}, got {in_channels}")
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        reads_img = in_channels == 0 or architecture == "skip"
        names = (["fromrgb"] if reads_img else []) + ["conv0", "conv1"] + (["skip"] if architecture == "resnet" else [])
        self.num_layers = len(names)
        trainable = {name: first_layer_idx + k >= freeze_layers for k, name in enumerate(names)}
        shared = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if reads_img:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, trainable=trainable["fromrgb"], **shared)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, trainable=trainable["conv0"], **shared)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, down=2, resample_filter=resample_filter,
                                 trainable=trainable["conv1"], **shared)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter,
                                    channels_last=self.channels_last, trainable=trainable["skip"])

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor],
                force_fp32: bool = False) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        device = (x if x is not None else img).device
        dtype = layer_dtype(self.use_fp16, force_fp32, device)
        layout = activation_format(self.channels_last, dtype)
        if x is not None:
            x = x.to(dtype=dtype, memory_format=layout)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype=dtype, memory_format=layout)
            rgb = self.fromrgb(img)
            x = rgb if x is None else x + rgb
            img = ops.downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            shortcut = self.skip(x, gain=_RESNET_GAIN)
            x = self.conv1(self.conv0(x), gain=_RESNET_GAIN)
            return shortcut.add_(x), img
        return self.conv1(self.conv0(x)), img

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}, "
                f"first_layer_idx={self.first_layer_idx}")


class MinibatchStdLayer(torch.nn.Module):
    """Append the per-group standard deviation of the features as ``num_channels`` extra channels.

    The batch N must be divisible by the group size ``min(group_size, N)`` (N when ``group_size`` is None).
    Groups are strided: sample n belongs to group ``n mod (N / group size)``.
    """

    def __init__(self, group_size: Optional[int], num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = n if self.group_size is None else min(self.group_size, n)
        f = self.num_channels
        if n % g:
            raise ValueError(f"MinibatchStdLayer: the batch size {n} must be divisible by the group size {g} "
                             f"(min(group_size={self.group_size}, batch))")
        if c % f:
            raise ValueError(f"MinibatchStdLayer: the {c} channels must be divisible by num_channels={f}")
        grouped = x.reshape(g, n // g, f, c // f, h, w)   # sample index = member * (n // g) + group
        spread = grouped.var(dim=0, unbiased=False).add(1e-8).sqrt()
        stat = spread.mean(dim=[2, 3, 4]).reshape(n // g, f, 1, 1)
        return torch.cat([x, stat.repeat(g, 1, h, w)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"


class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head: (fromRGB), minibatch std, conv, fc, out; projection onto the label embedding cmap.

    Always computes in fp32 (in the network's :func:`input_format`).
    """

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = "resnet", mbstd_group_size: Optional[int] = 4, mbstd_num_channels: int = 1,
                 activation: str = "lrelu", conv_clamp: Optional[float] = None):
        super().__init__()
        _check_architecture(architecture, "DiscriminatorEpilogue")
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, cmap_dim if cmap_dim > 0 else 1)

    def forward(self, x: torch.Tensor, img: Optional[torch.Tensor], cmap: Optional[torch.Tensor],
                force_fp32: bool = False) -> torch.Tensor:
        fp32 = dict(dtype=torch.float32, memory_format=input_format(x))
        x = x.to(**fp32)
        if self.architecture == "skip":
            x = x + self.fromrgb(img.to(**fp32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.out(self.fc(self.conv(x).flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, cmap_dim={self.cmap_dim}"


@records_init
class Discriminator(torch.nn.Module):
    """StyleGAN2 discriminator: ``D(img, c, update_emas=False, force_fp32=False)`` -> logits [N, 1].

    img [N, img_channels, R, R]; c [N, c_dim] (projection discriminator when c_dim > 0).
    """

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = "resnet",
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4,
                 conv_clamp: Optional[float] = 256, cmap_dim: Optional[int] = None,
                 block_kwargs: Optional[Dict[str, Any]] = None, mapping_kwargs: Optional[Dict[str, Any]] = None,
                 epilogue_kwargs: Optional[Dict[str, Any]] = None):
        super().__init__()
        log2 = _resolution_log2(img_resolution, "Discriminator")
        _check_architecture(architecture, "Discriminator")
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: _channels_at(res, channel_base, channel_max) for res in self.block_resolutions + [4]}
        self.cmap_dim = 0 if c_dim == 0 else (channels[4] if cmap_dim is None else cmap_dim)
        fp16_from = _first_fp16_resolution(log2, num_fp16_res)
        shared = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res],
                                       channels[res // 2], resolution=res, first_layer_idx=layer_idx,
                                       use_fp16=res >= fp16_from, **(block_kwargs or {}), **shared)
            self.add_module(f"b{res}", block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=self.cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=self.cmap_dim, resolution=4, **(epilogue_kwargs or {}),
                                        **shared)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor], update_emas: bool = False,
                **block_kwargs: Any) -> torch.Tensor:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or tuple(img.shape[1:]) != expected:
            got = list(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
            raise ValueError(f"Discriminator: img must have shape [N, {', '.join(map(str, expected))}], got {got}")
        x = None
        img = img.to(memory_format=input_format(img))
        for block in _blocks(self):
            x, img = block(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap, **block_kwargs)

    def extra_repr(self) -> str:
        return (f"c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}, "
                f"cmap_dim={self.cmap_dim}")
