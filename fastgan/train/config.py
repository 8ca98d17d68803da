"""Training options (``TrainConfig``) and their resolution into network/optimizer/loss kwargs.

``resolve_config`` validates the options, asks the model family that owns ``--cfg`` for its recipe
(:mod:`fastgan.train.families`: the NVlabs StyleGAN tables of training-spec §4, DCGAN) and adds what every
family shares (batch geometry, augmentation, metrics, resume, the loss objective). It checks everything that
can be checked before training starts; every error is a ``ValueError`` that names the option.

Deliberate differences from NVlabs (``compat='nvlabs'`` restores the reference behaviour where noted):
ADA p is clamped to [0, 1] (compat: lower bound only); non-finite gradients skip the optimizer step and are
counted (compat: substituted, NaN->0 and +-Inf->+-1e5, and applied); the sub-batch is validated against the
per-GPU batch (NVlabs ADA bug §7.5 is not reproduced).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

__all__ = ["TrainConfig", "ResolvedConfig", "resolve_config", "cfg_names", "LOSS_NAMES",
           "AUG_MODES", "PRECISIONS", "COMPAT_MODES", "run_desc"]


def cfg_names() -> Tuple[str, ...]:
    """Every ``--cfg`` value of the registered model families (:func:`fastgan.train.families.cfg_names`)."""
    from .families import cfg_names as names

    return names()


LOSS_NAMES = ("nonsaturating", "minimax", "wgan", "wgan-gp", "lsgan", "hinge", "dragan", "relativistic")
AUG_MODES = ("ada", "fixed", "noaug", "diffaug")
PRECISIONS = ("fp32", "fp16", "bf16")
COMPAT_MODES = ("fastgan", "nvlabs")

DATASET_CLASS = "fastgan.train.data.ImageFolderDataset"
LOSS_CLASS = "fastgan.train.loss.StyleGAN2Loss"
AUGMENT_CLASS = "fastgan.train.augment.AugmentPipe"
DIFFAUG_CLASS = "fastgan.train.augment.diff_augment"


@dataclass
class TrainConfig:
    """Every option of ``fastgan train`` (CLI names with ``-`` -> ``_``). None means "from the cfg table".

    The NVlabs options keep their meaning (training-spec §4.4); fastgan additions:
    ``precision`` ('fp16': the NVlabs mixed precision, fp16 layers on CUDA only; 'fp32': ``--fp32``;
    'bf16': every synthesis/discriminator layer in bfloat16), ``loss``/``r2_gamma``/``label_smoothing`` (loss
    zoo), ``pl_weight``/``style_mixing`` (override the cfg's), ``keep_checkpoints``, ``checkpoint_every_steps``
    (None: one training-state checkpoint per tick), ``max_bad_steps`` (consecutive non-finite steps before
    rolling back to the last good checkpoint), ``max_rollbacks``, ``export_nvlabs_state`` (also write plain
    state dicts with NVlabs names at each snapshot), ``run_dir`` (use this directory instead of a new
    numbered one; a run dir holding checkpoints is continued), ``g_kwargs``/``d_kwargs`` (merged last into the
    network kwargs), ``grid`` ('GWxGH' image-grid size override), ``metrics_detector``/``metrics_num_gen``
    (Inception weights path, generated-image count override), ``dist_timeout`` (seconds before a hung rank
    ends the run), ``device`` ('auto', 'cpu', 'cuda'), ``compat`` ('fastgan' or 'nvlabs'), ``host_cache`` (CPU:
    run the training loop inside :func:`fastgan.backends.host_cache.arena`, so freed activation buffers are
    reused instead of page-faulted in again at every step; off unless asked for, since it replaces torch's
    CPU allocator for the training thread while the run lasts).
    """

    outdir: str = "training-runs"
    data: str = ""
    cfg: str = "auto"
    gpus: int = 1
    batch: Optional[int] = None
    batch_gpu: Optional[int] = None
    gamma: Union[str, float] = "auto"
    mirror: bool = False
    cond: bool = False
    aug: str = "ada"
    p: float = 0.2
    target: float = 0.6
    augpipe: str = "bgc"
    kimg: Optional[float] = None
    tick: float = 4
    snap: int = 50
    metrics: str = "fid50k_full"
    resume: Optional[str] = None
    freezed: int = 0
    precision: str = "fp16"
    seed: int = 0
    workers: int = 3
    loss: str = "nonsaturating"
    r2_gamma: float = 0.0
    label_smoothing: float = 0.0
    cbase: Optional[int] = None
    cmax: Optional[int] = None
    map_depth: Optional[int] = None
    glr: Optional[float] = None
    dlr: Optional[float] = None
    mbstd_group: Optional[int] = None
    keep_checkpoints: int = 3
    max_bad_steps: int = 8
    export_nvlabs_state: bool = False
    dry_run: bool = False
    desc: Optional[str] = None
    run_dir: Optional[str] = None
    subset: Optional[int] = None
    checkpoint_every_steps: Optional[int] = None
    max_rollbacks: int = 3
    pl_weight: Optional[float] = None
    style_mixing: Optional[float] = None
    diffaug_policy: str = "color,translation,cutout"
    g_kwargs: Dict[str, Any] = field(default_factory=dict)
    d_kwargs: Dict[str, Any] = field(default_factory=dict)
    grid: Optional[str] = None
    metrics_detector: Optional[str] = None
    metrics_num_gen: Optional[int] = None
    dist_timeout: float = 600.0
    device: str = "auto"
    compat: str = "fastgan"
    allow_tf32: bool = False
    nobench: bool = False
    host_cache: bool = False

    # -- (de)serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise TypeError(f"TrainConfig.from_dict: expected a dict, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}")
        return cls(**d)

    @classmethod
    def from_json(cls, text_or_path: Union[str, os.PathLike]) -> "TrainConfig":
        """Parse a JSON string, or read a JSON file when given an existing path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{") and Path(text).is_file():
            text = Path(text).read_text()
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclass
class ResolvedConfig:
    """Everything the loop needs, derived from a ``TrainConfig`` and the dataset (training_options.json)."""

    config: TrainConfig
    G_kwargs: Dict[str, Any]
    D_kwargs: Dict[str, Any]
    G_opt_kwargs: Dict[str, Any]
    D_opt_kwargs: Dict[str, Any]
    loss_kwargs: Dict[str, Any]
    augment_kwargs: Optional[Dict[str, Any]]
    training_set_kwargs: Dict[str, Any]
    data_loader_kwargs: Dict[str, Any]
    num_gpus: int
    batch_size: int
    batch_gpu: int
    ema_kimg: float
    ema_rampup: Optional[float]
    total_kimg: float
    kimg_per_tick: float
    image_snapshot_ticks: int
    network_snapshot_ticks: int
    random_seed: int
    metrics: List[str]
    ada_target: Optional[float]
    augment_p: float
    ada_kimg: float
    ada_interval: int
    G_reg_interval: Optional[int]
    D_reg_interval: Optional[int]
    resume_pkl: Optional[str]
    cudnn_benchmark: bool
    allow_tf32: bool
    dataset_name: str
    resolution: int
    num_channels: int
    label_dim: int
    desc: str
    run_dir: Optional[str] = None

    @property
    def rounds(self) -> int:
        """Accumulation rounds per phase and rank: ``batch / (gpus * batch_gpu)``."""
        return self.batch_size // (self.num_gpus * self.batch_gpu)

    def to_dict(self) -> Dict[str, Any]:
        """The NVlabs ``training_options.json`` keys (plus fastgan's ``fastgan_config``)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}
        d["fastgan_config"] = self.config.to_dict()
        return json.loads(json.dumps(d))


def _check_type(cfg: TrainConfig) -> None:
    ints = ("gpus", "snap", "freezed", "seed", "workers", "keep_checkpoints", "max_bad_steps", "max_rollbacks")
    for name in ints:
        v = getattr(cfg, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    for name in ("batch", "batch_gpu", "cbase", "cmax", "map_depth", "mbstd_group", "subset",
                 "checkpoint_every_steps", "metrics_num_gen"):
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise TypeError(f"{name} must be an int or None, got {type(v).__name__}")
    for name in ("mirror", "cond", "export_nvlabs_state", "dry_run", "allow_tf32", "nobench", "host_cache"):
        if not isinstance(getattr(cfg, name), bool):
            raise TypeError(f"{name} must be a bool, got {type(getattr(cfg, name)).__name__}")
    for name in ("kimg", "tick", "p", "target", "r2_gamma", "label_smoothing", "glr", "dlr", "pl_weight",
                 "style_mixing", "dist_timeout"):
        v = getattr(cfg, name)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    for name in ("g_kwargs", "d_kwargs"):
        if not isinstance(getattr(cfg, name), dict):
            raise TypeError(f"{name} must be a dict")


def _positive(cfg: TrainConfig, name: str, minimum: float = 1) -> None:
    v = getattr(cfg, name)
    if v is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")


def _choice(cfg: TrainConfig, name: str, choices) -> None:
    if getattr(cfg, name) not in choices:
        raise ValueError(f"unknown {name} {getattr(cfg, name)!r}; expected one of {', '.join(choices)}")


def _validate_options(cfg: TrainConfig) -> None:
    _check_type(cfg)
    _choice(cfg, "cfg", cfg_names())
    _choice(cfg, "aug", AUG_MODES)
    _choice(cfg, "loss", LOSS_NAMES)
    _choice(cfg, "precision", PRECISIONS)
    _choice(cfg, "compat", COMPAT_MODES)
    _choice(cfg, "device", ("auto", "cpu", "cuda"))
    for name in ("gpus", "batch", "batch_gpu", "snap", "cbase", "cmax", "mbstd_group", "subset",
                 "keep_checkpoints", "max_bad_steps", "checkpoint_every_steps", "metrics_num_gen"):
        _positive(cfg, name)
    for name in ("freezed", "seed", "map_depth", "max_rollbacks", "workers"):
        _positive(cfg, name, 0)
    if cfg.kimg is not None and not cfg.kimg > 0:
        raise ValueError(f"kimg must be > 0, got {cfg.kimg}")
    if not cfg.tick > 0:
        raise ValueError(f"tick must be > 0, got {cfg.tick}")
    if not 0 <= cfg.target <= 1:
        raise ValueError(f"target must be in [0, 1], got {cfg.target}")
    if not 0 <= cfg.p <= 1:
        raise ValueError(f"p must be in [0, 1], got {cfg.p}")
    if not 0 <= cfg.label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}")
    for name in ("r2_gamma", "pl_weight"):
        v = getattr(cfg, name)
        if v is not None and not v >= 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    if cfg.style_mixing is not None and not 0 <= cfg.style_mixing <= 1:
        raise ValueError(f"style_mixing must be in [0, 1], got {cfg.style_mixing}")
    for name in ("glr", "dlr"):
        v = getattr(cfg, name)
        if v is not None and not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")
    if cfg.gamma != "auto":
        if isinstance(cfg.gamma, bool) or not isinstance(cfg.gamma, (int, float)):
            raise ValueError(f"gamma must be 'auto' or a number >= 0, got {cfg.gamma!r}")
        if not cfg.gamma >= 0:
            raise ValueError(f"gamma must be >= 0, got {cfg.gamma}")
    if not cfg.dist_timeout > 0:
        raise ValueError(f"dist_timeout must be > 0 seconds, got {cfg.dist_timeout}")
    if cfg.grid is not None and not re.fullmatch(r"[1-9]\d*x[1-9]\d*", cfg.grid):
        raise ValueError(f"grid must look like 'GWxGH' (e.g. '8x4'), got {cfg.grid!r}")
    if not cfg.data:
        raise ValueError("data: a dataset path (directory or .zip) is required")


def _augment_kwargs(cfg: TrainConfig):
    """(augment_kwargs or None, ada_target or None, augment_p)."""
    if cfg.aug == "noaug":
        return None, None, 0.0
    if cfg.aug == "diffaug":
        return {"class_name": DIFFAUG_CLASS, "policy": cfg.diffaug_policy}, None, 0.0
    from .augment import AUGPIPE_SPECS

    if cfg.augpipe not in AUGPIPE_SPECS:
        raise ValueError(f"unknown augpipe {cfg.augpipe!r}; expected one of {', '.join(AUGPIPE_SPECS)}")
    spec = {"class_name": AUGMENT_CLASS, **AUGPIPE_SPECS[cfg.augpipe]}
    if cfg.aug == "ada":
        return spec, float(cfg.target), 0.0
    if cfg.p == 0:                                   # §1.8: --aug=fixed --p=0 builds no pipe
        return None, None, 0.0
    return spec, None, float(cfg.p)


def run_desc(cfg: TrainConfig, dataset_name: str, batch: int, gamma: float) -> str:
    """``<cfg>-<dataset>-gpus<g>-batch<B>-gamma<γ>[-<desc>]`` (the SG3 naming)."""
    desc = f"{cfg.cfg}-{dataset_name}-gpus{cfg.gpus}-batch{batch}-gamma{gamma:g}"
    return f"{desc}-{cfg.desc}" if cfg.desc else desc


def _merge(base: Dict[str, Any], extra: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def resolve_config(cfg: TrainConfig, dataset=None, continuing: bool = False) -> ResolvedConfig:
    """Apply the cfg tables to ``cfg`` and validate it (before any training state exists).

    Args:
        cfg: the options.
        dataset: an already opened ``ImageFolderDataset`` (else ``cfg.data`` is opened to read its
            resolution, channels and labels).
        continuing: ``cfg`` is the stored config of a run being continued from a checkpoint; its transfer
            source (``resume``) is then not opened again and need not exist any more.

    Raises:
        ValueError / TypeError naming the offending option.
    """
    from .families import Geometry, family_of

    _validate_options(cfg)
    family = family_of(cfg.cfg)
    ds = dataset if dataset is not None else family.dataset(cfg)
    res, channels = int(ds.resolution), int(ds.num_channels)
    label_dim = int(ds.label_dim) if cfg.cond else 0
    if channels not in (1, 3):
        raise ValueError(f"data: images must have 1 or 3 channels, got {channels}")
    transfer = cfg.resume not in (None, "latest") and not _is_checkpoint_path(cfg.resume)
    r = family.recipe(cfg, Geometry(res, channels, label_dim), transfer)
    G_kwargs = _merge(r.G_kwargs, cfg.g_kwargs)
    D_kwargs = _merge(r.D_kwargs, cfg.d_kwargs)

    # batch geometry (§1.1, §7.5)
    g, batch, batch_gpu = cfg.gpus, r.batch, r.batch_gpu
    if batch % g:
        raise ValueError(f"batch ({batch}) must be a multiple of gpus ({g})")
    if batch_gpu > batch // g:
        raise ValueError(f"batch_gpu ({batch_gpu}) must not exceed the per-GPU batch batch/gpus = {batch // g}")
    if batch % (g * batch_gpu):
        raise ValueError(f"batch ({batch}) must be a multiple of gpus * batch_gpu ({g} * {batch_gpu})")
    mbstd = r.mbstd_group
    if mbstd is not None and (batch_gpu < mbstd or batch_gpu % mbstd):
        raise ValueError(f"batch_gpu ({batch_gpu}) must be a multiple of the minibatch-std group size "
                         f"mbstd_group ({mbstd}) and at least as large")
    pl_weight = r.loss_kwargs.get("pl_weight", 0.0)
    if pl_weight > 0 and r.G_reg_interval is not None and batch_gpu < 2:
        raise ValueError(f"batch_gpu ({batch_gpu}) must be >= 2 when path-length regularisation is on "
                         f"(pl_weight {pl_weight}): it runs on batch_gpu // 2 samples")

    augment_kwargs, ada_target, augment_p = _augment_kwargs(cfg)
    if cfg.metrics.strip().lower() in ("", "none"):
        metrics: List[str] = []
    else:
        from ..metrics.registry import parse_metric_names

        try:
            metrics = parse_metric_names(cfg.metrics)
        except ValueError as e:
            raise ValueError(f"metrics: {e}") from e

    if not continuing and cfg.resume not in (None, "latest") and not Path(cfg.resume).exists():
        raise ValueError(f"resume: no such file or directory {cfg.resume!r}")
    ada_kimg = 100.0 if transfer else 500.0
    gamma = r.gamma
    loss_kwargs = {"class_name": LOSS_CLASS, "r1_gamma": gamma, **r.loss_kwargs, "loss": cfg.loss,
                   "r2_gamma": float(cfg.r2_gamma), "label_smoothing": float(cfg.label_smoothing)}
    glr, dlr, ema_kimg, ema_rampup, total_kimg = r.glr, r.dlr, r.ema_kimg, r.ema_rampup, r.total_kimg
    G_reg_interval = r.G_reg_interval
    opt = {"class_name": "torch.optim.Adam", "betas": list(r.betas), "eps": 1e-8}
    name = getattr(ds, "name", Path(cfg.data).stem)
    return ResolvedConfig(
        config=cfg, G_kwargs=G_kwargs, D_kwargs=D_kwargs, G_opt_kwargs={**opt, "lr": glr},
        D_opt_kwargs={**opt, "lr": dlr}, loss_kwargs=loss_kwargs, augment_kwargs=augment_kwargs,
        training_set_kwargs={"class_name": DATASET_CLASS, "path": str(cfg.data), "use_labels": cfg.cond,
                             "max_size": cfg.subset, "xflip": cfg.mirror, "resolution": res,
                             "random_seed": cfg.seed},
        data_loader_kwargs={"pin_memory": True, "prefetch_factor": 2, "num_workers": cfg.workers},
        num_gpus=g, batch_size=batch, batch_gpu=batch_gpu, ema_kimg=ema_kimg, ema_rampup=ema_rampup,
        total_kimg=float(total_kimg), kimg_per_tick=float(cfg.tick), image_snapshot_ticks=cfg.snap,
        network_snapshot_ticks=cfg.snap, random_seed=cfg.seed, metrics=metrics, ada_target=ada_target,
        augment_p=augment_p, ada_kimg=ada_kimg, ada_interval=4, G_reg_interval=G_reg_interval,
        D_reg_interval=r.D_reg_interval, resume_pkl=cfg.resume if transfer else None, cudnn_benchmark=not cfg.nobench,
        allow_tf32=cfg.allow_tf32, dataset_name=name, resolution=res, num_channels=channels,
        label_dim=label_dim, desc=run_desc(cfg, name, batch, gamma))


def _is_checkpoint_path(path: str) -> bool:
    """A fastgan training-state checkpoint (or a run directory holding some): exact continuation."""
    from .checkpoint import is_checkpoint_source

    return is_checkpoint_source(path)
