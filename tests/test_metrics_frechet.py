"""frechet_distance against a scipy sqrtm float64 reference; singular covariances; input validation."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

import fastgan.metrics.frechet as frechet_mod
from fastgan.metrics import frechet_distance
from fastgan.metrics.frechet import trace_sqrt_product

# "torch-linalg": torch inputs through the torch.linalg algorithm that GPUs run (CPU tensors otherwise
# take the LAPACK path), so that code is executed here too.
BACKENDS = ["numpy", "torch", "torch-linalg"]


def _use(backend, monkeypatch):
    if backend == "torch-linalg":
        monkeypatch.setattr(frechet_mod, "_trace_sqrt_torch", frechet_mod._trace_sqrt_linalg)


def _reference(mu1, s1, mu2, s2):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(s1 @ s2)
    root = root[0] if isinstance(root, tuple) else root
    return float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.real(np.trace(root)))


def _spd(rng, d, cond):
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    w = np.logspace(0, -np.log10(cond), d)
    return (q * w) @ q.T


@pytest.mark.parametrize("cond", [10.0, 1e4, 1e8])
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_scipy_on_spd_pairs(cond, backend, monkeypatch):
    _use(backend, monkeypatch)
    rng = np.random.default_rng(int(np.log10(cond)))
    d = 64
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(rng, d, cond), _spd(rng, d, cond)
    ref = _reference(mu1, s1, mu2, s2)
    args = (mu1, s1, mu2, s2) if backend == "numpy" else tuple(torch.from_numpy(a) for a in (mu1, s1, mu2, s2))
    got = frechet_distance(*args)
    assert abs(got - ref) <= 1e-9 * max(1.0, abs(ref)), (got, ref)
    assert frechet_distance(*args, method="scipy") == pytest.approx(ref, rel=1e-12)


def test_close_distributions_relative_accuracy():
    # Two sample covariances of the same distribution: FID is small compared with the traces.
    rng = np.random.default_rng(1)
    d = 64
    a = np.cov(rng.standard_normal((1000, d)) * 0.5 + 1, rowvar=False)
    b = np.cov(rng.standard_normal((1000, d)) * 0.5 + 1, rowvar=False)
    mu = np.full(d, 1.0)
    ref = _reference(mu, a, mu + 1e-3, b)
    assert frechet_distance(mu, a, mu + 1e-3, b) == pytest.approx(ref, rel=1e-8)


def test_identical_gaussians_give_zero():
    rng = np.random.default_rng(2)
    s = _spd(rng, 32, 100.0)
    mu = rng.standard_normal(32)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-10 * np.trace(s)


@pytest.mark.parametrize("torch_backend", BACKENDS[1:])
def test_singular_covariances_fewer_samples_than_dims(torch_backend, monkeypatch):
    # Rank-deficient sample covariances (n < d): the eigh path is finite and equals the exact value
    # computed in the low-rank subspace, however scipy's sqrtm fares.
    _use(torch_backend, monkeypatch)
    rng = np.random.default_rng(3)
    d, n = 96, 20
    x1 = rng.standard_normal((n, d))
    x2 = rng.standard_normal((n, d)) + 0.5
    s1, s2 = np.cov(x1, rowvar=False), np.cov(x2, rowvar=False)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    got = frechet_distance(mu1, s1, mu2, s2)
    got_t = frechet_distance(*(torch.from_numpy(a) for a in (mu1, s1, mu2, s2)))
    assert np.isfinite(got) and np.isfinite(got_t)
    # Exact reference: S1 = A A^T with A = centred x1^T / sqrt(n-1); eig(S1 S2) = eig(A^T S2 A) (n x n).
    a = (x1 - mu1).T / np.sqrt(n - 1)
    ev = np.linalg.eigvalsh(a.T @ s2 @ a)
    tr_sqrt = np.sqrt(np.clip(ev, 0, None)).sum()
    exact = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert got == pytest.approx(exact, rel=1e-9)
    assert got_t == pytest.approx(exact, rel=1e-9)


def test_zero_covariance_both_sides():
    d = 8
    z = np.zeros((d, d))
    mu1, mu2 = np.zeros(d), np.ones(d)
    assert frechet_distance(mu1, z, mu2, z) == pytest.approx(d)


def test_trace_sqrt_product_symmetric_in_arguments():
    rng = np.random.default_rng(4)
    s1, s2 = _spd(rng, 40, 1e3), _spd(rng, 40, 1e2)
    assert trace_sqrt_product(s1, s2) == pytest.approx(trace_sqrt_product(s2, s1), rel=1e-12)


@pytest.mark.parametrize("bad", ["mu_shape", "sigma_shape", "method"])
def test_bad_input(bad):
    mu, s = np.zeros(4), np.eye(4)
    if bad == "mu_shape":
        with pytest.raises(ValueError, match="mu1"):
            frechet_distance(np.zeros((4, 1)), s, mu, s)
    elif bad == "sigma_shape":
        with pytest.raises(ValueError, match="sigma2"):
            frechet_distance(mu, s, mu, np.eye(3))
    else:
        with pytest.raises(ValueError, match="method"):
            frechet_distance(mu, s, mu, s, method="sqrtm")
