"""The GEMM + col2im transposed convolution of the cpu backend against F.conv_transpose2d."""
import pytest
import torch
import torch.nn.functional as F

from fastgan.backends import cpu_conv_transpose as ct


@pytest.mark.parametrize("n,c,o,h,w,k,stride", [(2, 5, 3, 4, 6, 3, 2), (1, 16, 8, 9, 7, 3, 2), (3, 4, 4, 5, 5, 2, 3),
                                                (1, 7, 2, 1, 1, 3, 2), (2, 64, 32, 40, 3, 1, 2)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_torch(n, c, o, h, w, k, stride, dtype, tol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    wt = torch.randn(c, o, k, k, generator=g, dtype=dtype)
    want = F.conv_transpose2d(x, wt, stride=stride)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        got = ct.conv_transpose2d(xin, wt, stride)
        assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * want.abs().max().item())


def test_tiles_cover_rows(monkeypatch):
    monkeypatch.setattr(ct, "_TILE_M", 7)   # tiles of one row, with a remainder, on a 7-wide input
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    wt = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ct.conv_transpose2d(x, wt, 2), F.conv_transpose2d(x, wt, stride=2))


def test_applies_only_where_valid():
    x = torch.randn(1, 4, 3, 3)
    w = torch.randn(4, 8, 3, 3)
    assert ct.applies(x, w, 2, (0, 0), 1)
    assert not ct.applies(x, w, 2, (1, 1), 1)          # padding
    assert not ct.applies(x, w, 1, (0, 0), 1)          # stride 1
    assert not ct.applies(x, torch.randn(4, 4, 3, 3), 2, (0, 0), 2)   # groups
    assert not ct.applies(x, torch.randn(4, ct.MAX_OUT_CHANNELS + 1, 3, 3), 2, (0, 0), 1)
    assert not ct.applies(x.bfloat16(), w.bfloat16(), 2, (0, 0), 1)
    assert not ct.applies(x.requires_grad_(True), w, 2, (0, 0), 1)    # autograd keeps oneDNN
