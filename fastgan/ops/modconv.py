"""Modulated convolutions: StyleGAN2 ``modulated_conv2d``, StyleGAN3 ``modulated_conv2d_sg3`` and the
fused synthesis layer ``modconv_bias_act``.

Signatures follow ``training.networks_stylegan2.modulated_conv2d`` and
``training.networks_stylegan3.modulated_conv2d`` of the NVlabs code (plus ``impl=``).

Kernel backends never build per-sample weights: they modulate the activations instead
(``x * styles`` per input channel), run ONE convolution with the shared weight for the whole batch,
and apply the demodulation coefficients ``rsqrt(styles**2 @ sum_k(weight**2).T + 1e-8)`` per
(sample, output channel) in an epilogue together with noise, bias, activation, gain and clamp
(:meth:`fastgan.backends.kernel_conv.ConvStrategy.modulated`, tuned per backend). This is the same
function as the grouped-convolution formulation (``fused_modconv=True``) up to rounding;
``fused_modconv`` only selects the formulation on the ``ref`` backend.

Autocast: the convolutions follow it like ``F.conv2d`` does, so under ``torch.autocast`` the result
has autocast's dtype on every backend (``ref`` included), and the epilogue's operands (demodulation
coefficients, noise, bias) are rounded to it; otherwise everything has the dtype of ``x``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

from .. import backends
from ..backends.activations import ACTIVATIONS
from ..backends.kernel_conv import Epilogue, conv_strategy
from ..backends.prims.layout import memory_format_of
from ..backends.ref import modconv as _ref
from ._args import Padding, check_filter, check_float, check_same_device, check_tensor, parse_padding
from .bias_act import bias_act
from .conv2d_resample import _int_factor, check_conv_args

__all__ = ["modulated_conv2d", "modulated_conv2d_sg3", "modconv_bias_act", "demodulation_coefs"]


def demodulation_coefs(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """[N, O] coefficients ``rsqrt(sum_{i,kh,kw} (weight[o,i] * styles[n,i])**2 + 1e-8)``, as a matmul."""
    return (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()


def _out_hw(x: torch.Tensor, weight: torch.Tensor, up: int, down: int, pad) -> Tuple[int, int]:
    kh, kw = weight.shape[2], weight.shape[3]
    return ((x.shape[2] * up + pad[2] + pad[3] - kh + 1) // down,
            (x.shape[3] * up + pad[0] + pad[1] - kw + 1) // down)


def _check_modconv(x, weight, styles, noise, bias, up, down, padding, f, op):
    check_conv_args(x, weight, 1, op, "weight")
    check_tensor(styles, "styles", op, ndim=2)
    check_same_device(styles, "styles", x, op)
    n, i = x.shape[0], x.shape[1]
    if tuple(styles.shape) != (n, i):
        raise ValueError(f"{op}: styles must have shape [N, I] = {[n, i]} for x {list(x.shape)}, "
                         f"got {list(styles.shape)}")
    f = check_filter(f, x, op, "resample_filter")
    up, down = _int_factor(up, "up", op), _int_factor(down, "down", op)
    pad = parse_padding(padding, op)
    oh, ow = _out_hw(x, weight, up, down, pad)
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: empty output for x {list(x.shape)}, weight {list(weight.shape)}, up {up}, "
                         f"down {down}, padding {pad}")
    out_shape = (n, weight.shape[0], oh, ow)
    if noise is not None:
        check_tensor(noise, "noise", op)
        check_same_device(noise, "noise", x, op)
        try:
            ok = torch.broadcast_shapes(noise.shape, out_shape) == out_shape
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: noise of shape {list(noise.shape)} must broadcast to the output shape "
                             f"{list(out_shape)} (typically [N, 1, H, W])")
    if bias is not None:
        check_tensor(bias, "bias", op, ndim=1)
        check_same_device(bias, "bias", x, op)
        if bias.shape[0] != weight.shape[0]:
            raise ValueError(f"{op}: bias must have O = {weight.shape[0]} elements, got {list(bias.shape)}")
    return f, up, down, pad


def _sg2_prepare(x, weight, styles, demodulate):
    """(weight, styles, dcoefs) of the SG2 formulation: fp16 pre-normalisation, then [N, O] coefficients."""
    if x.dtype == torch.float16 and demodulate:
        weight, styles = _ref.fp16_prenormalize(weight, styles)
    return weight, styles, (demodulation_coefs(weight, styles) if demodulate else None)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: Padding = 0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True, impl: Optional[str] = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution with optional up/downsampling, demodulation and noise.

    ``out[n] = conv2d_resample(x[n], weight * styles[n] * dcoefs[n]) + noise`` where
    ``dcoefs[n, o] = rsqrt(sum((weight[o] * styles[n])**2) + 1e-8)`` when ``demodulate``, else 1.
    With float16 ``x`` and ``demodulate``, weight and styles are first rescaled to avoid overflow.

    Args:
        x: [N, I, H, W]. weight: [O, I, kh, kw]. styles: [N, I].
        noise: broadcastable to the output (typically [N, 1, H', W']), added after demodulation.
        up, down, padding, resample_filter, flip_weight: as in :func:`fastgan.ops.conv2d_resample`.
        fused_modconv: ref backend only: one grouped convolution with per-sample weights (True)
            or shared-weight convolution of modulated activations (False).
        impl: backend; None defers to ``fastgan.backends``.

    Returns:
        [N, O, H', W'] in the dtype and memory format of x.
    """
    op = "modulated_conv2d"
    f, up, down, pad = _check_modconv(x, weight, styles, noise, None, up, down, padding, resample_filter, op)
    name = backends.resolve(impl, x, op)
    if name == "ref":
        return _ref.modulated_conv2d(x, weight, styles, noise, up, down, pad, f, bool(demodulate), bool(flip_weight),
                                     bool(fused_modconv)).contiguous(memory_format=memory_format_of(x))
    weight, styles, dcoefs = _sg2_prepare(x, weight, styles, demodulate)
    return conv_strategy(name).modulated(x, weight, styles, dcoefs, noise, up, down, pad, f, bool(flip_weight))


def modconv_bias_act(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, bias: Optional[torch.Tensor],
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1,
                     padding: Optional[Padding] = None, resample_filter: Optional[torch.Tensor] = None,
                     demodulate: bool = True, flip_weight: Optional[bool] = None, act: str = "lrelu",
                     alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
                     fused_modconv: bool = True, impl: Optional[str] = None) -> torch.Tensor:
    """A whole StyleGAN2 synthesis layer after the affine: modulated conv, noise, bias, activation.

    Equals ``bias_act(modulated_conv2d(x, weight, styles, noise, up, down, padding, resample_filter,
    demodulate, flip_weight, fused_modconv), bias, act=act, alpha=alpha, gain=gain, clamp=clamp)``,
    i.e. NVlabs ``SynthesisLayer.forward`` given ``styles = affine(w)``, the scaled noise
    (``noise_const * noise_strength`` or ``randn([N,1,H,W]) * noise_strength``),
    ``gain = act_gain * layer_gain`` and ``clamp = conv_clamp * layer_gain``. For ``ToRGBLayer`` pass
    styles already multiplied by its weight gain, ``demodulate=False``, ``act='linear'``.

    Defaults that differ from :func:`modulated_conv2d`: ``padding=None`` means ``kernel_size // 2``,
    ``flip_weight=None`` means ``up == 1`` (both as in SynthesisLayer); ``gain=None`` is the
    activation's default gain (sqrt(2) for lrelu). ``clamp=None`` disables clamping.
    On the cpu backend everything after the convolution is one pass over the output.

    Returns:
        [N, O, H', W'] in the dtype and memory format of x.
    """
    op = "modconv_bias_act"
    if act not in ACTIVATIONS:
        raise ValueError(f"{op}: act must be one of {', '.join(ACTIVATIONS)}, got {act!r}")
    if padding is None:
        padding = weight.shape[-1] // 2 if isinstance(weight, torch.Tensor) and weight.ndim == 4 else 0
    if flip_weight is None:
        flip_weight = up == 1
    f, up, down, pad = _check_modconv(x, weight, styles, noise, bias, up, down, padding, resample_filter, op)
    spec = ACTIVATIONS[act]
    alpha = spec.def_alpha if alpha is None else check_float(alpha, "alpha", op)
    gain = spec.def_gain if gain is None else check_float(gain, "gain", op)
    clamp = None if clamp is None else check_float(clamp, "clamp", op)
    if clamp is not None and clamp < 0:
        clamp = None
    name = backends.resolve(impl, x, op)
    if name == "ref":
        y = _ref.modulated_conv2d(x, weight, styles, noise, up, down, pad, f, bool(demodulate), bool(flip_weight),
                                  bool(fused_modconv)).contiguous(memory_format=memory_format_of(x))
        return bias_act(y, None if bias is None else bias.to(y.dtype), act=act, alpha=alpha, gain=gain,
                        clamp=clamp, impl="ref")
    weight, styles, dcoefs = _sg2_prepare(x, weight, styles, demodulate)
    return conv_strategy(name).modulated(x, weight, styles, dcoefs, noise, up, down, pad, f, bool(flip_weight),
                                         Epilogue(bias, act, alpha, gain, clamp))


def _sg3_padding(padding, op: str) -> Union[int, Tuple[int, int]]:
    if isinstance(padding, bool):
        raise TypeError(f"{op}: padding must be an int or [ph, pw], got a bool")
    if isinstance(padding, int):
        return padding
    vals = tuple(padding) if isinstance(padding, Sequence) else None
    if vals is None or len(vals) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        raise ValueError(f"{op}: padding must be an int or [ph, pw] (F.conv2d order), got {padding!r}")
    return vals


def modulated_conv2d_sg3(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, demodulate: bool = True,
                         padding: Union[int, Sequence[int]] = 0, input_gain: Optional[torch.Tensor] = None,
                         impl: Optional[str] = None) -> torch.Tensor:
    """StyleGAN3 modulated convolution (no noise, no resampling).

    With ``demodulate``: ``w`` is first normalised to unit RMS per output channel and ``s`` to unit
    RMS over the whole tensor, then the per-sample weights are demodulated. ``input_gain`` (scalar,
    [I] or [N, I]; SG3 passes ``magnitude_ema.rsqrt()``) scales the input channels after that.

    Args:
        x: [N, I, H, W]. w: [O, I, kh, kw]. s: [N, I].
        padding: int or [ph, pw] in ``F.conv2d`` order (SG3 passes ``kernel_size - 1``).

    Returns:
        [N, O, H + 2*ph - kh + 1, W + 2*pw - kw + 1] in the dtype and memory format of x.
    """
    op = "modulated_conv2d_sg3"
    check_conv_args(x, w, 1, op, "w")
    check_tensor(s, "s", op, ndim=2)
    check_same_device(s, "s", x, op)
    n, i = x.shape[0], x.shape[1]
    if tuple(s.shape) != (n, i):
        raise ValueError(f"{op}: s must have shape [N, I] = {[n, i]} for x {list(x.shape)}, got {list(s.shape)}")
    pad = _sg3_padding(padding, op)
    if input_gain is not None:
        check_tensor(input_gain, "input_gain", op)
        check_same_device(input_gain, "input_gain", x, op)
        try:
            torch.broadcast_shapes(input_gain.shape, (n, i))
            ok = input_gain.ndim <= 2
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"{op}: input_gain must be a scalar, [I] or [N, I] = {[n, i]}, "
                             f"got {list(input_gain.shape)}")
    ph, pw = (pad, pad) if isinstance(pad, int) else pad
    if ph < 0 or pw < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {padding!r}")
    name = backends.resolve(impl, x, op)
    if name == "ref":
        return _ref.modulated_conv2d_sg3(x, w, s, bool(demodulate), pad, input_gain).contiguous(
            memory_format=memory_format_of(x))
    if demodulate:
        w = w * w.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean().rsqrt()
    dcoefs = demodulation_coefs(w, s) if demodulate else None
    if input_gain is not None:  # scales the input channels, i.e. the styles, after demodulation
        s = s * input_gain.expand(n, i)
    return conv_strategy(name).modulated(x, w, s, dcoefs, None, 1, 1, (pw, pw, ph, ph), check_filter(None, x, op),
                                         True)
