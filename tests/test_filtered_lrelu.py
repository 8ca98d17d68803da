"""filtered_lrelu on every backend against ref: geometry corners, gradients to second order, bad input."""
import os

import numpy as np
import pytest
import torch
from cpu_isa import assert_same_for_any_thread_count, runnable_isa_levels

import fastgan.ops as ops
from fastgan import backends

FAST = [pytest.param("cpu", marks=pytest.mark.cpu_ext), pytest.param("triton")]


def _need(backend):
    if backend == "triton" and os.environ.get("TRITON_INTERPRET", "") != "1" and not torch.cuda.is_available():
        pytest.skip("triton needs CUDA or TRITON_INTERPRET=1")
    x = torch.zeros(1, 1, 2, 2)
    try:
        ops.filtered_lrelu(x, impl=backend)
    except backends.BackendUnavailable as e:
        pytest.skip(f"backend {backend!r} unavailable: {e}")


def _taps(n, seed, ndim=1):
    g = torch.Generator().manual_seed(seed)
    f = torch.rand([n] * ndim, generator=g) + 0.2
    return f / f.sum()


# (up, down, padding, fu taps / 2-D size, fd taps, clamp, flip, slope, gain)
GEOMS = [
    (2, 2, [11, 10, 11, 10], 12, 12, 256.0, False, 0.2, np.sqrt(2)),     # SG3 layer
    (4, 2, [-2, 3, -1, 4], 24, 12, 0.8, False, 0.2, np.sqrt(2)),          # up 4, a negative crop
    (2, 2, [3, 5, 2, 6], (5, 2), (7, 2), 0.5, True, 0.1, 2.0),            # 2-D filters
    (1, 1, 0, None, None, None, False, 1.0, 1.0),                        # ToRGB-like identity
    (3, 1, [4, 2, 3, 5], 7, None, None, False, 0.3, 1.3),                 # up 3, no down filter
    (1, 3, [2, 4, 5, 1], None, 9, 1.0, True, 0.0, 1.0),                  # down 3, relu
    (2, 4, [40, 40, 41, 39], 40, 41, None, False, 0.2, 1.0),             # taps beyond any specialisation
    (1, 1, [-15, 20, 3, -2], 3, (4, 2), None, False, 0.2, 1.0),          # crop beyond one edge
]


def _geom_args(geom, seed=0):
    up, down, pad, nu, nd, clamp, flip, slope, gain = geom
    mk = lambda n, s: None if n is None else (_taps(n[0], s, n[1]) if isinstance(n, tuple) else _taps(n, s))  # noqa
    return dict(fu=mk(nu, seed), fd=mk(nd, seed + 1), up=up, down=down, padding=pad, clamp=clamp,
                flip_filter=flip, slope=slope, gain=float(gain))


@pytest.mark.parametrize("backend", FAST)
@pytest.mark.parametrize("geom", GEOMS, ids=[f"g{i}" for i in range(len(GEOMS))])
def test_matches_ref(backend, geom):
    _need(backend)
    if backend == "triton" and geom is GEOMS[6] and not torch.cuda.is_available():
        pytest.skip("40-tap filters take minutes in the Triton interpreter; the cpu backend covers them")
    kw = _geom_args(geom)
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(2, 3, 9, 11, generator=g) * 2).requires_grad_(True)
    b = torch.randn(3, generator=g).requires_grad_(True)
    y_ref = ops.filtered_lrelu(x, b=b, impl="ref", **kw)
    y = ops.filtered_lrelu(x, b=b, impl=backend, **kw)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5 * max(1.0, y_ref.abs().max().item()))
    dy = torch.randn(y.shape, generator=g)
    got = torch.autograd.grad(y, (x, b), dy)
    want = torch.autograd.grad(y_ref, (x, b), dy)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4 * max(1.0, e.abs().max().item()))


@pytest.mark.parametrize("backend", ["ref"] + FAST)
@pytest.mark.parametrize("geom", [GEOMS[0], GEOMS[2], GEOMS[4]], ids=["sg3", "2d", "up3"])
def test_gradcheck_float64(backend, geom):
    _need(backend)
    if backend == "triton" and not torch.cuda.is_available():
        pytest.skip("12-tap geometries are slow in the Triton interpreter; tests/test_contract.py covers triton")
    kw = _geom_args(geom)
    kw["clamp"] = None if kw["clamp"] is None else 3.0
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 4, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    b = torch.randn(2, generator=g, dtype=torch.float64).requires_grad_(True)
    fn = lambda x, b: ops.filtered_lrelu(x, b=b, impl=backend, **kw)  # noqa: E731
    # lrelu/clamp are piecewise linear: keep finite differences away from the kinks.
    assert torch.autograd.gradcheck(fn, (x, b), eps=1e-7, atol=1e-5, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, b), eps=1e-7, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("backend", FAST)
def test_dtypes_and_layout(backend):
    _need(backend)
    kw = _geom_args(GEOMS[0])
    x = torch.randn(2, 3, 8, 8)
    y_ref = ops.filtered_lrelu(x, impl="ref", **kw)
    y = ops.filtered_lrelu(x.contiguous(memory_format=torch.channels_last), impl=backend, **kw)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    for dt, tol in ((torch.float64, 1e-10), (torch.float16, 2e-2), (torch.bfloat16, 5e-2)):
        y = ops.filtered_lrelu(x.to(dt), impl=backend, **kw)
        assert y.dtype == dt
        torch.testing.assert_close(y.double(), ops.filtered_lrelu(x.double(), impl="ref", **kw), rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", ["ref"] + FAST)
def test_bad_input(backend):
    _need(backend)
    x = torch.randn(1, 2, 6, 6)
    f = _taps(4, 0)
    with pytest.raises(ValueError, match="b must have"):
        ops.filtered_lrelu(x, b=torch.zeros(3), impl=backend)
    with pytest.raises(ValueError, match="x must have 4"):
        ops.filtered_lrelu(x[0], impl=backend)
    with pytest.raises(ValueError, match="fu"):
        ops.filtered_lrelu(x, fu=torch.ones(2, 2, 2), impl=backend)
    with pytest.raises(ValueError, match="up"):
        ops.filtered_lrelu(x, up=0, impl=backend)
    with pytest.raises(TypeError, match="down"):
        ops.filtered_lrelu(x, down=1.5, impl=backend)
    with pytest.raises(ValueError, match="clamp"):
        ops.filtered_lrelu(x, clamp=-1, impl=backend)
    with pytest.raises(ValueError, match="empty output"):
        ops.filtered_lrelu(x, fu=f, fd=f, padding=-4, impl=backend)
    with pytest.raises(ValueError, match="fd must not require grad"):
        ops.filtered_lrelu(x, fd=f.clone().requires_grad_(True), impl=backend)


@pytest.mark.cpu_ext
@pytest.mark.parametrize("level", runnable_isa_levels())
@pytest.mark.parametrize("geom", [GEOMS[0], GEOMS[2], GEOMS[5]], ids=["sg3", "2d", "down3"])
def test_cpu_every_isa(level, geom):
    """Every compiled SIMD level of the cpu kernel agrees with ref (forward and gradient)."""
    _need("cpu")
    from fastgan import _C
    kw = _geom_args(geom)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 9, 11, generator=g).requires_grad_(True)
    y_ref = ops.filtered_lrelu(x, impl="ref", **kw)
    dy = torch.randn(y_ref.shape, generator=g)
    (gx_ref,) = torch.autograd.grad(y_ref, x, dy)
    prev = _C.set_isa(level)
    try:
        y = ops.filtered_lrelu(x, impl="cpu", **kw)
        (gx,) = torch.autograd.grad(y, x, dy)
    finally:
        _C.set_isa(prev)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.cpu_ext
def test_cpu_entry_point_validates():
    """The C++ primitive checks its arguments before touching memory."""
    _need("cpu")
    op = torch.ops.fastgan_cpu.filtered_lrelu
    x, f = torch.randn(1, 2, 6, 6), torch.ones(3) / 3
    y, s = op(x, None, f, f, 2, 2, [2, 2, 2, 2], [0, 0, 0, 0], 1.0, 0.2, -1.0, None, True)
    assert s.dtype == torch.uint8 and s.shape == (1, 2, 14, 4)
    with pytest.raises(ValueError, match="signs must have shape"):
        op(x, None, f, f, 2, 2, [2, 2, 2, 2], [0, 0, 0, 0], 1.0, 0.2, -1.0, s[:, :, :-1], False)
    with pytest.raises(TypeError, match="f1 must be float32"):
        op(x, None, f.double(), f, 2, 2, [2, 2, 2, 2], [0, 0, 0, 0], 1.0, 0.2, -1.0, None, False)
    with pytest.raises(ValueError, match="pad2 must have 4"):
        op(x, None, f, f, 2, 2, [2, 2, 2, 2], [0, 0], 1.0, 0.2, -1.0, None, False)
    with pytest.raises(ValueError, match="empty output"):
        op(x, None, f, f, 1, 1, [-5, -5, 0, 0], [0, 0, 0, 0], 1.0, 0.2, -1.0, None, False)
    with pytest.raises(ValueError, match="b must have shape"):
        op(x, torch.ones(3), f, f, 1, 1, [0, 0, 0, 0], [0, 0, 0, 0], 1.0, 0.2, -1.0, None, False)


# ---------------------------------------------------------------------------------------------------
# Contract cases specific to fastgan::filtered_lrelu / filtered_lrelu_masked (the generic matrix --
# opcheck, gradcheck, memory format, N = 0, half types, autocast -- is tests/test_contract.py).

from fastgan.backends.prims import filtered_lrelu as prim  # noqa: E402

# 3-tap filters and a tiny image.
SMALL = dict(up=2, down=2, padding=[2, 1, 2, 1], clamp=0.6, gain=1.4, slope=0.2)


def _small_filters():
    return dict(fu=_taps(3, 0), fd=_taps(3, 1, ndim=2))


def _xb(shape=(2, 3, 5, 4), dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(shape[1], generator=g, dtype=dtype)


def _prim_args(x, b, backend):
    """Arguments of fastgan::filtered_lrelu as the public op builds them for SMALL."""
    f = _small_filters()
    return (x, b, f["fu"].flip(0), f["fd"].flip([0, 1]), 2, 2, [2, 1, 2, 1], 1.4 * 4, 0.2, 0.6, True, backend)


@pytest.mark.cpu_ext
def test_contract_explicit_backend_without_kernel_raises(monkeypatch):
    """A backend without a kernel for the op raises when asked for; 'auto' then runs ref instead."""
    _need("cpu")
    x, b = _xb()
    kw = dict(b=b, **_small_filters(), **SMALL)
    want = ops.filtered_lrelu(x, impl="ref", **kw)
    monkeypatch.delitem(prim.FILTERED_LRELU._kernels, "cpu")
    with pytest.raises(backends.BackendUnavailable, match="fastgan::filtered_lrelu: backend 'cpu' has no kernel"):
        ops.filtered_lrelu(x, impl="cpu", **kw)
    with backends.use("cpu"), pytest.raises(backends.BackendUnavailable, match="has no kernel"):
        ops.filtered_lrelu(x, **kw)
    with backends.use("auto"):
        torch.testing.assert_close(ops.filtered_lrelu(x, **kw), want, rtol=0, atol=0)


def test_contract_cuda_request_never_falls_back():
    """'cuda' that cannot run raises BackendUnavailable saying why (no silent triton or ref)."""
    if backends.available("cuda"):
        pytest.skip("the cuda backend is usable here")
    x, b = _xb()
    if torch.cuda.is_available():
        with backends.use("cuda"), pytest.raises(backends.BackendUnavailable, match="_C_cuda"):
            ops.filtered_lrelu(x.cuda(), b=b.cuda())
    else:
        with pytest.raises(backends.BackendUnavailable, match="no CUDA device"):
            prim.FILTERED_LRELU(*_prim_args(x, b, "cuda")[:-1], backend="cuda")


@pytest.mark.cpu_ext
def test_contract_cpu_deterministic():
    """The cpu kernels and the bias-gradient sum are bitwise reproducible across thread counts, and run
    under torch.use_deterministic_algorithms(True)."""
    _need("cpu")
    g = torch.Generator().manual_seed(9)
    x, b = torch.randn(2, 5, 24, 24, generator=g), torch.randn(5, generator=g)
    kw = dict(**_geom_args(GEOMS[0]), impl="cpu")

    def run():
        xs, bs = x.clone().requires_grad_(True), b.clone().requires_grad_(True)
        y = ops.filtered_lrelu(xs, b=bs, **kw)
        return (y,) + torch.autograd.grad(y, (xs, bs), torch.ones_like(y) * 0.7)

    assert_same_for_any_thread_count(run)


@pytest.mark.cpu_ext
def test_contract_compiles_without_graph_break():
    """torch.compile(fullgraph=True) traces the op through its fake kernels, forward and backward."""
    _need("cpu")
    x, b = _xb((2, 3, 6, 5))
    kw = dict(impl="cpu", **_small_filters(), **SMALL)
    fn = lambda x, b: ops.filtered_lrelu(x, b=b, **kw)  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = [x.clone().requires_grad_(True), b.clone().requires_grad_(True)]
    want = [x.clone().requires_grad_(True), b.clone().requires_grad_(True)]
    yg, yw = compiled(*got), fn(*want)
    torch.testing.assert_close(yg, yw, rtol=0, atol=0)
    for a, e in zip(torch.autograd.grad(yg.square().sum(), got), torch.autograd.grad(yw.square().sum(), want)):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


@pytest.mark.cpu_ext
def test_contract_backward_without_signs_raises():
    """The operator keeps signs only when asked to; a backward through a forward that kept none says so."""
    _need("cpu")
    x, b = _xb(dtype=torch.float64)
    args = list(_prim_args(x.requires_grad_(True), b, "cpu"))
    args[10] = False
    y, signs = prim.FILTERED_LRELU(*args[:-1], backend="cpu")
    assert signs.numel() == 0
    with pytest.raises(RuntimeError, match="write_signs=False"):
        y.sum().backward()
