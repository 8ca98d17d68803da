"""The ``cpu`` backend (fastgan._C) against the ``ref`` backend: values, gradients, layouts, errors."""
import math
import random

import pytest
import torch

import fastgan.ops as ops
from fastgan import backends
from fastgan.backends import ref
from fastgan.backends.activations import ACTIVATIONS

pytestmark = pytest.mark.cpu_ext

if not backends.available("cpu"):
    pytest.skip("fastgan._C is not built (pip install --no-build-isolation -e .)", allow_module_level=True)

from fastgan import _C  # noqa: E402
from fastgan.backends import cpu  # noqa: E402
from cpu_isa import runnable_isa_levels  # noqa: E402

CL = torch.channels_last
LEVELS = runnable_isa_levels()


@pytest.fixture(params=LEVELS)
def isa_level(request):
    """Run a test on every SIMD level this CPU can execute."""
    prev = _C.set_isa(request.param)
    try:
        yield request.param
    finally:
        _C.set_isa(prev)


def _close(actual, expected, tol, what=""):
    assert actual.shape == expected.shape, f"{what}: shape {list(actual.shape)} != {list(expected.shape)}"
    a, e = actual.detach().double(), expected.detach().double()
    scale = max(float(e.abs().max()) if e.numel() else 0.0, 1.0)
    err = float((a - e).abs().max()) if e.numel() else 0.0
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol:.1g} * {scale:.3g}"


# ---------------------------------------------------------------------------------------------
# upfirdn2d
# ---------------------------------------------------------------------------------------------

def _random_upf_case(rng: random.Random):
    """A random valid upfirdn2d configuration (ref must be able to run it too)."""
    while True:
        h, w = rng.choice([1, 2, 3, 5, 8, 11]), rng.choice([1, 2, 4, 7, 9, 13])
        up = (rng.randint(1, 4), rng.randint(1, 4))
        down = (rng.randint(1, 4), rng.randint(1, 4))
        kind = rng.choice(["1d", "2d", "rank1"])
        if kind == "1d":
            f = torch.randn(rng.randint(1, 8))
        elif kind == "2d":
            f = torch.randn(rng.randint(1, 6), rng.randint(1, 6))
        else:
            f = torch.outer(torch.randn(rng.randint(1, 5)), torch.randn(rng.randint(1, 5)))
        fw, fh = f.shape[-1], f.shape[0]
        pad = tuple(rng.randint(-4, 9) for _ in range(4))
        if min(w * up[0] + min(pad[0], 0) + min(pad[1], 0), h * up[1] + min(pad[2], 0) + min(pad[3], 0)) < 0:
            continue
        ow = (w * up[0] + pad[0] + pad[1] - fw + down[0]) // down[0]
        oh = (h * up[1] + pad[2] + pad[3] - fh + down[1]) // down[1]
        if ow >= 1 and oh >= 1:
            return (h, w), f, up, down, pad, rng.random() < 0.5, rng.choice([1.0, 2.0, 0.3])


@pytest.mark.parametrize("seed", range(3))
def test_upfirdn2d_random_sweep(seed, isa_level):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    for _ in range(45):
        (h, w), f, up, down, pad, flip, gain = _random_upf_case(rng)
        dtype = rng.choice([torch.float32, torch.float64])
        x = torch.randn(rng.randint(1, 2), rng.randint(1, 3), h, w, dtype=dtype)
        layout = rng.choice(["contiguous", "channels_last", "strided"])
        if layout == "channels_last":
            x = x.contiguous(memory_format=CL)
        elif layout == "strided":
            x = torch.randn(x.shape[0], x.shape[1], h, 2 * w, dtype=dtype)[..., ::2]
        expected = ref.upfirdn2d(x, f, up, down, pad, flip, gain)
        out = cpu.upfirdn2d(x, f, up, down, pad, flip, gain)
        what = f"x {list(x.shape)} {layout} f {list(f.shape)} up {up} down {down} pad {pad} flip {flip} {dtype}"
        _close(out, expected, 1e-5 if dtype == torch.float32 else 1e-12, what)
        assert out.dtype == x.dtype


@pytest.mark.parametrize("c, fshape, up, down", [
    (8, (4,), (2, 2), (1, 1)), (16, (4, 4), (1, 1), (2, 2)), (33, (3, 5), (1, 2), (3, 1)),
    (12, (7,), (3, 1), (2, 2)), (8, (1, 1), (1, 1), (1, 1)), (3, (4,), (2, 2), (1, 1))])
def test_upfirdn2d_channels_last(c, fshape, up, down, isa_level):
    torch.manual_seed(0)
    x = torch.randn(2, c, 7, 10).contiguous(memory_format=CL)
    f = torch.randn(fshape)
    pad = (2, 1, 1, 3)
    out = cpu.upfirdn2d(x, f, up, down, pad, False, 1.5)
    assert out.is_contiguous(memory_format=CL)
    _close(out, ref.upfirdn2d(x, f, up, down, pad, False, 1.5), 1e-5)


@pytest.mark.parametrize("fshape", [(4,), (3, 3)])
def test_upfirdn2d_channels_last_channel_blocks(fshape):
    """Many channels and a wide row: the channels_last kernel splits channels into blocks."""
    torch.manual_seed(1)
    x = torch.randn(1, 1000, 2, 300).contiguous(memory_format=CL)
    f = torch.randn(fshape)
    out = cpu.upfirdn2d(x, f, (1, 1), (1, 1), (1, 2, 1, 1), False, 1.0)
    assert out.is_contiguous(memory_format=CL)
    _close(out, ref.upfirdn2d(x, f, (1, 1), (1, 1), (1, 2, 1, 1), False, 1.0), 1e-5)


def test_upfirdn2d_few_planes_many_rows():
    """One plane: the rows are split across threads."""
    x = torch.randn(1, 1, 97, 45)
    f = ops.setup_filter([1, 3, 3, 1])
    for up, down, pad in [((2, 2), (1, 1), (2, 1, 2, 1)), ((1, 1), (2, 2), (1, 1, 1, 1))]:
        _close(cpu.upfirdn2d(x, f, up, down, pad, False, 4.0), ref.upfirdn2d(x, f, up, down, pad, False, 4.0), 1e-5)


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("fshape", [(4,), (3, 3)])
def test_upfirdn2d_half_types(dtype, tol, layout, fshape):
    torch.manual_seed(2)
    x = torch.randn(2, 8, 9, 12).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    f = torch.rand(fshape)
    out = cpu.upfirdn2d(x, f, (2, 1), (1, 2), (2, 1, 1, 2), False, 1.0)
    assert out.dtype == dtype
    assert out.is_contiguous(memory_format=CL if layout == "channels_last" else torch.contiguous_format)
    # reference on the same (already rounded) input, computed in float32
    _close(out, ref.upfirdn2d(x.float(), f, (2, 1), (1, 2), (2, 1, 1, 2), False, 1.0), tol)


def test_upfirdn2d_rank1_filter_matches_2d_path():
    """setup_filter([1,3,3,1]) is rank-1 and runs separably; the result equals the ref's 2-D conv."""
    torch.manual_seed(3)
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1])
    for fn in (ops.upsample2d, ops.downsample2d, ops.filter2d):
        _close(fn(x, f, impl="cpu"), fn(x, f, impl="ref"), 1e-12, fn.__name__)


@pytest.mark.parametrize("f", [torch.tensor([[1., 2., 0.5], [0., 1., 3.]]), torch.tensor([1., -2., 3., 0.5])],
                         ids=["2d", "1d"])
@pytest.mark.parametrize("up, down, pad", [((2, 1), (1, 2), (1, 2, 2, 0)), ((1, 3), (2, 1), (0, -1, 3, 1))])
def test_upfirdn2d_gradcheck(f, up, down, pad):
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)

    def fn(t):
        return ops.upfirdn2d(t, f, up=up, down=down, padding=pad, gain=1.7, impl="cpu")
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_upfirdn2d_grad_channels_last_matches_ref():
    x = torch.randn(2, 8, 6, 6, dtype=torch.float64).contiguous(memory_format=CL).requires_grad_(True)
    f = ops.setup_filter([1, 3, 3, 1])
    grads = []
    for impl in ("cpu", "ref"):
        y = ops.upsample2d(x, f, impl=impl)
        grads.append(torch.autograd.grad((y * y).sum(), x)[0])
    _close(grads[0], grads[1], 1e-12)


def _upf(x=None, f=None, up=(1, 1), down=(1, 1), pad=(0, 0, 0, 0)):
    x = torch.randn(1, 2, 4, 4) if x is None else x
    f = torch.ones(2, 2) if f is None else f
    return torch.ops.fastgan_cpu.upfirdn2d(x, f, up[0], up[1], down[0], down[1], *pad, False, 1.0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(x=torch.randn(2, 4, 4)), ValueError, "x must have 4 dimensions"),
    (dict(x=torch.ones(1, 1, 4, 4, dtype=torch.int32)), TypeError, "x must be float16"),
    (dict(f=torch.ones(2, 2, dtype=torch.int64)), TypeError, "f must be float16"),
    (dict(f=torch.ones(1, 2, 2)), ValueError, "f must be 1-D"),
    (dict(f=torch.ones(0)), ValueError, "at least one tap"),
    (dict(up=(0, 1)), ValueError, "up must be >= 1"),
    (dict(down=(1, -2)), ValueError, "down must be >= 1"),
    (dict(pad=(-3, -3, 0, 0)), ValueError, "empty output"),
    (dict(f=torch.ones(9, 9)), ValueError, "empty output"),
])
def test_upfirdn2d_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _upf(**kwargs)


# ---------------------------------------------------------------------------------------------
# bias_act
# ---------------------------------------------------------------------------------------------

ACTS = list(ACTIVATIONS)
SMOOTH = [a for a in ACTS if ACTIVATIONS[a].smooth]


def _ba_ref_and_cpu(x, b, dim, act, clamp, gain=None):
    outs = []
    for impl in ("cpu", "ref"):
        xx = x.detach().clone().requires_grad_(True)
        bb = None if b is None else b.detach().clone().requires_grad_(True)
        y = ops.bias_act(xx, bb, dim=dim, act=act, gain=gain, clamp=clamp, impl=impl)
        dy = torch.linspace(-2, 2, y.numel(), dtype=y.dtype).reshape(y.shape)
        grads = torch.autograd.grad(y, [xx] + ([bb] if bb is not None else []), dy)
        outs.append((y, grads))
    return outs


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("clamp", [None, 0.7])
def test_bias_act_matches_ref(act, clamp, isa_level):
    torch.manual_seed(4)
    x = torch.randn(3, 5, 4, 7, dtype=torch.float64) * 3
    x[0, 0, 0, :3] = 0.0  # derivative conventions at exactly zero
    b = torch.randn(5, dtype=torch.float64)
    (y, g), (yr, gr) = _ba_ref_and_cpu(x, b, 1, act, clamp)
    _close(y, yr, 1e-12, "y")
    for a, e, n in zip(g, gr, ("dx", "db")):
        _close(a, e, 1e-11, n)


@pytest.mark.parametrize("dim", [0, 1, 2, 3])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_bias_act_dims_and_layouts(dim, layout):
    torch.manual_seed(5)
    x = torch.randn(4, 6, 5, 3)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    elif layout == "strided":
        x = torch.randn(4, 6, 5, 6)[..., ::2]
    b = torch.randn(x.shape[dim])
    (y, g), (yr, gr) = _ba_ref_and_cpu(x, b, dim, "lrelu", 1.0)
    _close(y, yr, 1e-6, "y")
    for a, e, n in zip(g, gr, ("dx", "db")):
        _close(a, e, 1e-5, n)
    if layout != "strided":
        assert y.stride() == x.stride(), "memory format preserved"


@pytest.mark.parametrize("shape, dim", [((7,), 0), ((2, 1, 3), 1), ((5, 1000), 1), ((3, 70000), 0)])
def test_bias_act_shapes(shape, dim):
    """1-D tensors, size-1 bias dims and tensors large enough to split across threads."""
    x = torch.randn(shape)
    b = torch.randn(shape[dim])
    (y, g), (yr, gr) = _ba_ref_and_cpu(x, b, dim, "swish", None)
    _close(y, yr, 1e-5, "y")
    for a, e, n in zip(g, gr, ("dx", "db")):
        _close(a, e, 2e-5, n)


def test_bias_act_no_bias():
    x = torch.randn(2, 3, 4)
    y = ops.bias_act(x, None, act="relu", impl="cpu")
    _close(y, ref.bias_act(x, None, 1, "relu", 0.0, math.sqrt(2), None), 1e-6)
    for saved, from_output in ((x, False), (torch.relu(x), True)):
        dx, db = cpu.bias_act_grad(torch.ones_like(x), saved, None, 1, "relu", 0.0, 2.0, None, from_output)
        assert db.numel() == 0
        _close(dx, 2.0 * (x > 0).float(), 0)


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_bias_act_half_types(dtype, tol, layout):
    torch.manual_seed(6)
    x = torch.randn(2, 16, 5, 5).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    b = torch.randn(16).to(dtype)
    y = cpu.bias_act(x, b, 1, "lrelu", 0.2, math.sqrt(2), 2.0)
    assert y.dtype == dtype and y.stride() == x.stride()
    _close(y, ref.bias_act(x.float(), b.float(), 1, "lrelu", 0.2, math.sqrt(2), 2.0), tol)
    dy = torch.randn_like(x)
    z = x.float() + b.float().reshape(1, -1, 1, 1)
    a = torch.where(z > 0, z, 0.2 * z)
    slope = dy.float() * math.sqrt(2) * torch.where(z > 0, 1.0, 0.2)
    # From x the clamp mask is |gain * act(z)| <= clamp in float32; from the rounded output it is
    # |y| < clamp (every value that rounded to the bound counts as clamped; 2.0 is exact in both dtypes).
    masks = {False: (a * math.sqrt(2)).abs() <= 2.0, True: y.float().abs() < 2.0}
    for saved, from_output in ((x, False), (y, True)):
        dx_ref = torch.where(masks[from_output], slope, torch.zeros(()))
        dx, db = cpu.bias_act_grad(dy, saved, b, 1, "lrelu", 0.2, math.sqrt(2), 2.0, from_output)
        assert dx.dtype == dtype and dx.stride() == x.stride()
        _close(dx, dx_ref, tol, f"dx from_output={from_output}")
        _close(db, dx_ref.sum([0, 2, 3]), tol * 10, "db")


@pytest.mark.parametrize("act", SMOOTH)
@pytest.mark.parametrize("clamp", [None, 1.5])
def test_bias_act_gradgradcheck(act, clamp):
    torch.manual_seed(7)
    x = (torch.randn(2, 3, 4, dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)

    def fn(t, bb):
        return ops.bias_act(t, bb, dim=1, act=act, clamp=clamp, impl="cpu")
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("act", ["relu", "lrelu", "linear"])
def test_bias_act_gradcheck_piecewise(act):
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    x = (x + 0.1 * x.sign()).requires_grad_(True)  # keep away from the kink for finite differences
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)

    def fn(t, bb):
        return ops.bias_act(t, bb, act=act, gain=1.3, impl="cpu")
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("act", SMOOTH)
def test_bias_act_second_order_matches_ref(act):
    """R1-style second derivatives through the cpu kernels agree with ref autograd."""
    torch.manual_seed(8)
    res = []
    for impl in ("cpu", "ref"):
        x = (torch.randn(2, 4, 3, dtype=torch.float64) * 2).requires_grad_(True)
        torch.manual_seed(8)
        x = (torch.randn(2, 4, 3, dtype=torch.float64) * 2).requires_grad_(True)
        b = torch.linspace(-1, 1, 4, dtype=torch.float64, requires_grad=True)
        y = ops.bias_act(x, b, act=act, clamp=2.5, impl=impl)
        (gx,) = torch.autograd.grad((y * torch.cos(y.detach())).sum(), x, create_graph=True)
        res.append(torch.autograd.grad((gx ** 2).sum(), [x, b]))
    for a, e in zip(*res):
        _close(a, e, 1e-10)


def _ba(x=None, b=None, dim=1, act=0):
    x = torch.randn(2, 3, 4) if x is None else x
    return torch.ops.fastgan_cpu.bias_act(x, b, dim, act, 0.2, 1.0, -1.0)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(x=torch.ones(2, 3, dtype=torch.int64)), TypeError, "x must be float16"),
    (dict(b=torch.ones(4)), ValueError, "b must be 1-D with x.shape"),
    (dict(b=torch.ones(3, 1)), ValueError, "b must be 1-D"),
    (dict(b=torch.ones(3, dtype=torch.int32)), TypeError, "b must be float16"),
    (dict(dim=3), ValueError, "dim must be in"),
    (dict(dim=-1), ValueError, "dim must be in"),
    (dict(act=9), ValueError, "act must be an activation code"),
])
def test_bias_act_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        _ba(**kwargs)


def test_bias_act_grad_bad_input():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="dy must have the shape of x"):
        torch.ops.fastgan_cpu.bias_act_grad(torch.randn(3, 2), x, None, 1, 2, 0.2, 1.0, -1.0)
    with pytest.raises(TypeError, match="dy must be float16"):
        torch.ops.fastgan_cpu.bias_act_grad(torch.ones(2, 3, dtype=torch.int32), x, None, 1, 2, 0.2, 1.0, -1.0)
    with pytest.raises(ValueError, match="g must have the shape of x"):
        torch.ops.fastgan_cpu.bias_act_grad2(torch.randn(6), x, x, None, 1, 3, 0.0, 1.0, -1.0)
    grad_y = torch.ops.fastgan_cpu.bias_act_grad_y
    with pytest.raises(ValueError, match="bias_act_grad_y: dy must have the shape of x"):
        grad_y(torch.randn(3, 2), x, None, 1, 0.2, 1.0, -1.0)
    with pytest.raises(ValueError, match="bias_act_grad_y: b must be 1-D with x.shape"):
        grad_y(torch.randn(2, 3), x, torch.ones(2), 1, 0.2, 1.0, -1.0)
    with pytest.raises(ValueError, match="bias_act_grad_y: dim must be in"):
        grad_y(torch.randn(2, 3), x, None, 2, 0.2, 1.0, -1.0)
    with pytest.raises(ValueError, match="bias_act_grad_y: alpha and gain must be finite"):
        grad_y(torch.randn(2, 3), x, None, 1, float("nan"), 1.0, -1.0)


@pytest.mark.parametrize("from_output", [False, True])
@pytest.mark.parametrize("layout", ["rows", "channels_last"])
def test_bias_act_grad_bias_sum_is_accurate(from_output, layout):
    """The bias gradient summed inside the kernel (float32 data, long runs per channel) agrees with the
    float64 sum of its own dx to 1e-6 relative: partial sums stay short, the total is kept in float64."""
    torch.manual_seed(5)
    if layout == "rows":
        x, dim = torch.randn(3, 200000) + 0.5, 0
    else:
        x, dim = torch.randn(64, 8, 32, 32).contiguous(memory_format=CL) + 0.5, 1
    b = torch.randn(x.shape[dim])
    saved = ops.bias_act(x, b, dim=dim, act="lrelu", impl="cpu") if from_output else x
    dy = torch.rand(x.shape) + 1.0  # one sign: a cancelling sum would hide accumulation error
    dx, db = cpu.bias_act_grad(dy, saved, b, dim, "lrelu", 0.2, 1.4, None, from_output)
    want = dx.double().sum([i for i in range(x.ndim) if i != dim])
    assert ((db.double() - want).abs() / want.abs()).max() < 1e-6


def _packed_for_backward(fn):
    """The tensors autograd keeps for backward while ``fn()`` runs (via saved-tensor hooks)."""
    packed = []

    def pack(t):
        packed.append(t)
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, packed


@pytest.mark.parametrize("act, clamp, gain, keeps", [
    ("lrelu", 2.0, None, "y"), ("relu", None, None, "y"), ("linear", 1.0, 0.5, "y"), ("linear", None, 0.5, ""),
    ("tanh", None, None, "x"), ("lrelu", None, -1.0, "x"),  # a negative gain hides the sign of x + b in y
])
def test_bias_act_saves_only_what_backward_needs(act, clamp, gain, keeps):
    """relu/lrelu/clamped linear keep the output (the next layer keeps it anyway), never x; smooth
    activations keep x; linear without clamp keeps nothing but the bias."""
    x = torch.randn(2, 3, 4, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    y, packed = _packed_for_backward(lambda: ops.bias_act(x, b, act=act, gain=gain, clamp=clamp, impl="cpu"))
    ptrs = {t.data_ptr() for t in packed if t is not None}
    assert b.data_ptr() in ptrs
    assert (y.data_ptr() in ptrs) == ("y" in keeps) and (x.data_ptr() in ptrs) == ("x" in keeps)
    assert len(ptrs) == 1 + len(keeps)
    dx, db = torch.autograd.grad(y, [x, b], torch.ones_like(y))
    want = torch.autograd.grad(ops.bias_act(x, b, act=act, gain=gain, clamp=clamp, impl="ref"), [x, b],
                               torch.ones_like(y))
    _close(dx, want[0], 1e-6, "dx")
    _close(db, want[1], 1e-5, "db")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_bias_act_grad_from_output_matches_the_torch_glue(dtype, act, layout):
    """The cpu kernel reading the gradient off y and the PyTorch-op glue of the cuda backend
    (prims.bias_act.grad_from_output) give the same bits, at the kink and the clamp bound too."""
    from fastgan.backends.prims import bias_act as ba
    torch.manual_seed(9)
    x = torch.randn(2, 5, 3, 4).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    b = torch.randn(5).to(dtype)
    for clamp in (None, 1.3):
        y = ops.bias_act(x, b, act=act, alpha=0.3, gain=1.7, clamp=clamp, impl="ref")
        y[0, 0, 0] = torch.tensor([0.0, -0.0, 1.3, -1.3]).to(dtype)  # kink, and outputs at the bound
        y = y.contiguous(memory_format=CL if layout == "channels_last" else torch.contiguous_format)
        dy = torch.randn(y.shape).to(dtype)
        dx, db = cpu.bias_act_grad(dy, y, b, 1, act, 0.3, 1.7, clamp, True)
        assert torch.equal(dx, ba.grad_from_output(dy, y, act, 0.3, 1.7, clamp)) and dx.stride() == y.stride()
        assert db.dtype == dtype and db.shape == b.shape


def test_bias_act_clamp_tie_convention():
    """At an exact tie |gain * act(x + b)| == clamp the ref (torch.clamp) passes the gradient; the kernels,
    reading the mask off the saved output, do not (docs/contract.md). Off the tie they agree."""
    x = torch.tensor([[0.5, 2.0, 3.0, -2.0, -1.0]], requires_grad=True)
    got = torch.autograd.grad(ops.bias_act(x, None, act="linear", clamp=2.0, impl="cpu").sum(), x)[0]
    want = torch.autograd.grad(ops.bias_act(x, None, act="linear", clamp=2.0, impl="ref").sum(), x)[0]
    assert got.tolist() == [[1.0, 0.0, 0.0, 0.0, 1.0]]
    assert want.tolist() == [[1.0, 1.0, 0.0, 1.0, 1.0]]


@pytest.mark.parametrize("act, kind", [("relu", "zero"), ("lrelu", "zero"), ("linear", None), ("swish", "value")])
def test_bias_act_double_backward_bias_gradient_kind(act, kind):
    """R1-style double backward: relu/lrelu give the bias a zero tensor (as torch autograd of the ref does,
    so an optimiser updates it the same way), linear gives none, smooth activations a real value."""
    torch.manual_seed(10)
    w = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    for impl in ("cpu", "ref"):
        x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
        b = torch.randn(3, dtype=torch.float64, requires_grad=True)
        y = ops.bias_act(x @ w, b, act=act, clamp=2.0, impl=impl)
        (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
        (gx ** 2).sum().backward()
        if kind is None:
            assert b.grad is None, impl
        elif kind == "zero":
            assert b.grad is not None and not b.grad.any(), impl
        else:
            assert b.grad is not None and b.grad.abs().max() > 0, impl


def test_bias_act_third_order_raises():
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    y = ops.bias_act(x, torch.zeros(3, dtype=torch.float64), act="tanh", impl="cpu")
    (g1,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (g2,) = torch.autograd.grad(g1.sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="first and second derivatives only"):
        torch.autograd.grad(g2.sum(), x)


@pytest.mark.parametrize("act", ["lrelu", "swish"])  # gradient from y (torch reduction) and from x (C++ chunks)
def test_bias_act_deterministic_bias_gradient(act):
    """With torch.use_deterministic_algorithms(True) the bias gradient is bitwise independent of the number
    of threads (a fixed-order sum replaces the per-thread chunks of the kernel); dx is elementwise anyway."""
    torch.manual_seed(11)
    x = torch.randn(3, 70000).requires_grad_(True)  # several kernel chunks per thread
    b = torch.randn(3, requires_grad=True)
    dy = torch.randn(3, 70000)

    def grads():
        return torch.autograd.grad(ops.bias_act(x, b, dim=0, act=act, clamp=2.5, impl="cpu"), [x, b], dy)
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        free = grads()
        torch.use_deterministic_algorithms(True)
        runs = []
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            runs.append(grads())
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    for dx, db in runs[1:]:
        assert torch.equal(dx, runs[0][0]) and torch.equal(db, runs[0][1])
    _close(runs[0][1], free[1], 1e-6, "db")


def test_isa_reporting():
    assert cpu.isa() in ("avx512", "avx2", "scalar")
    assert cpu.isa() == _C.isa()
    with pytest.raises(ValueError, match="level must be"):
        _C.set_isa("sse9")


@pytest.mark.parametrize("act", ACTS)
def test_bias_act_float32_extreme_inputs(act):
    """float32 over a wide range (the float exp is a polynomial; check saturation, inf and NaN handling)."""
    x = torch.cat([torch.linspace(-120, 120, 4001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 88.5, -87.5, 20.0,
                                                                  float("inf"), float("-inf"), float("nan")])])
    x = x.reshape(1, -1)
    y = cpu.bias_act(x, None, 1, act, 0.2, 1.0, None)
    yr = ref.bias_act(x, None, 1, act, 0.2, 1.0, None)
    assert torch.equal(torch.isnan(y), torch.isnan(yr))
    fin = ~torch.isnan(yr)
    torch.testing.assert_close(y[fin], yr[fin], rtol=2e-6, atol=1e-30)
    dx, _ = cpu.bias_act_grad(torch.ones_like(x), x, None, 1, act, 0.2, 1.0, None, False)
    xr = x.clone().requires_grad_(True)
    (dxr,) = torch.autograd.grad(ref.bias_act(xr, None, 1, act, 0.2, 1.0, None), xr, torch.ones_like(x))
    fin = ~torch.isnan(dxr) & x.isfinite()
    # derivatives such as 1 - tanh^2 cancel near saturation: allow one float ulp of an O(1) value
    torch.testing.assert_close(dx[fin], dxr[fin], rtol=2e-6, atol=2.5e-7)


def test_upfirdn2d_channels_last_few_rows():
    """One output row and many channels: channels are split into blocks so both cores work."""
    x = torch.randn(1, 96, 1, 40).contiguous(memory_format=CL)
    f = torch.randn(3, 3)
    out = cpu.upfirdn2d(x, f, (2, 2), (1, 1), (1, 1, 0, 1), True, 1.0)
    assert out.is_contiguous(memory_format=CL) and out.shape[2] == 1
    _close(out, ref.upfirdn2d(x, f, (2, 2), (1, 1), (1, 1, 0, 1), True, 1.0), 1e-5)


def test_isa_copies_use_no_wide_instructions_outside_their_namespace():
    """Portable build: AVX/AVX-512 instructions only in fastgan_cpu::avx2 / ::avx512 (run-time selected)."""
    import re
    import shutil
    import subprocess
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump not installed")
    asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", "-C", _C.__file__], capture_output=True, text=True,
                         check=True).stdout
    offenders = []
    for func in re.split(r"\n(?=[0-9a-f]+ <)", asm):
        head, _, body = func.partition("\n")
        if "fastgan_cpu::" not in head or "fastgan_cpu::avx2::" in head or "fastgan_cpu::avx512::" in head:
            continue
        if re.search(r"^\s+[0-9a-f]+:\s+v[a-z0-9]+\s", body, re.M):  # VEX/EVEX encoded (AVX and later)
            offenders.append(head)
    assert not offenders, offenders[:5]
