"""The GEMM + col2im transposed convolution of the cpu backend against F.conv_transpose2d, and when
the cpu policy routes to it."""
import pytest
import torch
import torch.nn.functional as F

from fastgan import backends

pytestmark = pytest.mark.skipif(not backends.available("cpu"), reason="fastgan._C is not built")


@pytest.fixture
def ct():
    from fastgan.backends import cpu_conv_transpose
    return cpu_conv_transpose


@pytest.fixture
def policy():
    from fastgan.backends import cpu_policy
    return cpu_policy


@pytest.mark.parametrize("n,c,o,h,w,k,stride", [(2, 5, 3, 4, 6, 3, 2), (1, 16, 8, 9, 7, 3, 2), (3, 4, 4, 5, 5, 2, 3),
                                                (1, 7, 2, 1, 1, 3, 2), (2, 64, 32, 40, 3, 1, 2), (0, 4, 3, 5, 5, 3, 2)])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_matches_torch(ct, n, c, o, h, w, k, stride, dtype, tol):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, h, w, generator=g, dtype=dtype)
    wt = torch.randn(c, o, k, k, generator=g, dtype=dtype)
    want = F.conv_transpose2d(x, wt, stride=stride)
    for xin in (x, x.contiguous(memory_format=torch.channels_last)):
        got = ct.conv_transpose2d(xin, wt, stride)
        assert got.shape == want.shape and got.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * (want.abs().max().item() if n else 1))


def test_tiles_cover_rows(ct, policy, monkeypatch):
    monkeypatch.setattr(policy, "GEMM_DECONV_TILE_ROWS", 7)   # tiles of one row, with a remainder, on a 7-wide input
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    wt = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(ct.conv_transpose2d(x, wt, 2), F.conv_transpose2d(x, wt, stride=2))


def test_policy_routes_only_where_valid(policy):
    x = torch.randn(1, 4, 3, 3)
    w = torch.randn(4, 8, 3, 3)
    pays = policy.gemm_deconv_pays
    assert pays(x, w, 2, (0, 0), 1)
    assert not pays(x, w, 2, (1, 1), 1)          # padding
    assert not pays(x, w, 1, (0, 0), 1)          # stride 1
    assert not pays(x, torch.randn(4, 4, 3, 3), 2, (0, 0), 2)   # groups
    assert not pays(x, torch.randn(4, policy.GEMM_DECONV_MAX_OUT_CHANNELS + 1, 3, 3), 2, (0, 0), 1)
    assert not pays(x.bfloat16(), w.bfloat16(), 2, (0, 0), 1)
    assert not pays(x.requires_grad_(True), w, 2, (0, 0), 1)    # autograd keeps oneDNN


def test_upsampling_conv_takes_the_gemm_path(monkeypatch):
    """conv2d_resample(up=2) on cpu runs the GEMM kernel outside autograd and oneDNN inside it; both equal ref."""
    import fastgan.ops as ops
    from fastgan.backends import cpu_modconv

    calls = []
    real = cpu_modconv._gemm_conv_transpose2d
    monkeypatch.setattr(cpu_modconv, "_gemm_conv_transpose2d", lambda *a: calls.append(1) or real(*a))
    f = ops.setup_filter([1, 3, 3, 1], device="cpu")
    x, w = torch.randn(2, 6, 5, 5, dtype=torch.float64), torch.randn(4, 6, 3, 3, dtype=torch.float64)
    want = ops.conv2d_resample(x, w, f.double(), up=2, padding=1, impl="ref")
    with torch.no_grad():
        got = ops.conv2d_resample(x, w, f.double(), up=2, padding=1, impl="cpu")
    assert calls == [1]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    got = ops.conv2d_resample(x.requires_grad_(True), w, f.double(), up=2, padding=1, impl="cpu")
    assert calls == [1]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
