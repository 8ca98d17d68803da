"""The training demo's quality measure: a digits classifier and distances in its feature space.

:class:`DigitsJudge` trains a small CNN on part of the real digits and keeps the rest aside. It then
scores any labelled image set (reals, noise, or class-conditional samples of a generator) by

* **accuracy**: the fraction of images the classifier assigns to the class they were drawn for (for a
  conditional generator: does it draw the digit it was asked for?);
* **FID** and **KID** between the set and the classifier's training reals, computed on the classifier's
  penultimate features (the formulas of :mod:`fastgan.metrics`, with this small network in place of
  Inception). Features are centred on the training reals and divided by one number, the root of their
  mean per-feature variance, so that the values do not depend on the arbitrary scale of the network.

The held-out reals give the reference values a perfect generator would reach (:attr:`DigitsJudge.floor`):
the same number of images with the same class counts, scored the same way. Generators are therefore
scored on as many samples as there are held-out reals, with the held-out labels as requested classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.frechet import frechet_distance
from ..metrics.kid import kid_from_features

__all__ = ["DigitsClassifier", "Score", "DigitsJudge", "as_model_input", "split_holdout", "train_classifier",
           "embed", "accuracy", "feature_fid", "feature_kid"]

Images = Union[np.ndarray, torch.Tensor]

_INPUT = 16            # the classifier works on 16x16 (other sizes: area-averaged down, bilinear up)


def as_model_input(images: Images) -> torch.Tensor:
    """Images as float32 [N, 1, 16, 16] in [-1, 1].

    Accepts uint8 (0..255) or float ([-1, 1]) images shaped [N, H, W] or [N, C, H, W]; more than one
    channel is averaged to grey.
    """
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must be [N, H, W] or [N, C, H, W], got shape {list(x.shape)}")
    x = x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()
    if x.shape[1] != 1:
        x = x.mean(dim=1, keepdim=True)
    if x.shape[-2:] != (_INPUT, _INPUT):
        x = F.interpolate(x, size=(_INPUT, _INPUT), mode="area" if x.shape[-1] > _INPUT else "bilinear",
                          align_corners=None if x.shape[-1] > _INPUT else False)
    return x.contiguous()


class DigitsClassifier(torch.nn.Module):
    """Two 3x3 conv stages (16 -> 8 -> 4 px) and two dense layers; ``features`` is the penultimate layer.

    Args:
        num_classes: output logits.
        feature_dim: width of the feature layer used for FID/KID.
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 64):
        super().__init__()
        self.conv = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2))
        self.embed = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 4 * 4, feature_dim),
                                         torch.nn.ReLU())
        self.head = torch.nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 1, 16, 16] in [-1, 1] -> [N, feature_dim]."""
        return self.embed(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, 1, 16, 16] in [-1, 1] -> logits [N, num_classes]."""
        return self.head(self.features(x))


def split_holdout(labels: np.ndarray, fraction: float, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Stratified split: ``(train indices, held-out indices)``, each sorted; ``fraction`` of every class
    (rounded, at least one item) is held out."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    held = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        rng.shuffle(members)
        held.append(members[:max(1, int(round(fraction * len(members))))])
    holdout = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(labels)), holdout)
    if len(train) == 0:
        raise ValueError("split_holdout: nothing left to train on")
    return train, holdout


def _shift(x: torch.Tensor, gen: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random integer translation of each image by up to ``max_shift`` pixels (background fill -1)."""
    n, size = x.shape[0], x.shape[-1]
    padded = F.pad(x, [max_shift] * 4, value=-1.0)
    span = torch.arange(size)
    rows = torch.randint(0, 2 * max_shift + 1, [n, 1], generator=gen) + span      # [n, size]
    cols = torch.randint(0, 2 * max_shift + 1, [n, 1], generator=gen) + span
    batch = torch.arange(n)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]][:, None]


def train_classifier(images: Images, labels: np.ndarray, epochs: int = 12, seed: int = 0, batch_size: int = 64,
                     lr: float = 2e-3) -> DigitsClassifier:
    """Fit a :class:`DigitsClassifier` with Adam and cross-entropy, one-pixel random shifts as augmentation.

    Deterministic for a given ``seed``; the global torch RNG is left untouched.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x = as_model_input(images)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if y.shape != (x.shape[0],):
        raise ValueError(f"labels must be [N={x.shape[0]}], got shape {list(y.shape)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsClassifier(num_classes=int(y.max()) + 1)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for idx in order.split(batch_size):
            loss = F.cross_entropy(model(_shift(x[idx], gen, 1)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


@torch.no_grad()
def embed(model: DigitsClassifier, images: Images, batch_size: int = 512) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(features float64 [N, F], logits float32 [N, K])`` of ``images`` (see :func:`as_model_input`)."""
    x = as_model_input(images)
    feats, logits = [], []
    for chunk in x.split(batch_size):
        f = model.features(chunk)
        feats.append(f.double())
        logits.append(model.head(f))
    return torch.cat(feats), torch.cat(logits)


def accuracy(logits: torch.Tensor, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max logit equals the label."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    return float((logits.argmax(dim=1) == labels).double().mean())


def _moments(features: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    f = features.double()
    return f.mean(dim=0), torch.cov(f.T)


def feature_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between the Gaussians fitted to feature sets ``a`` [N, F] and ``b`` [M, F]."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature_fid: a and b must be [N, F] with the same F, got {list(a.shape)}, "
                         f"{list(b.shape)}")
    if min(len(a), len(b)) < 2:
        raise ValueError("feature_fid: each set needs at least 2 rows")
    return frechet_distance(*_moments(a), *_moments(b))


def feature_kid(a: torch.Tensor, b: torch.Tensor, num_subsets: int = 50, seed: int = 0) -> float:
    """KID (mean unbiased MMD^2, cubic kernel) between feature sets; subsets of ``min(len(a), len(b), 1000)``."""
    return kid_from_features(a, b, num_subsets=num_subsets, seed=seed)[0]


@dataclass(frozen=True)
class Score:
    """Quality of one labelled image set: class accuracy, FID and KID vs the classifier's training reals."""
    accuracy: float
    fid: float
    kid: float
    count: int


class DigitsJudge:
    """Trains the classifier on real digits and scores image sets against the training reals.

    Args:
        images: real images, uint8 [N, H, W] or [N, 1, H, W].
        labels: their classes, int [N].
        holdout: fraction of every class kept out of classifier training (accuracy check and floor).
        seed: seed of the split and of the classifier.
        epochs: classifier training epochs.

    Attributes: ``holdout_accuracy`` (classifier accuracy on the held-out reals) and ``floor`` (the
    :class:`Score` of the held-out reals: what a generator indistinguishable from the data scores).
    """

    def __init__(self, images: Images, labels: np.ndarray, holdout: float = 0.25, seed: int = 0, epochs: int = 12):
        labels = np.asarray(labels, dtype=np.int64)
        images = np.asarray(images)
        if len(images) != len(labels):
            raise ValueError(f"images ({len(images)}) and labels ({len(labels)}) differ in length")
        train, held = split_holdout(labels, holdout, seed)
        self.model = train_classifier(images[train], labels[train], epochs=epochs, seed=seed)
        self.num_classes = int(labels.max()) + 1
        raw, _ = embed(self.model, images[train])
        self._shift, self._scale = raw.mean(dim=0), float(raw.var(dim=0).mean().sqrt().clamp(min=1e-12))
        self.reference = self._standardize(raw)
        self.holdout_labels = labels[held]
        self.floor = self.score(images[held], self.holdout_labels)
        self.holdout_accuracy = self.floor.accuracy

    def _standardize(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self._shift) / self._scale

    def score(self, images: Images, labels: np.ndarray) -> Score:
        """Score ``images`` (uint8, or float in [-1, 1]) drawn for classes ``labels``."""
        raw, logits = embed(self.model, images)
        feats = self._standardize(raw)
        return Score(accuracy=accuracy(logits, labels), fid=feature_fid(feats, self.reference),
                     kid=feature_kid(feats, self.reference), count=len(feats))

    @torch.no_grad()
    def sample(self, G: torch.nn.Module, seed: int = 0, batch_size: int = 128) -> torch.Tensor:
        """Class-conditional samples of ``G`` (``noise_mode='const'``, psi 1), one per held-out label,
        as float [N, C, H, W] on the CPU. ``G.c_dim`` must equal the number of classes."""
        if getattr(G, "c_dim", None) != self.num_classes:
            raise ValueError(f"G must be conditional on {self.num_classes} classes, got c_dim "
                             f"{getattr(G, 'c_dim', None)}")
        device = next(G.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn([len(self.holdout_labels), G.z_dim], generator=gen)
        c = F.one_hot(torch.as_tensor(self.holdout_labels), self.num_classes).float()
        out = [G(zz.to(device), cc.to(device), noise_mode="const").float().cpu()
               for zz, cc in zip(z.split(batch_size), c.split(batch_size))]
        return torch.cat(out).clamp(-1, 1)

    def score_generator(self, G: torch.nn.Module, seed: int = 0) -> Score:
        """:meth:`score` of :meth:`sample` (the held-out labels as requested classes)."""
        return self.score(self.sample(G, seed), self.holdout_labels)
