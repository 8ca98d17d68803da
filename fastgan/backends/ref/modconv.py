"""Reference modulated convolutions of StyleGAN2 and StyleGAN3 (per-sample weights, grouped conv)."""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .conv2d_resample import conv2d_resample


def fp16_prenormalize(weight: torch.Tensor, styles: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rescale weight and styles so that float16 modulated weights cannot overflow (demodulation
    cancels the scale): weight / sqrt(I*kh*kw) / max|weight[o]|, styles / max|styles[n]|."""
    _, i, kh, kw = weight.shape
    wmax = weight.abs().amax(dim=[1, 2, 3], keepdim=True)
    weight = weight * ((i * kh * kw) ** -0.5 / wmax)
    styles = styles / styles.abs().amax(dim=1, keepdim=True)
    return weight, styles


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: Optional[torch.Tensor],
                     up: int, down: int, pad: Tuple[int, int, int, int], f: torch.Tensor, demodulate: bool,
                     flip_weight: bool, fused_modconv: bool) -> torch.Tensor:
    """StyleGAN2 modulated convolution. ``x`` [N,I,H,W], ``weight`` [O,I,k,k], ``styles`` [N,I]."""
    n = x.shape[0]
    o, i, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        weight, styles = fp16_prenormalize(weight, styles)
    w = dcoefs = None
    if demodulate or fused_modconv:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, i, 1, 1)             # [N,O,I,kh,kw]
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()             # [N,O]

    if not fused_modconv:
        x = x * styles.to(x.dtype).reshape(n, i, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f, up, down, pad, 1, flip_weight, False)
        if demodulate and noise is not None:
            return torch.addcmul(noise.to(x.dtype), x, dcoefs.to(x.dtype).reshape(n, o, 1, 1))
        if demodulate:
            return x * dcoefs.to(x.dtype).reshape(n, o, 1, 1)
        if noise is not None:
            return x + noise.to(x.dtype)
        return x

    if demodulate:
        w = w * dcoefs.reshape(n, o, 1, 1, 1)
    y = conv2d_resample(x.reshape(1, n * i, *x.shape[2:]), w.reshape(n * o, i, kh, kw).to(x.dtype), f,
                        up, down, pad, n, flip_weight, False)
    y = y.reshape(n, o, *y.shape[2:])
    if noise is not None:
        y = y + noise
    return y


def modulated_conv2d_sg3(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool,
                         padding: Union[int, Tuple[int, int]], input_gain: Optional[torch.Tensor]) -> torch.Tensor:
    """StyleGAN3 modulated convolution: always fused; ``padding`` is F.conv2d-style (int or (ph, pw))."""
    n = x.shape[0]
    o, i, kh, kw = w.shape
    if demodulate:
        w = w * w.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    w = w.unsqueeze(0) * s.reshape(n, 1, i, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, o, 1, 1, 1)
    if input_gain is not None:
        w = w * input_gain.expand(n, i).reshape(n, 1, i, 1, 1)
    y = F.conv2d(x.reshape(1, n * i, *x.shape[2:]), w.reshape(n * o, i, kh, kw).to(x.dtype),
                 padding=padding, groups=n)
    return y.reshape(n, o, *y.shape[2:])
