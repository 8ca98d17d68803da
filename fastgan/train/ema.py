"""The exponential moving average of the generator (``G_ema``, training-spec §1.6)."""
from __future__ import annotations

from typing import Optional

import torch

__all__ = ["ema_beta", "update_ema"]


def ema_beta(batch_size: int, cur_nimg: int, ema_kimg: float, ema_rampup: Optional[float]) -> float:
    """Per-step decay ``2 ** (-batch / half_life)``; the half-life (images) is ``1000 * ema_kimg``, capped at
    ``ema_rampup * cur_nimg`` when a ramp-up is set (so the first step of a fresh run copies G exactly)."""
    half_life = ema_kimg * 1000.0
    if ema_rampup is not None:
        half_life = min(half_life, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


@torch.no_grad()
def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """``theta_ema <- beta * theta_ema + (1 - beta) * theta`` for every parameter; buffers are copied.

    Parameters and buffers are paired by position (both modules have the same architecture).
    """
    ema_params, params = list(G_ema.parameters()), list(G.parameters())
    ema_bufs, bufs = list(G_ema.buffers()), list(G.buffers())
    if len(ema_params) != len(params) or len(ema_bufs) != len(bufs):
        raise ValueError("update_ema: G_ema and G must have the same architecture")
    for target, source in zip(ema_params, params):
        target.mul_(beta).add_(source.detach(), alpha=1.0 - beta)
    for target, source in zip(ema_bufs, bufs):
        target.copy_(source)
