"""Kernel Inception Distance: unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets."""
from __future__ import annotations

from typing import List, Tuple, Union

import numpy as np
import torch

__all__ = ["kid_from_features"]

Array = Union[np.ndarray, torch.Tensor]


def subset_indices(n_real: int, n_fake: int, num_subsets: int, subset_size: int,
                   seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """The (real, fake) row indices of each subset: drawn without replacement by ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_subsets):
        fake = rng.choice(n_fake, subset_size, replace=False)
        real = rng.choice(n_real, subset_size, replace=False)
        out.append((real, fake))
    return out


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between equal-size sets x, y ``(m, D)`` with k(a, b) = (a.b / D + 1)^3."""
    m, d = x.shape
    kxx = (x @ x.mT / d + 1) ** 3
    kyy = (y @ y.mT / d + 1) ** 3
    kxy = (x @ y.mT / d + 1) ** 3
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * kxy.sum() / (m * m)


def kid_from_features(real: Array, fake: Array, num_subsets: int = 100, max_subset_size: int = 1000,
                      seed: int = 0, dtype: torch.dtype = torch.float64) -> Tuple[float, float]:
    """KID of two feature sets ``(N_real, D)`` and ``(N_fake, D)``: mean and std over subsets.

    Each subset draws ``m = min(N_real, N_fake, max_subset_size)`` rows of each set without replacement
    (:func:`subset_indices`) and computes the unbiased MMD^2 with the kernel ``(a.b/D + 1)^3``, as in the
    KID paper and NVlabs ``kid50k``. Computed in ``dtype`` on the device of ``real`` when it is a tensor.
    """
    real_t = torch.as_tensor(real)
    fake_t = torch.as_tensor(fake, device=real_t.device)
    for name, t in (("real", real_t), ("fake", fake_t)):
        if t.ndim != 2:
            raise ValueError(f"kid_from_features: {name} must be (N, D), got shape {tuple(t.shape)}")
    if real_t.shape[1] != fake_t.shape[1]:
        raise ValueError(f"kid_from_features: feature dims differ: {real_t.shape[1]} vs {fake_t.shape[1]}")
    if num_subsets < 1:
        raise ValueError(f"kid_from_features: num_subsets must be >= 1, got {num_subsets}")
    m = min(real_t.shape[0], fake_t.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"kid_from_features: needs at least 2 samples per set, got subset size {m}")
    values = []
    for ridx, fidx in subset_indices(real_t.shape[0], fake_t.shape[0], num_subsets, m, seed):
        x = fake_t[torch.from_numpy(fidx).to(fake_t.device)].to(dtype)
        y = real_t[torch.from_numpy(ridx).to(real_t.device)].to(dtype)
        values.append(_mmd2_unbiased(x, y))
    v = torch.stack(values).double()
    std = float(v.std(unbiased=False)) if len(values) > 1 else 0.0
    return float(v.mean()), std
