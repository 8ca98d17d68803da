"""The StyleGAN3 synthesis layer schedule as a pure table (no modules, no tensors).

:func:`synthesis_schedule` turns the :class:`fastgan.nets.stylegan3.SynthesisNetwork` hyper-parameters into
one :class:`InputRow` (the Fourier-feature input) and one :class:`LayerRow` per synthesis layer: channels,
spatial sizes, sampling rates, cutoffs, stopbands, half-widths, the fp16 flag and the resampling
geometry of :func:`layer_resampling` (intermediate rate, up/down factors, filter taps, padding).

Band plan, layer ``i = 0 .. num_layers`` (the last one is ToRGB), in float64 as the release computes it:
the cutoff grows geometrically from ``first_cutoff`` to ``R/2`` over the first ``num_layers - num_critical``
layers and then stays; the stopband likewise from ``first_stopband`` to ``R/2 * last_stopband_rel``; the
sampling rate is the power of two at or above ``min(2 * stopband, R)``; the half-width of the transition
band is ``max(stopband, rate/2) - cutoff``. Layer ``i`` reads the values of layer ``max(i - 1, 0)``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import numpy as np

__all__ = ["Resampling", "InputRow", "LayerRow", "Schedule", "layer_resampling", "synthesis_schedule", "as_size"]

Size = Union[int, Sequence[int]]


def as_size(size: Size, name: str) -> np.ndarray:
    """``size`` (an int or ``[width, height]``) as a numpy int64 array ``[2]`` of positive values."""
    arr = np.broadcast_to(np.asarray(size), [2]) if np.ndim(size) == 0 else np.asarray(size)
    if arr.shape != (2,) or not np.issubdtype(arr.dtype, np.integer) or (arr < 1).any():
        raise ValueError(f"{name} must be a positive int or [width, height] of positive ints, got {size!r}")
    return arr.astype(np.int64)


def _ratio(num: float, den: float, what: str) -> int:
    factor = int(np.rint(num / den))
    if factor < 1 or factor * den != num:
        raise ValueError(f"{what} must divide the intermediate sampling rate {num} exactly, got {den}")
    return factor


@dataclass(frozen=True)
class Resampling:
    """How one synthesis layer resamples: derived from its sizes and sampling rates alone."""
    conv_kernel: int            # 1 for ToRGB
    tmp_sampling_rate: float    # max(in, out rate) * lrelu_upsampling (* 1 for ToRGB)
    up_factor: int
    down_factor: int
    up_taps: int                # filter_size * up_factor, or 1 (no filter)
    down_taps: int
    down_radial: bool           # radial (jinc) down filter
    padding: Tuple[int, int, int, int]   # [x_lo, x_hi, y_lo, y_hi] on the upsampled image; < 0 crops


def layer_resampling(is_torgb: bool, is_critically_sampled: bool, in_size: Size, out_size: Size,
                     in_sampling_rate: float, out_sampling_rate: float, conv_kernel: int = 3, filter_size: int = 6,
                     lrelu_upsampling: int = 2, use_radial_filters: bool = False) -> Resampling:
    """Resampling geometry of a synthesis layer (sizes: int or ``[width, height]``).

    The full convolution (padding ``k - 1``) gives ``in + k - 1`` samples per axis; after upsampling by
    ``up`` and the two FIRs, the padding leaves exactly ``(out - 1) * down + 1`` samples to decimate.
    The low padding gets the larger half, shifted by ``up / 2`` so that samples sit at pixel centres.
    """
    for name, v in (("conv_kernel", conv_kernel), ("filter_size", filter_size), ("lrelu_upsampling", lrelu_upsampling)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"SynthesisLayer: {name} must be an int >= 1, got {v!r}")
    in_size, out_size = as_size(in_size, "SynthesisLayer: in_size"), as_size(out_size, "SynthesisLayer: out_size")
    kernel = 1 if is_torgb else int(conv_kernel)
    tmp_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
    up = _ratio(tmp_rate, in_sampling_rate, "in_sampling_rate")
    down = _ratio(tmp_rate, out_sampling_rate, "out_sampling_rate")
    up_taps = filter_size * up if up > 1 and not is_torgb else 1
    down_taps = filter_size * down if down > 1 and not is_torgb else 1
    spans = (out_size - 1) * down + 1 - (in_size + kernel - 1) * up + (up_taps - 1) + (down_taps - 1)
    lows = (spans + up) // 2
    (x_lo, y_lo), (x_hi, y_hi) = lows.tolist(), (spans - lows).tolist()
    return Resampling(conv_kernel=kernel, tmp_sampling_rate=tmp_rate, up_factor=up, down_factor=down,
                      up_taps=up_taps, down_taps=down_taps,
                      down_radial=bool(use_radial_filters) and not is_critically_sampled,
                      padding=(x_lo, x_hi, y_lo, y_hi))


@dataclass(frozen=True)
class InputRow:
    """The SynthesisInput: ``channels`` Fourier features of ``size`` pixels at ``sampling_rate``."""
    channels: int
    size: int
    sampling_rate: np.float64
    bandwidth: np.float64


@dataclass(frozen=True)
class LayerRow(Resampling):
    """One synthesis layer: its constructor values (``in_*`` are the previous row's ``out_*``) and geometry."""
    index: int
    name: str                   # L{index}_{out_size}_{out_channels}
    is_torgb: bool
    is_critically_sampled: bool
    use_fp16: bool
    in_channels: int
    out_channels: int
    in_size: int
    out_size: int
    in_sampling_rate: int
    out_sampling_rate: int
    in_cutoff: np.float64
    out_cutoff: np.float64
    in_half_width: np.float64
    out_half_width: np.float64
    out_stopband: np.float64

    def layer_kwargs(self) -> dict:
        """The SynthesisLayer constructor keywords this row fixes (w_dim and layer_kwargs come on top)."""
        keys = ("is_torgb", "is_critically_sampled", "use_fp16", "in_channels", "out_channels", "in_size",
                "out_size", "in_sampling_rate", "out_sampling_rate", "in_cutoff", "out_cutoff", "in_half_width",
                "out_half_width")
        return {k: getattr(self, k) for k in keys}


@dataclass(frozen=True)
class Schedule:
    """The whole table: the input features and the layers in order (the last one is ToRGB)."""
    input: InputRow
    layers: Tuple[LayerRow, ...]

    @property
    def names(self) -> List[str]:
        return [row.name for row in self.layers]


def synthesis_schedule(img_resolution: int, img_channels: int, channel_base: int = 32768, channel_max: int = 512,
                       num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                       first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                       num_fp16_res: int = 4, conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                       use_radial_filters: bool = False) -> Schedule:
    """The StyleGAN3 layer table for these SynthesisNetwork/SynthesisLayer hyper-parameters (see module doc)."""
    for name, v, lo in (("img_resolution", img_resolution, 1), ("img_channels", img_channels, 1),
                        ("num_layers", num_layers, 1), ("num_critical", num_critical, 0),
                        ("margin_size", margin_size, 0), ("num_fp16_res", num_fp16_res, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"SynthesisNetwork: {name} must be an int >= {lo}, got {v!r}")
    if num_critical >= num_layers:
        raise ValueError(f"SynthesisNetwork: num_critical ({num_critical}) must be < num_layers ({num_layers})")
    res = img_resolution
    ramp = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    last_cutoff = res / 2
    last_stopband = last_cutoff * last_stopband_rel
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** ramp
    stopbands = first_stopband * (last_stopband / first_stopband) ** ramp
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    channels, sizes = [int(c) for c in channels], [int(s) for s in sizes]

    rows = []
    for i in range(num_layers + 1):
        p = max(i - 1, 0)
        is_torgb, critical = i == num_layers, i >= num_layers - num_critical
        geometry = layer_resampling(is_torgb, critical, sizes[p], sizes[i], int(rates[p]), int(rates[i]),
                                    conv_kernel=conv_kernel, filter_size=filter_size,
                                    lrelu_upsampling=lrelu_upsampling, use_radial_filters=use_radial_filters)
        rows.append(LayerRow(
            **dataclasses.asdict(geometry), index=i, name=f"L{i}_{sizes[i]}_{channels[i]}", is_torgb=is_torgb,
            is_critically_sampled=critical, use_fp16=bool(rates[i] * 2 ** num_fp16_res > res),
            in_channels=channels[p], out_channels=channels[i], in_size=sizes[p], out_size=sizes[i],
            in_sampling_rate=int(rates[p]), out_sampling_rate=int(rates[i]), in_cutoff=cutoffs[p],
            out_cutoff=cutoffs[i], in_half_width=half_widths[p], out_half_width=half_widths[i],
            out_stopband=stopbands[i]))
    head = InputRow(channels=channels[0], size=sizes[0], sampling_rate=rates[0], bandwidth=cutoffs[0])
    return Schedule(input=head, layers=tuple(rows))
