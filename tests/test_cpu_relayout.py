"""torch.ops.fastgan_cpu.relayout: NCHW <-> channels_last with an optional per-(n, c) scale."""
import pytest
import torch

from fastgan import backends

pytestmark = pytest.mark.skipif(not backends.available("cpu"), reason="fastgan._C is not built")


def _op():
    from fastgan.backends.cpu import relayout
    return relayout


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 70, 33, 9), (3, 33, 1, 1), (2, 1, 40, 40), (1, 64, 37, 35)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("src_cl", [False, True])
@pytest.mark.parametrize("dst_cl", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_matches_torch(shape, dtype, src_cl, dst_cl, scaled):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=dtype)
    s = torch.randn(shape[0], shape[1], generator=g, dtype=dtype) if scaled else None
    src = x.contiguous(memory_format=torch.channels_last) if src_cl else x
    y = _op()(src, s, channels_last=dst_cl)
    want = x * s[:, :, None, None] if scaled else x
    fmt = torch.channels_last if dst_cl else torch.contiguous_format
    assert y.is_contiguous(memory_format=fmt) and y.dtype == dtype
    torch.testing.assert_close(y, want, rtol=0, atol=0)   # one multiply per element: exact
    assert y.data_ptr() != src.data_ptr()


def test_bad_input():
    op = _op()
    x = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match="scale must have N\\*C = 6"):
        op(x, torch.ones(5), True)
    with pytest.raises(ValueError, match="x must be \\[N, C, H, W\\]"):
        op(torch.randn(3, 4, 4), None, True)
    with pytest.raises(ValueError, match="contiguous or channels_last"):
        op(x[:, :, ::2], None, True)
    with pytest.raises(TypeError, match="float32 or float64"):
        op(x.to(torch.bfloat16), None, True)
