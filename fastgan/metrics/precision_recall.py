"""Improved precision and recall (k-NN manifolds, Kynkäänniemi et al. 2019) with batched distances."""
from __future__ import annotations

from typing import Tuple, Union

import numpy as np
import torch

__all__ = ["precision_recall_from_features", "knn_radii", "manifold_coverage"]

Array = Union[np.ndarray, torch.Tensor]


def knn_radii(feats: torch.Tensor, k: int, batch_size: int = 10000) -> torch.Tensor:
    """Distance from each row of ``feats`` ``(N, D)`` to its k-th nearest other row, shape ``(N,)``.

    Runs over row and column batches, keeping the k+1 smallest distances (self included) per row, so
    memory stays ``O(batch_size^2)``.
    """
    n = feats.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"knn_radii: k must be in [1, N-1] = [1, {n - 1}], got {k}")
    out = torch.empty(n, dtype=feats.dtype, device=feats.device)
    for i in range(0, n, batch_size):
        rows = feats[i:i + batch_size]
        best = None
        for j in range(0, n, batch_size):
            d = torch.cdist(rows, feats[j:j + batch_size])
            cand = d if best is None else torch.cat([best, d], dim=1)
            best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        out[i:i + batch_size] = best[:, k]
    return out


def manifold_coverage(queries: torch.Tensor, refs: torch.Tensor, radii: torch.Tensor,
                      batch_size: int = 10000) -> torch.Tensor:
    """Boolean ``(Q,)``: whether each query lies within ``radii[j]`` of some reference row ``j``."""
    hit = torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    for i in range(0, queries.shape[0], batch_size):
        q = queries[i:i + batch_size]
        for j in range(0, refs.shape[0], batch_size):
            d = torch.cdist(q, refs[j:j + batch_size])
            hit[i:i + batch_size] |= (d <= radii[j:j + batch_size]).any(dim=1)
    return hit


def precision_recall_from_features(real: Array, fake: Array, k: int = 3, batch_size: int = 10000,
                                   dtype: torch.dtype = torch.float32) -> Tuple[float, float]:
    """Precision and recall of ``fake`` ``(N_f, D)`` against ``real`` ``(N_r, D)``.

    Precision: fraction of fake rows inside the real manifold, the union of balls around each real row
    with radius its distance to the k-th nearest real neighbour. Recall: fraction of real rows inside the
    fake manifold, built the same way. Distances are Euclidean, in ``dtype`` on the device of ``real``.
    """
    real_t = torch.as_tensor(real)
    fake_t = torch.as_tensor(fake, device=real_t.device)
    for name, t in (("real", real_t), ("fake", fake_t)):
        if t.ndim != 2:
            raise ValueError(f"precision_recall_from_features: {name} must be (N, D), got {tuple(t.shape)}")
    if real_t.shape[1] != fake_t.shape[1]:
        raise ValueError(f"precision_recall_from_features: feature dims differ: "
                         f"{real_t.shape[1]} vs {fake_t.shape[1]}")
    real_t, fake_t = real_t.to(dtype), fake_t.to(dtype)
    precision = manifold_coverage(fake_t, real_t, knn_radii(real_t, k, batch_size), batch_size)
    recall = manifold_coverage(real_t, fake_t, knn_radii(fake_t, k, batch_size), batch_size)
    return float(precision.double().mean()), float(recall.double().mean())
