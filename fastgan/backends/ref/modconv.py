"""Reference modulated convolutions of StyleGAN2 (network-spec §2.4) and StyleGAN3 (§3.3).

Both build the per-sample weights ``weight[o, i] * styles[n, i]`` explicitly; the fused forms run the
whole batch as ONE grouped convolution (the batch folded into the channel axis, ``groups = N``).
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F

from .conv2d_resample import conv2d_resample

_EPS = 1e-8


def _per_sample_weights(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """[O, I, kh, kw] x [N, I] -> [N, O, I, kh, kw]: input channel i of sample n scaled by styles[n, i]."""
    return weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, styles.shape[1], 1, 1)


def _demodulation(wn: torch.Tensor) -> torch.Tensor:
    """[N, O] factors that give every per-sample output filter of ``wn`` [N, O, I, kh, kw] unit norm."""
    return (wn.square().sum(dim=[2, 3, 4]) + _EPS).rsqrt()


def _grouped(x: torch.Tensor, wn: torch.Tensor, run) -> torch.Tensor:
    """Apply ``run(x', w', groups)`` to the batch folded into channels: x' [1, N*I, H, W], w' [N*O, I, kh, kw]."""
    n, o = wn.shape[0], wn.shape[1]
    if n == 0:  # no samples, no groups: the empty batch through one (all-zero) filter bank keeps shape and graph
        return run(x, wn.sum(0).to(x.dtype), 1)
    y = run(x.reshape(1, n * x.shape[1], x.shape[2], x.shape[3]), wn.reshape(n * o, *wn.shape[2:]).to(x.dtype), n)
    return y.reshape(n, o, y.shape[2], y.shape[3])


def fp16_prenormalize(weight: torch.Tensor, styles: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scale ``weight`` [O, I, kh, kw] and ``styles`` [N, I] down so float16 per-sample weights cannot overflow.

    Returns ``weight / sqrt(I*kh*kw) / max|weight[o]|`` (per output channel) and
    ``styles / max|styles[n]|`` (per sample). Demodulation cancels both factors (up to its epsilon).
    """
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    weight = weight * (fan_in ** -0.5) / weight.abs().amax(dim=[1, 2, 3], keepdim=True)
    styles = styles / styles.abs().amax(dim=1, keepdim=True)
    return weight, styles


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, noise: Optional[torch.Tensor],
                     up: int, down: int, pad: Tuple[int, int, int, int], f: torch.Tensor, demodulate: bool,
                     flip_weight: bool, fused_modconv: bool) -> torch.Tensor:
    """StyleGAN2 modulated convolution. ``x`` [N, I, H, W], ``weight`` [O, I, kh, kw], ``styles`` [N, I].

    ``out[n] = conv2d_resample(x[n], weight * styles[n] * d[n]) + noise`` with
    ``d[n, o] = rsqrt(sum_{i,r,q} (weight[o,i,r,q] * styles[n,i])**2 + 1e-8)`` if ``demodulate`` else 1;
    float16 ``x`` with ``demodulate`` is pre-normalised first (:func:`fp16_prenormalize`). ``noise``
    broadcasts to the output. ``fused_modconv`` picks one grouped convolution with per-sample weights
    (True) or a shared-weight convolution of ``x * styles`` scaled by ``d`` afterwards (False).
    Returns [N, O, H', W'] in the dtype of ``x``.
    """
    if demodulate and x.dtype == torch.float16:
        weight, styles = fp16_prenormalize(weight, styles)
    n, o = x.shape[0], weight.shape[0]
    wn = _per_sample_weights(weight, styles) if (demodulate or fused_modconv) else None
    dcoefs = _demodulation(wn) if demodulate else None

    def resample(inp: torch.Tensor, kernel: torch.Tensor, groups: int) -> torch.Tensor:
        return conv2d_resample(inp, kernel, f, up, down, pad, groups, flip_weight, False)

    if fused_modconv:
        if dcoefs is not None:
            wn = wn * dcoefs.reshape(n, o, 1, 1, 1)
        y = _grouped(x, wn, resample)
        return y if noise is None else y + noise.to(y.dtype)

    y = resample(x * styles.to(x.dtype).reshape(n, styles.shape[1], 1, 1), weight.to(x.dtype), 1)
    if dcoefs is not None:
        d = dcoefs.to(y.dtype).reshape(n, o, 1, 1)
        return y * d if noise is None else torch.addcmul(noise.to(y.dtype), y, d)
    return y if noise is None else y + noise.to(y.dtype)


def modulated_conv2d_sg3(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool,
                         padding: Union[int, Tuple[int, int]], input_gain: Optional[torch.Tensor]) -> torch.Tensor:
    """StyleGAN3 modulated convolution, always one grouped convolution. ``x`` [N, I, H, W], ``w`` [O, I, k, k],
    ``s`` [N, I]; ``padding`` is ``F.conv2d``-style (int or (ph, pw)).

    With ``demodulate``: ``w`` is scaled to unit RMS per output channel and ``s`` to unit RMS over the
    whole tensor (one scalar for the batch), then every per-sample output filter to unit norm.
    ``input_gain`` (scalar, [I] or [N, I]) scales input channel i of sample n afterwards. Every step
    stays in the autograd graph. Returns [N, O, H + 2*ph - k + 1, W + 2*pw - k + 1].
    """
    n, i = s.shape
    if demodulate:
        w = w * w.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    wn = _per_sample_weights(w, s)
    if demodulate:
        wn = wn * _demodulation(wn).reshape(n, wn.shape[1], 1, 1, 1)
    if input_gain is not None:
        wn = wn * input_gain.expand(n, i).reshape(n, 1, i, 1, 1)
    return _grouped(x, wn, lambda inp, kernel, groups: F.conv2d(inp, kernel, padding=padding, groups=groups))
