"""The CUDA kernels of csrc/cuda, run on the CPU by the emulation of tests/cuda_emu.py, against ``ref``.

This checks the kernels' index math, tiling, dispatch, vector packs, reductions and derivative
conventions without a GPU (the C++ torch glue is mirrored in Python by ``EmulatedCuda``). Inputs sit
inside NaN-filled buffers and outputs start as NaN, so reads outside the tensors, reads of shared
memory that was never staged and unwritten outputs all show up as NaN.

The ``cuda_glue`` fixture imports the real ``fastgan.backends.cuda`` over an emulated
``fastgan._C_cuda``, so the operators ``torch.ops.fastgan.*(..., backend='cuda')`` run the backend's
Python glue and the registered autograd on the emulated kernels (the router does not look at devices).
"""
from __future__ import annotations

import importlib
import math
import sys
import types

import pytest
import torch

from fastgan import ops
from fastgan.backends import ref
from fastgan.backends.activations import ACTIVATIONS
from fastgan.backends.library import PRIMITIVES
from fastgan.backends.prims import bias_act as ba
from fastgan.backends.prims import filtered_lrelu as flr
from fastgan.backends.prims.upfirdn2d import UPFIRDN2D
from fastgan.backends.ref.filtered_lrelu import filtered_lrelu as ref_filtered_lrelu

import cuda_emu

TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@pytest.fixture(scope="module")
def emu():
    try:
        lib = cuda_emu.build()
    except cuda_emu.Unavailable as e:
        pytest.skip(f"CUDA emulation unavailable: {e}")
    k = cuda_emu.EmulatedCuda(lib)
    k.set_sm_count(2)  # few blocks, so grid-stride loops take several trips
    return k


def _emulated_extension(emu) -> types.ModuleType:
    """A stand-in for ``fastgan._C_cuda`` with its pybind signatures (activation codes, not names)."""
    names = {spec.code: name for name, spec in ACTIVATIONS.items()}
    ext = types.ModuleType("fastgan._C_cuda")
    ext.upfirdn2d = lambda x, f, up, down, pad, flip, gain: emu.upfirdn2d(x, f, tuple(up), tuple(down), tuple(pad),
                                                                          flip, gain)
    ext.bias_act = lambda x, b, dim, act, *rest: emu.bias_act(x, b, dim, names[act], *rest)
    ext.bias_act_grad = lambda dy, x, b, dim, act, *rest: emu.bias_act_grad(dy, x, b, dim, names[act], *rest)
    ext.bias_act_grad2 = lambda g, dy, x, b, dim, act, *rest: emu.bias_act_grad2(g, dy, x, b, dim, names[act], *rest)
    ext.filtered_lrelu = emu.fused
    return ext


@pytest.fixture(scope="module")
def cuda_glue(emu):
    """``fastgan.backends.cuda`` imported over the emulated extension; its kernels are registered for the
    module's tests and unregistered afterwards."""
    mods = ("fastgan._C_cuda", "fastgan.backends.cuda", "fastgan.backends.cuda_filtered_lrelu")
    saved_mods = {m: sys.modules.pop(m, None) for m in mods}
    package = sys.modules["fastgan.backends"]
    saved_attrs = {m: package.__dict__.get(m.rsplit(".", 1)[1]) for m in mods[1:]}
    saved_kernels = {name: dict(p._kernels) for name, p in PRIMITIVES.items()}
    sys.modules["fastgan._C_cuda"] = _emulated_extension(emu)
    try:
        yield importlib.import_module("fastgan.backends.cuda")
    finally:
        for m in mods:
            sys.modules.pop(m, None)
            if saved_mods[m] is not None:
                sys.modules[m] = saved_mods[m]
        for m, attr in saved_attrs.items():
            name = m.rsplit(".", 1)[1]
            package.__dict__.pop(name, None)
            if attr is not None:
                setattr(package, name, attr)
        for name, p in PRIMITIVES.items():
            p._kernels.clear()
            p._kernels.update(saved_kernels.get(name, {}))


def nan_framed(x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """A copy of x [N,C,H,W] that is a view into a NaN buffer one element larger on every side of H, W."""
    n, c, h, w = x.shape
    big = torch.full((n, c, h + 2, w + 2), math.nan, dtype=x.dtype)
    if channels_last:
        big = big.contiguous(memory_format=torch.channels_last)
    view = big[:, :, 1:-1, 1:-1]
    view.copy_(x)
    return view


def close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert actual.shape == expected.shape, what
    assert not actual.isnan().any(), f"{what}: NaN in the output (out-of-bounds read or unwritten element)"
    scale = max(float(expected.detach().abs().max()), 1e-30)
    torch.testing.assert_close(actual.detach().double(), expected.detach().double(), rtol=0, atol=TOL[dtype] * scale * 4,
                               msg=lambda m: f"{what}: {m}")


def filt(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(len(kind))
    return {"4x4": ops.setup_filter([1, 3, 3, 1]),
            "sep12": ops.setup_filter(torch.rand(12, generator=g) + 0.1),
            "sep7": ops.setup_filter(torch.rand(7, generator=g) + 0.1, separable=True),
            "5x3": torch.randn(5, 3, generator=g),
            "1x1": torch.ones(1, 1) * 0.5,
            "sep20": torch.randn(20, generator=g),
            "9x9": torch.randn(9, 9, generator=g)}[kind]


# (shape, filter, up, down, pad (x0, x1, y0, y1), flip_filter, gain)
UPFIRDN_CASES = [
    ((2, 3, 20, 37), "4x4", (1, 1), (1, 1), (2, 1, 2, 1), False, 1.0),     # filter2d, tiled 8x8 variant
    ((2, 3, 20, 37), "4x4", (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),     # upsample2d
    ((2, 3, 21, 38), "4x4", (1, 1), (2, 2), (1, 1, 1, 1), True, 1.0),      # downsample2d
    ((1, 2, 19, 40), "sep12", (2, 2), (1, 1), (6, 5, 6, 5), False, 4.0),   # separable passes, up
    ((1, 2, 40, 41), "sep12", (1, 1), (2, 2), (5, 5, 5, 5), False, 1.0),   # separable passes, down
    ((1, 2, 18, 33), "sep7", (1, 1), (1, 1), (3, 3, 3, 3), True, 2.0),     # separable, no resampling
    ((2, 2, 17, 35), "5x3", (3, 2), (2, 3), (-2, 4, 3, -1), False, 1.5),   # generic tiled kernel, crops
    ((1, 3, 16, 70), "sep20", (2, 4), (3, 1), (-3, 9, 7, 2), True, 0.7),   # generic tiled, long taps
    ((1, 2, 12, 40), "1x1", (4, 4), (1, 1), (0, 0, 0, 0), False, 1.0),     # up > taps: zero phases
    ((2, 2, 13, 34), "9x9", (1, 1), (1, 1), (4, 4, 4, 4), False, 1.0),     # 2-D filter above 8x8
    ((1, 2, 70, 90), "4x4", (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0),     # several tiles per axis
    ((3, 2, 5, 6), "4x4", (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),       # narrow: direct kernel
    ((1, 1, 20, 128), "4x4", (1, 1), (2, 2), (1, 1, 1, 1), False, 1.0),    # output exactly 64 wide: every
    ((1, 1, 10, 32), "4x4", (2, 2), (1, 1), (2, 1, 2, 1), False, 4.0),     # tile column is used
]


@pytest.mark.parametrize("case", UPFIRDN_CASES, ids=lambda c: f"{c[1]}-up{c[2][0]}{c[2][1]}-down{c[3][0]}{c[3][1]}")
@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_upfirdn2d_matches_ref(emu, case, layout):
    shape, kind, up, down, pad, flip, gain = case
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    f = filt(kind)
    want = ref.upfirdn2d(x, f, up, down, pad, flip, gain)
    xin = nan_framed(x) if layout == "nchw" else x.contiguous(memory_format=torch.channels_last)
    got = emu.upfirdn2d(xin, f, up, down, pad, flip, gain)
    close(got, want, torch.float64, f"upfirdn2d {case} {layout}")
    if layout == "channels_last":
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", [UPFIRDN_CASES[1], UPFIRDN_CASES[2], UPFIRDN_CASES[4], UPFIRDN_CASES[6]],
                         ids=["up2", "down2", "sep-down2", "generic"])
def test_upfirdn2d_low_precision(emu, case, dtype):
    shape, kind, up, down, pad, flip, gain = case
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2)).to(dtype)
    f = filt(kind)
    want = ref.upfirdn2d(x.double(), f, up, down, pad, flip, gain)
    got = emu.upfirdn2d(nan_framed(x), f, up, down, pad, flip, gain)
    assert got.dtype == dtype
    # The separable path rounds its intermediate to x's dtype, like the ref's two convolutions.
    close(got, want, dtype, f"upfirdn2d {case} {dtype}")


def test_upfirdn2d_dispatch(emu):
    """NCHW rows use the shared-memory tiled kernel; channels_last, narrow outputs and huge filters go direct."""
    f = filt("4x4")
    x = torch.randn(1, 2, 20, 40)
    emu.upfirdn2d(x, f, (2, 2), (1, 1), (2, 1, 2, 1), False, 1.0)
    tiled = emu.last_launch()
    assert tiled["smem"] > 0 and tiled["block"][0] * tiled["block"][1] == 256
    emu.upfirdn2d(x.contiguous(memory_format=torch.channels_last), f, (2, 2), (1, 1), (2, 1, 2, 1), False, 1.0)
    assert emu.last_launch()["smem"] == 0
    emu.upfirdn2d(x[:, :, :, :6], f, (1, 1), (1, 1), (2, 1, 2, 1), False, 1.0)
    assert emu.last_launch()["smem"] == 0
    big = torch.randn(80, 80, dtype=torch.float64)  # 51 KB of double taps: over the shared-memory limit
    xd = torch.randn(1, 1, 85, 90, dtype=torch.float64)
    got = emu.upfirdn2d(xd, big, (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0)
    assert emu.last_launch()["smem"] == 0
    close(got, ref.upfirdn2d(xd, big, (1, 1), (1, 1), (0, 0, 0, 0), False, 1.0), torch.float64, "80x80 filter")


@pytest.mark.parametrize("up,down,kind", [((2, 2), (1, 1), "4x4"), ((1, 1), (2, 2), "sep12"), ((3, 1), (1, 2), "5x3")])
def test_upfirdn2d_autograd_gradcheck(cuda_glue, up, down, kind):
    """Through the operator's registered autograd on the cuda glue: first and second order, float64."""
    f = filt(kind)
    fw, fh = (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])
    pad = [fw // 2, (fw - 1) // 2 + up[0] - 1, fh // 2, (fh - 1) // 2 + up[1] - 1]
    x = torch.randn(1, 1, 5, 6, dtype=torch.float64, requires_grad=True)

    def fn(t):
        return UPFIRDN2D(t, f, list(up), list(down), pad, False, 2.0, backend="cuda")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ---------------------------------------------------------------------------------------------------
# bias_act

def ref_grads(x, b, dim, act, alpha, gain, clamp, dy, g):
    """y, (dx, db) and the second-order d_x of the ref, by torch autograd, in float64."""
    xr = x.detach().double().requires_grad_(True)
    br = None if b is None else b.detach().double().requires_grad_(True)
    y = ref.bias_act(xr, br, dim, act, alpha, gain, clamp)
    inputs = [xr] if br is None else [xr, br]
    grads = torch.autograd.grad(y, inputs, dy.double(), create_graph=True)
    dx = grads[0]
    db = grads[1] if br is not None else None
    d_x = None
    if dx.requires_grad:  # linear: dx = dy * gain does not depend on x
        (d_x,) = torch.autograd.grad(dx, xr, g.double(), allow_unused=True)
    return y.detach(), dx.detach(), (None if db is None else db.detach()), (torch.zeros_like(xr) if d_x is None else d_x)


def bias_input(shape, dim, dtype, seed=3):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=gen) * 2).to(dtype)
    b = torch.randn(shape[dim], generator=gen).to(dtype)
    # Put some pre-activations exactly on the kinks (x + b == 0) to pin the derivative conventions.
    flat = x.view(-1) if x.is_contiguous() else None
    if flat is not None:
        idx = torch.arange(0, flat.numel(), 7)
        bshape = [1] * x.ndim
        bshape[dim] = -1
        flat[idx] = (-b.reshape(bshape).expand(shape)).reshape(-1)[idx]
    return x, b


@pytest.mark.parametrize("act", list(ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.6])
def test_bias_act_all_orders_float64(emu, act, clamp):
    shape, dim = (2, 5, 3, 7), 1
    x, b = bias_input(shape, dim, torch.float64)
    gen = torch.Generator().manual_seed(4)
    dy, g = torch.randn(shape, generator=gen, dtype=torch.float64), torch.randn(shape, generator=gen, dtype=torch.float64)
    alpha, gain = 0.2 if act == "lrelu" else 0.0, ACTIVATIONS[act].def_gain
    y, dx, db, d_x = ref_grads(x, b, dim, act, alpha, gain, clamp, dy, g)
    close(emu.bias_act(x, b, dim, act, alpha, gain, clamp), y, torch.float64, f"{act} forward")
    got_dx, got_db = emu.bias_act_grad(dy, x, b, dim, act, alpha, gain, clamp)
    close(got_dx, dx, torch.float64, f"{act} dx")
    close(got_db, db, torch.float64, f"{act} db")
    close(emu.bias_act_grad2(g, dy, x, b, dim, act, alpha, gain, clamp), d_x, torch.float64, f"{act} d_x")


def test_softplus_threshold_and_saturation(emu):
    """softplus is linear above 20 (second derivative zero from 20 on); sigmoid/tanh saturate without NaN."""
    x = torch.tensor([-80.0, -30.0, -1.0, 0.0, 19.5, 20.0, 20.5, 30.0, 80.0], dtype=torch.float64).reshape(1, 9)
    dy, g = torch.ones_like(x), torch.full_like(x, 0.5)
    for act in ("softplus", "sigmoid", "tanh", "swish", "elu", "selu"):
        y, dx, _, d_x = ref_grads(x, None, 1, act, 0.0, 1.0, None, dy, g)
        close(emu.bias_act(x, None, 1, act, 0.0, 1.0, None), y, torch.float64, f"{act} forward")
        close(emu.bias_act_grad(dy, x, None, 1, act, 0.0, 1.0, None)[0], dx, torch.float64, f"{act} dx")
        close(emu.bias_act_grad2(g, dy, x, None, 1, act, 0.0, 1.0, None), d_x, torch.float64, f"{act} d_x")


# (shape, dim, layout): covers every db reduction path: rows (inner >= 32), columns with inner > 1,
# columns with inner == 1 (channels_last / last dim), a size-1 bias dim, and a tail after the packs.
LAYOUTS = [((2, 6, 8, 5), 1, "nchw"),              # inner 40: warp-per-row reduction
           ((3, 6, 2, 3), 1, "nchw"),              # inner 6: column reduction, several columns per channel
           ((2, 6, 4, 5), 1, "channels_last"),     # inner 1
           ((4, 3, 5), 2, "nchw"),                 # bias along the last dim
           ((3, 1, 4, 9), 1, "nchw"),              # size-1 bias dim
           ((5, 37, 3), 0, "nchw"),                # inner 111, numel 555: odd tail for every pack width
           ((33,), 0, "nchw")]                     # 1-D


@pytest.mark.parametrize("shape,dim,layout", LAYOUTS, ids=[f"{s}-d{d}-{l}" for s, d, l in LAYOUTS])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_bias_act_layouts_and_dtypes(emu, shape, dim, layout, dtype):
    x, b = bias_input(shape, dim, dtype, seed=5)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(6)
    dy = torch.randn(shape, generator=gen).to(dtype)  # contiguous: the glue copies it to x's strides
    act, clamp = "lrelu", 1.5
    y, dx, db, _ = ref_grads(x, b, dim, act, 0.2, math.sqrt(2), clamp, dy, torch.zeros_like(dy))
    got = emu.bias_act(x, b, dim, act, 0.2, math.sqrt(2), clamp)
    assert got.dtype == dtype and got.stride() == x.stride()
    close(got, y, dtype, "forward")
    got_dx, got_db = emu.bias_act_grad(dy, x, b, dim, act, 0.2, math.sqrt(2), clamp)
    close(got_dx, dx, dtype, "dx")
    assert got_db.dtype == dtype
    # db sums many rounded terms in low precision on the ref side too: compare with a looser scale.
    close(got_db, db, dtype if dtype == torch.float64 else torch.bfloat16, "db")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_bias_act_unaligned_scalar_path(emu, dtype):
    """A tensor whose data does not start on 16 bytes takes the element-wise kernel; same results."""
    buf = torch.randn(1 + 3 * 5 * 7, dtype=dtype)
    x = buf[1:].view(3, 5, 7)
    b = torch.randn(5, dtype=dtype)
    assert x.data_ptr() % 16 != 0
    y_unaligned = emu.bias_act(x, b, 1, "swish", 0.0, 1.0, None)
    y_aligned = emu.bias_act(x.clone(), b, 1, "swish", 0.0, 1.0, None)
    assert torch.equal(y_unaligned, y_aligned)
    close(y_unaligned, ref.bias_act(x.double(), b.double(), 1, "swish", 0.0, 1.0, None), dtype, "unaligned")


@pytest.mark.parametrize("act,clamp", [("swish", None), ("elu", 0.8), ("lrelu", 0.5), ("tanh", None),
                                       ("linear", 0.6), ("relu", None)])
def test_bias_act_autograd_gradgradcheck(cuda_glue, act, clamp):
    """Through the operator's registered autograd on the cuda glue (R1 needs the second order), float64.

    lrelu, relu and clamped linear take the gradient from the saved output (PyTorch ops in the glue).
    """
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 2, 2, dtype=torch.float64, generator=gen).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, generator=gen).requires_grad_(True)
    spec = ACTIVATIONS[act]

    def fn(t, bias):
        return ba.BIAS_ACT(t, bias, 1, act, spec.def_alpha, spec.def_gain, clamp, backend="cuda")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("from_output", [False, True])
def test_bias_act_cuda_glue_deterministic_db(cuda_glue, from_output):
    """Under deterministic algorithms db is summed from dx by a fixed-order reduction, not the atomic kernel."""
    x, b = bias_input((3, 6, 4, 5), 1, torch.float32, seed=12)
    dy = torch.randn(x.shape, generator=torch.Generator().manual_seed(13))
    saved = ref.bias_act(x, b, 1, "lrelu", 0.2, math.sqrt(2), 1.5) if from_output else x
    args = (dy, saved, b, 1, "lrelu", 0.2, math.sqrt(2), 1.5, from_output)
    dx, db = cuda_glue.bias_act_grad(*args)
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        dx_det, db_det = cuda_glue.bias_act_grad(*args)
        fixed_order = ba.channel_sum(dx, 1, torch.float32)
    finally:
        torch.use_deterministic_algorithms(prev)
    assert torch.equal(dx, dx_det)
    assert torch.equal(db_det, fixed_order)
    close(db_det, db, torch.float32, "deterministic db")


# ---------------------------------------------------------------------------------------------------
# filtered_lrelu: the fused primitive through the operators' registered autograd on the cuda glue

# (x shape, fu, fd, up, down, padding (x0, x1, y0, y1), clamp)
FLR_CASES = [
    ((2, 3, 10, 12), "sep12", "sep12", 2, 2, (11, 10, 11, 10), 0.3),   # StyleGAN3-like, clamped
    ((1, 2, 9, 11), "sep12", "sep12", 2, 2, (11, 10, 11, 10), None),
    ((2, 2, 8, 10), "4x4", "9x9", 1, 1, (6, 5, 5, 6), None),           # 2-D filters, no resampling
    ((1, 2, 7, 9), "5x3", "4x4", 4, 2, (5, 3, 2, 6), 0.5),             # asymmetric, up 4
    ((1, 3, 12, 11), "sep7", "5x3", 1, 3, (-1, 4, 2, 2), None),        # down 3, a crop
    ((1, 1, 40, 45), "4x4", "sep7", 2, 1, (3, 2, 3, 2), None),         # several tiles per axis
]


def corr(f: torch.Tensor) -> torch.Tensor:
    """Taps in correlation order, as fastgan.ops.filtered_lrelu passes them (flip_filter=False)."""
    return f.flip(list(range(f.ndim))).contiguous()


def flr_op(x, b, case, gain=1.4, slope=0.2, write_signs=True):
    """(y, signs) of ``fastgan::filtered_lrelu`` on the cuda glue (``gain`` as the public op takes it)."""
    _, kfu, kfd, up, down, pad, clamp = case
    return flr.FILTERED_LRELU(x, b, corr(filt(kfu)), corr(filt(kfd)), up, down, list(pad), gain * up * up, slope,
                              clamp, write_signs, backend="cuda")


def run_flr(x, b, case):
    _, kfu, kfd, up, down, pad, clamp = case
    got, _ = flr_op(x, b, case)
    want = ref_filtered_lrelu(x.double(), filt(kfu), filt(kfd), None if b is None else b.double(), up, down, pad, 1.4,
                              0.2, clamp, False)
    return got, want


@pytest.mark.parametrize("case", FLR_CASES, ids=lambda c: f"{c[1]}-{c[2]}-up{c[3]}-down{c[4]}-clamp{c[6]}")
def test_filtered_lrelu_matches_ref(cuda_glue, case):
    gen = torch.Generator().manual_seed(8)
    x = nan_framed(torch.randn(case[0], generator=gen, dtype=torch.float64)).requires_grad_(True)
    b = torch.randn(case[0][1], generator=gen, dtype=torch.float64).requires_grad_(True)
    got, want = run_flr(x, b, case)
    close(got, want, torch.float64, "forward")
    dy = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    got_dx, got_db = torch.autograd.grad(got, [x, b], dy)
    want_dx, want_db = torch.autograd.grad(want, [x, b], dy)
    close(got_dx, want_dx, torch.float64, "dx")
    close(got_db, want_db, torch.float64, "db")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_filtered_lrelu_low_precision(cuda_glue, dtype):
    x = torch.randn(1, 2, 9, 11, generator=torch.Generator().manual_seed(9)).to(dtype)
    b = torch.randn(2).to(dtype)
    got, want = run_flr(x, b, FLR_CASES[0])
    assert got.dtype == dtype
    close(got, want, dtype, f"filtered_lrelu {dtype}")


@pytest.mark.parametrize("case", [FLR_CASES[0], FLR_CASES[3]], ids=["sg3", "up4-down2"])
def test_filtered_lrelu_gradgradcheck(cuda_glue, case):
    x = torch.randn(1, 1, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(10)).requires_grad_(True)

    def fn(t):
        return flr_op(t, None, case)[0]

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_filtered_lrelu_sign_codes(cuda_glue):
    """The stored 2-bit codes (bit 0: u <= 0, bit 1: clamped; 4 per byte) match the ref intermediate.

    With down 1 and no output padding every intermediate value is read, so every code is written.
    """
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 2, 9, 10, generator=gen, dtype=torch.float64)
    b = torch.randn(2, generator=gen, dtype=torch.float64)
    up, pad, gain, slope, clamp = 2, (3, 1, 2, 2), 1.4, 0.2, 0.4
    case = (x.shape, "5x3", "4x4", up, 1, pad, clamp)
    y, signs = flr_op(x, b, case, gain, slope)
    u = ref.upfirdn2d(x + b.reshape(1, -1, 1, 1), corr(filt("5x3")), (up, up), (1, 1), pad, True, 1.0)
    s = torch.where(u > 0, u, u * slope) * gain * up * up
    codes = (u <= 0).to(torch.uint8) | ((s.abs() > clamp).to(torch.uint8) << 1)
    mid_w = codes.shape[3]
    codes = torch.nn.functional.pad(codes, (0, (-mid_w) % 4)).reshape(*codes.shape[:3], -1, 4)
    packed = (codes[..., 0] | codes[..., 1] << 2 | codes[..., 2] << 4 | codes[..., 3] << 6).to(torch.uint8)
    assert signs.dtype == torch.uint8 and signs.shape == packed.shape
    assert torch.equal(signs, packed)
    assert (codes == 2).any() and (codes == 3).any() and (codes == 1).any()  # every code occurs
    # Without clamping the masked op (the linearisation at the stored codes) reproduces the forward.
    y, signs = flr_op(x, b, case[:-1] + (None,), gain, slope)
    masked = flr.FILTERED_LRELU_MASKED(x + b.reshape(1, -1, 1, 1), signs, corr(filt("5x3")), corr(filt("4x4")), up, 1,
                                       list(pad), [0, 0, 0, 0], gain * up * up, slope, backend="cuda")
    close(masked, y, torch.float64, "masked")
