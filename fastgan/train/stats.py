"""Training statistics: any code reports named scalars, collectors turn them into per-tick summaries.

``report(name, values)`` adds the values' count, sum and sum of squares (float64) to every live
:class:`Collector` whose pattern matches ``name``. The moments stay on the values' device until
``Collector.update()`` (once per tick) moves them to the host, sums them across ranks when
``torch.distributed`` is initialised, and publishes ``num``/``mean``/``std`` of the tick. A name that
received nothing during a tick keeps its previous values (``keep_previous=True``). Names are listed in
the order of their first report.
"""
from __future__ import annotations

import math
import re
import threading
import weakref
from typing import Dict, List, Optional, Sequence, Union

import torch

__all__ = ["report", "report0", "Collector"]

Values = Union[torch.Tensor, float, int, Sequence[float]]

_lock = threading.Lock()
_collectors: "weakref.WeakSet[Collector]" = weakref.WeakSet()
_NAN = float("nan")


def _moments(values: Values) -> torch.Tensor:
    """[count, sum, sum of squares] of the flattened values, float64, on the values' device."""
    x = values.detach() if isinstance(values, torch.Tensor) else torch.as_tensor(values)
    x = x.reshape(-1).to(torch.float64)
    return torch.stack([torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device),
                        x.sum(), x.square().sum()])


def report(name: str, values: Values) -> Values:
    """Add ``values`` (a tensor of any shape, a number or a sequence) under ``name``; returns ``values``.

    Each element counts as one scalar. An empty tensor registers the name without adding anything.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"report: name must be a non-empty str, got {name!r}")
    with _lock:
        targets = [c for c in _collectors if c._accepts(name)]
    if targets:
        m = _moments(values)
        for c in targets:
            c._add(name, m)
    return values


def report0(name: str, values: Values) -> Values:
    """Like :func:`report` on rank 0; other ranks only register the name (their count stays 0)."""
    rank0 = not (torch.distributed.is_available() and torch.distributed.is_initialized()) \
        or torch.distributed.get_rank() == 0
    return report(name, values if rank0 else [])


def _summary(num: float, total: float, squares: float) -> Dict[str, float]:
    if num == 0:
        return {"num": 0, "mean": _NAN, "std": _NAN}
    mean = total / num
    if not math.isfinite(total) or not math.isfinite(squares):
        std = _NAN
    elif num == 1:
        std = 0.0
    else:
        std = math.sqrt(max(squares / num - mean * mean, 0.0))
    return {"num": int(num), "mean": mean, "std": std}


class Collector:
    """Per-tick summaries of the reported names matching ``regex`` (``re.fullmatch``).

    Values reported after construction accumulate until :meth:`update`, which publishes them as the
    tick's ``num``/``mean``/``std`` and starts a new tick. All ranks must call :meth:`update` together
    when ``torch.distributed`` is initialised.
    """

    def __init__(self, regex: str = ".*", keep_previous: bool = True) -> None:
        if not isinstance(regex, str):
            raise TypeError(f"Collector: regex must be a str, got {type(regex).__name__}")
        self._pattern = re.compile(regex)
        self.keep_previous = bool(keep_previous)
        self._match_cache: Dict[str, bool] = {}
        self._pending: Dict[str, Dict[torch.device, torch.Tensor]] = {}  # insertion order = first report
        self._order: List[str] = []
        self._values: Dict[str, Dict[str, float]] = {}
        self._mutex = threading.Lock()
        with _lock:
            _collectors.add(self)

    def _accepts(self, name: str) -> bool:
        hit = self._match_cache.get(name)
        if hit is None:
            hit = self._match_cache[name] = self._pattern.fullmatch(name) is not None
        return hit

    def _add(self, name: str, m: torch.Tensor) -> None:
        with self._mutex:
            per_device = self._pending.setdefault(name, {})
            acc = per_device.get(m.device)
            per_device[m.device] = m if acc is None else acc + m

    def _drain(self) -> Dict[str, List[float]]:
        """Take the pending moments (summed over devices, on the host) and start a new tick."""
        with self._mutex:
            pending, self._pending = self._pending, {}
        out = {}
        for name, per_device in pending.items():
            total = torch.zeros(3, dtype=torch.float64)
            for m in per_device.values():
                total += m.cpu()
            out[name] = total.tolist()
        return out

    def update(self) -> None:
        """Close the tick: publish the values reported since the previous call (summed over ranks)."""
        tick = self._drain()
        names = self._order + [n for n in tick if n not in self._order]
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            names, tick = _all_ranks(names, tick)
        for name in names:
            num, total, squares = tick.get(name, (0.0, 0.0, 0.0))
            if name not in self._order:
                self._order.append(name)
            if num == 0 and self.keep_previous and name in self._values:
                continue
            self._values[name] = _summary(num, total, squares)

    def names(self) -> List[str]:
        """Names with published values, in the order of their first report."""
        return [n for n in self._order if n in self._values]

    def num(self, name: str) -> int:
        """Number of scalars of ``name`` in the published tick (0 if unknown)."""
        return self._values.get(name, {"num": 0})["num"]

    def mean(self, name: str) -> float:
        """Mean of ``name`` in the published tick (NaN if unknown or empty)."""
        return self._values.get(name, {"mean": _NAN})["mean"]

    def std(self, name: str) -> float:
        """Population standard deviation of ``name`` in the published tick (NaN if unknown or empty)."""
        return self._values.get(name, {"std": _NAN})["std"]

    def as_dict(self) -> Dict[str, Dict[str, float]]:
        """``{name: {"num": int, "mean": float, "std": float}}`` of the published tick, in report order."""
        return {n: dict(self._values[n]) for n in self.names()}


def _all_ranks(names: List[str], tick: Dict[str, List[float]]):
    """Union of the ranks' names (rank order, then first-report order) and their moments summed."""
    dist = torch.distributed
    gathered: List[Optional[List[str]]] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, names)
    union: Dict[str, None] = {}
    for rank_names in gathered:
        union.update(dict.fromkeys(rank_names))
    merged = list(union)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" \
        else torch.device("cpu")
    table = torch.tensor([tick.get(n, [0.0, 0.0, 0.0]) for n in merged], dtype=torch.float64,
                         device=device).reshape(len(merged), 3)
    dist.all_reduce(table)
    return merged, dict(zip(merged, table.cpu().tolist()))
