"""A StyleGAN (v1, Karras et al. 2019) style generator on fastgan ops.

Mapping network (8 equalised-lr layers) -> per-layer styles; a learned 4x4 constant; at every
resolution: (nearest 2x upsample,) 3x3 conv, [1, 2, 1] blur, per-channel-scaled noise, bias, lrelu and
AdaIN (:func:`fastgan.ops.adain`, scale ``1 + style``); a 1x1 toRGB at the end. Two ws per resolution,
truncation towards ``w_avg`` on the first ``truncation_cutoff`` ws, and style mixing regularisation in
training mode (``style_mixing_prob``). The call signatures follow the StyleGAN2 generator.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from .. import ops
from .layers import FullyConnectedLayer, layer_dtype, records_init
from .stylegan2 import _check_ws, _GeneratorBase

__all__ = ["Generator", "SynthesisNetwork", "StyleLayer", "mix_styles"]


def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
    """ws_a with the ws at indices ``layers`` taken from ws_b (both [N, num_ws, w_dim])."""
    out = ws_a.clone()
    out[:, list(layers)] = ws_b[:, list(layers)]
    return out


class StyleLayer(torch.nn.Module):
    """(upsample,) conv 3x3 (or the constant), blur, noise, bias, lrelu, AdaIN with the style of w."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: bool = False,
                 use_conv: bool = True, blur_filter: Sequence[float] = (1, 2, 1)):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_conv = use_conv
        if use_conv:
            self.weight = torch.nn.Parameter(torch.randn([out_channels, in_channels, 3, 3]))
            self.weight_gain = 1 / np.sqrt(in_channels * 9)
        self.noise_strength = torch.nn.Parameter(torch.zeros([out_channels]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.style = FullyConnectedLayer(w_dim, out_channels * 2)
        self.register_buffer("blur_filter", ops.setup_filter(list(blur_filter)))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        if self.use_conv:
            if self.up:
                x = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
            x = ops.conv2d_resample(x, (self.weight * self.weight_gain).to(x.dtype), padding=1)
            if self.up:
                x = ops.filter2d(x, self.blur_filter)
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
        elif noise_mode == "const":
            noise = self.noise_const.to(x.dtype)
        elif noise_mode == "none":
            noise = None
        else:
            raise ValueError(f"StyleLayer: noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        if noise is not None:
            x = x + noise * self.noise_strength.to(x.dtype).reshape(1, -1, 1, 1)
        x = ops.bias_act(x, self.bias.to(x.dtype), act="lrelu")
        style = self.style(w.to(torch.float32)).reshape(-1, 2, self.out_channels).to(x.dtype)
        return ops.adain(x, style[:, 0] + 1, style[:, 1])

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, resolution={self.resolution}"


@records_init
class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> images [N, img_channels, R, R]; num_ws = 2 * log2(R) - 2.

    Channels at resolution r: ``min(channel_base // r, channel_max)``; the ``num_fp16_res`` highest
    resolutions are marked for reduced precision (fp16 on CUDA, see :func:`fastgan.nets.precision`).
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 16384,
                 channel_max: int = 512, num_fp16_res: int = 0):
        super().__init__()
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ValueError(f"SynthesisNetwork: img_resolution must be a power of 2 >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        log2 = int(np.log2(img_resolution))
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8) if num_fp16_res > 0 else img_resolution * 2
        self.const = torch.nn.Parameter(torch.ones([channels[4], 4, 4]))
        for r in self.block_resolutions:
            first = StyleLayer(channels[r // 2] if r > 4 else channels[4], channels[r], w_dim, r, up=r > 4,
                               use_conv=r > 4)
            setattr(self, f"b{r}_0", first)
            setattr(self, f"b{r}_1", StyleLayer(channels[r], channels[r], w_dim, r))
        self.torgb = torch.nn.Parameter(torch.randn([img_channels, channels[img_resolution], 1, 1]))
        self.torgb_bias = torch.nn.Parameter(torch.zeros([img_channels]))
        self.num_ws = 2 * len(self.block_resolutions)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                **_unused: Any) -> torch.Tensor:
        _check_ws(ws, self.num_ws, self.w_dim, "SynthesisNetwork")
        ws = ws.to(torch.float32)
        x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        for i, r in enumerate(self.block_resolutions):
            x = x.to(layer_dtype(r >= self.fp16_resolution, force_fp32, ws.device))
            x = getattr(self, f"b{r}_0")(x, ws[:, 2 * i], noise_mode=noise_mode)
            x = getattr(self, f"b{r}_1")(x, ws[:, 2 * i + 1], noise_mode=noise_mode)
        w = self.torgb * (1 / np.sqrt(self.torgb.shape[1]))
        img = ops.conv2d_resample(x, w.to(x.dtype))
        return ops.bias_act(img, self.torgb_bias.to(x.dtype)).to(torch.float32)

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"


@records_init
class Generator(_GeneratorBase):
    """StyleGAN (v1) generator: ``G(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False,
    noise_mode='random')`` -> [N, img_channels, R, R].

    In training mode with ``style_mixing_prob > 0``, a random fraction of the batch switches to the ws of a
    second latent from a random layer onwards (style mixing regularisation).
    """

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: Optional[Dict[str, Any]] = None,
                 style_mixing_prob: float = 0.9, **synthesis_kwargs: Any):
        super().__init__()
        self.style_mixing_prob = style_mixing_prob
        self._build(SynthesisNetwork, z_dim, c_dim, w_dim, img_resolution, img_channels,
                    {"w_avg_beta": 0.995, **(mapping_kwargs or {})}, synthesis_kwargs)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs: Any) -> torch.Tensor:
        if c is None:
            c = torch.zeros([z.shape[0], self.c_dim], device=z.device)
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        if self.training and self.style_mixing_prob > 0:
            cutoff = int(torch.randint(1, self.num_ws, []))
            mixed = torch.rand([z.shape[0], 1, 1], device=z.device) < self.style_mixing_prob
            ws2 = self.mapping(torch.randn_like(z), c)
            ws = torch.cat([ws[:, :cutoff], torch.where(mixed, ws2[:, cutoff:], ws[:, cutoff:])], dim=1)
        return self.synthesis(ws, **synthesis_kwargs)
