"""DCGAN generator and discriminator (Radford et al. 2015) for square power-of-two images.

G: z -> 4x4 by a 4x4 transposed conv, then stride-2 transposed 4x4 convs halving the channels up to the
image size, batch norm + ReLU between, tanh at the end. D mirrors it: stride-2 4x4 convs with leaky ReLU
(0.2) and batch norm (not on the first layer), then a 4x4 valid conv to one logit (no sigmoid: train with
``softplus``/``BCEWithLogits``). Activations go through :func:`fastgan.ops.bias_act`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from .. import ops
from .layers import records_init

__all__ = ["Generator", "Discriminator"]


def _levels(img_resolution: int) -> int:
    if img_resolution < 8 or img_resolution & (img_resolution - 1):
        raise ValueError(f"DCGAN: img_resolution must be a power of 2 >= 8, got {img_resolution}")
    return int(np.log2(img_resolution)) - 2


def _init(module: torch.nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) weights, N(1, 0.02) batch-norm scales."""
    for m in module.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)


@records_init
class Generator(torch.nn.Module):
    """``G(z, c=None)``: z [N, z_dim] -> images [N, img_channels, R, R] in [-1, 1].

    Channels: ``min(channel_base // r, channel_max)`` at resolution r (the 4x4 stage gets the most).
    """

    def __init__(self, z_dim: int = 100, img_resolution: int = 64, img_channels: int = 3,
                 channel_base: int = 2048, channel_max: int = 512, c_dim: int = 0):
        super().__init__()
        if c_dim != 0:
            raise ValueError("DCGAN Generator: only unconditional models (c_dim=0) are supported")
        self.z_dim, self.c_dim, self.w_dim = z_dim, 0, z_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        n = _levels(img_resolution)
        ch = [min(channel_base // 2 ** (i + 2), channel_max) for i in range(n + 1)]
        self.input = torch.nn.ConvTranspose2d(z_dim, ch[0], 4, 1, 0, bias=False)
        self.input_bn = torch.nn.BatchNorm2d(ch[0])
        self.ups = torch.nn.ModuleList(torch.nn.ConvTranspose2d(ch[i], ch[i + 1], 4, 2, 1, bias=False)
                                       for i in range(n - 1))
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(ch[i + 1]) for i in range(n - 1))
        self.out = torch.nn.ConvTranspose2d(ch[n - 1], img_channels, 4, 2, 1, bias=False)
        _init(self)

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, **_unused) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"DCGAN Generator: z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = ops.bias_act(self.input_bn(self.input(z[:, :, None, None])), act="relu", gain=1)
        for up, bn in zip(self.ups, self.bns):
            x = ops.bias_act(bn(up(x)), act="relu", gain=1)
        return ops.bias_act(self.out(x), act="tanh")


@records_init
class Discriminator(torch.nn.Module):
    """``D(img, c=None)``: images [N, img_channels, R, R] -> logits [N, 1]."""

    def __init__(self, img_resolution: int = 64, img_channels: int = 3, channel_base: int = 2048,
                 channel_max: int = 512, c_dim: int = 0):
        super().__init__()
        if c_dim != 0:
            raise ValueError("DCGAN Discriminator: only unconditional models (c_dim=0) are supported")
        self.c_dim, self.img_resolution, self.img_channels = 0, img_resolution, img_channels
        n = _levels(img_resolution)
        ch = [min(channel_base // 2 ** (i + 2), channel_max) for i in range(n + 1)][::-1]
        self.input = torch.nn.Conv2d(img_channels, ch[1], 4, 2, 1, bias=False)
        self.downs = torch.nn.ModuleList(torch.nn.Conv2d(ch[i], ch[i + 1], 4, 2, 1, bias=False)
                                         for i in range(1, n))
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm2d(ch[i + 1]) for i in range(1, n))
        self.out = torch.nn.Conv2d(ch[n], 1, 4, 1, 0, bias=False)
        _init(self)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None, **_unused) -> torch.Tensor:
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, self.img_resolution, self.img_resolution):
            raise ValueError(f"DCGAN Discriminator: img must have shape [N, {self.img_channels}, "
                             f"{self.img_resolution}, {self.img_resolution}], got {list(img.shape)}")
        x = ops.bias_act(self.input(img), act="lrelu", alpha=0.2, gain=1)
        for down, bn in zip(self.downs, self.bns):
            x = ops.bias_act(bn(down(x)), act="lrelu", alpha=0.2, gain=1)
        return self.out(x).flatten(1)
