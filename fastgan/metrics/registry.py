"""Named metrics (``fid50k_full``, ``kid50k_full``, ``is50k``, ``pr50k3_full``, ...) and ``calc_metrics``.

The names follow NVlabs' conventions: ``50k`` generated images, ``_full`` all real images (or the cap
below), ``pr50k3`` k=3. ``calc_metrics`` makes the generated images once, extracting everything the
requested metrics need in one pass.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from torch import nn

from .api import ExtractOptions, _stats, get_detector
from .features import GeneratorImages, as_source, compute_features
from .frechet import frechet_distance
from .inception_score import inception_score_from_logits
from .kid import kid_from_features
from .precision_recall import precision_recall_from_features
from .stats import FeatureStats

__all__ = ["MetricSpec", "METRICS", "calc_metrics", "parse_metric_names"]


@dataclass(frozen=True)
class MetricSpec:
    kind: str                    # 'fid', 'kid', 'is' or 'pr'
    num_gen: int                 # generated images
    max_real: Optional[int]      # real images used (None: all)


METRICS: Dict[str, MetricSpec] = {
    "fid50k_full": MetricSpec("fid", 50000, None),
    "kid50k_full": MetricSpec("kid", 50000, 1000000),
    "pr50k3_full": MetricSpec("pr", 50000, 200000),
    "is50k": MetricSpec("is", 50000, None),
    "fid50k": MetricSpec("fid", 50000, 50000),
    "kid50k": MetricSpec("kid", 50000, 50000),
    "pr50k3": MetricSpec("pr", 50000, 50000),
}


def parse_metric_names(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or text!r}; known: {', '.join(METRICS)}")
    return names


def calc_metrics(names: Sequence[str], G: nn.Module, data=None, detector=None, pr_detector=None,
                 opts: Optional[ExtractOptions] = None, num_gen: Optional[int] = None, seed_offset: int = 0,
                 truncation_psi: float = 1.0, cache: bool = True) -> Dict[str, Dict]:
    """Evaluate the named metrics of generator ``G`` against real images ``data`` (folder/.zip/array).

    Args:
        detector: Inception weights path or module (see :func:`fastgan.metrics.api.get_detector`).
        pr_detector: feature extractor for precision/recall (NVlabs uses VGG16; pass its detector to match
            their numbers); defaults to the Inception detector. A separate one regenerates the images
            (same seeds) for a second extraction pass.
        num_gen: overrides the generated-image count of every metric (e.g. for quick checks).
        seed_offset: generated image i uses seed ``seed_offset + i``.

    Returns ``{name: {"value"|"mean"/"std"|"precision"/"recall": ..., "num_gen", "num_real", "seconds"}}``.
    """
    opts = opts or ExtractOptions()
    specs = {n: METRICS[n] for n in names}
    kinds = {s.kind for s in specs.values()}
    if kinds - {"is"} and data is None:
        raise ValueError(f"metrics {sorted(n for n, s in specs.items() if s.kind != 'is')} need real data (--data)")
    det = get_detector(detector, opts, with_logits="is" in kinds)
    pr_det = get_detector(pr_detector, opts) if pr_detector is not None and "pr" in kinds else det
    n_gen = num_gen or max(s.num_gen for s in specs.values())
    source = GeneratorImages(G, range(seed_offset, seed_offset + n_gen), truncation_psi=truncation_psi,
                             device=opts.resolved_device())
    t0 = time.perf_counter()
    keys = ["pool"] + (["logits_unbiased"] if "is" in kinds else [])
    fake = compute_features(source, det, keys=keys, **opts.run_kwargs())
    fake_pr = (compute_features(source, pr_det, **opts.run_kwargs())["pool"] if pr_det is not det and "pr" in kinds
               else fake["pool"])
    gen_seconds = time.perf_counter() - t0

    results: Dict[str, Dict] = {}
    for name, spec in specs.items():
        t = time.perf_counter()
        n = min(num_gen or spec.num_gen, n_gen)
        if spec.kind == "fid":
            mu_r, s_r = _stats(data, det, opts, spec.max_real, cache, 1)
            mu_g, s_g = FeatureStats().append(fake["pool"][:n]).mean_cov()
            res = {"value": frechet_distance(mu_r, s_r, mu_g, s_g)}
        elif spec.kind == "kid":
            real = compute_features(as_source(data, spec.max_real, opts.num_workers), det, **opts.run_kwargs())["pool"]
            mean, std = kid_from_features(real, fake["pool"][:n])
            res = {"mean": mean, "std": std}
        elif spec.kind == "is":
            mean, std = inception_score_from_logits(fake["logits_unbiased"][:n], num_splits=10)
            res = {"mean": mean, "std": std}
        else:
            real = compute_features(as_source(data, spec.max_real, opts.num_workers), pr_det,
                                    **opts.run_kwargs())["pool"]
            p, r = precision_recall_from_features(real.to(opts.resolved_device()), fake_pr[:n], k=3)
            res = {"precision": p, "recall": r}
        res.update(num_gen=n, seconds=time.perf_counter() - t + gen_seconds)
        results[name] = res
    return results
