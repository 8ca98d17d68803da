"""Kaiser-window low-pass FIR design for the StyleGAN3 synthesis layers.

Two designs, both computed in float64 and returned as float32 tensors normalised to unit DC gain:

* separable: a windowed sinc, the same taps as ``scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)``;
* radial: a windowed jinc ``J1(2*pi*cutoff*r) / (pi*r)`` on a square grid, windowed by the outer product
  of the same Kaiser window (StyleGAN3-R's rotation-equivariant down filter).

The Kaiser window parameter follows Kaiser's empirical formulas for a transition band of ``width``
(in the units of ``fs``), as scipy's ``kaiser_atten``/``kaiser_beta`` do.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

__all__ = ["kaiser_beta", "sinc_lowpass", "jinc_lowpass", "design_lowpass_filter"]


def kaiser_beta(numtaps: int, width: float, fs: float) -> float:
    """Kaiser window shape for ``numtaps`` taps and a transition band ``width`` at sampling rate ``fs``.

    Stopband attenuation (dB) ``A = 2.285 * (numtaps - 1) * pi * width / (fs / 2) + 7.95``, then
    ``beta = 0.1102 (A - 8.7)`` above 50 dB, ``0.5842 (A - 21)**0.4 + 0.07886 (A - 21)`` from 21 to 50 dB,
    and 0 (a rectangular window) below.
    """
    atten = 2.285 * (numtaps - 1) * math.pi * (width / (fs / 2)) + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        excess = atten - 21
        return 0.5842 * excess ** 0.4 + 0.07886 * excess
    return 0.0


def _check_design(numtaps: int, cutoff: float, width: float, fs: float) -> None:
    if isinstance(numtaps, bool) or not isinstance(numtaps, (int, np.integer)) or numtaps < 1:
        raise ValueError(f"design_lowpass_filter: numtaps must be an int >= 1, got {numtaps!r}")
    if not fs > 0:
        raise ValueError(f"design_lowpass_filter: fs must be > 0, got {fs!r}")
    if not 0 < cutoff < fs / 2:
        raise ValueError(f"design_lowpass_filter: cutoff must lie in (0, fs/2) = (0, {fs / 2}), got {cutoff!r}")
    if not width > 0:
        raise ValueError(f"design_lowpass_filter: width must be > 0, got {width!r}")


def sinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """[numtaps] float64 Kaiser-windowed sinc with cutoff ``cutoff`` (Hz at rate ``fs``), summing to 1."""
    _check_design(numtaps, cutoff, width, fs)
    rel = 2.0 * cutoff / fs                                 # cutoff relative to Nyquist
    offsets = np.arange(numtaps, dtype=np.float64) - (numtaps - 1) / 2
    taps = rel * np.sinc(rel * offsets) * np.kaiser(numtaps, kaiser_beta(numtaps, width, fs))
    return taps / taps.sum()


def jinc_lowpass(numtaps: int, cutoff: float, width: float, fs: float) -> np.ndarray:
    """[numtaps, numtaps] float64 radially symmetric low-pass (windowed jinc), summing to 1.

    ``numtaps`` must be even so that no grid point sits at the origin (where the jinc is 0/0).
    """
    _check_design(numtaps, cutoff, width, fs)
    if numtaps % 2:
        raise ValueError(f"design_lowpass_filter: a radial filter needs an even numtaps, got {numtaps}")
    from scipy.special import j1

    coords = (np.arange(numtaps, dtype=np.float64) - (numtaps - 1) / 2) / fs
    radius = np.hypot(coords[:, None], coords[None, :])
    window = np.kaiser(numtaps, kaiser_beta(numtaps, width, fs))
    taps = j1(2 * math.pi * cutoff * radius) / (math.pi * radius) * np.outer(window, window)
    return taps / taps.sum()


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """Kaiser-windowed low-pass FIR taps (float32): separable [numtaps], or a 2-D radial (jinc) filter.

    Returns None for a single tap (identity)."""
    if numtaps == 1:
        return None
    design = jinc_lowpass if radial else sinc_lowpass
    return torch.from_numpy(design(numtaps, float(cutoff), float(width), float(fs))).to(torch.float32)
