"""Reference conv2d_resample: 2-D convolution fused with FIR up/downsampling.

The algorithm picks the cheapest equivalent formulation for each geometry (see
:func:`conv2d_resample`). It is parametrised by a convolution primitive and an upfirdn2d
function so that kernel backends reuse the exact same decomposition with their own primitives.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from .upfirdn2d import upfirdn2d as _ref_upfirdn2d

# conv(x, w, stride, padding (py, px), groups, transpose) -> y; correlation like F.conv2d
ConvFn = Callable[[torch.Tensor, torch.Tensor, int, Tuple[int, int], int, bool], torch.Tensor]
# fir(x, f, up, down, pad (x0, x1, y0, y1), flip_filter, gain) -> y; like ref.upfirdn2d with int factors
FirFn = Callable[[torch.Tensor, torch.Tensor, int, int, Tuple[int, int, int, int], bool, float], torch.Tensor]


def torch_conv(x: torch.Tensor, w: torch.Tensor, stride: int, padding: Tuple[int, int], groups: int,
               transpose: bool) -> torch.Tensor:
    """The convolution primitive of the ref backend: plain ``F.conv2d`` / ``F.conv_transpose2d``."""
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def ref_fir(x, f, up, down, pad, flip_filter, gain):
    return _ref_upfirdn2d(x, f, (up, up), (down, down), pad, flip_filter, gain)


def _filter_size(f: torch.Tensor) -> Tuple[int, int]:
    return (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])


def _transpose_groups(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[O, I/g, kh, kw] correlation weights -> [I, O/g, kh, kw] weights of the transposed convolution."""
    o, ig, kh, kw = w.shape
    if groups == 1:
        return w.transpose(0, 1)
    return w.reshape(groups, o // groups, ig, kh, kw).transpose(1, 2).reshape(groups * ig, o // groups, kh, kw)


def _oriented(w: torch.Tensor, correlate: bool) -> torch.Tensor:
    """Weights for a correlation primitive: flipped spatially when a true convolution is wanted."""
    if correlate or (w.shape[2] == 1 and w.shape[3] == 1):
        return w
    return w.flip([2, 3])


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int, down: int,
                    pad: Tuple[int, int, int, int], groups: int, flip_weight: bool, flip_filter: bool,
                    conv: ConvFn = torch_conv, fir: Optional[FirFn] = None) -> torch.Tensor:
    """``x`` [N, C, H, W], ``w`` [O, C/groups, kh, kw], ``f`` [fh, fw] or [ft] (identity: ones [1, 1]).

    Pads (``pad`` = x0, x1, y0, y1 relative to the upsampled image), upsamples by ``up``, convolves
    and downsamples by ``down``, FIR-filtering with ``f`` around each resampling. Formulations, in
    order of preference: 1x1 kernel with down only (downsample, then convolve); 1x1 kernel with up
    only (convolve, then upsample); down only (FIR, then strided convolution); up (transposed strided
    convolution, then FIR, then an optional downsample); plain padded convolution; generic
    pad-then-convolve fallback.
    """
    fir = ref_fir if fir is None else fir
    o, _, kh, kw = w.shape
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = pad
    if up > 1:   # the filter support grows the padded image around the upsampled signal
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    padding = (px0, px1, py0, py1)
    pointwise = kh == 1 and kw == 1

    if pointwise and down > 1 and up == 1:
        x = fir(x, f, 1, down, padding, flip_filter, 1.0)
        return conv(x, _oriented(w, flip_weight), 1, (0, 0), groups, False)

    if pointwise and up > 1 and down == 1:
        x = conv(x, _oriented(w, flip_weight), 1, (0, 0), groups, False)
        return fir(x, f, up, 1, padding, flip_filter, float(up * up))

    if down > 1 and up == 1:
        x = fir(x, f, 1, 1, padding, flip_filter, 1.0)
        return conv(x, _oriented(w, flip_weight), down, (0, 0), groups, False)

    if up > 1:
        # A transposed convolution with stride `up` performs the zero-insertion; its implicit padding
        # absorbs what it can of the (negated) crop, the FIR step applies the rest.
        wt = _transpose_groups(w, groups)
        px0, px1 = px0 - (kw - 1), px1 - (kw - up)
        py0, py1 = py0 - (kh - 1), py1 - (kh - up)
        pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)
        x = conv(x, _oriented(wt, not flip_weight), up, (pyt, pxt), groups, True)
        x = fir(x, f, 1, 1, (px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt), flip_filter, float(up * up))
        if down > 1:
            x = fir(x, f, 1, down, (0, 0, 0, 0), flip_filter, 1.0)
        return x

    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        return conv(x, _oriented(w, flip_weight), 1, (py0, px0), groups, False)

    # up == 1 and down == 1 here: pad/crop with an identity filter, then a valid convolution.
    ident = torch.ones(1, 1, dtype=torch.float32, device=x.device)
    x = fir(x, ident, 1, 1, padding, False, 1.0)
    return conv(x, _oriented(w, flip_weight), 1, (0, 0), groups, False)
