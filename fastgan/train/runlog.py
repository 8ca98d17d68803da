"""Run-directory logging: ``log.txt`` (stdout/stderr tee), the status line, ``stats.jsonl``, TensorBoard."""
from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, TextIO

__all__ = ["format_time", "Tee", "status_line", "progress_line", "cpu_rss_gb", "StatsWriter", "append_jsonl"]


def format_time(seconds: float) -> str:
    """``Ns`` below a minute, ``Mm SSs`` below an hour, ``Hh MMm SSs`` below a day, else ``Dd HHh MMm``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s"
    return f"{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m"


def cpu_rss_gb() -> float:
    """Resident set size of this process in GiB (peak RSS where /proc is unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


class _TeeStream:
    def __init__(self, primary: TextIO, log: TextIO):
        self._primary, self._log = primary, log

    def write(self, text: str) -> int:
        self._log.write(text)
        self._log.flush()
        return self._primary.write(text)

    def flush(self) -> None:
        self._log.flush()
        self._primary.flush()

    def __getattr__(self, name):
        return getattr(self._primary, name)


class Tee:
    """Context manager: mirror ``sys.stdout`` and ``sys.stderr`` into ``path`` (append mode)."""

    def __init__(self, path: Optional[Path]):
        self.path = path
        self._saved = None
        self._fh: Optional[TextIO] = None

    def __enter__(self) -> "Tee":
        if self.path is not None:
            self._fh = open(self.path, "a", encoding="utf-8")
            self._saved = (sys.stdout, sys.stderr)
            sys.stdout = _TeeStream(sys.stdout, self._fh)
            sys.stderr = _TeeStream(sys.stderr, self._fh)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def status_line(tick: int, kimg: float, total_sec: float, tick_sec: float, sec_per_kimg: float, maintenance: float,
                cpumem: float, gpumem: float, reserved: float, augment: float) -> str:
    """The NVlabs per-tick status line (field widths of training-spec §1.9)."""
    return (f"tick {tick:<5d} kimg {kimg:<8.1f} time {format_time(total_sec):<12s} sec/tick {tick_sec:<7.1f} "
            f"sec/kimg {sec_per_kimg:<7.2f} maintenance {maintenance:<6.1f} cpumem {cpumem:<6.2f} "
            f"gpumem {gpumem:<6.2f} reserved {reserved:<6.2f} augment {augment:.3f}")


def progress_line(kimg: float, total_kimg: float, sec_per_kimg: float, imgs_per_sec: float, eta_sec: float,
                  losses: Dict[str, float], p: float, rt: Optional[float]) -> str:
    """A compact human line: progress, speed, ETA, tick-mean losses, augmentation p (and r_t)."""
    parts = [f"kimg {kimg:.3f}/{total_kimg:g} ({100 * kimg / total_kimg:.1f}%)", f"{sec_per_kimg:.2f} sec/kimg",
             f"{imgs_per_sec:.1f} img/s", f"ETA {format_time(max(eta_sec, 0.0))}"]
    parts += [f"{k} {v:.4g}" for k, v in losses.items()]
    parts.append(f"p {p:.3f}" + (f" rt {rt:.3f}" if rt is not None else ""))
    return "progress: " + "  ".join(parts)


def append_jsonl(path: Path, record: Dict[str, Any]) -> None:
    """Append one JSON line and push it to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


class StatsWriter:
    """``stats.jsonl`` lines and, when ``torch.utils.tensorboard`` imports, TensorBoard scalars (rank 0)."""

    def __init__(self, run_dir: Path, start_time: float):
        self.path = run_dir / "stats.jsonl"
        self.start_time = start_time
        self.tensorboard = None
        self.why_no_tensorboard: Optional[str] = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir))
        except ImportError as e:
            self.why_no_tensorboard = str(e)

    def write(self, stats: Dict[str, Dict[str, float]], metrics: Dict[str, float], cur_nimg: int) -> None:
        now = time.time()
        append_jsonl(self.path, {**stats, "timestamp": now})
        if self.tensorboard is not None:
            step, walltime = int(cur_nimg / 1e3), now - self.start_time
            for name, value in stats.items():
                self.tensorboard.add_scalar(name, value["mean"], global_step=step, walltime=walltime)
            for name, value in metrics.items():
                self.tensorboard.add_scalar(f"Metrics/{name}", value, global_step=step, walltime=walltime)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
