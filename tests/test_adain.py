"""adain against the direct formula on every backend, gradients to second order, bad input."""
import os

import pytest
import torch
from cpu_isa import assert_same_for_any_thread_count, runnable_isa_levels

import fastgan.ops as ops
from fastgan import backends

BACKENDS = [pytest.param("ref"), pytest.param("cpu", marks=pytest.mark.cpu_ext), pytest.param("triton")]


def _need(backend):
    if backend == "triton" and os.environ.get("TRITON_INTERPRET", "") != "1" and not torch.cuda.is_available():
        pytest.skip("triton needs CUDA or TRITON_INTERPRET=1")
    x = torch.zeros(1, 1, 2, 2)
    try:
        ops.adain(x, x[:, :, 0, 0], x[:, :, 0, 0], impl=backend)
    except backends.BackendUnavailable as e:
        pytest.skip(f"backend {backend!r} unavailable: {e}")


def _direct(x, s, b, eps):
    x64 = x.double()
    mean = x64.mean(dim=(2, 3), keepdim=True)
    var = ((x64 - mean) ** 2).mean(dim=(2, 3), keepdim=True)
    return (x64 - mean) / torch.sqrt(var + eps) * s.double()[:, :, None, None] + b.double()[:, :, None, None]


def _inputs(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3 + 1.5
    s = torch.randn(shape[:2], generator=g, dtype=torch.float64)
    b = torch.randn(shape[:2], generator=g, dtype=torch.float64)
    return x.to(dtype), s.to(dtype), b.to(dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 1, 1), (3, 4, 16, 16), (1, 1, 33, 65)])
def test_adain_matches_formula(backend, shape):
    _need(backend)
    x, s, b = _inputs(shape, torch.float32)
    y = ops.adain(x, s, b, impl=backend)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y.double(), _direct(x, s, b, 1e-8), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adain_eps_and_constant_plane(backend):
    _need(backend)
    x = torch.full((1, 2, 4, 4), 3.0)
    x[0, 1] = torch.arange(16.0).reshape(4, 4)
    s, b = torch.full((1, 2), 2.0), torch.full((1, 2), 0.5)
    y = ops.adain(x, s, b, eps=0.1, impl=backend)
    torch.testing.assert_close(y[0, 0], torch.full((4, 4), 0.5))  # zero variance: (x - mean) = 0 -> bias
    torch.testing.assert_close(y.double(), _direct(x, s, b, 0.1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adain_gradients(backend):
    _need(backend)
    if backend == "triton" and not torch.cuda.is_available():
        pytest.skip("a full Jacobian is slow in the Triton interpreter; tests/test_contract.py covers triton")
    x, s, b = (t.requires_grad_(True) for t in _inputs((2, 3, 4, 5), torch.float64, seed=1))
    fn = lambda x, s, b: ops.adain(x, s, b, eps=1e-3, impl=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, s, b))
    assert torch.autograd.gradgradcheck(fn, (x, s, b))


@pytest.mark.parametrize("backend", BACKENDS)
def test_adain_float32_grads_match_ref(backend):
    _need(backend)
    x, s, b = (t.requires_grad_(True) for t in _inputs((2, 8, 9, 11), torch.float32, seed=2))
    g = torch.randn(x.shape)
    got = torch.autograd.grad((ops.adain(x, s, b, impl=backend) * g).sum(), (x, s, b))
    want = torch.autograd.grad((_direct(x, s, b, 1e-8) * g.double()).sum(), (x, s, b))
    for a, e in zip(got, want):
        torch.testing.assert_close(a.double(), e.double(), rtol=1e-3, atol=1e-4)


def test_adain_bad_input():
    x = torch.randn(2, 3, 4, 4)
    s = torch.randn(2, 3)
    with pytest.raises(ValueError, match="scale"):
        ops.adain(x, torch.randn(3, 2), s)
    with pytest.raises(ValueError, match="bias"):
        ops.adain(x, s, torch.randn(2, 3, 1))
    with pytest.raises(ValueError, match="x"):
        ops.adain(x[0], s, s)
    with pytest.raises(TypeError, match="x"):
        ops.adain(x.long(), s, s)
    with pytest.raises(ValueError, match="eps"):
        ops.adain(x, s, s, eps=-1.0)


@pytest.mark.cpu_ext
@pytest.mark.parametrize("level", runnable_isa_levels())
def test_adain_cpu_every_isa(level):
    _need("cpu")
    from fastgan import _C
    x, s, b = (t.requires_grad_(True) for t in _inputs((2, 3, 7, 9), torch.float32, seed=4))
    g = torch.randn(x.shape)
    want = torch.autograd.grad((_direct(x, s, b, 1e-8) * g.double()).sum(), (x, s, b))
    prev = _C.set_isa(level)
    try:
        y = ops.adain(x, s, b, impl="cpu")
        got = torch.autograd.grad((y * g).sum(), (x, s, b))
    finally:
        _C.set_isa(prev)
    torch.testing.assert_close(y.double(), _direct(x, s, b, 1e-8), rtol=1e-4, atol=1e-4)
    for a, e in zip(got, want):
        torch.testing.assert_close(a.double(), e.double(), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# Contract cases specific to fastgan::adain_forward / adain_backward (the generic matrix -- opcheck,
# gradcheck, memory format, N = 0, half types, autocast -- is tests/test_contract.py).

from fastgan.backends.prims import adain as prim  # noqa: E402


@pytest.mark.parametrize("backend", BACKENDS)
def test_adain_third_order_matches_ref(backend):
    """Derivatives beyond the second (the backward operator's own derivative is differentiable again)."""
    _need(backend)

    def derivs(impl):
        x, s, b = (t.requires_grad_(True) for t in _inputs((2, 3, 4, 5), torch.float64, seed=3))
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        gx, gs = torch.autograd.grad((ops.adain(x, s, b, eps=1e-3, impl=impl) * g).sum(), (x, s), create_graph=True)
        hx, hs = torch.autograd.grad(gx.sin().sum() + gs.pow(3).sum(), (x, s), create_graph=True)
        return (gx, gs, hx, hs) + torch.autograd.grad((hx * g).sum() + hs.square().sum(), (x, s))

    for got, want in zip(derivs(backend), derivs("ref")):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.cpu_ext
def test_adain_contract_backend_without_kernel(monkeypatch):
    """A backend without a kernel raises when asked for explicitly; 'auto' then runs ref instead."""
    _need("cpu")
    x, s, b = _inputs((2, 3, 6, 5), torch.float32)
    want = ops.adain(x, s, b, impl="ref")
    monkeypatch.delitem(prim.ADAIN_FORWARD._kernels, "cpu")
    with pytest.raises(backends.BackendUnavailable, match="fastgan::adain_forward: backend 'cpu' has no kernel"):
        ops.adain(x, s, b, impl="cpu")
    with backends.use("auto"):
        torch.testing.assert_close(ops.adain(x, s, b), want, rtol=0, atol=0)


def test_adain_contract_cuda_request_never_falls_back():
    """There is no CUDA-extension adain: an explicit 'cuda' raises BackendUnavailable (no silent triton)."""
    x, s, b = _inputs((1, 2, 3, 3), torch.float32)
    if torch.cuda.is_available():
        with backends.use("cuda"), pytest.raises(backends.BackendUnavailable):
            ops.adain(x.cuda(), s.cuda(), b.cuda())
    else:
        with pytest.raises(backends.BackendUnavailable, match="no CUDA device"):
            prim.ADAIN_FORWARD(x, s, b, 1e-8, backend="cuda")


@pytest.mark.cpu_ext
def test_adain_contract_cpu_deterministic():
    """One thread per plane: bitwise the same results across thread counts, under deterministic mode."""
    _need("cpu")
    x, s, b = _inputs((2, 6, 17, 19), torch.float32, seed=8)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))

    def run():
        xs, ss, bs = (t.clone().requires_grad_(True) for t in (x, s, b))
        y = ops.adain(xs, ss, bs, impl="cpu")
        return (y,) + torch.autograd.grad(y, (xs, ss, bs), g)

    assert_same_for_any_thread_count(run)


@pytest.mark.cpu_ext
def test_adain_contract_compiles_without_graph_break():
    """torch.compile(fullgraph=True) traces the op through its fake kernels, forward and backward."""
    _need("cpu")
    inputs = _inputs((2, 3, 6, 5), torch.float32)
    fn = lambda x, s, b: ops.adain(x, s, b, impl="cpu")  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    got = [t.clone().requires_grad_(True) for t in inputs]
    want = [t.clone().requires_grad_(True) for t in inputs]
    yg, yw = compiled(*got), fn(*want)
    torch.testing.assert_close(yg, yw, rtol=0, atol=0)
    for a, e in zip(torch.autograd.grad(yg.square().sum(), got), torch.autograd.grad(yw.square().sum(), want)):
        torch.testing.assert_close(a, e, rtol=0, atol=0)
