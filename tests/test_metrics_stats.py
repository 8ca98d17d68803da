"""FeatureStats: streaming mean/covariance vs numpy.cov, merging, save format, torch fallback path."""
import contextlib

import numpy as np
import pytest
import torch

import fastgan.metrics.stats as stats_mod
from fastgan import backends
from fastgan.metrics import FeatureStats


def _features(seed, n=700, d=48, offset=50.0):
    rng = np.random.default_rng(seed)
    # A large common offset: naive sum-of-squares accumulation would lose digits here.
    return (rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.1 + offset).astype(np.float32)


@pytest.mark.parametrize("tile", [16, 20, 256])           # symmetrising tiles: several, with remainder, one
@pytest.mark.parametrize("buffer_rows", [64, 4096])     # many partial flushes, or one at the end
@pytest.mark.parametrize("path", ["blas", "torch"])     # dsyrk + fused C++ centring, or torch ops only
def test_streaming_matches_numpy_cov(path, buffer_rows, tile, monkeypatch):
    if path == "torch":
        monkeypatch.setattr(stats_mod, "_dsyrk", lambda: None)
        monkeypatch.setattr(stats_mod, "_center_rows", lambda: None)
    monkeypatch.setattr(stats_mod, "_BUFFER_ROWS", buffer_rows)
    monkeypatch.setattr(stats_mod, "_TILE", tile)
    x = _features(0)
    st = FeatureStats()
    for i in range(0, len(x), 97):           # uneven batches
        st.append(torch.from_numpy(x[i:i + 97]))
    x64 = x.astype(np.float64)
    mu, cov = st.mean_cov()
    assert st.n == len(x)
    np.testing.assert_allclose(mu, x64.mean(0), rtol=1e-13)
    ref = np.cov(x64, rowvar=False)
    np.testing.assert_allclose(cov, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(st.cov(ddof=0), np.cov(x64, rowvar=False, ddof=0), atol=1e-12 * np.abs(ref).max())
    assert np.array_equal(cov, cov.T)


@pytest.mark.parametrize("path", ["fused", "torch"])
@pytest.mark.parametrize("dtype", [np.uint8, np.float16, np.float64, "strided"])
def test_other_input_dtypes(dtype, path, monkeypatch):
    if path == "torch":
        monkeypatch.setattr(stats_mod, "_center_rows", lambda: None)
    strided = dtype == "strided"       # float32 batches that are transposed views (column-major)
    x = (np.random.default_rng(3).random((300, 20)) * 200).astype(np.float32 if strided else dtype)
    st = FeatureStats()
    for i in range(0, 300, 128):
        batch = torch.from_numpy(x[i:i + 128])
        st.append(batch.T.contiguous().T if strided else batch)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(st.mean(), x64.mean(0), rtol=1e-13)
    ref = np.cov(x64, rowvar=False)
    np.testing.assert_allclose(st.cov(), ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_merge_equals_single_stream(monkeypatch):
    monkeypatch.setattr(stats_mod, "_BUFFER_ROWS", 100)
    x = _features(1)
    whole = FeatureStats().append(x)
    a, b = FeatureStats().append(x[:250]), FeatureStats().append(x[250:])     # both hold buffered rows
    a.merge(b)
    assert a.n == whole.n
    np.testing.assert_allclose(a.mean(), whole.mean(), rtol=1e-13)
    np.testing.assert_allclose(a.cov(), whole.cov(), atol=1e-12 * np.abs(whole.cov()).max())
    empty = FeatureStats().merge(b)
    np.testing.assert_allclose(empty.cov(), FeatureStats().append(x[250:]).cov(), atol=1e-13)


def test_save_writes_pytorch_fid_keys(tmp_path):
    x = _features(2, n=50, d=6)
    st = FeatureStats().append(x)
    st.save(tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as f:
        np.testing.assert_allclose(f["mu"], x.astype(np.float64).mean(0), rtol=1e-12)
        np.testing.assert_allclose(f["sigma"], np.cov(x.astype(np.float64), rowvar=False), atol=1e-10)
        assert int(f["n"]) == 50


def test_errors():
    st = FeatureStats(dim=4)
    with pytest.raises(ValueError, match="D=4"):
        st.append(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        st.append(np.zeros(4))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats().append(np.zeros((1, 3))).cov()
    with pytest.raises(ValueError, match="dim"):
        FeatureStats(dim=0)


def _center_rows_(dst, x, shift, sums):
    if not backends.available("cpu"):
        pytest.skip("fastgan._C is not built")
    torch.ops.fastgan.center_rows_(dst, x, shift, sums, "cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_center_rows_operator(dtype):
    x = torch.randn(37, 29, dtype=dtype) * 3 + 1
    shift = torch.randn(29, dtype=torch.float64)
    dst = torch.empty(37, 29, dtype=torch.float64)
    sums = torch.arange(29, dtype=torch.float64)
    _center_rows_(dst, x, shift, sums)
    expect = x.double() - shift
    assert torch.equal(dst, expect)                       # widening and one subtraction: exact
    torch.testing.assert_close(sums, torch.arange(29, dtype=torch.float64) + expect.sum(0), rtol=1e-14, atol=1e-12)
    # schema (mutates dst and sums only), fake kernel, dispatch
    torch.library.opcheck(torch.ops.fastgan.center_rows_.default, (dst, x, shift, sums, "cpu"))


def test_center_rows_operator_empty_and_compiled():
    shift, sums = torch.randn(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    _center_rows_(torch.empty(0, 5, dtype=torch.float64), torch.empty(0, 5), shift, sums)
    assert torch.equal(sums, torch.ones(5, dtype=torch.float64))

    def step(dst, x, shift, sums):
        torch.ops.fastgan.center_rows_(dst, x, shift, sums, "cpu")
        return sums * 2

    x, dst = torch.randn(6, 5), torch.empty(6, 5, dtype=torch.float64)
    torch._dynamo.reset()
    got = torch.compile(step, fullgraph=True, backend="aot_eager")(dst, x, shift, sums)
    torch.testing.assert_close(got, 2 * (1 + (x.double() - shift).sum(0)), rtol=1e-14, atol=1e-12)
    torch.testing.assert_close(dst, x.double() - shift, rtol=0, atol=0)


def test_center_rows_operator_errors():
    center_rows_ = _center_rows_
    x, shift, sums = torch.randn(4, 3), torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    dst = torch.empty(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="dst must be"):
        center_rows_(torch.empty(5, 3, dtype=torch.float64), x, shift, sums)
    with pytest.raises(TypeError, match="dst must be float64"):
        center_rows_(dst.float(), x, shift, sums)
    with pytest.raises(TypeError, match="x must be float32 or float64"):
        center_rows_(dst, x.half(), shift, sums)
    with pytest.raises(ValueError, match="shift must be"):
        center_rows_(dst, x, torch.zeros(4, dtype=torch.float64), sums)
    with pytest.raises(ValueError, match="x must be a contiguous"):
        center_rows_(dst, torch.randn(3, 4).T, shift, sums)
    with pytest.raises(ValueError, match="sum must not overlap shift"):
        center_rows_(dst, x, shift, shift)
    with pytest.raises(ValueError, match="dst must not overlap x"):
        xd = torch.randn(4, 3, dtype=torch.float64)
        center_rows_(xd, xd, shift, sums)
    with pytest.raises(backends.BackendUnavailable):
        torch.ops.fastgan.center_rows_(dst, x, shift, sums, "cuda")


def test_center_rows_operator_deterministic_mode_is_thread_count_independent():
    """Under deterministic algorithms the column sums do not depend on the number of threads."""
    x = torch.randn(4099, 7, generator=torch.Generator().manual_seed(3)) * 100
    shift = torch.randn(7, dtype=torch.float64)
    results = []
    threads = torch.get_num_threads()
    try:
        with _deterministic():
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                dst, sums = torch.empty(4099, 7, dtype=torch.float64), torch.zeros(7, dtype=torch.float64)
                _center_rows_(dst, x, shift, sums)
                results.append(sums)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results)
    torch.testing.assert_close(results[0], (x.double() - shift).sum(0), rtol=1e-13, atol=1e-10)


@contextlib.contextmanager
def _deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev)
