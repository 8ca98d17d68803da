"""Adaptive augmentation: the controller that moves the augment pipe's ``p`` (training-spec §1.8).

The loss reports ``sign(D(aug(real)))`` as ``Loss/signs/real``; a dedicated statistics collector sums them
over rounds and ranks. Every ``interval`` steps the mean ``r_t`` is compared with ``target`` and ``p`` moves
by ``sign(r_t - target) * batch * interval / (kimg * 1000)``. fastgan clamps ``p`` to [0, 1]; with
``clamp_max=False`` (compat 'nvlabs') only the lower bound applies, as in NVlabs.
"""
from __future__ import annotations

import math
import re
from typing import Any, Dict, Optional

import torch

from . import stats

__all__ = ["AdaController", "SIGNS_KEY"]

SIGNS_KEY = "Loss/signs/real"


class AdaController:
    """Adjusts ``augment_pipe.p`` from the sign statistic of the real logits.

    Args:
        augment_pipe: module with a scalar buffer ``p``.
        target: the wanted ``r_t`` (0.6 by default in NVlabs).
        batch_size: total batch per step (all ranks).
        interval: steps between adjustments.
        kimg: thousands of images for p to move by 1.
        clamp_max: also clamp ``p`` at 1.
    """

    def __init__(self, augment_pipe: torch.nn.Module, target: float, batch_size: int, interval: int = 4,
                 kimg: float = 500, clamp_max: bool = True) -> None:
        if not hasattr(augment_pipe, "p"):
            raise TypeError("AdaController: augment_pipe must have a buffer 'p'")
        if not 0 <= target <= 1:
            raise ValueError(f"AdaController: target must be in [0, 1], got {target}")
        if interval < 1 or batch_size < 1 or not kimg > 0:
            raise ValueError("AdaController: interval and batch_size must be >= 1 and kimg > 0")
        self.pipe, self.target, self.batch_size = augment_pipe, float(target), int(batch_size)
        self.interval, self.kimg, self.clamp_max = int(interval), float(kimg), bool(clamp_max)
        self._collector = stats.Collector(regex=re.escape(SIGNS_KEY), keep_previous=False)
        self._num = 0.0      # signs gathered since the last adjustment (all ranks)
        self._sum = 0.0
        self.rt: Optional[float] = None

    def gather(self) -> None:
        """Move what was reported since the last call into the controller's sums (collective: all ranks)."""
        self._collector.update()
        n = self._collector.num(SIGNS_KEY)
        if n > 0:
            self._num += n
            self._sum += self._collector.mean(SIGNS_KEY) * n

    def step(self) -> Optional[float]:
        """Adjust p from the signs gathered since the previous adjustment; returns ``r_t`` (None if none)."""
        self.gather()
        if self._num > 0:
            self.rt = self._sum / self._num
        self._num = self._sum = 0.0
        if self.rt is None:
            return None
        delta = math.copysign(1.0, self.rt - self.target) if self.rt != self.target else 0.0
        delta *= self.batch_size * self.interval / (self.kimg * 1000)
        with torch.no_grad():
            p = self.pipe.p
            new = (p + delta).clamp(min=0.0, max=1.0 if self.clamp_max else None)
            p.copy_(new)
        return self.rt

    @property
    def p(self) -> float:
        return float(self.pipe.p)

    def state_dict(self) -> Dict[str, Any]:
        """Pending sums, last ``r_t`` and ``p``; call :meth:`gather` first so nothing reported is left out."""
        return {"num": self._num, "sum": self._sum, "rt": self.rt, "p": self.pipe.p.detach().cpu().clone()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._num, self._sum, self.rt = float(state["num"]), float(state["sum"]), state["rt"]
        with torch.no_grad():
            self.pipe.p.copy_(torch.as_tensor(state["p"]))
