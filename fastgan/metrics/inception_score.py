"""Inception Score from classifier logits: exp(E_x KL(p(y|x) || p(y))), mean and std over splits."""
from __future__ import annotations

import math
from typing import Tuple, Union

import numpy as np
import torch

__all__ = ["inception_score_from_logits"]


def inception_score_from_logits(logits: Union[np.ndarray, torch.Tensor], num_splits: int = 10
                                ) -> Tuple[float, float]:
    """Inception Score of ``(N, C)`` logits (unnormalised log-probabilities), in float64.

    The rows are cut into ``num_splits`` contiguous, nearly equal parts (row ``i*N//S`` to ``(i+1)*N//S``);
    each part scores ``exp(mean_x KL(p(y|x) || p_part(y)))``. Returns the mean and (population) std of the
    part scores. For the reference IS, pass the Inception logits without the output bias
    (``InceptionV3FID`` output ``'logits_unbiased'``); log-probabilities work too.
    """
    x = torch.as_tensor(logits)
    if x.ndim != 2:
        raise ValueError(f"inception_score_from_logits: logits must be (N, C), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= num_splits <= n:
        raise ValueError(f"inception_score_from_logits: num_splits must be in [1, N={n}], got {num_splits}")
    logp = torch.log_softmax(x.double(), dim=1)
    scores = []
    for i in range(num_splits):
        part = logp[i * n // num_splits:(i + 1) * n // num_splits]
        log_marginal = torch.logsumexp(part, dim=0) - math.log(part.shape[0])
        kl = (part.exp() * (part - log_marginal)).sum(1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
