"""The triton backend against ref and the golden data: compiled kernels on CUDA tensors on a GPU host,
Triton's interpreter on CPU tensors elsewhere (``tests/conftest.py`` sets ``TRITON_INTERPRET=1`` there).

Some tests shrink the kernels' tiles to get many tiles per plane on small images; the tile sizes a GPU
uses are exercised by ``tests/test_triton_kernels.py``.
"""
import importlib
import itertools
import math
import sys

import pytest

pytest.importorskip("triton", reason="triton is not installed (pip install 'fastgan[triton]')")

import torch  # noqa: E402

import fastgan.ops as ops  # noqa: E402
from fastgan import backends  # noqa: E402
from fastgan.backends.activations import ACTIVATIONS  # noqa: E402
from golden import case_ids, check_case, op_cases, require_golden  # noqa: E402
from triton_host import DEVICE, require_triton  # noqa: E402

pytestmark = [pytest.mark.triton, pytest.mark.gpu]


@pytest.fixture(scope="module", autouse=True)
def _triton():
    require_triton()


T = "triton"
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5),
       torch.float16: dict(rtol=1e-2, atol=1e-2), torch.bfloat16: dict(rtol=2e-2, atol=5e-2)}


def _close(actual, expected, dtype, what=""):
    assert actual.dtype == expected.dtype, what
    assert actual.shape == expected.shape, what
    torch.testing.assert_close(actual.double(), expected.double(), **TOL[dtype], msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------------------- upfirdn2d
# (x shape, filter shape, up, down, padding, flip_filter, gain)
UPF_CASES = [
    ((2, 3, 7, 5), (4, 4), 1, 1, 0, False, 1.0),
    ((1, 2, 5, 9), (3, 5), 1, 1, [2, -1, 1, 0], True, 0.7),
    ((2, 2, 6, 5), (4,), 2, 1, [2, 1], False, 4.0),               # separable upsample
    ((1, 3, 5, 7), (4, 4), 2, 1, [-1, 2, 1, -2], False, 1.0),     # negative padding crops
    ((2, 1, 9, 6), (4,), 1, 2, [1, 1, 1, 1], True, 1.0),          # separable downsample
    ((1, 2, 8, 7), (3, 3), 1, 2, [0, -1, 2, 0], False, 1.3),
    ((1, 2, 4, 5), (8,), 4, 1, [4, 3], False, 16.0),
    ((1, 1, 13, 11), (5, 5), 1, 4, [2, 1, 0, 3], False, 1.0),
    ((1, 2, 5, 6), (4, 3), [2, 4], [1, 2], [1, 0, 3, 2], True, 2.0),  # anisotropic up and down
    ((2, 1, 6, 7), (6,), [4, 1], [1, 4], [3, 2, 1, 1], False, 1.0),
    ((1, 2, 6, 5), (4,), 2, 2, [1, 2], False, 1.0),
    ((1, 1, 5, 6), (4, 4), 4, 2, [-2, 1, 0, -3], True, 1.0),
    ((1, 1, 3, 4), (1,), 3, 2, 0, False, 1.0),                    # up and down not dividing each other
    ((1, 2, 1, 1), (1, 1), 1, 1, 0, False, 2.0),
]


def _upf_inputs(case, dtype=torch.float64, seed=0):
    shape, fshape, up, down, pad, flip, gain = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    f = (torch.rand(fshape, generator=g, dtype=torch.float32) + 0.1).to(DEVICE)
    return x, f, dict(up=up, down=down, padding=pad, flip_filter=flip, gain=gain)


@pytest.mark.parametrize("case", UPF_CASES, ids=[f"u{i}" for i in range(len(UPF_CASES))])
def test_upfirdn2d_matches_ref(case):
    x, f, kw = _upf_inputs(case)
    _close(ops.upfirdn2d(x, f, impl=T, **kw), ops.upfirdn2d(x, f, impl="ref", **kw), torch.float64, str(case))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_upfirdn2d_reduced_precision(dtype):
    for case in (UPF_CASES[3], UPF_CASES[9]):
        x, f, kw = _upf_inputs(case, dtype)
        want = ops.upfirdn2d(x.double(), f, impl="ref", **kw).to(dtype)
        _close(ops.upfirdn2d(x, f, impl=T, **kw), want, dtype, str(case))


@pytest.mark.parametrize("fshape", [(4, 4), (4,)])
def test_upfirdn2d_layouts(fshape):
    case = ((2, 5, 7, 6), fshape, 2, [1, 2], [1, 2, 0, 1], False, 1.0)
    x, f, kw = _upf_inputs(case)
    want = ops.upfirdn2d(x, f, impl="ref", **kw)
    xl = x.to(memory_format=torch.channels_last)
    y = ops.upfirdn2d(xl, f, impl=T, **kw)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    _close(y, want, torch.float64, "channels_last")
    big = torch.randn(2, 10, 9, 15, dtype=torch.float64, device=DEVICE)
    xs = big[:, ::2, 1:8, ::2]  # strided view: no dense layout at all
    y = ops.upfirdn2d(xs, f, impl=T, **kw)
    assert y.is_contiguous()
    _close(y, ops.upfirdn2d(xs.contiguous(), f, impl="ref", **kw), torch.float64, "strided view")
    yt = ops.upfirdn2d(x.transpose(2, 3), f, impl=T, **kw)
    _close(yt, ops.upfirdn2d(x.transpose(2, 3).contiguous(), f, impl="ref", **kw), torch.float64, "transposed")


def _kernels():
    return importlib.import_module("fastgan.backends.triton.upfirdn2d")  # the package re-exports the function


@pytest.mark.parametrize("channels_last", [False, True])
def test_upfirdn2d_many_small_tiles(monkeypatch, channels_last):
    """Tiles much smaller than the image (as on a GPU): unmasked interior tiles, edge tiles, several per plane."""
    monkeypatch.setattr(_kernels(), "_TILE", 64)
    monkeypatch.setattr(_kernels(), "_MAX_BW", 8)
    for case in (((1, 1, 18, 20), (4, 4), 2, 1, [2, 1, 2, 1], False, 1.0),
                 ((1, 3, 19, 11), (5,), 1, 2, [2, 2, 1, 3], True, 1.0)):
        x, f, kw = _upf_inputs(case)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        _close(ops.upfirdn2d(x, f, impl=T, **kw), ops.upfirdn2d(x, f, impl="ref", **kw), torch.float64, str(case))


def test_inner_tiles_match_brute_force():
    """The tiles run without masks are exactly those whose outputs exist and whose reads stay inside x."""
    inner = _kernels()._inner_tiles
    count = 0
    for n_in, pad0, up, down, taps, block in itertools.product((1, 5, 16), (-3, 0, 2, 7), (1, 2, 4), (1, 2, 4),
                                                               (1, 2, 3), (1, 2, 4)):
        f = up * taps - (up > 1)  # a filter length with ceil(f / up) == taps
        n_out = (n_in * up + 2 * pad0 - f + down) // down
        if n_out < 1:
            continue
        p = up // math.gcd(up, down)
        good = []
        for t in range(-(-n_out // block) + 1):
            ok = True
            for i in range(t * block, t * block + block):
                for r in range(p):
                    o = r + p * i
                    k0 = (pad0 - o * down) % up
                    first = (o * down - pad0 + k0) // up
                    ok &= o < n_out and first >= 0 and first + taps - 1 < n_in
            good.append(ok)
        lo, hi = inner(n_in, n_out, pad0, up, down, taps, block)
        assert good == [lo <= t <= hi for t in range(len(good))], (n_in, pad0, up, down, taps, block)
        count += any(good)
    assert count > 50


def _upf_grads(impl, x, f, g, kw):
    """y, dx and the R1 gradients w.r.t. x and the upstream gradient g."""
    x = x.detach().requires_grad_(True)
    g = g.detach().requires_grad_(True)
    y = ops.upfirdn2d(x, f, impl=impl, **kw)
    (dx,) = torch.autograd.grad((y * g).sum(), x, create_graph=True)
    (dg,) = torch.autograd.grad((dx ** 2).sum(), g)
    return y, dx, dg


@pytest.mark.parametrize("case", [UPF_CASES[1], UPF_CASES[6], UPF_CASES[9], UPF_CASES[11]],
                         ids=["2d", "sep_up4", "aniso", "up4down2"])
def test_upfirdn2d_gradients_match_ref(case):
    x, f, kw = _upf_inputs(case)
    g = torch.randn_like(ops.upfirdn2d(x, f, impl="ref", **kw))
    for name, a, b in zip(("y", "dx", "d(R1)/dg"), _upf_grads(T, x, f, g, kw), _upf_grads("ref", x, f, g, kw)):
        _close(a, b, torch.float64, f"{case} {name}")


def test_upfirdn2d_gradcheck():
    x = torch.randn(1, 1, 2, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    f = torch.tensor([[1.0, 2.0], [0.5, -1.0]], device=DEVICE)
    assert torch.autograd.gradcheck(lambda t: ops.upfirdn2d(t, f, up=2, down=[1, 2], padding=[1, 0, 0, 1],
                                                            impl=T), (x,))


# ----------------------------------------------------------------------------------------------- bias_act
def _ba_inputs(shape, dim, dtype=torch.float64, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = (2 * torch.randn(shape, generator=g, dtype=torch.float64)).to(DEVICE, dtype)
    b = torch.randn(shape[dim], generator=g, dtype=torch.float64).to(DEVICE, dtype) if bias else None
    return x, b


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_bias_act_forward_matches_ref(act):
    for shape, dim, clamp, bias in [((2, 5, 3, 4), 1, None, True), ((3, 6), 0, 1.1, True),
                                    ((2, 3, 4, 5), 3, 0.6, False), ((7,), 0, None, True)]:
        x, b = _ba_inputs(shape, dim, bias=bias)
        kw = dict(dim=dim, act=act, alpha=0.3, gain=1.3, clamp=clamp)
        _close(ops.bias_act(x, b, impl=T, **kw), ops.bias_act(x, b, impl="ref", **kw), torch.float64, f"{shape}")


def test_bias_act_extreme_inputs():
    """Large |z| and z at the kinks: no overflow, NaN or cancellation in any activation."""
    x = torch.tensor([-1e4, -100.0, -30.0, -20.0, -1e-6, -1e-30, 0.0, 1e-30, 1e-6, 20.0, 20.5, 100.0, 1e4],
                     dtype=torch.float64, device=DEVICE)
    for act in ACTIVATIONS:
        for dtype in (torch.float64, torch.float32):
            xd = x.to(dtype)
            y = ops.bias_act(xd, None, dim=0, act=act, gain=1.0, impl=T)
            want = ops.bias_act(xd.double(), None, dim=0, act=act, gain=1.0, impl="ref")
            torch.testing.assert_close(y.double(), want, rtol=1e-6 if dtype == torch.float32 else 1e-14, atol=1e-30,
                                       msg=lambda m: f"{act} {dtype}: {m}")


def _ba_grads(impl, x, b, g, kw):
    """y, dx, db and the R1 gradients w.r.t. x, b and g (zeros where autograd found no dependence)."""
    leaves = [t.detach().requires_grad_(True) for t in (x, b, g)]
    x, b, g = leaves
    y = ops.bias_act(x, b, impl=impl, **kw)
    dx, db = torch.autograd.grad((y * g).sum(), [x, b], create_graph=True)
    r = (dx ** 2).sum() + (db ** 2).sum()
    second = torch.autograd.grad(r, leaves, allow_unused=True)
    return [y, dx, db] + [torch.zeros_like(t) if s is None else s for s, t in zip(second, leaves)]


@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_bias_act_gradients_match_ref(act):
    for shape, dim, clamp in [((2, 4, 3, 5), 1, 0.8), ((5, 3), 0, None)]:
        x, b = _ba_inputs(shape, dim, seed=1)
        g = torch.randn(shape, dtype=torch.float64, device=DEVICE)
        kw = dict(dim=dim, act=act, alpha=0.25, gain=1.5, clamp=clamp)
        names = ("y", "dx", "db", "r1_x", "r1_b", "r1_g")
        for name, a, e in zip(names, _ba_grads(T, x, b, g, kw), _ba_grads("ref", x, b, g, kw)):
            _close(a, e, torch.float64, f"{act} {shape} {name}")


def test_bias_act_layouts():
    x, b = _ba_inputs((2, 6, 5, 3), 1)
    kw = dict(act="swish", clamp=1.0)
    want = ops.bias_act(x, b, impl="ref", **kw)
    y = ops.bias_act(x.to(memory_format=torch.channels_last), b, impl=T, **kw)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    _close(y, want, torch.float64, "channels_last")
    for dim in range(4):  # bias along every dim of a permuted (dense, non-contiguous) tensor
        xp = x.permute(3, 1, 0, 2)
        bp = torch.randn(xp.shape[dim], dtype=torch.float64, device=DEVICE)
        want = ops.bias_act(xp.contiguous(), bp, dim=dim, impl="ref", **kw)
        _close(ops.bias_act(xp, bp, dim=dim, impl=T, **kw), want, torch.float64, f"permuted dim={dim}")
    xs = x[:, ::2, :, 1:]  # not dense
    _close(ops.bias_act(xs, b[::2], impl=T, **kw), ops.bias_act(xs, b[::2], impl="ref", **kw), torch.float64, "view")
    # dy from .sum() is an expanded (stride-0) tensor
    xl = x.to(memory_format=torch.channels_last).requires_grad_(True)
    (dx,) = torch.autograd.grad(ops.bias_act(xl, b, impl=T, **kw).sum(), xl)
    xr = x.clone().requires_grad_(True)
    (dxr,) = torch.autograd.grad(ops.bias_act(xr, b, impl="ref", **kw).sum(), xr)
    _close(dx, dxr, torch.float64, "grad of sum")


def test_bias_act_many_small_tiles(monkeypatch):
    """Blocks smaller than every axis of the [outer, C, inner] view: tiles split along all three."""
    monkeypatch.setattr(importlib.import_module("fastgan.backends.triton.bias_act"), "_BLOCK", 8)
    x, b = _ba_inputs((3, 5, 2, 3), 1)
    for xx in (x, x.to(memory_format=torch.channels_last)):
        for dim, kw in ((1, dict(act="selu", clamp=1.5)), (2, dict(act="lrelu"))):
            bb = torch.linspace(-1, 1, x.shape[dim], dtype=torch.float64, device=DEVICE)
            _close(ops.bias_act(xx, bb, dim=dim, impl=T, **kw), ops.bias_act(x, bb, dim=dim, impl="ref", **kw),
                   torch.float64, f"dim={dim} {kw}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bias_act_reduced_precision(dtype):
    x, b = _ba_inputs((2, 5, 3, 4), 1, dtype=dtype)
    for act in ("lrelu", "softplus", "tanh"):
        kw = dict(act=act, clamp=2.5)
        want = ops.bias_act(x.double(), b.double(), impl="ref", **kw).to(dtype)
        _close(ops.bias_act(x, b, impl=T, **kw), want, dtype, act)
        xg = x.detach().requires_grad_(True)
        bg = b.detach().requires_grad_(True)
        dx, db = torch.autograd.grad(ops.bias_act(xg, bg, impl=T, **kw).sum(), [xg, bg])
        xr = x.double().requires_grad_(True)
        br = b.double().requires_grad_(True)
        dxr, dbr = torch.autograd.grad(ops.bias_act(xr, br, impl="ref", **kw).sum(), [xr, br])
        _close(dx, dxr.to(dtype), dtype, f"{act} dx")
        torch.testing.assert_close(db.double(), dbr, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * 20)


def test_bias_act_gradgradcheck():
    x, b = _ba_inputs((2, 2), 1)
    x.requires_grad_(True)
    b.requires_grad_(True)
    fn = lambda t, c: ops.bias_act(t, c, act="softplus", gain=1.2, clamp=3.0, impl=T)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


# ------------------------------------------------------------------------------------------------ golden
_UPF_FNS = {"upfirdn2d": ops.upfirdn2d, "upsample2d": ops.upsample2d,
            "downsample2d": ops.downsample2d, "filter2d": ops.filter2d}
# Every case with second-order data plus a few others (the interpreter is slow).
UPF_GOLDEN = [c for i, c in enumerate(op_cases("upfirdn2d")) if c.get("second_order") or i in (17, 37, 47)]
BA_GOLDEN = op_cases("bias_act")[::2]


def _on_device(fn):
    """``fn`` for the golden data's CPU tensors: inputs moved to DEVICE, the output moved back (autograd follows)."""
    def call(**inputs):
        return fn(**{k: None if v is None else v.to(DEVICE) for k, v in inputs.items()}).cpu()
    return call


@pytest.mark.parametrize("case", UPF_GOLDEN, ids=case_ids(UPF_GOLDEN))
def test_upfirdn2d_golden(case):
    require_golden()
    fn = _UPF_FNS[case["fn"].rsplit(".", 1)[1]]
    kw = {k: v for k, v in case["kwargs"].items() if k != "impl"}
    check_case("upfirdn2d", case, _on_device(lambda x, f: fn(x, f, impl=T, **kw)), dtype=torch.float32,
               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", BA_GOLDEN, ids=[f"{c['id']}-{c['kwargs']['act']}" for c in BA_GOLDEN])
def test_bias_act_golden(case):
    require_golden()
    kw = {k: v for k, v in case["kwargs"].items() if k != "impl"}
    check_case("bias_act", case, _on_device(lambda x, b=None: ops.bias_act(x, b, impl=T, **kw)), dtype=torch.float32,
               rtol=1e-5, atol=1e-5)


def test_int64_indexing_path(monkeypatch):
    """The int64-offset variants (used for tensors past 2**31 elements) compute the same values."""
    from fastgan.backends.triton import _util
    monkeypatch.setattr(_util, "INT32_LIMIT", 1)
    for case in (UPF_CASES[4], UPF_CASES[8]):
        x, f, kw = _upf_inputs(case)
        _close(ops.upfirdn2d(x, f, impl=T, **kw), ops.upfirdn2d(x, f, impl="ref", **kw), torch.float64, str(case))
    x, b = _ba_inputs((2, 3, 4), 1)
    _close(ops.bias_act(x, b, act="elu", impl=T), ops.bias_act(x, b, act="elu", impl="ref"), torch.float64, "bias_act")


# -------------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise_before_the_kernel():
    x = torch.randn(1, 2, 4, 4, device=DEVICE)
    f = torch.ones(3, 3, device=DEVICE)
    with pytest.raises(TypeError, match="x must be float16"):
        ops.upfirdn2d(x.to(torch.int32), f, impl=T)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        ops.upfirdn2d(x[0], f, impl=T)
    with pytest.raises(ValueError, match="must not require grad"):
        ops.upfirdn2d(x, f.clone().requires_grad_(True), impl=T)
    with pytest.raises(ValueError, match="empty output"):
        ops.upfirdn2d(x, f, padding=-2, impl=T)
    with pytest.raises(ValueError, match="up must be >= 1"):
        ops.upfirdn2d(x, f, up=0, impl=T)
    with pytest.raises(ValueError, match="b must have x.shape"):
        ops.bias_act(x, torch.zeros(3, device=DEVICE), impl=T)
    with pytest.raises(ValueError, match="act must be one of"):
        ops.bias_act(x, None, act="gelu", impl=T)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(backends.BackendUnavailable, match="TRITON_INTERPRET=1"):
        backends.resolve(T, torch.zeros(1), "upfirdn2d")


def test_missing_triton_is_a_clear_import_error(monkeypatch):
    for name in [m for m in sys.modules if m == "fastgan.backends.triton" or m.startswith("fastgan.backends.triton.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "triton", None)  # makes ``import triton`` raise ImportError
    with pytest.raises(ImportError, match=r"needs the triton package: pip install 'fastgan\[triton\]'"):
        import fastgan.backends.triton  # noqa: F401
