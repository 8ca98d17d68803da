"""Metrics during training: evaluated on each network snapshot's G_ema (training-spec §6).

Every rank takes part (the generated images are split across ranks); rank 0 appends one JSON line per
metric to ``metric-<name>.jsonl``. Without Inception weights (argument, ``$FASTGAN_INCEPTION_WEIGHTS`` or
the fastgan cache; nothing is downloaded during training) the metrics are skipped with a logged reason.
"""
from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from .runlog import append_jsonl, format_time

__all__ = ["find_detector", "result_values", "MetricRunner"]

LOWER_IS_BETTER = ("fid", "kid")


def find_detector(path: Optional[str]) -> Tuple[Optional[Path], Optional[str]]:
    """``(weights path, None)`` or ``(None, reason)`` when no Inception weights are available offline."""
    from ..metrics.weights import resolve_weights

    try:
        return resolve_weights(path, allow_download=False), None
    except FileNotFoundError as e:
        return None, str(e)


def result_values(name: str, res: Dict) -> Dict[str, float]:
    """NVlabs result keys of one ``calc_metrics`` entry: ``fid50k_full``; ``is50k_mean``/``_std``;
    ``pr50k3_full_precision``/``_recall``; KID reports its mean under the metric name."""
    if "value" in res:
        return {name: float(res["value"])}
    if "precision" in res:
        return {f"{name}_precision": float(res["precision"]), f"{name}_recall": float(res["recall"])}
    if name.startswith("is"):
        return {f"{name}_mean": float(res["mean"]), f"{name}_std": float(res["std"])}
    return {name: float(res["mean"])}


class MetricRunner:
    """Evaluates the configured metrics and remembers the latest values and the best primary one."""

    def __init__(self, names: List[str], data: str, detector: Optional[Path], num_gen: Optional[int],
                 rank: int, world_size: int, device: torch.device, num_workers: int):
        self.names, self.data, self.detector, self.num_gen = names, data, detector, num_gen
        self.rank, self.world_size, self.device, self.num_workers = rank, world_size, device, num_workers
        self.latest: Dict[str, float] = {}
        self.best: Optional[Dict] = None

    def evaluate(self, G_ema: torch.nn.Module, run_dir: Optional[Path], snapshot_name: str,
                 cur_nimg: int) -> Dict[str, float]:
        """Run every metric on ``G_ema``; returns the flat result values (all ranks)."""
        from ..metrics.api import ExtractOptions
        from ..metrics.registry import calc_metrics

        opts = ExtractOptions(device=self.device, rank=self.rank, world_size=self.world_size,
                              num_workers=min(self.num_workers, 3))
        out: Dict[str, float] = {}
        for name in self.names:
            t0 = time.time()
            res = calc_metrics([name], G_ema, data=self.data, detector=str(self.detector), opts=opts,
                               num_gen=self.num_gen)[name]
            values = result_values(name, res)
            out.update(values)
            seconds = time.time() - t0
            if self.rank == 0 and run_dir is not None:
                append_jsonl(run_dir / f"metric-{name}.jsonl", {
                    "results": values, "metric": name, "total_time": seconds,
                    "total_time_str": format_time(seconds), "num_gpus": self.world_size,
                    "snapshot_pkl": snapshot_name, "timestamp": datetime.now().timestamp()})
                print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        self.latest.update(out)
        self._track_best(out, snapshot_name, cur_nimg)
        return out

    def _track_best(self, values: Dict[str, float], snapshot_name: str, cur_nimg: int) -> None:
        key = next(iter(values), None)
        if key is None or not key.startswith(LOWER_IS_BETTER + ("is",)):
            return                                   # precision/recall: no single score to rank by
        value, lower = values[key], key.startswith(LOWER_IS_BETTER)
        if self.best is None or (value < self.best["value"] if lower else value > self.best["value"]):
            self.best = {"metric": key, "value": value, "snapshot": snapshot_name, "kimg": cur_nimg / 1e3}

    def state_dict(self) -> Dict:
        return {"latest": dict(self.latest), "best": None if self.best is None else dict(self.best)}

    def load_state_dict(self, state: Dict) -> None:
        self.latest = dict(state.get("latest", {}))
        self.best = state.get("best")
