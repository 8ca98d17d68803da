"""Evaluation metrics: FID, KID, Inception Score, precision/recall."""
from .frechet import frechet_distance
from .inception_score import inception_score_from_logits
from .kid import kid_from_features
from .precision_recall import precision_recall_from_features
from .stats import FeatureStats

__all__ = ["FeatureStats", "frechet_distance", "kid_from_features", "inception_score_from_logits",
           "precision_recall_from_features"]
