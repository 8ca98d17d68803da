"""StyleGAN3 (alias-free) generator, configs T and R, on fastgan ops.

Constructor keyword arguments, the layer schedule (cutoffs, stopbands, sampling rates, margins), layer
names (``synthesis.L0_36_512`` ...), buffers and call signatures match the NVlabs StyleGAN3 release,
so its weights load with ``strict=True``.

The schedule is the pure table of :mod:`fastgan.nets.sg3_schedule`, the filters come from
:mod:`fastgan.nets.filter_design`, and every op goes through :mod:`fastgan.ops` without ``impl=``, so
``with fastgan.backends.use(name):`` switches the whole network.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Union

import torch

from .. import ops
from .filter_design import design_lowpass_filter
from .layers import FullyConnectedLayer, MappingNetwork as _MappingNetwork, layer_dtype, records_init
from .sg3_schedule import as_size, layer_resampling, synthesis_schedule
from .stylegan2 import _GeneratorBase, _check_ws

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisInput", "SynthesisLayer",
           "design_lowpass_filter"]

# SynthesisLayer keywords a SynthesisNetwork (and so a Generator) hands to every layer; the first four
# also shape the schedule (taps, padding, radial filters).
_GEOMETRY_KWARGS = ("conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters")
_LAYER_KWARGS = _GEOMETRY_KWARGS + ("conv_clamp", "magnitude_ema_beta")
_FORWARD_KWARGS = ("noise_mode", "force_fp32", "update_emas")


def _lane_order_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T + bias`` ([N, K], [O, K], [O] -> [N, O]) summed in one fixed float32 order.

    Each product is rounded, the products of k = l mod 4 accumulate in lane l (k ascending), the lanes
    combine as (l0 + l2) + (l1 + l3), and the bias comes last. It is the plain linear map, but its rounding
    no longer depends on which BLAS kernel a machine picks. This is the order of the BLAS kernel that
    computed the NVlabs golden data, and the [N, 4] input transform feeds the phase of every pixel, so one
    ulp there changes the whole image (and can move pre-activations across an lrelu kink).
    """
    terms = x.unsqueeze(1) * weight.unsqueeze(0)                                    # [N, O, K]
    terms = torch.nn.functional.pad(terms, (0, -terms.shape[2] % 4))
    lanes = terms.unflatten(2, (-1, 4)).unbind(2)                                   # K/4 x [N, O, 4]
    acc = lanes[0]
    for step in lanes[1:]:
        acc = acc + step
    return (acc[..., 0] + acc[..., 2]) + (acc[..., 1] + acc[..., 3]) + bias


class MappingNetwork(_MappingNetwork):
    """The StyleGAN3 mapping network: ``num_layers`` lrelu layers of width w_dim (see the SG2 one)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 2,
                 lr_multiplier: float = 0.01, w_avg_beta: float = 0.998):
        if isinstance(z_dim, bool) or not isinstance(z_dim, int) or z_dim < 1:
            raise ValueError(f"MappingNetwork: StyleGAN3 needs a latent, z_dim must be an int >= 1, got {z_dim!r}")
        if w_avg_beta is None:
            raise ValueError("MappingNetwork: StyleGAN3 always tracks w_avg, w_avg_beta must be a float")
        super().__init__(z_dim, c_dim, w_dim, num_ws, num_layers=num_layers, lr_multiplier=lr_multiplier,
                         w_avg_beta=w_avg_beta)


class SynthesisInput(torch.nn.Module):
    """Fourier features [N, channels, size, size] whose rotation/translation follow w (via ``affine``).

    ``transform`` (a 3x3 buffer, identity by default) applies a user transform on top of it."""

    def __init__(self, w_dim: int, channels: int, size: Union[int, Sequence[int]], sampling_rate: float,
                 bandwidth: float):
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = as_size(size, "SynthesisInput: size")
        self._width, self._height = (int(v) for v in self.size)   # Python ints: constants when traced
        self.sampling_rate = sampling_rate
        self.bandwidth = bandwidth
        if not 0 < bandwidth <= sampling_rate / 2:
            raise ValueError(f"SynthesisInput: bandwidth must lie in (0, sampling_rate/2], got {bandwidth} "
                             f"at sampling_rate {sampling_rate}")
        # Frequencies uniform over the disc of radius `bandwidth`: a Gaussian direction, its radius r mapped
        # to exp(-r^2/4) (whose square is uniform on [0, 1]); phases uniform on [-1/2, 1/2).
        directions = torch.randn(channels, 2)
        radii = directions.norm(dim=1, keepdim=True)
        disc = directions / (radii * radii.square().div(4).exp()) * float(bandwidth)
        offsets = torch.rand(channels) - 0.5
        self.weight = torch.nn.Parameter(torch.randn(channels, channels))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", disc)
        self.register_buffer("phases", offsets)

    def _sample_transform(self, w: torch.Tensor) -> torch.Tensor:
        """[N, 3, 3]: the learned rotation (about the origin) after the learned translation, then ``transform``."""
        a = self.affine
        p = _lane_order_linear(w, a.weight * a.weight_gain, a.bias * a.bias_gain if a.bias_gain != 1 else a.bias)
        p = p / p[:, :2].norm(dim=1, keepdim=True)
        cos, sin, tx, ty = p.unbind(1)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        rotate = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], dim=1).view(-1, 3, 3)
        shift = torch.stack([one, zero, -tx, zero, one, -ty, zero, zero, one], dim=1).view(-1, 3, 3)
        return rotate @ shift @ self.transform.unsqueeze(0)

    def _pixel_centres(self, device: torch.device) -> torch.Tensor:
        """[H, W, 2]: (x, y) of every pixel centre in sampling-rate units, ``(j + 1/2 - W/2) / sampling_rate``.

        Built by ``affine_grid`` (its [-1, 1] pixel-centre grid scaled by ``size / (2 sampling_rate)``), whose
        float32 roundings the NVlabs golden images carry."""
        width, height = self._width, self._height
        rate = float(self.sampling_rate)
        theta = torch.tensor([[[0.5 * width / rate, 0, 0], [0, 0.5 * height / rate, 0]]], dtype=torch.float32,
                             device=device)
        return torch.nn.functional.affine_grid(theta, [1, 1, height, width], align_corners=False)[0]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if w.ndim != 2 or w.shape[1] != self.w_dim:
            raise ValueError(f"SynthesisInput: w must have shape [N, {self.w_dim}], got {list(w.shape)}")
        m = self._sample_transform(w.float())
        # The signal sin(2 pi (f . q + phase)) evaluated at q = A p + b is one with frequencies f A and
        # phases phase + f . b: transform the per-channel frequencies instead of the sampling grid.
        freqs = self.freqs.unsqueeze(0) @ m[:, :2, :2]                               # [N, C, 2]
        phases = self.phases + (self.freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)    # [N, C]
        # Channels whose transformed frequency leaves the band fade out linearly, vanishing at Nyquist.
        rolloff = float(self.sampling_rate) / 2 - float(self.bandwidth)
        amplitude = (1 - (freqs.norm(dim=2) - float(self.bandwidth)) / rolloff).clamp(0, 1)

        grid = self._pixel_centres(w.device).unsqueeze(2)                             # [H, W, 1, 2]
        angle = (grid[..., 0] * freqs[:, None, None, :, 0] + grid[..., 1] * freqs[:, None, None, :, 1]
                 + phases[:, None, None, :])                                          # [N, H, W, C]
        features = torch.sin(angle * (2 * math.pi)) * amplitude[:, None, None, :]
        mixed = features @ (self.weight / math.sqrt(self.channels)).t()
        return mixed.permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, channels={self.channels}, size={self.size.tolist()}, "
                f"sampling_rate={float(self.sampling_rate):g}, bandwidth={float(self.bandwidth):g}")


class SynthesisLayer(torch.nn.Module):
    """Modulated conv, then filtered lrelu: upsample, lrelu, low-pass, downsample (or the toRGB layer)."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool, in_channels: int,
                 out_channels: int, in_size: Union[int, Sequence[int]], out_size: Union[int, Sequence[int]],
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        if conv_clamp is not None and not conv_clamp >= 0:
            raise ValueError(f"SynthesisLayer: conv_clamp must be None or >= 0, got {conv_clamp!r}")
        if not 0 <= magnitude_ema_beta <= 1:
            raise ValueError(f"SynthesisLayer: magnitude_ema_beta must lie in [0, 1], got {magnitude_ema_beta!r}")
        geo = layer_resampling(is_torgb, is_critically_sampled, in_size, out_size, in_sampling_rate,
                               out_sampling_rate, conv_kernel=conv_kernel, filter_size=filter_size,
                               lrelu_upsampling=lrelu_upsampling, use_radial_filters=use_radial_filters)
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = as_size(in_size, "SynthesisLayer: in_size")
        self.out_size = as_size(out_size, "SynthesisLayer: out_size")
        self._in_shape = (in_channels, int(self.in_size[1]), int(self.in_size[0]))   # [C, H, W] as Python ints
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = geo.conv_kernel
        self.filter_size = filter_size
        self.lrelu_upsampling = lrelu_upsampling
        self.use_radial_filters = use_radial_filters
        self.conv_clamp = conv_clamp
        self.magnitude_ema_beta = magnitude_ema_beta
        self.tmp_sampling_rate = geo.tmp_sampling_rate
        self.up_factor, self.up_taps = geo.up_factor, geo.up_taps
        self.down_factor, self.down_taps = geo.down_factor, geo.down_taps
        self.down_radial = geo.down_radial
        self.padding = list(geo.padding)

        k = self.conv_kernel
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn(out_channels, in_channels, k, k))
        self.bias = torch.nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("magnitude_ema", torch.tensor(1.0))
        fs = self.tmp_sampling_rate
        self.register_buffer("up_filter", design_lowpass_filter(
            self.up_taps, in_cutoff, 2 * in_half_width, fs))
        self.register_buffer("down_filter", design_lowpass_filter(
            self.down_taps, out_cutoff, 2 * out_half_width, fs, radial=self.down_radial))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", force_fp32: bool = False,
                update_emas: bool = False) -> torch.Tensor:
        """x [N, in_channels, in_h, in_w], w [N, w_dim] -> [N, out_channels, out_h, out_w].

        ``noise_mode`` is accepted for NVlabs call compatibility and ignored (StyleGAN3 has no noise)."""
        expect = self._in_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != expect:
            raise ValueError(f"SynthesisLayer: x must have shape [N, {', '.join(map(str, expect))}], "
                             f"got {list(x.shape)}")
        if update_emas:   # fold this batch's mean power into the EMA first: the gain below reads it
            power = x.detach().float().square().mean()
            self.magnitude_ema.copy_(power + self.magnitude_ema_beta * (self.magnitude_ema.detach() - power))
        demodulate = not self.is_torgb
        mod = self.affine(w)
        if not demodulate:   # ToRGB: the equalised-learning-rate gain 1/sqrt(I k^2) of its weight scales the styles
            mod = mod * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))
        dtype = layer_dtype(self.use_fp16, force_fp32, x.device)
        y = ops.modulated_conv2d_sg3(x.to(dtype), self.weight, mod, demodulate=demodulate,
                                     padding=self.conv_kernel - 1, input_gain=self.magnitude_ema.rsqrt())
        gain, slope = (1.0, 1.0) if self.is_torgb else (math.sqrt(2), 0.2)
        return ops.filtered_lrelu(y, fu=self.up_filter, fd=self.down_filter, b=self.bias.to(dtype),
                                  up=self.up_factor, down=self.down_factor, padding=self.padding, gain=gain,
                                  slope=slope, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        kind = "torgb" if self.is_torgb else ("critical" if self.is_critically_sampled else "layer")
        return (f"{kind}, w_dim={self.w_dim}, use_fp16={self.use_fp16}, "
                f"channels={self.in_channels}->{self.out_channels}, size={self.in_size.tolist()}->"
                f"{self.out_size.tolist()}, sampling_rate={self.in_sampling_rate:g}->{self.out_sampling_rate:g}, "
                f"cutoff={float(self.in_cutoff):g}->{float(self.out_cutoff):g}, half_width="
                f"{float(self.in_half_width):g}->{float(self.out_half_width):g}, tmp_sampling_rate="
                f"{self.tmp_sampling_rate:g}, up={self.up_factor}, down={self.down_factor}, padding={self.padding}")


def _check_forward_kwargs(kwargs: Dict[str, Any], who: str) -> None:
    if "fused_modconv" in kwargs:
        raise TypeError(f"{who}: fused_modconv is a StyleGAN2 option; the StyleGAN3 modulated convolution "
                        f"has a single (grouped) formulation, so do not pass it")
    unknown = sorted(set(kwargs) - set(_FORWARD_KWARGS))
    if unknown:
        raise TypeError(f"{who}: unexpected keyword argument(s) {unknown}; accepted: {list(_FORWARD_KWARGS)}")


class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_layers + 2, w_dim] -> images [N, img_channels, R, R] (fp32).

    The schedule: cutoffs grow geometrically from ``first_cutoff`` to R/2 over the first
    ``num_layers - num_critical`` layers; stopbands likewise from ``first_stopband`` to
    ``R/2 * last_stopband_rel``; sampling rates are the next power of two of twice the stopband (at most R);
    feature maps carry ``margin_size`` extra pixels on each side except in the last two layers."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs: Any):
        super().__init__()
        unknown = sorted(set(layer_kwargs) - set(_LAYER_KWARGS))
        if unknown:
            raise TypeError(f"SynthesisNetwork: unexpected keyword argument(s) {unknown}; layer keywords are "
                            f"{list(_LAYER_KWARGS)}")
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res
        table = synthesis_schedule(
            img_resolution, img_channels, channel_base=channel_base, channel_max=channel_max, num_layers=num_layers,
            num_critical=num_critical, first_cutoff=first_cutoff, first_stopband=first_stopband,
            last_stopband_rel=last_stopband_rel, margin_size=margin_size, num_fp16_res=num_fp16_res,
            **{k: layer_kwargs[k] for k in _GEOMETRY_KWARGS if k in layer_kwargs})
        head = table.input
        self.input = SynthesisInput(w_dim, head.channels, head.size, head.sampling_rate, head.bandwidth)
        self.layer_names = table.names
        for row in table.layers:
            setattr(self, row.name, SynthesisLayer(w_dim=w_dim, **row.layer_kwargs(), **layer_kwargs))

    def forward(self, ws: torch.Tensor, **layer_kwargs: Any) -> torch.Tensor:
        """ws [N, num_ws, w_dim]; keywords ``noise_mode`` (ignored), ``force_fp32``, ``update_emas``."""
        _check_forward_kwargs(layer_kwargs, "SynthesisNetwork")
        _check_ws(ws, self.num_ws, self.w_dim, "SynthesisNetwork")
        first, *rest = ws.float().unbind(dim=1)
        x = self.input(first)
        for name, w in zip(self.layer_names, rest):
            x = getattr(self, name)(x, w, **layer_kwargs)
        scaled = x if self.output_scale == 1 else x.mul(self.output_scale)
        return scaled.float()

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, num_layers={self.num_layers}, num_critical={self.num_critical}, "
                f"margin_size={self.margin_size}, num_fp16_res={self.num_fp16_res}")


@records_init
class Generator(_GeneratorBase):
    """StyleGAN3 generator: ``G(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False,
    noise_mode=..., force_fp32=False)`` -> [N, img_channels, R, R].

    Keyword arguments other than mapping_kwargs go to :class:`SynthesisNetwork` and its layers
    (channel_base, channel_max, num_fp16_res, conv_clamp, conv_kernel, use_radial_filters,
    magnitude_ema_beta, ...). ``G.synthesis.input.transform`` sets a user rotation/translation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[Dict[str, Any]] = None, **synthesis_kwargs: Any):
        super().__init__()
        self._build(SynthesisNetwork, z_dim, c_dim, w_dim, img_resolution, img_channels, dict(mapping_kwargs or {}),
                    synthesis_kwargs, mapping_cls=MappingNetwork)
