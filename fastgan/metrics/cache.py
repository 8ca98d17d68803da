"""Dataset statistics cache: .npz files keyed by the dataset's contents, the detector and the options.

The key is a SHA-256 over (a) every image file's name and content hash (for a .zip, the archive's hash),
(b) the detector's ``identity`` (which includes its weights' SHA-256 and preprocessing) and (c) the
options that change the statistics (item count, ddof, autocast, ...). Any change to one image, the
detector or an option gives a new key, so stale statistics are never reused. Files are written
atomically; a file whose stored key does not match is ignored.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from ..utils.io import atomic_open
from .features import ImageFiles
from .weights import cache_dir, file_sha256

__all__ = ["dataset_fingerprint", "stats_key", "cached_stats", "stats_cache_dir"]


def stats_cache_dir() -> Path:
    return cache_dir() / "metrics"


def dataset_fingerprint(source: ImageFiles) -> str:
    """SHA-256 over the names and content hashes of the images the source will read."""
    h = hashlib.sha256()
    if source.is_zip:
        h.update(f"zip:{file_sha256(source.path)}\n".encode())
        h.update("\n".join(source.names).encode())
        return h.hexdigest()
    paths = [source.path / n for n in source.names]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(file_sha256, paths))
    for name, digest in zip(source.names, digests):
        h.update(f"{name}\0{digest}\n".encode())
    return h.hexdigest()


def stats_key(source: ImageFiles, detector_identity: str, options: Dict) -> str:
    blob = json.dumps({"data": dataset_fingerprint(source), "detector": detector_identity,
                       "options": options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def cached_stats(source: ImageFiles, detector_identity: str, options: Dict,
                 compute: Callable[[], Tuple[np.ndarray, np.ndarray, int]],
                 directory: Optional[Union[str, os.PathLike]] = None) -> Tuple[np.ndarray, np.ndarray, int]:
    """``(mu, sigma, n)`` for ``source``: from the cache when the key matches, else ``compute()`` and store."""
    key = stats_key(source, detector_identity, options)
    directory = Path(directory) if directory is not None else stats_cache_dir()
    path = directory / f"{source.path.stem}-{key[:20]}.npz"
    if path.is_file():
        try:
            with np.load(path) as f:
                if str(f["key"]) == key:
                    return f["mu"], f["sigma"], int(f["n"])
        except (OSError, ValueError, KeyError):
            pass  # unreadable or foreign file: recompute and replace it
    mu, sigma, n = compute()
    with atomic_open(path, "wb") as fh:
        np.savez(fh, mu=mu, sigma=sigma, n=np.int64(n), key=np.array(key))
    return mu, sigma, n
