"""Augmentation for discriminator training: the ADA ``AugmentPipe`` and ``diff_augment`` (DiffAugment).

``AugmentPipe`` follows training-spec §3: per-sample random geometric transforms composed into one inverse
matrix and executed in one resampling (reflect pad, 2x wavelet upsampling, bilinear sampling, 2x
downsampling), colour transforms composed into one 4x4 matrix, band-wise image filtering, additive noise and
cutout. Every transform is applied to a sample with probability ``multiplier * p``.

``diff_augment`` is DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): random brightness/saturation/contrast, translation by up to 1/8 of the image with zero fill and
cutout of a half-size square.

Both are differentiable twice with respect to the images (R1 differentiates through them again).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..ops import upfirdn2d, upsample2d

__all__ = ["AugmentPipe", "AugmentParams", "AUGPIPE_SPECS", "diff_augment", "DIFF_AUGMENT_POLICIES"]

# --------------------------------------------------------------------------------------------------------------
# Constants (training-spec §3.3, §3.5, §3.7).

# sym6 decomposition low-pass taps (PyWavelets dec_lo, index 0 first); they sum to sqrt(2).
_SYM6_DEC_LO = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
                0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
                -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)
_GEOM_PAD = len(_SYM6_DEC_LO) // 4   # margin (in input pixels) kept around the image while resampling

_BAND_WEIGHTS = (10.0, 1.0, 1.0, 1.0)  # assumed 1/f power spectrum of the four imgfilter bands (÷ their sum)
_QUARTER_TURN_COS = (1.0, 0.0, -1.0, 0.0)
_QUARTER_TURN_SIN = (0.0, 1.0, 0.0, -1.0)


def _geom_taps() -> np.ndarray:
    """The 12 sym6 low-pass taps normalised to sum 1 (Hz_geom)."""
    taps = np.asarray(_SYM6_DEC_LO, dtype=np.float64)
    return taps / taps.sum()


def _imgfilter_bank() -> np.ndarray:
    """The 4-band x 43-tap symmetric filter bank of the imgfilter transform (row 0 coarsest, row 3 finest).

    Built by three rounds of "dilate every row by 2, convolve with the sym2 half-band low-pass, add the
    matching high-pass to the newest band". The rows sum to a unit impulse at the centre tap.
    """
    lowpass = np.array([-1, 0, 9, 16, 9, 0, -1], dtype=np.float64) / 32
    highpass = np.array([1, 0, -9, 16, -9, 0, 1], dtype=np.float64) / 32
    bands = [np.ones(1), np.zeros(1), np.zeros(1), np.zeros(1)]
    for level in range(1, 4):
        dilated = []
        for row in bands:
            up = np.zeros(2 * len(row) - 1)
            up[::2] = row
            dilated.append(np.convolve(up, lowpass))
        start = (len(dilated[level]) - len(highpass)) // 2
        dilated[level][start:start + len(highpass)] += highpass
        bands = dilated
    return np.stack(bands)


# --------------------------------------------------------------------------------------------------------------
# Presets (training-spec §3.7): every listed transform gets multiplier 1, all other options keep their defaults.

_PRESET_GROUPS: Dict[str, Tuple[str, ...]] = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": ("brightness", "contrast", "lumaflip", "hue", "saturation"),
    "filter": ("imgfilter",),
    "noise": ("noise",),
    "cutout": ("cutout",),
}
_PRESET_COMBOS: Dict[str, Tuple[str, ...]] = {
    "bg": ("blit", "geom"),
    "bgc": ("blit", "geom", "color"),
    "bgcf": ("blit", "geom", "color", "filter"),
    "bgcfn": ("blit", "geom", "color", "filter", "noise"),
    "bgcfnc": ("blit", "geom", "color", "filter", "noise", "cutout"),
}
AUGPIPE_SPECS: Dict[str, Dict[str, float]] = {
    **{name: dict.fromkeys(group, 1) for name, group in _PRESET_GROUPS.items()},
    **{name: {key: 1 for part in parts for key in _PRESET_GROUPS[part]} for name, parts in _PRESET_COMBOS.items()},
}

# Multipliers (one per transform), in execution order.
_MULTIPLIERS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
                "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout")
# AugmentParams fields of the geometric and colour stages.
_GEOMETRIC_FIELDS = ("xflip", "rotate90", "xint", "scale", "rotate_pre", "aniso", "rotate_post", "xfrac")
_COLOUR_FIELDS = ("brightness", "contrast", "lumaflip", "hue", "saturation")
# Scalar constructor options other than the multipliers (imgfilter_bands is a list).
_SPREADS = ("xint_max", "scale_std", "rotate_max", "aniso_std", "xfrac_std", "brightness_std", "contrast_std",
            "hue_max", "saturation_std", "imgfilter_std", "noise_std", "cutout_size")


@dataclass
class AugmentParams:
    """Per-sample random parameters of one ``AugmentPipe`` call (batch size N).

    A field is ``None`` when its transform is disabled (multiplier 0); otherwise it holds the drawn value for
    every sample, with the identity value for samples on which the transform was not selected. Fractions are
    relative to the image width/height; angles are in radians.
    """
    xflip: Optional[torch.Tensor] = None          # [N] in {0, 1}
    rotate90: Optional[torch.Tensor] = None       # [N] in {0, 1, 2, 3} (quarter turns)
    xint: Optional[torch.Tensor] = None           # [N, 2] translation (tx, ty), rounded to whole pixels
    scale: Optional[torch.Tensor] = None          # [N] isotropic scale factor
    rotate_pre: Optional[torch.Tensor] = None     # [N] angle, applied before aniso
    aniso: Optional[torch.Tensor] = None          # [N] x-stretch s, y-stretch 1/s
    rotate_post: Optional[torch.Tensor] = None    # [N] angle, applied after aniso
    xfrac: Optional[torch.Tensor] = None          # [N, 2] sub-pixel translation (tx, ty)
    brightness: Optional[torch.Tensor] = None     # [N] added offset
    contrast: Optional[torch.Tensor] = None       # [N] factor
    lumaflip: Optional[torch.Tensor] = None       # [N] in {0, 1}
    hue: Optional[torch.Tensor] = None            # [N] rotation angle about the luma axis
    saturation: Optional[torch.Tensor] = None     # [N] factor
    imgfilter: Optional[torch.Tensor] = None      # [N, 4] per-band gain before normalisation
    noise: Optional[torch.Tensor] = None          # [N] noise standard deviation
    cutout: Optional[torch.Tensor] = None         # [N] side of the cut square (fraction), 0 = none
    cutout_centre: Optional[torch.Tensor] = None  # [N, 2] centre (cx, cy) in [0, 1]

    def has_any(self, names: Sequence[str]) -> bool:
        """Whether any of the named fields is set."""
        return any(getattr(self, name) is not None for name in names)


# --------------------------------------------------------------------------------------------------------------
# Batched 3x3 (2-D homogeneous) matrices.

def _homogeneous(a, b, c, d, e, f) -> torch.Tensor:
    """[N, 3, 3] matrices with top rows (a, b, c), (d, e, f) from [N] tensors and bottom row (0, 0, 1)."""
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zero, zero, one], dim=-1).reshape(-1, 3, 3)


def _translate(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(tx), torch.zeros_like(tx)
    return _homogeneous(one, zero, tx, zero, one, ty)


def _scale(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(sx)
    return _homogeneous(sx, zero, zero, zero, sy, zero)


def _rotation(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(cos)
    return _homogeneous(cos, -sin, zero, sin, cos, zero)


def _geometric_matrix(params: AugmentParams, n: int, width: int, height: int, dtype: torch.dtype,
                      device: torch.device) -> torch.Tensor:
    """The inverse map M [N, 3, 3] (output pixel -> input pixel, centred coordinates, y down), §3.2."""
    ref = torch.zeros([n], dtype=dtype, device=device)
    one = ref + 1
    factors = []
    if params.xflip is not None:
        factors.append(_scale(1 - 2 * params.xflip.to(dtype), one))
    if params.rotate90 is not None:
        quarter = params.rotate90.to(device=device, dtype=torch.long) % 4
        cos = torch.tensor(_QUARTER_TURN_COS, dtype=dtype, device=device)[quarter]
        sin = torch.tensor(_QUARTER_TURN_SIN, dtype=dtype, device=device)[quarter]
        factors.append(_rotation(cos, sin))
    if params.xint is not None:
        shift = params.xint.to(dtype)
        factors.append(_translate(-torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height)))
    if params.scale is not None:
        inv = 1 / params.scale.to(dtype)
        factors.append(_scale(inv, inv))
    if params.rotate_pre is not None:
        angle = params.rotate_pre.to(dtype)
        factors.append(_rotation(torch.cos(angle), torch.sin(angle)))
    if params.aniso is not None:
        stretch = params.aniso.to(dtype)
        factors.append(_scale(1 / stretch, stretch))
    if params.rotate_post is not None:
        angle = params.rotate_post.to(dtype)
        factors.append(_rotation(torch.cos(angle), torch.sin(angle)))
    if params.xfrac is not None:
        shift = params.xfrac.to(dtype)
        factors.append(_translate(-shift[:, 0] * width, -shift[:, 1] * height))
    matrix = _scale(one, one)
    for factor in factors:
        matrix = matrix @ factor
    return matrix


def _colour_matrix(params: AugmentParams, n: int, channels: int, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """The colour matrix C [N, 4, 4] acting on homogeneous (r, g, b, 1), §3.4 (brightness acts first)."""
    eye = torch.eye(4, dtype=dtype, device=device).expand(n, 4, 4)
    k = 1 / math.sqrt(3)
    luma = torch.tensor([k, k, k, 0.0], dtype=dtype, device=device)
    luma_outer = torch.outer(luma, luma)
    matrix = eye
    if params.brightness is not None:
        offset = torch.zeros([n, 4, 4], dtype=dtype, device=device)
        offset[:, :3, 3] = params.brightness.to(dtype)[:, None]
        matrix = eye + offset
    if params.contrast is not None:
        gain = params.contrast.to(dtype)
        diag = torch.stack([gain, gain, gain, torch.ones_like(gain)], dim=-1)
        matrix = torch.diag_embed(diag) @ matrix
    if params.lumaflip is not None:
        matrix = (eye - 2 * params.lumaflip.to(dtype)[:, None, None] * luma_outer) @ matrix
    if channels > 1 and params.hue is not None:
        angle = params.hue.to(dtype)[:, None, None]
        cross = torch.tensor([[0, -k, k, 0], [k, 0, -k, 0], [-k, k, 0, 0], [0, 0, 0, 0]], dtype=dtype, device=device)
        block = torch.diag(torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=dtype, device=device))
        # Rodrigues' rotation about the luma axis on the rgb block; the homogeneous entry stays 1.
        rot = eye + (torch.cos(angle) - 1) * (block - luma_outer) + torch.sin(angle) * cross
        matrix = rot @ matrix
    if channels > 1 and params.saturation is not None:
        # v v^T + s (I - v v^T), written so that s = 1 gives exactly I.
        sat = eye + (params.saturation.to(dtype)[:, None, None] - 1) * (eye - luma_outer)
        matrix = sat @ matrix
    return matrix


# --------------------------------------------------------------------------------------------------------------
# Image helpers.

def _mirror_indices(size: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source indices for mirror padding without repeating the edge pixel; any pad width is allowed."""
    idx = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx < size, idx, period - idx)


def _mirror_pad(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Mirror-pad the last two dims of ``x`` [N, C, H, W]; twice differentiable (index_select)."""
    cols = _mirror_indices(x.shape[3], left, right, x.device)
    rows = _mirror_indices(x.shape[2], top, bottom, x.device)
    return x.index_select(3, cols).index_select(2, rows)


# --------------------------------------------------------------------------------------------------------------
# Random draws.

class _Draws:
    """Draws per-sample parameters; with a debug percentile q every draw is a fixed quantile (§3.9)."""

    def __init__(self, n: int, device: torch.device, percentile: Optional[float]):
        self.n, self.device, self.q = n, device, percentile

    def _full(self, value: float, width: int) -> torch.Tensor:
        shape = [self.n] if width == 0 else [self.n, width]
        return torch.full(shape, value, dtype=torch.float32, device=self.device)

    def choice(self, count: int) -> torch.Tensor:
        """Uniform integer in [0, count) as float32 [N]."""
        if self.q is not None:
            return self._full(min(math.floor(self.q * count), count - 1), 0)
        return torch.floor(torch.rand([self.n], device=self.device) * count)

    def uniform(self, half_range: float, width: int = 0) -> torch.Tensor:
        """U(-half_range, half_range), [N] or [N, width]."""
        if self.q is not None:
            return self._full((2 * self.q - 1) * half_range, width)
        shape = [self.n] if width == 0 else [self.n, width]
        return (torch.rand(shape, device=self.device) * 2 - 1) * half_range

    def normal(self, std: float, width: int = 0) -> torch.Tensor:
        """N(0, std^2), [N] or [N, width]."""
        if self.q is not None:
            return self._full(torch.erfinv(torch.tensor(2 * self.q - 1, dtype=torch.float64)).item() * std, width)
        shape = [self.n] if width == 0 else [self.n, width]
        return torch.randn(shape, device=self.device) * std

    def half_normal(self, std: float) -> torch.Tensor:
        """|N(0, 1)| * std, [N]."""
        if self.q is not None:
            return self._full(torch.erfinv(torch.tensor(self.q, dtype=torch.float64)).item() * std, 0)
        return torch.randn([self.n], device=self.device).abs() * std

    def unit(self, width: int) -> torch.Tensor:
        """U(0, 1) [N, width]; the debug percentile gives q."""
        if self.q is not None:
            return self._full(self.q, width)
        return torch.rand([self.n, width], device=self.device)

    def gate(self, value: torch.Tensor, identity: float, prob: torch.Tensor) -> torch.Tensor:
        """Keep ``value`` per sample with probability ``prob`` (always in debug mode), else ``identity``."""
        if self.q is not None:
            return value
        keep = torch.rand([self.n], device=self.device) < prob
        keep = keep.reshape([self.n] + [1] * (value.ndim - 1))
        return torch.where(keep, value, torch.full_like(value, identity))


def _check_number(value, name: str, owner: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be finite and >= 0, got {value}")
    return value


def _check_images(images, owner: str) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{owner}: images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{owner}: images must be 4-D [N, C, H, W], got shape {list(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{owner}: images must be a floating-point tensor, got {images.dtype}")


# --------------------------------------------------------------------------------------------------------------

class AugmentPipe(torch.nn.Module):
    """ADA augmentation pipeline (training-spec §3) for images [N, C, H, W] in [-1, 1].

    Each option named after a transform is its multiplier: a sample gets the transform with probability
    ``multiplier * p`` (independently per sample and transform); the other options set the spread of the
    random parameters. ``p`` is a float32 scalar buffer set by the training loop. Values of ``p`` above 1 are
    accepted and mean probability 1 for every transform whose ``multiplier * p >= 1`` (the trainer keeps
    ``p`` within [0, 1] unless NVlabs compatibility asks for the unbounded value).

    Stages, in order: geometric (one resampling), colour (one 4x4 matrix; needs 1 or 3 channels), imgfilter,
    additive noise, cutout. Only stages with a non-zero multiplier run. Unlike NVlabs, a geometric stage in
    which no sample drew a transform (e.g. ``p = 0``) is skipped instead of resampling with the identity
    (which NVlabs does, with an error of about 1e-5); so ``p = 0`` is an exact identity.
    The output is differentiable twice with respect to the images.
    """

    def __init__(self, *, xflip: float = 0, rotate90: float = 0, xint: float = 0, xint_max: float = 0.125,
                 scale: float = 0, scale_std: float = 0.2, rotate: float = 0, rotate_max: float = 1,
                 aniso: float = 0, aniso_std: float = 0.2, xfrac: float = 0, xfrac_std: float = 0.125,
                 brightness: float = 0, brightness_std: float = 0.2, contrast: float = 0, contrast_std: float = 0.5,
                 lumaflip: float = 0, hue: float = 0, hue_max: float = 1, saturation: float = 0,
                 saturation_std: float = 1, imgfilter: float = 0, imgfilter_bands: Sequence[float] = (1, 1, 1, 1),
                 imgfilter_std: float = 1, noise: float = 0, noise_std: float = 0.1, cutout: float = 0,
                 cutout_size: float = 0.5):
        super().__init__()
        given = dict(locals())
        owner = "AugmentPipe"
        for name in _MULTIPLIERS + _SPREADS:
            setattr(self, name, _check_number(given[name], name, owner))
        bands = list(imgfilter_bands) if isinstance(imgfilter_bands, (list, tuple)) else None
        if bands is None or len(bands) != 4:
            raise ValueError(f"{owner}: imgfilter_bands must be a list of 4 non-negative numbers, "
                             f"got {imgfilter_bands!r}")
        self.imgfilter_bands = [_check_number(b, "imgfilter_bands", owner) for b in bands]
        self.init_kwargs = {name: given[name] for name in _MULTIPLIERS + _SPREADS}
        self.init_kwargs["imgfilter_bands"] = list(self.imgfilter_bands)
        self.register_buffer("p", torch.ones([]))
        self.register_buffer("geom_taps", torch.tensor(_geom_taps(), dtype=torch.float32), persistent=False)
        self.register_buffer("filter_bank", torch.tensor(_imgfilter_bank(), dtype=torch.float32), persistent=False)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> "AugmentPipe":
        """Build the pipe of a named preset (``AUGPIPE_SPECS``: blit, geom, color, ..., bgc, bgcfnc)."""
        if preset not in AUGPIPE_SPECS:
            raise ValueError(f"AugmentPipe: preset must be one of {sorted(AUGPIPE_SPECS)}, got {preset!r}")
        return cls(**{**AUGPIPE_SPECS[preset], **overrides})

    def extra_repr(self) -> str:
        enabled = [f"{name}={getattr(self, name):g}" for name in _MULTIPLIERS if getattr(self, name) > 0]
        return ", ".join(enabled) or "identity"

    # ----------------------------------------------------------------------------------------------------------
    def draw(self, batch_size: int, device: Optional[torch.device] = None,
             debug_percentile: Optional[float] = None) -> AugmentParams:
        """Draw the random parameters of one call for ``batch_size`` samples (global torch RNG of ``device``).

        With ``debug_percentile`` q in [0, 1], every enabled transform is applied to every sample with a fixed
        parameter: the q-quantile of its distribution (spec §3.9; post-rotation 0, cutout centred at (q, q)).
        Normal draws use ``erfinv(2q - 1) * std``, which is infinite at q = 0 and q = 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"AugmentPipe.draw: batch_size must be a positive int, got {batch_size!r}")
        if debug_percentile is not None:
            debug_percentile = float(debug_percentile)
            if not 0 <= debug_percentile <= 1:
                raise ValueError(f"AugmentPipe: debug_percentile must be in [0, 1], got {debug_percentile}")
        device = self.p.device if device is None else torch.device(device)
        draws = _Draws(int(batch_size), device, debug_percentile)
        p = self.p.detach().to(device=device, dtype=torch.float32)
        out = AugmentParams()

        if self.xflip > 0:
            out.xflip = draws.gate(draws.choice(2), 0, self.xflip * p)
        if self.rotate90 > 0:
            out.rotate90 = draws.gate(draws.choice(4), 0, self.rotate90 * p)
        if self.xint > 0:
            out.xint = draws.gate(draws.uniform(self.xint_max, 2), 0, self.xint * p)
        if self.scale > 0:
            out.scale = draws.gate(torch.exp2(draws.normal(self.scale_std)), 1, self.scale * p)
        if self.rotate > 0:
            # Two independent rotations; P(at least one) = min(rotate * p, 1).
            p_rot = 1 - torch.sqrt(torch.clamp(1 - self.rotate * p, 0, 1))
            out.rotate_pre = draws.gate(draws.uniform(math.pi * self.rotate_max), 0, p_rot)
        if self.aniso > 0:
            out.aniso = draws.gate(torch.exp2(draws.normal(self.aniso_std)), 1, self.aniso * p)
        if self.rotate > 0:
            post = draws.uniform(math.pi * self.rotate_max)
            out.rotate_post = torch.zeros_like(post) if debug_percentile is not None else draws.gate(post, 0, p_rot)
        if self.xfrac > 0:
            out.xfrac = draws.gate(draws.normal(self.xfrac_std, 2), 0, self.xfrac * p)

        if self.brightness > 0:
            out.brightness = draws.gate(draws.normal(self.brightness_std), 0, self.brightness * p)
        if self.contrast > 0:
            out.contrast = draws.gate(torch.exp2(draws.normal(self.contrast_std)), 1, self.contrast * p)
        if self.lumaflip > 0:
            out.lumaflip = draws.gate(draws.choice(2), 0, self.lumaflip * p)
        if self.hue > 0:
            out.hue = draws.gate(draws.uniform(math.pi * self.hue_max), 0, self.hue * p)
        if self.saturation > 0:
            out.saturation = draws.gate(torch.exp2(draws.normal(self.saturation_std)), 1, self.saturation * p)

        if self.imgfilter > 0:
            gains = []
            for band_weight in self.imgfilter_bands:
                gain = torch.exp2(draws.normal(self.imgfilter_std))
                if debug_percentile is not None and band_weight == 0:
                    gain = torch.ones_like(gain)
                gains.append(draws.gate(gain, 1, self.imgfilter * band_weight * p))
            out.imgfilter = torch.stack(gains, dim=1)
        if self.noise > 0:
            out.noise = draws.gate(draws.half_normal(self.noise_std), 0, self.noise * p)
        if self.cutout > 0:
            out.cutout_centre = draws.unit(2)
            size = torch.full([batch_size], self.cutout_size, dtype=torch.float32, device=device)
            out.cutout = draws.gate(size, 0, self.cutout * p)
        return out

    def forward(self, images: torch.Tensor, debug_percentile: Optional[float] = None) -> torch.Tensor:
        """Augment ``images`` [N, C, H, W] (float, in [-1, 1]); returns the same shape and dtype."""
        _check_images(images, "AugmentPipe")
        return self.apply(images, self.draw(images.shape[0], images.device, debug_percentile))

    def apply(self, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply given parameters to ``images`` [N, C, H, W]; deterministic except for the noise pixels.

        For fixed ``params`` the result is an affine function of ``images`` (linear without brightness).
        float16/bfloat16 images are processed in float32 and returned in their own dtype.
        """
        _check_images(images, "AugmentPipe")
        n, channels, height, width = images.shape
        for item in fields(params):
            value = getattr(params, item.name)
            if value is not None and (not isinstance(value, torch.Tensor) or value.shape[0] != n):
                raise ValueError(f"AugmentPipe: params.{item.name} must be a tensor with {n} rows (one per "
                                 f"sample), got {getattr(value, 'shape', type(value).__name__)}")
        if (params.cutout is None) != (params.cutout_centre is None):
            raise ValueError("AugmentPipe: params.cutout and params.cutout_centre must be set together")
        if params.has_any(_COLOUR_FIELDS) and channels not in (1, 3):
            raise ValueError(f"AugmentPipe: colour transforms need images with 1 or 3 channels, got {channels}")
        x = images if images.dtype in (torch.float32, torch.float64) else images.float()
        if params.has_any(_GEOMETRIC_FIELDS):
            x = self._resample(x, params)
        if params.has_any(_COLOUR_FIELDS):
            x = self._recolour(x, params)
        if params.imgfilter is not None:
            x = self._filter_bands(x, params.imgfilter)
        if params.noise is not None:
            x = x + params.noise.to(x.dtype).reshape(n, 1, 1, 1) * torch.randn_like(x)
        if params.cutout is not None:
            x = x * self._cutout_mask(params.cutout, params.cutout_centre, height, width, x.dtype)
        return x.to(images.dtype)

    # ----------------------------------------------------------------------------------------------------------
    def _resample(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Execute the geometric transform (§3.3): pad, upsample x2, bilinear sample, downsample x2."""
        n, channels, height, width = x.shape
        gdtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        m = _geometric_matrix(params, n, width, height, gdtype, x.device)

        # Batch-wide margins needed by the mapped output corners, plus room for the filters.
        hx, hy = (width - 1) / 2, (height - 1) / 2
        corners = torch.tensor([[-hx, hx, hx, -hx], [-hy, -hy, hy, hy], [1, 1, 1, 1]], dtype=gdtype, device=x.device)
        mapped = m @ corners
        u, v = mapped[:, 0], mapped[:, 1]
        reach = torch.stack([(-u).max(), (-v).max(), u.max(), v.max()])
        reach = reach + torch.tensor([2 * _GEOM_PAD - hx, 2 * _GEOM_PAD - hy] * 2, dtype=gdtype, device=x.device)
        cap = torch.tensor([width - 1, height - 1] * 2, dtype=gdtype, device=x.device)
        reach = torch.minimum(reach.clamp(min=0), cap).ceil()
        is_identity = (m == torch.eye(3, dtype=gdtype, device=x.device)).all().to(gdtype)
        left, top, right, bottom, identity = (int(t) for t in torch.cat([reach, is_identity[None]]).tolist())
        if identity:
            return x

        x = _mirror_pad(x, left, right, top, bottom)
        one = torch.ones([n], dtype=gdtype, device=x.device)
        m = _translate(one * (left - right) / 2, one * (top - bottom) / 2) @ m

        taps = self.geom_taps.to(x.device)
        x = upsample2d(x, taps, up=2)
        half, double = _scale(one / 2, one / 2), _scale(one * 2, one * 2)
        m = _translate(-one / 2, -one / 2) @ double @ m @ half @ _translate(one / 2, one / 2)

        out_h, out_w = 2 * (height + 2 * _GEOM_PAD), 2 * (width + 2 * _GEOM_PAD)
        in_h, in_w = x.shape[2], x.shape[3]
        m = _scale(one * (2 / in_w), one * (2 / in_h)) @ m @ _scale(one * (out_w / 2), one * (out_h / 2))
        grid = F.affine_grid(m[:, :2, :].to(x.dtype), [n, channels, out_h, out_w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return upfirdn2d(x, taps, down=2, padding=-1, flip_filter=True)

    def _recolour(self, x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply the per-sample colour matrix (§3.4)."""
        n, channels = x.shape[:2]
        c = _colour_matrix(params, n, channels, x.dtype, x.device)
        if channels == 3:
            return torch.einsum("nij,njhw->nihw", c[:, :3, :3], x) + c[:, :3, 3, None, None]
        # One channel: the mean of the rgb rows acts on a grey pixel (r = g = b = x).
        gain = c[:, :3, :3].sum(dim=(1, 2)) / 3
        offset = c[:, :3, 3].mean(dim=1)
        return x * gain.reshape(n, 1, 1, 1) + offset.reshape(n, 1, 1, 1)

    def _filter_bands(self, x: torch.Tensor, band_gains: torch.Tensor) -> torch.Tensor:
        """Per-sample band-wise gain through the symmetric filter bank (§3.5)."""
        n, channels, height, width = x.shape
        weights = torch.tensor(_BAND_WEIGHTS, dtype=x.dtype, device=x.device)
        total = torch.ones([n, 4], dtype=x.dtype, device=x.device)
        for band in range(4):
            t = torch.ones_like(total)
            t[:, band] = band_gains[:, band].to(x.dtype)
            t = t / torch.sqrt((weights * t.square()).sum(dim=1, keepdim=True) / weights.sum())
            total = total * t
        bank = self.filter_bank.to(device=x.device, dtype=x.dtype)
        # The bank rows sum to a unit impulse, so sum_k g_k bank_k = impulse + sum_k (g_k - 1) bank_k;
        # written this way, unit gains give an exact impulse.
        taps = (total - 1) @ bank
        taps[:, bank.shape[1] // 2] += 1
        radius = bank.shape[1] // 2
        kernel = taps.repeat_interleave(channels, dim=0)[:, None, None, :]
        y = _mirror_pad(x, radius, radius, radius, radius).reshape(1, n * channels, height + 2 * radius,
                                                                   width + 2 * radius)
        y = F.conv2d(y, kernel, groups=n * channels)
        y = F.conv2d(y, kernel.transpose(2, 3), groups=n * channels)
        return y.reshape(n, channels, height, width)

    @staticmethod
    def _cutout_mask(size: torch.Tensor, centre: torch.Tensor, height: int, width: int,
                     dtype: torch.dtype) -> torch.Tensor:
        """0/1 mask [N, 1, H, W] that is 0 inside each sample's centred square (§3.6)."""
        device = size.device
        cols = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        rows = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        half = size.float()[:, None] / 2
        inside_x = (cols[None, :] - centre[:, 0:1].float()).abs() < half
        inside_y = (rows[None, :] - centre[:, 1:2].float()).abs() < half
        inside = inside_y[:, :, None] & inside_x[:, None, :]
        return (~inside).to(dtype)[:, None]


# --------------------------------------------------------------------------------------------------------------
# DiffAugment.

def _da_color(x: torch.Tensor) -> torch.Tensor:
    """Brightness U(-0.5, 0.5), then saturation U(0, 2), then contrast U(0.5, 1.5), per sample."""
    n = x.shape[0]
    shape = [n, 1, 1, 1]
    x = x + (torch.rand(shape, dtype=x.dtype, device=x.device) - 0.5)
    grey = x.mean(dim=1, keepdim=True)
    x = grey + (x - grey) * (torch.rand(shape, dtype=x.dtype, device=x.device) * 2)
    level = x.mean(dim=(1, 2, 3), keepdim=True)
    return level + (x - level) * (torch.rand(shape, dtype=x.dtype, device=x.device) + 0.5)


def _da_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each sample by whole pixels, up to ``ratio`` of its size per axis, filling with zeros."""
    n, channels, height, width = x.shape
    reach_y, reach_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    dy = torch.randint(-reach_y, reach_y + 1, [n, 1], device=x.device)
    dx = torch.randint(-reach_x, reach_x + 1, [n, 1], device=x.device)
    src_rows = torch.arange(height, device=x.device)[None] - dy        # [N, H]
    src_cols = torch.arange(width, device=x.device)[None] - dx         # [N, W]
    valid = ((src_rows >= 0) & (src_rows < height))[:, :, None] & ((src_cols >= 0) & (src_cols < width))[:, None]
    flat = src_rows.clamp(0, height - 1)[:, :, None] * width + src_cols.clamp(0, width - 1)[:, None, :]
    gathered = x.reshape(n, channels, height * width).gather(2, flat.reshape(n, 1, -1).expand(n, channels, -1))
    return gathered.reshape(n, channels, height, width) * valid[:, None].to(x.dtype)


def _da_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero a (ratio*H) x (ratio*W) rectangle per sample, centred on a random pixel and clipped at the border."""
    n, _, height, width = x.shape
    size_y, size_x = int(height * ratio + 0.5), int(width * ratio + 0.5)
    cy = torch.randint(0, height, [n, 1], device=x.device)
    cx = torch.randint(0, width, [n, 1], device=x.device)
    rows = torch.arange(height, device=x.device)[None] - (cy - size_y // 2)
    cols = torch.arange(width, device=x.device)[None] - (cx - size_x // 2)
    inside = ((rows >= 0) & (rows < size_y))[:, :, None] & ((cols >= 0) & (cols < size_x))[:, None]
    return x * (~inside)[:, None].to(x.dtype)


DIFF_AUGMENT_POLICIES = {"color": _da_color, "translation": _da_translation, "cutout": _da_cutout}


def diff_augment(x: torch.Tensor, policy: str = "color,translation,cutout") -> torch.Tensor:
    """DiffAugment (Zhao et al. 2020) of ``x`` [N, C, H, W], applied the same way to real and fake images.

    ``policy`` is a comma-separated list of ``color``, ``translation``, ``cutout`` (applied in the given order;
    '' = identity). Draws use the global torch RNG of ``x``'s device: per policy, its random numbers are drawn
    in the order of the description above (colour: brightness, saturation, contrast; translation: dy, dx;
    cutout: cy, cx). Returns the same shape and dtype, differentiable twice with respect to ``x``.
    """
    _check_images(x, "diff_augment")
    if not isinstance(policy, str):
        raise TypeError(f"diff_augment: policy must be a str, got {type(policy).__name__}")
    names = [name.strip() for name in policy.split(",") if name.strip()]
    unknown = [name for name in names if name not in DIFF_AUGMENT_POLICIES]
    if unknown:
        raise ValueError(f"diff_augment: policy entries must be among {sorted(DIFF_AUGMENT_POLICIES)}, "
                         f"got {unknown}")
    for name in names:
        x = DIFF_AUGMENT_POLICIES[name](x)
    return x
