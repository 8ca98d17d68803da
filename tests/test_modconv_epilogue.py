"""fastgan::modconv_epilogue (+ its in-place and gradient ops): the cpu kernels as PyTorch operators."""
import math

import pytest
import torch

from fastgan import backends

pytestmark = pytest.mark.skipif(not backends.available("cpu"), reason="fastgan._C is not built")

CL = torch.channels_last
OPS = torch.ops.fastgan


def _args(dtype=torch.float64, cl=False, n=2, c=3, h=4, w=5, seed=0, grad=False, terms="dnb"):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    y = y.contiguous(memory_format=CL) if cl else y
    d = torch.rand(n, c, generator=g, dtype=dtype) + 0.5 if "d" in terms else None
    noise = torch.randn(n, h, w, generator=g, dtype=dtype) if "n" in terms else None
    bias = torch.randn(c, generator=g, dtype=dtype) if "b" in terms else None
    return [t if t is None else t.requires_grad_(grad) for t in (y, d, noise, bias)]


def _formula(y, d, noise, bias, slope, gain, clamp):
    """The documented semantics, computed in float64 from the given operands."""
    v = y.double()
    if d is not None:
        v = v * d.double()[:, :, None, None]
    if noise is not None:
        v = v + noise.double()[:, None]
    if bias is not None:
        v = v + bias.double()[None, :, None, None]
    v = torch.where(v > 0, v, v * slope) * gain
    return v.clamp(-clamp, clamp) if clamp >= 0 else v


ACTS = [(1.0, 1.3, -1.0), (0.0, 2.0, 1.0), (0.2, math.sqrt(2), 0.8), (1.0, -0.5, 0.7)]   # (slope, gain, clamp)


@pytest.mark.parametrize("slope,gain,clamp", ACTS)
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("terms", ["dnb", "d", "nb", ""])
def test_forward_matches_formula_and_keeps_layout(slope, gain, clamp, cl, terms):
    y, d, noise, bias = _args(cl=cl, terms=terms)
    out = OPS.modconv_epilogue(y, d, noise, bias, slope, gain, clamp, "cpu")
    assert out.stride() == y.stride() and out.dtype == y.dtype
    torch.testing.assert_close(out, _formula(y, d, noise, bias, slope, gain, clamp), rtol=1e-14, atol=1e-14)
    if clamp >= 0:
        assert (out.abs() == clamp).any(), "the clamp must be exercised"
    inplace = y.clone()
    OPS.modconv_epilogue_(inplace, d, noise, bias, slope, gain, clamp, "cpu")
    assert torch.equal(inplace, out)


@pytest.mark.parametrize("slope,gain,clamp", ACTS)
def test_gradients_to_second_order(slope, gain, clamp):
    y, d, noise, bias = _args(grad=True, seed=1, c=2, h=3, w=4)

    def fn(y, d, noise, bias):
        return OPS.modconv_epilogue(y, d, noise, bias, slope, gain, clamp, "cpu")
    assert torch.autograd.gradcheck(fn, (y, d, noise, bias), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (y, d, noise, bias), fast_mode=True)


def test_broadcast_noise_view_gets_summed_gradient():
    """SG2 passes [N, 1, H, W] (or [H, W]) noise as a broadcast [N, H, W] view: its gradient sums over the view."""
    y, d, _, bias = _args(grad=True, seed=2)
    noise = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    out = OPS.modconv_epilogue(y, d, noise.expand(2, 1, 4, 5)[:, 0], bias, 0.2, 1.5, -1.0, "cpu")
    want = _formula(y, d, noise.expand(2, 4, 5), bias, 0.2, 1.5, -1.0)
    g = torch.randn_like(want)
    leaves = (y, d, noise, bias)
    for a, b in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(want, leaves, g)):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)


def test_saves_only_what_backward_needs():
    """``out`` always; ``d`` only for y's gradient, ``y`` only for d's gradient."""
    def saved_shapes(need):
        y, d, noise, bias = _args(seed=3)
        leaves = dict(y=y, d=d, noise=noise, bias=bias)
        for k in need:
            leaves[k].requires_grad_(True)
        packed = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append(tuple(t.shape)) or t, lambda t: t):
            OPS.modconv_epilogue(y, d, noise, bias, 0.2, 1.4, -1.0, "cpu")
        return sorted(packed)
    out, d = (2, 3, 4, 5), (2, 3)
    assert saved_shapes(["bias"]) == [out]
    assert saved_shapes(["noise"]) == [out]
    assert saved_shapes(["y"]) == sorted([out, d])
    assert saved_shapes(["d"]) == [out, out]            # out and y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cl", [False, True])
def test_opcheck(dtype, cl):
    y, d, noise, bias = _args(dtype=dtype, cl=cl, seed=4)
    f32 = [t.float() for t in (d, noise, bias)]
    for grad in (False, True):
        args = [t.detach().requires_grad_(grad and t.is_floating_point()) for t in [y] + f32]
        torch.library.opcheck(OPS.modconv_epilogue.default, (*args, 0.2, 1.4, 0.9, "cpu"))
    torch.library.opcheck(OPS.modconv_epilogue_.default, (y.clone(), *f32, 0.2, 1.4, 0.9, "cpu"))
    out = OPS.modconv_epilogue(y, *f32, 0.2, 1.4, 0.9, "cpu")
    dout = torch.randn(y.shape, dtype=dtype).contiguous(memory_format=CL if cl else torch.contiguous_format)
    torch.library.opcheck(OPS.modconv_epilogue_grad.default, (dout, out, 0.2, 1.4, 0.9, "cpu"))
    torch.library.opcheck(OPS.modconv_epilogue_grad.default, (dout.requires_grad_(True), out, 0.2, 1.4, 0.9, "cpu"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("cl", [False, True])
def test_half_operands_round_to_the_input_dtype_first(dtype, cl):
    """float32 d, noise and bias are rounded to y's dtype, then the epilogue runs in float32 and rounds once
    (like ref's ``bias_act(y * d.to(y.dtype) + noise.to(y.dtype), bias.to(y.dtype))`` operands)."""
    y, d, noise, bias = _args(dtype=torch.float32, cl=cl, n=3, c=16, h=8, w=8, seed=5)
    y = y.to(dtype)
    d = d.to(dtype).float()          # representable in dtype: the products below are exact in float32
    noise = noise.to(dtype).float()
    out = OPS.modconv_epilogue(y, d, noise, bias, 0.2, 2.0, -1.0, "cpu")
    assert out.dtype == dtype and out.stride() == y.stride()

    def expect(b):
        v = y.float() * d[:, :, None, None] + (noise[:, None] + b[None, :, None, None])
        return (torch.where(v > 0, v, v * 0.2) * 2.0).to(dtype)
    assert torch.equal(out, expect(bias.to(dtype).float()))
    assert not torch.equal(out, expect(bias)), "the unrounded bias must give a different result here"


def test_empty_batch_and_bad_arguments():
    y, d, noise, bias = _args(n=0)
    out = OPS.modconv_epilogue(y, d, noise, bias, 0.2, 1.0, -1.0, "cpu")
    assert out.shape == y.shape
    y, d, noise, bias = _args()
    with pytest.raises(ValueError, match="gain must be > 0"):
        OPS.modconv_epilogue(y, d, noise, bias, 0.2, -1.0, -1.0, "cpu")
    with pytest.raises(ValueError, match="slope must be >= 0"):
        OPS.modconv_epilogue_(y, d, noise, bias, -0.2, 1.0, -1.0, "cpu")
    with pytest.raises(ValueError, match="d must have shape"):
        OPS.modconv_epilogue(y, d.t(), noise, bias, 0.2, 1.0, -1.0, "cpu")
    with pytest.raises(backends.BackendUnavailable):
        OPS.modconv_epilogue(y, d, noise, bias, 0.2, 1.0, -1.0, "cuda")


def test_bias_gradient_is_thread_count_independent_under_deterministic_algorithms():
    y, d, noise, bias = _args(dtype=torch.float32, n=8, c=1, h=64, w=64, seed=6, grad=True)
    dout = torch.randn(y.shape, generator=torch.Generator().manual_seed(7))
    threads, prev = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    grads = []
    try:
        torch.use_deterministic_algorithms(True)
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            out = OPS.modconv_epilogue(y, d, noise, bias, 0.2, 1.4, -1.0, "cpu")
            grads.append(torch.autograd.grad(out, bias, dout)[0])
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(prev)
    assert all(torch.equal(g, grads[0]) for g in grads)
    dv = dout.double() * torch.where(out.double() > 0, 1.4, 0.28)
    torch.testing.assert_close(grads[0].double(), dv.sum(dim=(0, 2, 3)), rtol=1e-5, atol=1e-3)
