"""Evaluation metrics: FID, KID, Inception Score and precision/recall, exact and fast.

Pure functions on features/statistics: :func:`frechet_distance`, :func:`kid_from_features`,
:func:`inception_score_from_logits`, :func:`precision_recall_from_features`, :class:`FeatureStats`.
On images (paths, arrays, generators): :func:`fid`, :func:`kid`, :func:`inception_score`,
:func:`precision_recall`, :func:`fid_stats`. See docs/metrics.md.
"""
from .api import ExtractOptions, fid, fid_stats, inception_score, kid, precision_recall
from .frechet import frechet_distance
from .inception_score import inception_score_from_logits
from .kid import kid_from_features
from .precision_recall import precision_recall_from_features
from .stats import FeatureStats

__all__ = ["FeatureStats", "frechet_distance", "kid_from_features", "inception_score_from_logits",
           "precision_recall_from_features", "fid", "kid", "inception_score", "precision_recall", "fid_stats",
           "ExtractOptions"]
