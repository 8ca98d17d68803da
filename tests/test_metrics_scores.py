"""KID, Inception Score and precision/recall against direct implementations and known answers."""
import math

import numpy as np
import pytest
import torch

from fastgan.metrics import inception_score_from_logits, kid_from_features, precision_recall_from_features
from fastgan.metrics.kid import subset_indices


def _kid_numpy(real, fake, subsets):
    d = real.shape[1]
    vals = []
    for ridx, fidx in subsets:
        x, y = fake[fidx].astype(np.float64), real[ridx].astype(np.float64)
        m = len(x)
        k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
        kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
        mmd = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
               - 2 * kxy.mean())
        vals.append(mmd)
    return np.mean(vals), np.std(vals)


def test_kid_matches_numpy_reference():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((120, 16)).astype(np.float32)
    fake = (rng.standard_normal((90, 16)) * 1.2 + 0.3).astype(np.float32)
    mean, std = kid_from_features(real, fake, num_subsets=7, max_subset_size=50, seed=5)
    ref_mean, ref_std = _kid_numpy(real, fake, subset_indices(120, 90, 7, 50, 5))
    assert mean == pytest.approx(ref_mean, rel=1e-10)
    assert std == pytest.approx(ref_std, rel=1e-8)
    assert mean > 0


def test_kid_single_full_subset_is_the_unbiased_mmd():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
    mean, std = kid_from_features(torch.from_numpy(real), torch.from_numpy(fake), num_subsets=1)
    ref, _ = _kid_numpy(real, fake, [(np.arange(40), np.arange(40))])   # MMD is permutation invariant
    assert mean == pytest.approx(ref, rel=1e-12) and std == 0.0


def test_kid_errors():
    with pytest.raises(ValueError, match="dims differ"):
        kid_from_features(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        kid_from_features(np.zeros((1, 3)), np.zeros((5, 3)))


def test_inception_score_known_values():
    c = 10
    confident = np.full((100, c), -1e4)
    confident[np.arange(100), np.arange(100) % c] = 0.0      # one-hot, classes balanced in every split
    mean, std = inception_score_from_logits(confident, num_splits=10)
    assert mean == pytest.approx(c, rel=1e-9) and std == pytest.approx(0, abs=1e-9)
    same = np.tile(np.random.default_rng(0).standard_normal(c), (50, 1))  # identical predictions: KL = 0
    assert inception_score_from_logits(same, num_splits=5)[0] == pytest.approx(1.0, abs=1e-12)


def test_inception_score_matches_direct_formula():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((30, 7)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = []
    for i in range(3):
        part = p[i * 10:(i + 1) * 10]
        scores.append(math.exp((part * (np.log(part) - np.log(part.mean(0)))).sum(1).mean()))
    mean, std = inception_score_from_logits(torch.from_numpy(logits), num_splits=3)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_precision_recall_constructed_clouds():
    # Real: 10 points on a line at 0..9 (k=3 radii: 2 inside, 3 at the ends).
    # Fake: 5 points at 0.5..4.5 (inside the real manifold) and 5 far away at 1000..1004.
    real = np.stack([np.arange(10.0), np.zeros(10)], 1)
    fake = np.stack([np.r_[np.arange(5) + 0.5, np.arange(5) + 1000.0], np.zeros(10)], 1)
    precision, recall = precision_recall_from_features(real, fake, k=3, batch_size=3)
    assert precision == pytest.approx(0.5)
    # Fake radii: 3 at 0.5 and 4.5, 2 elsewhere; real 0..7 are covered, 8 and 9 are not.
    assert recall == pytest.approx(0.8)


def test_precision_recall_matches_brute_force():
    rng = np.random.default_rng(3)
    real, fake = rng.standard_normal((60, 5)), rng.standard_normal((45, 5)) * 1.3 + 0.2

    def brute(a, b, k):
        daa = np.linalg.norm(a[:, None] - a[None], axis=2)
        radii = np.sort(daa, axis=1)[:, k]
        dba = np.linalg.norm(b[:, None] - a[None], axis=2)
        return (dba <= radii[None]).any(1).mean()

    p, r = precision_recall_from_features(real, fake, k=3, batch_size=16, dtype=torch.float64)
    assert p == pytest.approx(brute(real, fake, 3)) and r == pytest.approx(brute(fake, real, 3))
    assert precision_recall_from_features(real, real, k=3) == (1.0, 1.0)
