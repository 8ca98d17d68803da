"""fastgan::relayout (cpu kernel): NCHW <-> channels_last with an optional per-(n, c) scale, as an operator."""
import pytest
import torch

from fastgan import backends
from fastgan.backends.prims.layout import RELAYOUT, as_layout, memory_format_of

pytestmark = pytest.mark.skipif(not backends.available("cpu"), reason="fastgan._C is not built")

CL = torch.channels_last


def _relayout(x, scale, channels_last):
    return torch.ops.fastgan.relayout(x, scale, channels_last, "cpu")


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 70, 33, 9), (3, 33, 1, 1), (2, 1, 40, 40), (1, 64, 37, 35),
                                   (0, 3, 4, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("src_cl", [False, True])
@pytest.mark.parametrize("dst_cl", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_matches_torch(shape, dtype, src_cl, dst_cl, scaled):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype)
    s = torch.randn(shape[0], shape[1], generator=g, dtype=dtype) if scaled else None
    src = x.contiguous(memory_format=CL) if src_cl else x
    y = _relayout(src, s, dst_cl)
    want = x * s[:, :, None, None] if scaled else x
    fmt = CL if dst_cl else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt) and y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y, want, rtol=0, atol=0)   # one multiply per element: exact
    if x.numel():
        assert y.data_ptr() != src.data_ptr()


@pytest.mark.parametrize("src_cl,dst_cl", [(False, True), (True, False), (True, True)])
def test_opcheck(src_cl, dst_cl):
    x = torch.randn(2, 5, 4, 3, dtype=torch.float64)
    x = x.contiguous(memory_format=CL) if src_cl else x
    for scale in (None, torch.randn(2, 5, dtype=torch.float64), torch.randn(10, dtype=torch.float32)):
        torch.library.opcheck(torch.ops.fastgan.relayout.default, (x, scale, dst_cl, "cpu"))
        torch.library.opcheck(torch.ops.fastgan.relayout.default,
                              (x.detach().requires_grad_(True), scale, dst_cl, "cpu"))


@pytest.mark.parametrize("src_cl,dst_cl", [(False, True), (True, False), (False, False)])
def test_gradients_to_second_order(src_cl, dst_cl):
    """Linear in x and in the scale: gradcheck/gradgradcheck in float64; dx comes back in x's layout."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    x = (x.contiguous(memory_format=CL) if src_cl else x).requires_grad_(True)
    s = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = lambda x, s: _relayout(x, s, dst_cl)   # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, s))
    assert torch.autograd.gradgradcheck(fn, (x, s))
    (dx,) = torch.autograd.grad(_relayout(x, None, dst_cl), x, torch.randn(2, 3, 4, 5, dtype=torch.float64))
    assert memory_format_of(dx) == memory_format_of(x)


def test_as_layout():
    x = torch.randn(2, 3, 4, 5)
    assert as_layout(x, False, "cpu") is x
    y = as_layout(x, True, "cpu")
    assert y.is_contiguous(memory_format=CL) and torch.equal(y, x)
    h = x.half()   # no kernel for half: contiguous() does it
    assert as_layout(h, True, "cpu").is_contiguous(memory_format=CL)
    strided = x[:, :, ::2]
    assert as_layout(strided, True, "cpu").is_contiguous(memory_format=CL)
    assert torch.equal(as_layout(strided, True, "cpu"), strided)


def test_compiles_without_graph_break():
    def fn(x, s):
        return RELAYOUT(x, s, True, backend="cpu") * 2
    x, s = torch.randn(2, 3, 4, 5, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    torch._dynamo.reset()
    y = torch.compile(fn, fullgraph=True, backend="aot_eager")(x, s)
    assert y.is_contiguous(memory_format=CL)
    torch.testing.assert_close(y, fn(x, s))
    gx, gs = torch.autograd.grad(y.sum(), (x, s))
    torch.testing.assert_close(gs, 2 * x.sum(dim=(2, 3)))


def test_other_backends_raise():
    with pytest.raises(backends.BackendUnavailable):
        torch.ops.fastgan.relayout(torch.randn(1, 2, 3, 3), None, True, "cuda")


def test_bad_input():
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="scale must have N\\*C = 6"):
        _relayout(x, torch.ones(5), True)
    with pytest.raises(ValueError, match="x must be \\[N, C, H, W\\]"):
        _relayout(torch.randn(3, 4, 4), None, True)
    with pytest.raises(ValueError, match="contiguous or channels_last"):
        _relayout(x[:, :, ::2], None, True)
    with pytest.raises(TypeError, match="float32 or float64"):
        _relayout(x.to(torch.bfloat16), None, True)
