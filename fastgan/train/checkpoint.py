"""Training-state checkpoints: crash-proof files for an exact continuation of a run.

A checkpoint is ``<run_dir>/checkpoints/ckpt-<step:09d>.pt``, a ``torch.save`` archive of plain data
(tensors, numbers, strings, bytes, lists, dicts) read back with ``torch.load(weights_only=True)``: no code
runs on load. numpy arrays (RNG and sampler states) are stored as tagged bytes (:func:`encode_state`).

Writing is atomic: the archive goes to a temporary file in the same directory, which is flushed and
fsynced, renamed over the final name with ``os.replace``, and the directory is fsynced. A crash at any
moment leaves either the previous set of checkpoints or the new one, never a truncated file under a
checkpoint name; stray temporary files are removed by :func:`remove_stale_temps`. Only the newest
``keep`` checkpoints are kept.

Test hook: with ``FASTGAN_CKPT_WRITE_DELAY=<seconds>`` in the environment the writer sleeps that long
after the first chunk of a checkpoint reached the temporary file, so a test can kill the process in the
middle of a write.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

__all__ = ["CHECKPOINT_DIR", "FORMAT", "VERSION", "checkpoint_path", "list_checkpoints", "write_checkpoint",
           "load_checkpoint", "latest_checkpoint", "is_checkpoint_source", "remove_stale_temps",
           "encode_state", "decode_state", "find_run_with_checkpoints"]

CHECKPOINT_DIR = "checkpoints"
FORMAT = "fastgan.train.checkpoint"
VERSION = 1
_NAME = re.compile(r"^ckpt-(\d{9})\.pt$")
_TEMP_PREFIX = ".ckpt-"
DELAY_ENV = "FASTGAN_CKPT_WRITE_DELAY"

PathLike = Union[str, "os.PathLike[str]"]


def encode_state(obj: Any) -> Any:
    """Recursively replace numpy arrays/scalars by ``torch.load(weights_only=True)``-safe tagged dicts."""
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": np.ascontiguousarray(obj).tobytes(), "dtype": obj.dtype.str, "shape": list(obj.shape)}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: encode_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(encode_state(v) for v in obj)
    return obj


def decode_state(obj: Any) -> Any:
    """Inverse of :func:`encode_state`."""
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.frombuffer(obj["__ndarray__"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
        return {k: decode_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(decode_state(v) for v in obj)
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def checkpoint_path(run_dir: PathLike, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"ckpt-{step:09d}.pt"


def list_checkpoints(run_dir: PathLike) -> List[Path]:
    """Checkpoints of a run, oldest first (by step)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: p.name)


class _DelayedWriter:
    """File wrapper that sleeps once, after the first chunk was written (the test hook)."""

    def __init__(self, fh, delay: float):
        self._fh, self._delay = fh, delay

    def write(self, data) -> int:
        n = self._fh.write(data)
        if self._delay > 0:
            self._fh.flush()
            time.sleep(self._delay)
            self._delay = 0.0
        return n

    def __getattr__(self, name):
        return getattr(self._fh, name)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):          # not every platform/filesystem allows opening a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_checkpoint(state: Dict[str, Any], run_dir: PathLike, step: int, keep: int = 3) -> Path:
    """Atomically write ``state`` as the checkpoint of ``step`` and delete all but the newest ``keep``."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    final = checkpoint_path(run_dir, step)
    final.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **encode_state(state)}
    fd, tmp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, _DelayedWriter(fh, float(os.environ.get(DELAY_ENV, 0) or 0)))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())                 # mkstemp creates 0600; use the usual file mode
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(final.parent)
    for old in list_checkpoints(run_dir)[:-keep]:
        with contextlib.suppress(FileNotFoundError):
            old.unlink()
    return final


def load_checkpoint(path: PathLike) -> Dict[str, Any]:
    """Read a checkpoint (tensors on the CPU); ValueError if it is not a fastgan training checkpoint."""
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastgan training checkpoint")
    if int(obj.get("version", 0)) > VERSION:
        raise ValueError(f"{path}: checkpoint version {obj['version']} is newer than this fastgan ({VERSION})")
    return decode_state(obj)


def latest_checkpoint(run_dir: PathLike) -> Optional[Path]:
    """The newest checkpoint of ``run_dir`` that loads (unreadable ones are skipped with a warning)."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            load_checkpoint(path)
            return path
        except Exception as e:  # noqa: BLE001 - any unreadable file: fall back to an older checkpoint
            warnings.warn(f"skipping unreadable checkpoint {path}: {e}")
    return None


def remove_stale_temps(run_dir: PathLike) -> List[Path]:
    """Delete temporary files left by writes that were interrupted; returns what was removed."""
    d = Path(run_dir) / CHECKPOINT_DIR
    removed = []
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(_TEMP_PREFIX) and p.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
                    removed.append(p)
    return removed


def is_checkpoint_source(path: PathLike) -> bool:
    """True for a checkpoint file name or a run directory that holds checkpoints."""
    p = Path(path)
    if p.is_dir():
        return bool(list_checkpoints(p))
    return bool(_NAME.match(p.name)) and p.parent.name == CHECKPOINT_DIR


def find_run_with_checkpoints(outdir: PathLike) -> Optional[Path]:
    """The run directory under ``outdir`` with the highest numeric prefix that holds checkpoints."""
    d = Path(outdir)
    if not d.is_dir():
        return None
    runs = []
    for sub in d.iterdir():
        m = re.match(r"^(\d+)", sub.name)
        if m and sub.is_dir() and list_checkpoints(sub):
            runs.append((int(m.group(1)), sub.name, sub))
    return max(runs)[2] if runs else None
