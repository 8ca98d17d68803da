"""The ref backend as executable spec: checked against the definitions of network-spec §1.1, §1.2, §1.4,
§2.4 and §3.3, written here naively (explicit zero insertion, padding, flipped-filter correlation by
summing shifted slices, decimation) in float64, plus closed forms and gradchecks.

Tolerances: float64 everywhere; the ref ops and the naive definitions sum in different orders, so they
agree to 1e-10 relative to the output scale.
"""
from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

import fastgan.ops as ops
from fastgan.backends.ref import conv2d_resample as ref_c2r
from fastgan.backends.ref import modconv as ref_modconv
from fastgan.backends.ref import upfirdn2d as ref_upfirdn2d
from fastgan.ops.fma import unbroadcast

F64 = torch.float64
TOL = dict(rtol=1e-10, atol=1e-10)


def _randn(*shape, seed, grad=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(tuple(shape), generator=g, dtype=F64)
    return t.requires_grad_(grad)


# ---------------------------------------------------------------------------------------------- naive spec

def _place(src: torch.Tensor, h: int, w: int, top: int, left: int) -> torch.Tensor:
    """An [.., h, w] zero canvas with src's sample (i, j) at (i + top, j + left); what falls outside is lost."""
    out = torch.zeros(*src.shape[:-2], h, w, dtype=src.dtype)
    sh, sw = src.shape[-2], src.shape[-1]
    r0, r1 = max(top, 0), min(h, sh + top)
    c0, c1 = max(left, 0), min(w, sw + left)
    if r0 < r1 and c0 < c1:
        out[..., r0:r1, c0:c1] = src[..., r0 - top:r1 - top, c0 - left:c1 - left]
    return out


def _correlate(x: torch.Tensor, k: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
    """Valid grouped correlation by summing shifted slices: x [N, C, H, W], k [O, C/groups, kh, kw]."""
    n, c, h, w = x.shape
    o, cg, kh, kw = k.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    xg = x.reshape(n, groups, cg, h, w)
    kg = k.reshape(groups, o // groups, cg, kh, kw)
    out = torch.zeros(n, groups, o // groups, oh, ow, dtype=x.dtype)
    for r, q in itertools.product(range(kh), range(kw)):
        patch = xg[..., r:r + stride * (oh - 1) + 1:stride, q:q + stride * (ow - 1) + 1:stride]
        out = out + torch.einsum("ngihw,goi->ngohw", patch, kg[..., r, q])
    return out.reshape(n, o, oh, ow)


def naive_upfirdn2d(x, f, up, down, pad, flip_filter, gain):
    """§1.2 literally: zero insertion, pad/crop, true convolution with f (gain), keep every down-th sample."""
    (upx, upy), (downx, downy), (x0, x1, y0, y1) = up, down, pad
    n, c, h, w = x.shape
    z = torch.zeros(n, c, h * upy, w * upx, dtype=x.dtype)
    for i, j in itertools.product(range(h), range(w)):
        z[:, :, i * upy, j * upx] = x[:, :, i, j]
    z = _place(z, h * upy + y0 + y1, w * upx + x0 + x1, y0, x0)
    taps = f.to(x.dtype)
    taps = torch.outer(taps, taps) if taps.ndim == 1 else taps
    taps = taps * gain
    if not flip_filter:
        taps = taps.flip([0, 1])
    y = _correlate(z.reshape(n * c, 1, *z.shape[2:]), taps[None, None])
    return y.reshape(n, c, y.shape[2], y.shape[3])[:, :, ::downy, ::downx]


def naive_conv(x, w, stride, padding, groups, transpose):
    """The `conv` primitive of conv2d_resample, without torch convolutions (padding is (ph, pw))."""
    ph, pw = padding
    if not transpose:
        xp = _place(x, x.shape[2] + 2 * ph, x.shape[3] + 2 * pw, ph, pw)
        return _correlate(xp, w, stride, groups)
    # transposed: full true convolution of the stride-zero-inserted input, minus `padding` per side
    c, og, kh, kw = w.shape
    cg = c // groups
    k = w.reshape(groups, cg, og, kh, kw).transpose(1, 2).reshape(groups * og, cg, kh, kw).flip([2, 3])
    n, _, h, wd = x.shape
    z = torch.zeros(n, c, (h - 1) * stride + 1, (wd - 1) * stride + 1, dtype=x.dtype)
    z[:, :, ::stride, ::stride] = x
    z = _place(z, z.shape[2] + 2 * (kh - 1 - ph), z.shape[3] + 2 * (kw - 1 - pw), kh - 1 - ph, kw - 1 - pw)
    return _correlate(z, k, 1, groups)


def definition_conv2d_resample(x, w, f, up, down, pad, groups, flip_weight, flip_filter):
    """§1.4 'exact definition': pad + FIR-upsample, grouped valid convolution, FIR-downsample."""
    ft_x, ft_y = (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])

    def margins(ft):
        lo = (up > 1) * ((ft + up - 1) // 2) + (down > 1) * ((ft - down + 1) // 2)
        hi = (up > 1) * ((ft - up) // 2) + (down > 1) * ((ft - down) // 2)
        return lo, hi
    (ax0, ax1), (ay0, ay1) = margins(ft_x), margins(ft_y)
    big = (pad[0] + ax0, pad[1] + ax1, pad[2] + ay0, pad[3] + ay1)
    f_up = f if up > 1 else torch.ones(1, 1)
    t = naive_upfirdn2d(x, f_up, (up, up), (1, 1), big, flip_filter, up * up)
    t = _correlate(t, w if flip_weight else w.flip([2, 3]), 1, groups)
    if down > 1:
        t = naive_upfirdn2d(t, f, (1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1)
    return t


def _close(actual, expected, what=""):
    assert actual.shape == expected.shape, f"{what}: {list(actual.shape)} != {list(expected.shape)}"
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-10 * scale, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------- setup_filter

def test_setup_filter_spec():
    a = torch.tensor([1.0, 3, 3, 1]) / 8
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.dtype == torch.float32 and f.shape == (4, 4)
    torch.testing.assert_close(f, torch.outer(a, a), rtol=0, atol=0)
    assert ops.setup_filter([1, 2, 1]).shape == (3, 3)
    eight = list(range(1, 9))
    assert ops.setup_filter(eight).shape == (8,)                       # >= 8 taps stay separable
    assert ops.setup_filter(eight, separable=False).shape == (8, 8)
    assert ops.setup_filter([1, 2], separable=True).shape == (2,)
    torch.testing.assert_close(ops.setup_filter(None), torch.ones(1, 1))
    torch.testing.assert_close(ops.setup_filter(3.0), torch.ones(1, 1))     # scalar: 1 tap, normalised
    # a scalar is a 1-tap 1-D filter, so it becomes its own outer product
    torch.testing.assert_close(ops.setup_filter(3.0, normalize=False), torch.full((1, 1), 9.0))
    asym = [[1.0, 2.0], [3.0, 4.0]]
    torch.testing.assert_close(ops.setup_filter(asym, flip_filter=True, gain=5),
                               torch.tensor([[4.0, 3.0], [2.0, 1.0]]) / 10 * 5)
    sep = ops.setup_filter(eight, gain=4)                               # sqrt(gain) per axis
    torch.testing.assert_close(sep, torch.tensor(eight, dtype=torch.float32) / 36 * 2)


# ---------------------------------------------------------------------------------------------- upfirdn2d

def test_upfirdn2d_closed_forms_1331():
    """§1.2 closed forms of upsample2d / downsample2d with [1,3,3,1] (along both axes)."""
    f = ops.setup_filter([1, 3, 3, 1])
    x = _randn(2, 3, 5, 6, seed=0)

    def up1d(v):   # along the last axis
        prev = torch.nn.functional.pad(v, [1, 0])[..., :-1]
        nxt = torch.nn.functional.pad(v, [0, 1])[..., 1:]
        return torch.stack([0.75 * v + 0.25 * prev, 0.75 * v + 0.25 * nxt], dim=-1).flatten(-2)

    def down1d(v):
        p = torch.nn.functional.pad(v, [1, 2])   # p[k] = v[k - 1]
        m = v.shape[-1] // 2
        return torch.stack([(p[..., 2 * n] + 3 * p[..., 2 * n + 1] + 3 * p[..., 2 * n + 2] + p[..., 2 * n + 3]) / 8
                            for n in range(m)], dim=-1)

    def both_axes(fn, v):
        return fn(fn(v).transpose(-1, -2)).transpose(-1, -2)
    _close(ops.upsample2d(x, f, impl="ref"), both_axes(up1d, x), "upsample2d")
    _close(ops.downsample2d(x, f, impl="ref"), both_axes(down1d, x), "downsample2d")


def _random_upf_cases(count, seed):
    rng = random.Random(seed)
    cases = []
    while len(cases) < count:
        h, w = rng.randint(1, 6), rng.randint(1, 6)
        up = (rng.randint(1, 3), rng.randint(1, 3))
        down = (rng.randint(1, 3), rng.randint(1, 3))
        f = (torch.rand(rng.randint(1, 5), dtype=F64) if rng.random() < 0.4
             else torch.rand(rng.randint(1, 4), rng.randint(1, 4), dtype=F64)) + 0.1
        pad = tuple(rng.randint(-6, 5) for _ in range(4))
        fw, fh = (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])
        if w * up[0] + pad[0] + pad[1] - fw + 1 < 1 or h * up[1] + pad[2] + pad[3] - fh + 1 < 1:
            continue
        cases.append(((h, w), f, up, down, pad, rng.random() < 0.5, rng.choice([1.0, 2.5])))
    return cases


@pytest.mark.parametrize("seed", range(2))
def test_upfirdn2d_matches_naive_definition(seed):
    for (h, w), f, up, down, pad, flip, gain in _random_upf_cases(30, seed):
        x = _randn(2, 2, h, w, seed=seed)
        what = f"x {h}x{w} f {list(f.shape)} up {up} down {down} pad {pad} flip {flip} gain {gain}"
        _close(ref_upfirdn2d(x, f, up, down, pad, flip, gain), naive_upfirdn2d(x, f, up, down, pad, flip, gain), what)


def test_upfirdn2d_crop_past_an_edge_and_channels_last():
    f = torch.rand(3, dtype=F64) + 0.1
    x = _randn(1, 3, 4, 5, seed=2)
    pad = (-7, 9, 2, -3)   # crops more than the image on one side, pads on the other
    _close(ref_upfirdn2d(x, f, (1, 1), (1, 1), pad, False, 1.0), naive_upfirdn2d(x, f, (1, 1), (1, 1), pad, False, 1.0))
    xc = x.contiguous(memory_format=torch.channels_last)
    y = ref_upfirdn2d(xc, f, (2, 2), (1, 1), (1, 1, 1, 1), False, 1.0)
    _close(y, naive_upfirdn2d(x, f, (2, 2), (1, 1), (1, 1, 1, 1), False, 1.0))


def test_upfirdn2d_gradients():
    x = _randn(1, 2, 4, 3, seed=3, grad=True)
    f = torch.rand(3, 2, dtype=F64) + 0.1
    fn = lambda t: ref_upfirdn2d(t, f, (2, 1), (1, 2), (1, -1, 2, 0), False, 1.5)   # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x,), fast_mode=True)


# ---------------------------------------------------------------------------------------------- conv2d_resample

def _geometries():
    return [  # (k, up, down, pad, groups, flip_weight, flip_filter, filter kind)
        (3, 2, 1, (1, 1, 1, 1), 1, False, False, "1331"),
        (3, 1, 1, (1, 1, 1, 1), 1, True, False, "1331"),
        (3, 1, 2, (1, 1, 1, 1), 1, True, False, "1331"),
        (1, 1, 2, (0, 0, 0, 0), 1, True, False, "1331"),
        (1, 2, 1, (0, 0, 0, 0), 1, True, False, "1331"),
        (3, 2, 2, (1, 0, 2, 1), 2, True, True, "asym"),
        (2, 3, 1, (-1, 2, 0, 1), 2, False, True, "sep"),
        (4, 1, 3, (2, 1, 0, 3), 1, False, False, "asym"),
        (1, 3, 2, (1, 0, -1, 2), 2, True, False, "sep"),
        (1, 1, 3, (0, 1, 2, 0), 1, False, True, "asym"),
        (3, 1, 1, (2, 0, -1, 1), 2, False, False, "1331"),
        (3, 1, 1, (-1, -1, 2, 2), 1, True, False, "1331"),
    ]


def _filter(kind):
    if kind == "1331":
        return ops.setup_filter([1, 3, 3, 1]).double()
    if kind == "sep":
        return torch.tensor([0.1, 0.5, 0.3, 0.2, 0.05], dtype=F64)
    return torch.tensor([[0.1, 0.4, 0.2], [0.3, 0.05, 0.6]], dtype=F64)


class _Recorder:
    """Injected primitives: the naive definitions, recording how conv2d_resample calls them."""

    def __init__(self):
        self.calls = []

    def conv(self, x, w, stride, padding, groups, transpose):
        self.calls.append(("conv", stride, transpose, tuple(w.shape[2:])))
        return naive_conv(x, w, stride, padding, groups, transpose)

    def fir(self, x, f, up, down, pad, flip_filter, gain):
        self.calls.append(("fir", tuple(up), tuple(down)))
        return naive_upfirdn2d(x, f, up, down, pad, flip_filter, gain)


@pytest.mark.parametrize("geom", _geometries(), ids=lambda g: f"k{g[0]}u{g[1]}d{g[2]}g{g[4]}{g[7]}")
def test_conv2d_resample_matches_definition(geom):
    k, up, down, pad, groups, flip_weight, flip_filter, kind = geom
    f = _filter(kind)
    x = _randn(2, 4, 5, 6, seed=4)
    w = _randn(6, 4 // groups, k, k + (k > 1), seed=5)   # non-square kernels where k > 1
    want = definition_conv2d_resample(x, w, f, up, down, pad, groups, flip_weight, flip_filter)
    oh = (5 * up + pad[2] + pad[3] - w.shape[2] + 1) // down
    ow = (6 * up + pad[0] + pad[1] - w.shape[3] + 1) // down
    assert want.shape == (2, 6, oh, ow)
    _close(ref_c2r.conv2d_resample(x, w, f, up, down, pad, groups, flip_weight, flip_filter), want, "torch primitives")
    rec = _Recorder()
    got = ref_c2r.conv2d_resample(x, w, f, up, down, pad, groups, flip_weight, flip_filter, conv=rec.conv, fir=rec.fir)
    _close(got, want, "injected primitives")
    convs = [c for c in rec.calls if c[0] == "conv"]
    assert len(convs) == 1, rec.calls
    one_by_one = tuple(w.shape[2:]) == (1, 1)
    if up > 1:   # the fast forms: a 1x1 conv then FIR upsampling, or one strided transposed conv
        assert convs[0][1:3] == ((1, False) if one_by_one and down == 1 else (up, True)), rec.calls
    elif down > 1:   # decimate then a 1x1 conv, or FIR then one strided conv
        assert convs[0][1:3] == ((1, False) if one_by_one else (down, False)), rec.calls
        assert rec.calls[0] == (("fir", (1, 1), (down, down)) if one_by_one else ("fir", (1, 1), (1, 1))), rec.calls


def test_case_a_sg2_conv0_closed_form():
    """§1.4 (a): 3x3, up=2, padding=1, true convolution, via the extended closed-form upsampled signal."""
    x = _randn(1, 2, 4, 5, seed=6)
    K = _randn(3, 2, 3, 3, seed=7)

    def ext_up(v):   # last axis, m = -1 .. 2L: u[2i] = 3/4 v[i] + 1/4 v[i-1], u[2i+1] = 3/4 v[i] + 1/4 v[i+1]
        L = v.shape[-1]
        get = lambda i: v[..., i] if 0 <= i < L else torch.zeros_like(v[..., 0])   # noqa: E731
        cols = []
        for m in range(-1, 2 * L + 1):
            i, odd = divmod(m, 2)
            cols.append(0.75 * get(i) + 0.25 * get(i + (1 if odd else -1)))
        return torch.stack(cols, dim=-1)
    U = ext_up(ext_up(x).transpose(-1, -2)).transpose(-1, -2)       # [1, 2, 2H+2, 2W+2], U[0] is m = -1
    H, W = 8, 10
    want = torch.zeros(1, 3, H, W, dtype=F64)
    for r, q in itertools.product(range(3), range(3)):
        want += torch.einsum("nihw,oi->nohw", U[:, :, r:r + H, q:q + W], K[:, :, 2 - r, 2 - q])
    f = ops.setup_filter([1, 3, 3, 1]).double()
    _close(ref_c2r.conv2d_resample(x, K, f, 2, 1, (1, 1, 1, 1), 1, False, False), want)


def test_cases_b_to_e_closed_forms():
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x = _randn(2, 3, 6, 8, seed=8)
    K3, K1 = _randn(4, 3, 3, 3, seed=9), _randn(4, 3, 1, 1, seed=10)
    # (b) same-size correlation with zero padding k//2
    _close(ref_c2r.conv2d_resample(x, K3, f, 1, 1, (1, 1, 1, 1), 1, True, False),
           naive_conv(x, K3, 1, (1, 1), 1, False))

    # (c) blur g[j] = (x[j-2] + 3x[j-1] + 3x[j] + x[j+1]) / 8 for j = 0..L, then stride-2 correlation
    def blur(v):
        p = torch.nn.functional.pad(v, [2, 2])   # p[k] = v[k - 2]
        return torch.stack([(p[..., j] + 3 * p[..., j + 1] + 3 * p[..., j + 2] + p[..., j + 3]) / 8
                            for j in range(v.shape[-1] + 1)], dim=-1)
    G = blur(blur(x).transpose(-1, -2)).transpose(-1, -2)
    _close(ref_c2r.conv2d_resample(x, K3, f, 1, 2, (1, 1, 1, 1), 1, True, False), _correlate(G, K3, 2))
    # (d) 1x1, down 2: downsample2d then 1x1; (e) 1x1, up 2: 1x1 then upsample2d
    mix = lambda v: torch.einsum("nihw,oi->nohw", v, K1[:, :, 0, 0])   # noqa: E731
    _close(ref_c2r.conv2d_resample(x, K1, f, 1, 2, (0, 0, 0, 0), 1, True, False),
           mix(ops.downsample2d(x, f.float(), impl="ref")))
    _close(ref_c2r.conv2d_resample(x, K1, f, 2, 1, (0, 0, 0, 0), 1, True, False),
           mix(ops.upsample2d(x, f.float(), impl="ref")))


def test_conv2d_resample_gradients():
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x, w = _randn(1, 2, 3, 4, seed=11, grad=True), _randn(2, 1, 3, 3, seed=12, grad=True)
    for up, down in ((2, 1), (1, 2)):
        fn = lambda a, b: ref_c2r.conv2d_resample(a, b, f, up, down, (1, 1, 1, 1), 2, up == 1, False)   # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, w), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)


# ---------------------------------------------------------------------------------------------- modulated conv

def _direct_sg2(x, weight, styles, noise, up, down, pad, f, demodulate, flip_weight):
    """§2.4 per sample: weights weight * styles[n] (* d[n]), then the conv2d_resample definition."""
    outs = []
    for n in range(x.shape[0]):
        wn = weight * styles[n].reshape(1, -1, 1, 1)
        if demodulate:
            wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(definition_conv2d_resample(x[n:n + 1], wn, f, up, down, pad, 1, flip_weight, False))
    y = torch.cat(outs)
    return y if noise is None else y + noise


SG2_GEOMS = [(3, 1, 1, (1, 1, 1, 1), True), (3, 2, 1, (1, 1, 1, 1), False), (3, 1, 2, (1, 1, 1, 1), True),
             (1, 1, 1, (0, 0, 0, 0), True)]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("geom", SG2_GEOMS, ids=lambda g: f"k{g[0]}u{g[1]}d{g[2]}")
def test_modulated_conv2d_matches_direct_formula(geom, demodulate, fused):
    k, up, down, pad, flip_weight = geom
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x, weight, styles = _randn(2, 3, 5, 5, seed=13), _randn(4, 3, k, k, seed=14), _randn(2, 3, seed=15)
    oh = (5 * up + pad[2] + pad[3] - k + 1) // down
    noise = _randn(2, 1, oh, oh, seed=16)
    got = ref_modconv.modulated_conv2d(x, weight, styles, noise, up, down, pad, f, demodulate, flip_weight, fused)
    _close(got, _direct_sg2(x, weight, styles, noise, up, down, pad, f, demodulate, flip_weight))


@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_gradients(fused):
    f = ops.setup_filter([1, 3, 3, 1]).double()
    x, weight = _randn(2, 2, 3, 3, seed=17, grad=True), _randn(3, 2, 3, 3, seed=18, grad=True)
    styles, noise = _randn(2, 2, seed=19, grad=True), _randn(2, 1, 6, 6, seed=20, grad=True)

    def fn(a, b, s, nz):
        return ref_modconv.modulated_conv2d(a, b, s, nz, 2, 1, (1, 1, 1, 1), f, True, False, fused)
    assert torch.autograd.gradcheck(fn, (x, weight, styles, noise), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, weight, styles, noise), fast_mode=True)


def test_fp16_prenormalize_formula():
    weight, styles = _randn(3, 2, 3, 3, seed=21), _randn(2, 2, seed=22)
    w2, s2 = ref_modconv.fp16_prenormalize(weight, styles)
    _close(w2, weight / math.sqrt(2 * 9) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
    _close(s2, styles / styles.abs().amax(dim=1, keepdim=True))


def _direct_sg3(x, w, s, demodulate, padding, input_gain):
    """§3.3 per sample, with the batch-wide style RMS."""
    if demodulate:
        w = w / w.square().mean(dim=[1, 2, 3], keepdim=True).sqrt()
        s = s / s.square().mean().sqrt()
    outs = []
    for n in range(x.shape[0]):
        wn = w * s[n].reshape(1, -1, 1, 1)
        if demodulate:
            wn = wn / (wn.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        if input_gain is not None:
            wn = wn * input_gain.expand(x.shape[0], x.shape[1])[n].reshape(1, -1, 1, 1)
        outs.append(naive_conv(x[n:n + 1], wn, 1, padding, 1, False))
    return torch.cat(outs)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("gain_shape", [None, (), (3,), (2, 3)])
def test_modulated_conv2d_sg3_matches_direct_formula(demodulate, gain_shape):
    x, w, s = _randn(2, 3, 5, 4, seed=23), _randn(4, 3, 3, 3, seed=24), _randn(2, 3, seed=25)
    gain = None if gain_shape is None else _randn(*gain_shape, seed=26).abs() + 0.5
    got = ref_modconv.modulated_conv2d_sg3(x, w, s, demodulate, (2, 1), gain)
    _close(got, _direct_sg3(x, w, s, demodulate, (2, 1), gain))


def test_modulated_conv2d_sg3_style_rms_spans_the_batch():
    """One RMS scalar over the whole batch: it shows through the 1e-8 when one sample's styles are tiny,
    in the output and in the gradients (the normalisation stays in the autograd graph)."""
    x, w = _randn(2, 3, 4, 4, seed=27), _randn(4, 3, 3, 3, seed=28)
    s = torch.cat([_randn(1, 3, seed=29) * 2e-5, _randn(1, 3, seed=30)]).requires_grad_(True)
    gain = torch.tensor(0.7, dtype=F64, requires_grad=True)
    got = ref_modconv.modulated_conv2d_sg3(x, w, s, True, 2, gain)
    want = _direct_sg3(x, w, s, True, (2, 2), gain)
    _close(got, want)
    per_sample = torch.cat([_direct_sg3(x[n:n + 1], w, s[n:n + 1], True, (2, 2), gain) for n in range(2)])
    assert (per_sample[0] - want[0]).abs().max() > 1e-3 * want[0].abs().max()   # the eps regime is reached
    g = _randn(*got.shape, seed=31)
    for a, b in zip(torch.autograd.grad((got * g).sum(), [s, gain]), torch.autograd.grad((want * g).sum(), [s, gain])):
        _close(a, b)


def test_modulated_conv2d_sg3_gradients():
    x, w = _randn(2, 2, 3, 3, seed=32, grad=True), _randn(3, 2, 3, 3, seed=33, grad=True)
    s, gain = _randn(2, 2, seed=34, grad=True), (_randn(2, seed=35).abs() + 0.5).requires_grad_(True)
    for demodulate in (True, False):
        fn = lambda a, b, c, d: ref_modconv.modulated_conv2d_sg3(a, b, c, demodulate, 1, d)   # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, w, s, gain), fast_mode=True)
        assert torch.autograd.gradgradcheck(fn, (x, w, s, gain), fast_mode=True)


# ---------------------------------------------------------------------------------------------- fma

def test_unbroadcast_sums_the_broadcast_dimensions():
    t = _randn(2, 3, 4, 5, seed=36)
    _close(unbroadcast(t, (3, 1, 5)), t.sum(dim=0).sum(dim=1, keepdim=True))
    _close(unbroadcast(t, (1, 3, 4, 1)), t.sum(dim=[0, 3], keepdim=True))
    _close(unbroadcast(t, ()), t.sum())
    _close(unbroadcast(t, t.shape), t)
    with pytest.raises(ValueError, match="more dimensions"):
        unbroadcast(t, (1, 2, 3, 4, 5))


@pytest.mark.parametrize("impl", ["ref", "auto"])
@pytest.mark.parametrize("shapes", [((2, 3, 4), (3, 1), (4,)), ((3, 1), (2, 1, 4), ()), ((2, 3), (2, 3), (2, 3))])
def test_fma_value_and_gradients(impl, shapes):
    a, b, c = (_randn(*sh, seed=37 + i, grad=True) for i, sh in enumerate(shapes))
    fn = lambda p, q, r: ops.fma(p, q, r, impl=impl)   # noqa: E731
    _close(fn(a, b, c), a * b + c)
    assert torch.autograd.gradcheck(fn, (a, b, c), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (a, b, c), fast_mode=True)
