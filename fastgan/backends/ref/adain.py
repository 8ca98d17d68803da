"""Reference adaptive instance normalisation (StyleGAN v1) in plain PyTorch ops."""
from __future__ import annotations

import torch


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``(x - mean) * rsqrt(var + eps) * scale + bias`` per (n, c); var is the biased variance over H, W."""
    xc = x - x.mean(dim=(2, 3), keepdim=True)
    xn = xc * torch.rsqrt(xc.square().mean(dim=(2, 3), keepdim=True) + eps)
    n, c = scale.shape
    return xn * scale.to(x.dtype).reshape(n, c, 1, 1) + bias.to(x.dtype).reshape(n, c, 1, 1)
