"""ADA AugmentPipe and DiffAugment against direct formulas of training-spec §3 and the DiffAugment paper."""
import math

import numpy as np
import pytest
import torch

from fastgan.train.augment import AUGPIPE_SPECS, AugmentParams, AugmentPipe, _geom_taps, _imgfilter_bank, diff_augment

# The wavelet up/downsampling chain is not zero-phase: relative to the sampling grid, its low-frequency group
# delay is (centroid of the 12 taps - 5) half-pixels. The identity and integer translations cancel it exactly;
# any other linear part of the matrix leaves a residual sub-pixel shift, modelled in _analytic_expectation.
GROUP_DELAY = float((np.arange(12) * _geom_taps()).sum() - 5)
CHAIN_TOL = 2e-5     # near-identity error of pad/upsample/sample/downsample (spec §3.3: about 1e-5)


def _coords(h, w):
    """Centred pixel coordinates (x right, y down) [H, W] in float64."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64) - (h - 1) / 2,
                            torch.arange(w, dtype=torch.float64) - (w - 1) / 2, indexing="ij")
    return xx, yy


def _smooth_field(x, y, n=2, c=3, seed=0, size=32):
    """Sum of three random plane waves of at most one cycle per ``size`` pixels: [N, C, H, W] at (x, y)."""
    g = torch.Generator().manual_seed(seed)
    out = 0
    for _ in range(3):
        fx, fy = ((torch.rand(2, generator=g, dtype=torch.float64) * 2 - 1) * 2 * math.pi / size).tolist()
        phase = torch.rand(n, c, 1, 1, generator=g, dtype=torch.float64) * 2 * math.pi
        out = out + 0.3 * torch.cos(fx * x + fy * y + phase)
    return out


def _mat(rows):
    return torch.tensor(rows, dtype=torch.float64)


def _rot(t):
    return _mat([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])


def _scale(sx, sy):
    return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _shift(tx, ty):
    return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def _analytic_expectation(inverse, h, w):
    """Output of the pipe on _smooth_field for the inverse map ``inverse`` [3, 3]: field(M(p + d) - d)."""
    xx, yy = _coords(h, w)
    d = GROUP_DELAY / 2
    pts = torch.stack([xx.flatten() + d, yy.flatten() + d, torch.ones(h * w, dtype=torch.float64)])
    src = inverse @ pts
    return _smooth_field((src[0] - d).view(h, w), (src[1] - d).view(h, w), n=1)


def _one(value, n=1):
    return torch.full([n], float(value), dtype=torch.float64)


# ----------------------------------------------------------------------------------------------------------------
# Geometric transforms.

def test_p0_is_exact_identity_for_every_preset():
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    for name in AUGPIPE_SPECS:
        pipe = AugmentPipe.from_preset(name)
        pipe.p.zero_()
        assert torch.equal(pipe(x), x), name


def test_identity_resampling_in_a_transformed_batch_is_near_exact():
    # Sample 0 draws a transform, so the whole batch is resampled; sample 1 keeps the identity matrix.
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 12) * 2 - 1
    y = AugmentPipe().apply(x, AugmentParams(xint=torch.tensor([[0.25, -0.125], [0.0, 0.0]])))
    assert (y[1] - x[1]).abs().max() < CHAIN_TOL


@pytest.mark.parametrize("size,shift", [((16, 16), (3, -2)), ((12, 20), (-5, 4))])
def test_integer_translation_is_reflect_padded_roll(size, shift):
    h, w = size
    tx, ty = shift
    torch.manual_seed(1)
    x = torch.rand(2, 3, h, w) * 2 - 1
    y = AugmentPipe().apply(x, AugmentParams(xint=torch.tensor([[tx / w, ty / h]] * 2)))
    px, py = abs(tx), abs(ty)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (py, py), (px, px)), mode="reflect")
    expected = padded[:, :, py - ty:py - ty + h, px - tx:px - tx + w]   # out[r, c] = in[r - ty, c - tx]
    np.testing.assert_allclose(y.numpy(), expected, atol=CHAIN_TOL, rtol=0)


def test_xint_rounds_half_to_even():
    x = torch.rand(1, 1, 8, 8)
    pipe = AugmentPipe()
    y = pipe.apply(x, AugmentParams(xint=torch.tensor([[2.5 / 8, 0.0]])))      # round(2.5) = 2
    ref = pipe.apply(x, AugmentParams(xint=torch.tensor([[2.0 / 8, 0.0]])))
    assert torch.equal(y, ref)


def _flip_rot_tolerance(img):
    """Bound for the residual shift of flips (up to |GROUP_DELAY| pixels per axis) plus interpolation error."""
    grad = img.diff(dim=2).abs().max().item() + img.diff(dim=3).abs().max().item()
    return abs(GROUP_DELAY) * grad + 2e-3


def test_xflip_is_flip():
    x = _smooth_field(*_coords(32, 32)).float()
    y = AugmentPipe().apply(x, AugmentParams(xflip=torch.ones(2)))
    assert (y - x.flip(3)).abs().max() < _flip_rot_tolerance(x)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_rotate90_is_rot90(k):
    x = _smooth_field(*_coords(32, 32)).float()
    y = AugmentPipe().apply(x, AugmentParams(rotate90=torch.full([2], float(k))))
    assert (y - torch.rot90(x, k, dims=[2, 3])).abs().max() < _flip_rot_tolerance(x)
    if k != 2:   # the direction is right
        assert (y - torch.rot90(x, -k, dims=[2, 3])).abs().max() > 0.1


@pytest.mark.parametrize("case", ["xflip", "rotate90", "scale_in", "scale_out", "rotate", "aniso", "xfrac", "all"])
def test_geometric_transform_matches_analytic_resampling(case):
    h = w = 32
    params, inverse = {
        "xflip": (AugmentParams(xflip=_one(1)), _scale(-1, 1)),
        "rotate90": (AugmentParams(rotate90=_one(1)), _rot(math.pi / 2)),
        "scale_in": (AugmentParams(scale=_one(1.25)), _scale(0.8, 0.8)),
        "scale_out": (AugmentParams(scale=_one(0.8)), _scale(1.25, 1.25)),
        "rotate": (AugmentParams(rotate_pre=_one(0.4)), _rot(0.4)),
        "aniso": (AugmentParams(aniso=_one(1.2)), _scale(1 / 1.2, 1.2)),
        "xfrac": (AugmentParams(xfrac=torch.tensor([[0.3 / w, -1.7 / h]])), _shift(-0.3, 1.7)),
        # Spec §3.2 order: M = X Q Ti Sc Rpre A Rpost Tf.
        "all": (AugmentParams(xflip=_one(1), rotate90=_one(3), xint=torch.tensor([[1 / w, -2 / h]]),
                              scale=_one(1.1), rotate_pre=_one(0.3), aniso=_one(0.9), rotate_post=_one(-0.5),
                              xfrac=torch.tensor([[0.4 / w, 0.2 / h]])),
                _scale(-1, 1) @ _rot(3 * math.pi / 2) @ _shift(-1, 2) @ _scale(1 / 1.1, 1 / 1.1) @ _rot(0.3)
                @ _scale(1 / 0.9, 0.9) @ _rot(-0.5) @ _shift(-0.4, -0.2)),
    }[case]
    x = _smooth_field(*_coords(h, w), n=1)
    y = AugmentPipe().apply(x, params)
    expected = _analytic_expectation(inverse, h, w)
    # Interior only: near the border the filters and the zoom-out reach the mirrored padding.
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))
    assert (y - expected)[inner].abs().max() < 2e-3
    assert y.dtype == torch.float64


def test_geometric_block_is_batched_per_sample():
    x = _smooth_field(*_coords(16, 16), n=3)
    pipe = AugmentPipe()
    both = pipe.apply(x, AugmentParams(rotate_pre=torch.tensor([0.5, 0.0, -1.0], dtype=torch.float64)))
    single = pipe.apply(x[2:], AugmentParams(rotate_pre=torch.tensor([-1.0], dtype=torch.float64)))
    # Margins are batch-wide, so sample 2 sees different padding; interior values must agree.
    assert (both[2:, :, 4:-4, 4:-4] - single[:, :, 4:-4, 4:-4]).abs().max() < 1e-9
    assert (both[1] - x[1]).abs().max() < CHAIN_TOL


# ----------------------------------------------------------------------------------------------------------------
# Colour.

LUMA = np.array([1, 1, 1, 0]) / math.sqrt(3)


def _colour_matrix_spec(b, c, flip, hue, sat):
    """Spec §3.4, built directly: C = Sat Hue Luma Contrast Bright."""
    bright = np.eye(4)
    bright[:3, 3] = b
    contrast = np.diag([c, c, c, 1.0])
    luma = np.eye(4) - 2 * flip * np.outer(LUMA, LUMA)
    v = LUMA[:3]
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    hue_m = np.eye(4)
    hue_m[:3, :3] = math.cos(hue) * np.eye(3) + math.sin(hue) * vx + (1 - math.cos(hue)) * np.outer(v, v)
    sat_m = np.outer(LUMA, LUMA) + sat * (np.eye(4) - np.outer(LUMA, LUMA))
    return sat_m @ hue_m @ luma @ contrast @ bright


COLOUR_CASES = [(0.3, 1, 0, 0, 1), (0, 1.7, 0, 0, 1), (0, 1, 1, 0, 1), (0, 1, 0, 1.1, 1), (0, 1, 0, 0, 0.4),
                (-0.2, 0.6, 1, -2.5, 1.8)]


@pytest.mark.parametrize("b,c,flip,hue,sat", COLOUR_CASES)
def test_colour_rgb_matches_matrix_formula(b, c, flip, hue, sat):
    torch.manual_seed(2)
    x = torch.rand(2, 3, 6, 5, dtype=torch.float64) * 2 - 1
    params = AugmentParams(brightness=_one(b, 2), contrast=_one(c, 2), lumaflip=_one(flip, 2), hue=_one(hue, 2),
                           saturation=_one(sat, 2))
    y = AugmentPipe().apply(x, params)
    m = _colour_matrix_spec(b, c, flip, hue, sat)
    expected = np.einsum("ij,njhw->nihw", m[:3, :3], x.numpy()) + m[:3, 3][None, :, None, None]
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("b,c,flip,hue,sat", COLOUR_CASES)
def test_colour_grey_uses_mean_of_rgb_rows_without_hue_and_saturation(b, c, flip, hue, sat):
    torch.manual_seed(3)
    x = torch.rand(2, 1, 5, 5, dtype=torch.float64) * 2 - 1
    params = AugmentParams(brightness=_one(b, 2), contrast=_one(c, 2), lumaflip=_one(flip, 2), hue=_one(hue, 2),
                           saturation=_one(sat, 2))
    y = AugmentPipe().apply(x, params)
    row = _colour_matrix_spec(b, c, flip, 0.0, 1.0)[:3].mean(axis=0)
    np.testing.assert_allclose(y.numpy(), x.numpy() * row[:3].sum() + row[3], atol=1e-12, rtol=0)


def test_colour_rejects_other_channel_counts():
    pipe = AugmentPipe(hue=1)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        pipe(torch.zeros(2, 4, 8, 8))
    assert AugmentPipe(xflip=1)(torch.zeros(2, 4, 8, 8)).shape == (2, 4, 8, 8)   # geometry takes any count


# ----------------------------------------------------------------------------------------------------------------
# imgfilter, noise, cutout.

def test_imgfilter_bank_matches_spec_checks():
    bank = _imgfilter_bank()
    assert bank.shape == (4, 43)
    np.testing.assert_allclose(bank.sum(axis=1), [1, 0, 0, 0], atol=1e-15)
    np.testing.assert_allclose(bank[:, 21], [0.125, 0.125, 0.25, 0.5], atol=1e-15)
    np.testing.assert_allclose((bank ** 2).sum(axis=1), [0.100133754313, 0.061981059611, 0.131519317627,
                                                         0.41015625], atol=1e-11)
    np.testing.assert_array_equal(bank, bank[:, ::-1])
    finest = np.zeros(43)
    finest[18:25] = np.array([1, 0, -9, 16, -9, 0, 1]) / 32
    np.testing.assert_array_equal(bank[3], finest)


def test_imgfilter_unit_gains_are_identity():
    x = torch.rand(2, 3, 16, 16)
    y = AugmentPipe(imgfilter=1).apply(x, AugmentParams(imgfilter=torch.ones(2, 4)))
    assert torch.equal(y, x)


def _band_gains_spec(t):
    """Spec §3.5 gain normalisation for drawn per-band gains t [4]."""
    e = np.array([10, 1, 1, 1]) / 13
    g = np.ones(4)
    for k in range(4):
        tk = np.ones(4)
        tk[k] = t[k]
        g = g * tk / math.sqrt((e * tk ** 2).sum())
    return g


@pytest.mark.parametrize("size", [32, 12])   # 12 < 21: the mirror padding wraps around more than once
def test_imgfilter_matches_separable_formula(size):
    torch.manual_seed(4)
    x = torch.rand(2, 3, size, size, dtype=torch.float64) * 2 - 1
    gains = torch.tensor([[1.0, 2.0, 0.5, 1.0], [0.7, 1.0, 1.0, 3.0]], dtype=torch.float64)
    y = AugmentPipe(imgfilter=1).apply(x, AugmentParams(imgfilter=gains))
    bank = _imgfilter_bank()
    for i in range(2):
        h = _band_gains_spec(gains[i].numpy()) @ bank
        padded = np.pad(x[i].numpy(), ((0, 0), (21, 21), (21, 21)), mode="reflect")
        rows = np.lib.stride_tricks.sliding_window_view(padded, 43, axis=2) @ h
        expected = np.lib.stride_tricks.sliding_window_view(rows, 43, axis=1) @ h
        np.testing.assert_allclose(y[i].numpy(), expected, atol=1e-6, rtol=0)   # float32 filter bank


def test_noise_std():
    x = torch.zeros(2, 3, 64, 64)
    y = AugmentPipe(noise=1).apply(x, AugmentParams(noise=torch.tensor([0.3, 0.0])))
    assert abs(y[0].std().item() - 0.3) < 0.3 * 0.04    # 12288 samples: relative std error about 0.6%
    assert abs(y[0].mean().item()) < 0.3 * 0.04
    assert torch.equal(y[1], x[1])


def test_cutout_zero_region():
    x = torch.ones(3, 2, 16, 16)
    params = AugmentParams(cutout=torch.tensor([0.5, 0.5, 0.0]),
                           cutout_centre=torch.tensor([[0.5, 0.5], [0.1, 0.9], [0.5, 0.5]]))
    y = AugmentPipe(cutout=1).apply(x, params)
    expected0 = torch.ones(16, 16)
    expected0[4:12, 4:12] = 0                     # |(i + 0.5)/16 - 0.5| < 0.25  <=>  4 <= i <= 11
    assert torch.equal(y[0, 0], expected0) and torch.equal(y[0, 1], expected0)
    expected1 = torch.ones(16, 16)
    expected1[10:, :6] = 0       # centre (0.1, 0.9): (r + 0.5)/16 > 0.65, (c + 0.5)/16 < 0.35; clipped at the border
    assert torch.equal(y[1, 0], expected1)
    assert torch.equal(y[2], x[2])


# ----------------------------------------------------------------------------------------------------------------
# Random draws, p semantics, debug percentile.

def test_draw_probability_is_multiplier_times_p():
    torch.manual_seed(5)
    n = 20000
    pipe = AugmentPipe(scale=0.5, rotate=1, contrast=1)
    pipe.p.fill_(0.6)
    d = pipe.draw(n)
    sigma = math.sqrt(0.25 / n)
    assert abs((d.scale != 1).double().mean().item() - 0.3) < 5 * sigma
    rotated = (d.rotate_pre != 0) | (d.rotate_post != 0)
    assert abs(rotated.double().mean().item() - 0.6) < 5 * sigma            # P(any rotation) = rotate * p
    assert abs((d.contrast != 1).double().mean().item() - 0.6) < 5 * sigma
    assert d.xflip is None and d.noise is None                               # disabled transforms are not drawn


def test_p_above_one_means_always():
    torch.manual_seed(6)
    pipe = AugmentPipe(scale=0.6, rotate=1, hue=1, xflip=1)
    pipe.p.fill_(2.0)
    d = pipe.draw(4000)
    assert bool((d.scale != 1).all()) and bool((d.hue != 0).all())
    assert bool(((d.rotate_pre != 0) & (d.rotate_post != 0)).all())           # p_rot = 1
    assert abs(d.xflip.mean().item() - 0.5) < 0.05                            # always drawn, i uniform in {0, 1}
    assert set(d.xflip.unique().tolist()) == {0.0, 1.0}


def test_draw_distributions():
    torch.manual_seed(7)
    n = 20000
    d = AugmentPipe.from_preset("bgcfnc").draw(n)
    assert set(d.rotate90.unique().tolist()) == {0.0, 1.0, 2.0, 3.0}
    assert float(d.xint.abs().max()) <= 0.125
    assert abs(torch.log2(d.scale).std().item() - 0.2) < 0.01
    assert abs(d.xfrac.std().item() - 0.125) < 0.005
    assert abs(d.brightness.std().item() - 0.2) < 0.01
    assert abs(torch.log2(d.saturation).std().item() - 1.0) < 0.03
    assert float(d.hue.abs().max()) <= math.pi
    assert abs(d.noise.mean().item() - 0.1 * math.sqrt(2 / math.pi)) < 0.003   # E|N(0,1)| = sqrt(2/pi)
    assert bool((d.cutout == 0.5).all()) and float(d.cutout_centre.min()) >= 0 and float(d.cutout_centre.max()) < 1


def test_debug_percentile_fixed_parameters():
    q = 0.75
    d = AugmentPipe.from_preset("bgcfnc").draw(3, debug_percentile=q)
    z = torch.erfinv(torch.tensor(2 * q - 1, dtype=torch.float64)).item()
    expect = {"xflip": 1, "rotate90": 3, "scale": 2 ** (z * 0.2), "rotate_pre": 0.5 * math.pi, "rotate_post": 0,
              "aniso": 2 ** (z * 0.2), "brightness": z * 0.2, "contrast": 2 ** (z * 0.5), "lumaflip": 1,
              "hue": 0.5 * math.pi, "saturation": 2 ** z, "cutout": 0.5,
              "noise": torch.erfinv(torch.tensor(q, dtype=torch.float64)).item() * 0.1}
    for name, value in expect.items():
        np.testing.assert_allclose(getattr(d, name).numpy(), value, rtol=1e-6, err_msg=name)
    np.testing.assert_allclose(d.xint.numpy(), 0.5 * 0.125, rtol=1e-6)
    np.testing.assert_allclose(d.xfrac.numpy(), z * 0.125, rtol=1e-6)
    np.testing.assert_allclose(d.imgfilter.numpy(), 2 ** z, rtol=1e-6)
    np.testing.assert_allclose(d.cutout_centre.numpy(), q)
    assert AugmentPipe(xflip=1).draw(2, debug_percentile=1.0).xflip.tolist() == [1.0, 1.0]   # clamped to n - 1
    assert AugmentPipe(imgfilter=1, imgfilter_bands=[1, 0, 1, 1]).draw(1, debug_percentile=q).imgfilter[0, 1] == 1


@pytest.mark.parametrize("preset", sorted(AUGPIPE_SPECS))
def test_every_preset_runs(preset):
    torch.manual_seed(8)
    pipe = AugmentPipe.from_preset(preset)
    for dtype in (torch.float32, torch.bfloat16):
        x = (torch.rand(3, 3, 16, 16) * 2 - 1).to(dtype)
        y = pipe(x)
        assert y.shape == x.shape and y.dtype == dtype and bool(torch.isfinite(y.float()).all())
    assert pipe(torch.rand(2, 1, 8, 8)).shape == (2, 1, 8, 8)
    assert pipe(torch.rand(2, 3, 16, 16), debug_percentile=0.3).shape == (2, 3, 16, 16)


def test_presets_and_state():
    assert AUGPIPE_SPECS["bgc"] == {**AUGPIPE_SPECS["blit"], **AUGPIPE_SPECS["geom"], **AUGPIPE_SPECS["color"]}
    assert set(AUGPIPE_SPECS["bgcfnc"]) == set(AUGPIPE_SPECS["bgc"]) | {"imgfilter", "noise", "cutout"}
    pipe = AugmentPipe.from_preset("bgc", xint_max=0.25)
    assert pipe.xint_max == 0.25 and pipe.rotate_max == 1 and pipe.hue == 1 and pipe.imgfilter == 0
    assert pipe.p.dtype == torch.float32 and pipe.p.shape == () and pipe.p.item() == 1
    assert list(pipe.state_dict()) == ["p"] and not list(pipe.parameters())
    clone = AugmentPipe(**pipe.init_kwargs)
    assert clone.init_kwargs == pipe.init_kwargs and clone.xint_max == 0.25


# ----------------------------------------------------------------------------------------------------------------
# Gradients.

def _fixed_params(n):
    g = torch.Generator().manual_seed(9)

    def r(*shape):
        return torch.rand(*shape, generator=g, dtype=torch.float64)
    return AugmentParams(xflip=torch.tensor([1.0, 0.0]), rotate90=torch.tensor([1.0, 2.0]), xint=r(n, 2) * 0.2 - 0.1,
                         scale=1 + r(n) * 0.2, rotate_pre=r(n), aniso=1 + r(n) * 0.1, rotate_post=-r(n),
                         xfrac=r(n, 2) * 0.1, brightness=r(n) - 0.5, contrast=1 + r(n), lumaflip=torch.tensor([1.0, 0]),
                         hue=r(n) * 3, saturation=r(n) * 2)


def test_gradcheck_geometric_and_colour():
    pipe = AugmentPipe()
    params = _fixed_params(2)
    x = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: pipe.apply(t, params), (x,), fast_mode=True)


def test_gradgradcheck_geometric_and_filter():
    pipe = AugmentPipe()
    params = AugmentParams(rotate_pre=torch.tensor([0.3, -0.8], dtype=torch.float64),
                           scale=torch.tensor([0.9, 1.2], dtype=torch.float64),
                           imgfilter=torch.tensor([[1.0, 2.0, 0.5, 1.0], [1, 1, 1, 3]], dtype=torch.float64))
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: pipe.apply(t, params), (x,), fast_mode=True)


def test_r1_style_double_backward():
    torch.manual_seed(10)
    pipe = AugmentPipe.from_preset("bgcfnc")
    conv = torch.nn.Conv2d(3, 4, 3)
    real = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    logits = torch.nn.functional.softplus(conv(pipe(real))).mean(dim=(1, 2, 3))
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    grad.square().sum().backward()
    assert conv.weight.grad is not None and bool(torch.isfinite(conv.weight.grad).all())
    assert conv.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------
# DiffAugment.

def test_diff_augment_shapes_and_gradients():
    torch.manual_seed(11)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    for policy in ("", "color", "translation", "cutout", "color,translation,cutout"):
        y = diff_augment(x, policy)
        assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(diff_augment(x, ""), x)
    xd = torch.rand(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)

    def seeded(t):
        torch.manual_seed(12)
        return diff_augment(t)
    assert torch.autograd.gradcheck(seeded, (xd,), fast_mode=True)
    assert torch.autograd.gradgradcheck(seeded, (xd,), fast_mode=True)


def test_diff_augment_color_formula():
    x = torch.rand(4, 3, 8, 8, dtype=torch.float64) * 2 - 1
    torch.manual_seed(13)
    y = diff_augment(x, "color")
    torch.manual_seed(13)
    b, s, c = (torch.rand(4, 1, 1, 1, dtype=torch.float64) for _ in range(3))
    e = x + (b - 0.5)
    e = (e - e.mean(1, keepdim=True)) * (2 * s) + e.mean(1, keepdim=True)
    e = (e - e.mean((1, 2, 3), keepdim=True)) * (c + 0.5) + e.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(y, e, rtol=0, atol=1e-12)


def test_diff_augment_translation_is_zero_filled_shift():
    torch.manual_seed(14)
    x = torch.rand(8, 2, 16, 16) + 1            # strictly positive, so zero fill is recognisable
    y = diff_augment(x, "translation")
    for i in range(8):
        matches = []
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                e = torch.zeros_like(x[i])
                e[:, max(dy, 0):16 + min(dy, 0), max(dx, 0):16 + min(dx, 0)] = \
                    x[i, :, max(-dy, 0):16 + min(-dy, 0), max(-dx, 0):16 + min(-dx, 0)]
                matches.append(torch.equal(y[i], e))
        assert sum(matches) == 1      # exactly one shift within +-16/8 pixels


def test_diff_augment_cutout_half_size_square():
    torch.manual_seed(15)
    x = torch.ones(16, 1, 16, 16)
    y = diff_augment(x, "cutout")
    for i in range(16):
        zero = (y[i, 0] == 0).nonzero()
        rows, cols = zero[:, 0], zero[:, 1]
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(zero) == h * w and h <= 8 and w <= 8          # one rectangle, at most half size
        assert (h == 8 or rows.min() == 0 or rows.max() == 15) and (w == 8 or cols.min() == 0 or cols.max() == 15)


# ----------------------------------------------------------------------------------------------------------------
# Bad arguments.

def test_bad_arguments():
    with pytest.raises(ValueError, match="preset"):
        AugmentPipe.from_preset("bgcx")
    with pytest.raises(ValueError, match="images must be 4-D"):
        AugmentPipe(xflip=1)(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="floating-point"):
        AugmentPipe(xflip=1)(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="images"):
        AugmentPipe(xflip=1)(np.zeros((1, 3, 8, 8)))
    with pytest.raises(ValueError, match="xflip"):
        AugmentPipe(xflip=-1)
    with pytest.raises(TypeError, match="scale_std"):
        AugmentPipe(scale_std="0.2")
    with pytest.raises(ValueError, match="imgfilter_bands"):
        AugmentPipe(imgfilter_bands=[1, 1, 1])
    with pytest.raises(TypeError):
        AugmentPipe(1)                                          # options are keyword-only
    with pytest.raises(ValueError, match="debug_percentile"):
        AugmentPipe(xflip=1)(torch.zeros(1, 3, 8, 8), debug_percentile=1.5)
    with pytest.raises(ValueError, match="params.scale"):
        AugmentPipe().apply(torch.zeros(2, 3, 8, 8), AugmentParams(scale=torch.ones(3)))
    with pytest.raises(ValueError, match="cutout_centre"):
        AugmentPipe().apply(torch.zeros(2, 3, 8, 8), AugmentParams(cutout=torch.ones(2)))
    with pytest.raises(ValueError, match="policy"):
        diff_augment(torch.zeros(1, 3, 8, 8), "color,flip")
    with pytest.raises(ValueError, match="4-D"):
        diff_augment(torch.zeros(3, 8, 8))
