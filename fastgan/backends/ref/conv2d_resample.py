"""Reference conv2d_resample: a 2-D convolution with FIR upsampling before it and FIR downsampling after it.

Definition (network-spec §1.4), per axis with filter length ``ft``, kernel length ``k`` and factors ``u``/``d``:
pad the zero-inserted image by ``P0 = p0 + [u>1]·⌊(ft+u-1)/2⌋ + [d>1]·⌊(ft-d+1)/2⌋`` and
``P1 = p1 + [u>1]·⌊(ft-u)/2⌋ + [d>1]·⌊(ft-d)/2⌋``, FIR with ``f`` (gain ``u²``; identity when ``u = 1``),
convolve with ``w`` (valid), FIR with ``f`` and decimate by ``d`` (when ``d > 1``).

All steps are linear and shift-invariant, so the output is a window of ``x_up ⊛ f_up ⊛ w ⊛ f_down``; the
formulations below compute that same window the cheap way (strided and transposed convolutions, 1x1
shortcuts). They are parametrised by a convolution primitive and an upfirdn2d function, so that the
kernel backends run this exact decomposition on their own primitives.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F

from .upfirdn2d import pad_or_crop
from .upfirdn2d import upfirdn2d as _ref_fir

ConvFn = Callable[[torch.Tensor, torch.Tensor, int, Tuple[int, int], int, bool], torch.Tensor]
FirFn = Callable[..., torch.Tensor]


def torch_conv(x: torch.Tensor, w: torch.Tensor, stride: int, padding: Tuple[int, int], groups: int,
               transpose: bool) -> torch.Tensor:
    """The ref convolution primitive: ``F.conv2d`` (correlation) or ``F.conv_transpose2d``.

    ``w`` is [O, C/groups, kh, kw] for a correlation and [C, O/groups, kh, kw] when ``transpose``;
    ``padding`` is (ph, pw) as in PyTorch.
    """
    if transpose:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return F.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _effective_padding(pad: Tuple[int, int, int, int], fw: int, fh: int, up: int,
                       down: int) -> Tuple[int, int, int, int]:
    """(P0x, P1x, P0y, P1y): the user padding plus the FIR margins of the resampling steps."""
    def axis(p0: int, p1: int, ft: int) -> Tuple[int, int]:
        if up > 1:
            p0, p1 = p0 + (ft + up - 1) // 2, p1 + (ft - up) // 2
        if down > 1:
            p0, p1 = p0 + (ft - down + 1) // 2, p1 + (ft - down) // 2
        return p0, p1
    return axis(pad[0], pad[1], fw) + axis(pad[2], pad[3], fh)


def _correlation_kernel(w: torch.Tensor, flip_weight: bool) -> torch.Tensor:
    """The kernel a correlation primitive needs: ``w`` itself, or ``w`` reversed for a true convolution."""
    return w if flip_weight else w.flip([2, 3])


def _transposed_kernel(w: torch.Tensor, flip_weight: bool, groups: int) -> torch.Tensor:
    """[O, C/g, kh, kw] weights -> the [C, O/g, kh, kw] weights of ``conv_transpose2d``.

    A transposed convolution is a true convolution of the zero-inserted input, so the spatial orientation
    is the opposite of the correlation kernel's; the in/out axes are swapped within each group.
    """
    k = w if not flip_weight else w.flip([2, 3])
    o, cg, kh, kw = k.shape
    per_group = k.reshape(groups, o // groups, cg, kh, kw).transpose(1, 2)
    return per_group.reshape(groups * cg, o // groups, kh, kw)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int, down: int,
                    pad: Tuple[int, int, int, int], groups: int, flip_weight: bool, flip_filter: bool,
                    conv: ConvFn = torch_conv, fir: Optional[FirFn] = None) -> torch.Tensor:
    """Upsample by ``up`` (FIR ``f``), pad, convolve with ``w``, downsample by ``down`` (FIR ``f``).

    ``x`` [N, C, H, W]; ``w`` [O, C/groups, kh, kw], correlated when ``flip_weight`` else convolved;
    ``f`` [fh, fw] or separable [ft] (identity: ones [1, 1]); ``pad`` (x0, x1, y0, y1) on the upsampled
    image. ``conv(x, w, stride, (ph, pw), groups, transpose)`` and
    ``fir(x, f, (upx, upy), (downx, downy), (x0, x1, y0, y1), flip_filter, gain)`` are the primitives
    (default: PyTorch and the ref upfirdn2d). Returns
    [N, O, (H*up + y0 + y1 - kh + 1) // down, (W*up + x0 + x1 - kw + 1) // down].

    Formulations, first match wins: 1x1 kernel and only down (decimate, then convolve); 1x1 kernel and
    only up (convolve, then upsample); only down (FIR, then strided convolution); up (strided transposed
    convolution, FIR, then decimation if ``down > 1``); neither (padded convolution).
    """
    fir = _ref_fir if fir is None else fir
    kh, kw = w.shape[2], w.shape[3]
    fw, fh = (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])
    px0, px1, py0, py1 = _effective_padding(pad, fw, fh, up, down)
    ups, downs, ones = (up, up), (down, down), (1, 1)

    if kh == kw == 1 and up == 1 and down > 1:
        x = fir(x, f, ones, downs, (px0, px1, py0, py1), flip_filter, 1.0)
        return conv(x, w, 1, (0, 0), groups, False)
    if kh == kw == 1 and up > 1 and down == 1:
        x = conv(x, w, 1, (0, 0), groups, False)
        return fir(x, f, ups, ones, (px0, px1, py0, py1), flip_filter, float(up * up))
    if up == 1 and down > 1:
        x = fir(x, f, ones, ones, (px0, px1, py0, py1), flip_filter, 1.0)
        return conv(x, _correlation_kernel(w, flip_weight), down, (0, 0), groups, False)
    if up > 1:
        # conv_transpose2d gives the full convolution of the zero-inserted image with w; the FIR window
        # then starts k-1 samples later than the FIR of the definition and ends up-1 samples further out
        x = conv(x, _transposed_kernel(w, flip_weight, groups), up, (0, 0), groups, True)
        window = (px0 - (kw - 1), px1 - (kw - 1) + (up - 1), py0 - (kh - 1), py1 - (kh - 1) + (up - 1))
        x = fir(x, f, ones, ones, window, flip_filter, float(up * up))
        if down > 1:
            x = fir(x, f, ones, downs, (0, 0, 0, 0), flip_filter, 1.0)
        return x
    # up == down == 1: the filter is not used at all
    k = _correlation_kernel(w, flip_weight)
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        return conv(x, k, 1, (py0, px0), groups, False)
    return conv(pad_or_crop(x, (px0, px1, py0, py1)), k, 1, (0, 0), groups, False)
