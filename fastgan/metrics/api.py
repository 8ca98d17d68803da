"""High-level metrics on images: ``fid``, ``kid``, ``inception_score``, ``precision_recall``, ``fid_stats``.

Image arguments accept an image folder or .zip path, a uint8 array/tensor, or a source from
:mod:`fastgan.metrics.features` (e.g. :class:`GeneratorImages`). FID arguments also accept precomputed
statistics: a ``.npz`` with ``mu`` and ``sigma`` (pytorch-fid's format, or ``fastgan fid-stats`` output)
or a :class:`FeatureStats`.

``detector`` is a weights path (pytorch-fid state dict or NVlabs TorchScript), an ``nn.Module``
extractor, or None (``$FASTGAN_INCEPTION_WEIGHTS``, then the cache, then a verified download).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from .cache import cached_stats
from .features import ImageFiles, as_source, compute_features, compute_stats
from .frechet import frechet_distance
from .inception_score import inception_score_from_logits
from .kid import kid_from_features
from .precision_recall import precision_recall_from_features
from .stats import FeatureStats
from .weights import TorchScriptDetector, load_detector

__all__ = ["ExtractOptions", "get_detector", "fid", "kid", "inception_score", "precision_recall", "fid_stats",
           "load_stats"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class ExtractOptions:
    """How features are extracted (shared by every high-level metric)."""
    device: Optional[Union[str, torch.device]] = None
    batch_size: int = 64
    channels_last: bool = True
    autocast: Optional[str] = None          # None, 'bf16' or 'fp16'
    num_workers: int = 3
    rank: int = 0
    world_size: int = 1
    progress: bool = False
    preprocess: str = "tf"                  # Inception input resize/scaling: 'tf' or 'pytorch-fid'

    def run_kwargs(self) -> dict:
        return dict(batch_size=self.batch_size, device=self.device, channels_last=self.channels_last,
                    autocast=self.autocast, rank=self.rank, world_size=self.world_size, progress=self.progress)

    def resolved_device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def get_detector(detector, opts: ExtractOptions, with_logits: bool = False) -> nn.Module:
    """An extractor module from a path / module / None (see module doc)."""
    if isinstance(detector, nn.Module):
        det = detector
    else:
        det = load_detector(detector, device=opts.resolved_device(), preprocess=opts.preprocess)
    if with_logits and isinstance(det, TorchScriptDetector):
        det.with_logits = True
    return det


def load_stats(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` from a .npz with keys ``mu`` and ``sigma``."""
    with np.load(path) as f:
        if "mu" not in f or "sigma" not in f:
            raise ValueError(f"{path}: statistics .npz must hold 'mu' and 'sigma', found {sorted(f.files)}")
        return f["mu"].astype(np.float64), f["sigma"].astype(np.float64)


def _is_stats_file(obj) -> bool:
    return isinstance(obj, (str, os.PathLike)) and str(obj).lower().endswith(".npz")


def _stats(obj, det: nn.Module, opts: ExtractOptions, max_items: Optional[int], cache: bool,
           ddof: int) -> Tuple[np.ndarray, np.ndarray]:
    if _is_stats_file(obj):
        return load_stats(obj)
    if isinstance(obj, FeatureStats):
        return obj.mean_cov(ddof)
    source = as_source(obj, max_items=max_items, num_workers=opts.num_workers)

    def compute():
        st = compute_stats(source, det, **opts.run_kwargs())
        mu, sigma = st.mean_cov(ddof)
        return mu, sigma, st.n

    identity = getattr(det, "identity", None)
    if cache and isinstance(source, ImageFiles) and identity:
        options = {"max_items": max_items, "ddof": ddof, "autocast": opts.autocast,
                   "channels_last": opts.channels_last, "key": "pool"}
        mu, sigma, _ = cached_stats(source, identity, options, compute)
        return mu, sigma
    mu, sigma, _ = compute()
    return mu, sigma


def fid(a, b, detector=None, opts: Optional[ExtractOptions] = None, max_items: Optional[int] = None,
        cache: bool = True, ddof: int = 1) -> float:
    """Fréchet Inception Distance between two image sets or statistics (see module doc).

    ``max_items`` caps how many images of each source are used; ``cache`` reuses/stores statistics of
    image folders and zips (keyed by their contents, see :mod:`fastgan.metrics.cache`).
    """
    opts = opts or ExtractOptions()
    det = None if (_is_stats_file(a) or isinstance(a, FeatureStats)) and (
        _is_stats_file(b) or isinstance(b, FeatureStats)) else get_detector(detector, opts)
    mu1, s1 = _stats(a, det, opts, max_items, cache, ddof)
    mu2, s2 = _stats(b, det, opts, max_items, cache, ddof)
    if mu1.shape != mu2.shape:
        raise ValueError(f"fid: feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance(mu1, s1, mu2, s2)


def fid_stats(src, out: PathLike, detector=None, opts: Optional[ExtractOptions] = None,
              max_items: Optional[int] = None, ddof: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Compute the statistics of ``src`` and write them to ``out`` (.npz with ``mu``, ``sigma``, ``n``)."""
    opts = opts or ExtractOptions()
    det = get_detector(detector, opts)
    source = as_source(src, max_items=max_items, num_workers=opts.num_workers)
    st = compute_stats(source, det, **opts.run_kwargs())
    if opts.rank == 0:
        st.save(out, ddof=ddof, detector=np.array(getattr(det, "identity", "")))
    return st.mean_cov(ddof)


def _features(obj, det, opts: ExtractOptions, key: str, max_items: Optional[int]) -> torch.Tensor:
    if isinstance(obj, (np.ndarray, torch.Tensor)) and torch.as_tensor(obj).is_floating_point():
        return torch.as_tensor(obj)          # precomputed features
    source = as_source(obj, max_items=max_items, num_workers=opts.num_workers)
    return compute_features(source, det, keys=(key,), **opts.run_kwargs())[key]


def kid(a, b, detector=None, opts: Optional[ExtractOptions] = None, max_items: Optional[int] = None,
        num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0) -> Tuple[float, float]:
    """Kernel Inception Distance (mean, std over subsets) between ``a`` (real) and ``b`` (generated).

    Float arrays are taken as precomputed ``(N, D)`` features.
    """
    opts = opts or ExtractOptions()
    det = get_detector(detector, opts)
    real, fake = _features(a, det, opts, "pool", max_items), _features(b, det, opts, "pool", max_items)
    return kid_from_features(real, fake, num_subsets=num_subsets, max_subset_size=max_subset_size, seed=seed)


def inception_score(src, detector=None, opts: Optional[ExtractOptions] = None, max_items: Optional[int] = None,
                    num_splits: int = 10) -> Tuple[float, float]:
    """Inception Score (mean, std over ``num_splits``) of an image set, from the logits without output bias."""
    opts = opts or ExtractOptions()
    det = get_detector(detector, opts, with_logits=True)
    return inception_score_from_logits(_features(src, det, opts, "logits_unbiased", max_items), num_splits)


def precision_recall(a, b, detector=None, opts: Optional[ExtractOptions] = None, max_items: Optional[int] = None,
                     k: int = 3) -> Tuple[float, float]:
    """Improved precision and recall of ``b`` (generated) against ``a`` (real), k-NN radii with ``k``.

    NVlabs' ``pr50k3`` uses VGG16 features: pass its detector here to reproduce those numbers; with the
    default Inception detector the values are on a different feature space.
    """
    opts = opts or ExtractOptions()
    det = get_detector(detector, opts)
    real, fake = _features(a, det, opts, "pool", max_items), _features(b, det, opts, "pool", max_items)
    return precision_recall_from_features(real.to(opts.resolved_device()), fake, k=k)
