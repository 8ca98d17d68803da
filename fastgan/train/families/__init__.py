"""Model families: the trainer's plug-in point.

A family is what one kind of GAN brings to the shared training loop (:class:`fastgan.train.Trainer`): the
``--cfg`` names it answers to, a *recipe* that turns the options and the dataset's geometry into network,
optimiser, loss and schedule settings (:class:`Recipe`), and the builders of its training set, networks,
augmentation, loss and phases. The loop never names a model: it asks :func:`family_of` ``(config.cfg)``.
Everything else (resume, checkpoints, DDP, ADA, EMA, safety, metrics, logs) is shared.

Registered here: ``stylegan`` (the NVlabs StyleGAN2-ADA / StyleGAN3 cfgs and fastgan's ``tiny``) and
``dcgan``. A new family (a GAN zoo entry, an image-to-image model) is a :class:`Family` passed to
:func:`register_family`; its builders default to the shared ones of :mod:`fastgan.train.build`, which
construct the networks named by ``class_name`` in its recipe's kwargs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple

from .. import build
from ..data import open_training_set

__all__ = ["Geometry", "Recipe", "Family", "register_family", "family_of", "cfg_names"]


@dataclass(frozen=True)
class Geometry:
    """What the dataset fixes: square ``resolution``, image ``channels``, ``label_dim`` (0: unconditional)."""
    resolution: int
    channels: int
    label_dim: int


@dataclass
class Recipe:
    """A family's settings for one run (the model-specific part of :class:`~fastgan.train.config.ResolvedConfig`).

    ``G_kwargs``/``D_kwargs`` name their network with ``class_name`` (a :data:`fastgan.nets.NETWORKS` key);
    ``loss_kwargs`` are the family's own loss settings (the shared ones, ``r1_gamma`` from ``gamma``, the
    objective and its options, are added by the resolver). ``G_reg_interval``/``D_reg_interval``: lazy
    regularisation interval, or None for one phase doing both. ``mbstd_group``: the per-process batch must
    be a multiple of it (None: no constraint).
    """
    batch: int
    batch_gpu: int
    G_kwargs: Dict[str, Any]
    D_kwargs: Dict[str, Any]
    glr: float
    dlr: float
    gamma: float
    ema_kimg: float
    ema_rampup: Optional[float]
    total_kimg: float
    G_reg_interval: Optional[int]
    D_reg_interval: Optional[int]
    loss_kwargs: Dict[str, Any] = field(default_factory=dict)
    betas: Tuple[float, float] = (0.0, 0.99)
    mbstd_group: Optional[int] = None


@dataclass(frozen=True)
class Family:
    """One model family (see the module docstring).

    ``recipe(config, geometry, transfer) -> Recipe`` raises ``ValueError`` naming the option it cannot
    honour; ``transfer`` is True when the run starts from another run's networks (``--resume`` of a
    snapshot). ``dataset(config)`` opens the training set (errors as ``ValueError`` naming ``data`` or
    ``cond``). The builders take the resolved config; their signatures are those of
    :mod:`fastgan.train.build`.
    """
    name: str
    cfgs: Tuple[str, ...]
    recipe: Callable[..., Recipe]
    dataset: Callable[..., Any] = open_training_set
    build_networks: Callable[..., Any] = build.build_networks
    build_augment_pipe: Callable[..., Any] = build.build_augment_pipe
    build_loss: Callable[..., Any] = build.build_loss
    build_phases: Callable[..., Any] = build.build_phases


_FAMILIES: Dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make ``family``'s cfg names available to ``fastgan train --cfg``; returns it.

    Raises ValueError when a cfg name already belongs to another family.
    """
    if not isinstance(family, Family):
        raise TypeError(f"register_family: expected a Family, got {type(family).__name__}")
    if not family.cfgs:
        raise ValueError(f"register_family: family {family.name!r} has no cfg names")
    for other in _FAMILIES.values():
        taken = sorted(set(other.cfgs) & set(family.cfgs))
        if taken and other.name != family.name:
            raise ValueError(f"register_family: cfg {taken} already belongs to family {other.name!r}")
    _FAMILIES[family.name] = family
    return family


def family_of(cfg: str) -> Family:
    """The family that owns ``--cfg`` value ``cfg``; ValueError naming the known cfgs otherwise."""
    for family in _FAMILIES.values():
        if cfg in family.cfgs:
            return family
    raise ValueError(f"unknown cfg {cfg!r}; expected one of {', '.join(cfg_names())}")


def cfg_names() -> Tuple[str, ...]:
    """Every registered ``--cfg`` value, family by family in registration order."""
    return tuple(name for family in _FAMILIES.values() for name in family.cfgs)


from . import stylegan, dcgan  # noqa: E402,F401  (each registers its family)
