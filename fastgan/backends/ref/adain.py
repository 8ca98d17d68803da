"""Reference adaptive instance normalisation (StyleGAN v1) in plain PyTorch ops."""
from __future__ import annotations

import torch

from ._amp import outside_autocast


def adain(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """``(x - mean) * rsqrt(var + eps) * scale + bias`` per (n, c); var is the biased variance over H, W.

    ``scale`` and ``bias`` [N, C] are rounded to the dtype of ``x`` first; autocast is off inside, so the
    result has the dtype of ``x`` like the kernels.
    """
    with outside_autocast(x.device):
        xc = x - x.mean(dim=(2, 3), keepdim=True)
        xn = xc * torch.rsqrt(xc.square().mean(dim=(2, 3), keepdim=True) + eps)
        n, c = scale.shape
        return xn * scale.to(x.dtype).reshape(n, c, 1, 1) + bias.to(x.dtype).reshape(n, c, 1, 1)
