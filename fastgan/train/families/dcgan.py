"""The DCGAN family (Radford et al. 2015): ``--cfg dcgan``.

The paper's recipe on the shared loop: :mod:`fastgan.nets.dcgan` networks (z 100, batch norm), Adam with
lr 2e-4 and betas (0.5, 0.999), batch 64, the non-saturating logistic loss (any ``--loss`` of the zoo
works), no EMA (``G_ema`` follows G), no lazy regularisation (one phase per network; ``--gamma`` adds R1 in
it, default 0). Unconditional only. ``--aug`` defaults to ADA like every cfg; ``--aug noaug`` is the paper.
It trains in float32 (``--precision`` fp16, the default, and fp32 alike; bf16 is refused).
``--cbase``/``--cmax`` set the channel schedule ``min(cbase // r, cmax)`` (default 2048/512; r counts from
4 at the first generator stage), ``--kimg`` the length (default 5000).
"""
from __future__ import annotations

from . import Family, Geometry, Recipe, register_family

__all__ = ["FAMILY"]

G_CLASS = "fastgan.nets.dcgan.Generator"
D_CLASS = "fastgan.nets.dcgan.Discriminator"

# StyleGAN options with no meaning for DCGAN: set, they are an error rather than silently ignored.
_STYLEGAN_ONLY = {"map_depth": "mapping network", "mbstd_group": "minibatch-std layer",
                  "pl_weight": "path-length regularisation", "style_mixing": "style mixing"}


def recipe(cfg, geo: Geometry, transfer: bool) -> Recipe:
    """The DCGAN settings of ``cfg`` (a ``TrainConfig``) for a dataset of geometry ``geo``."""
    res = geo.resolution
    if res < 8 or res & (res - 1):
        raise ValueError(f"data: cfg 'dcgan' needs a square power-of-two resolution >= 8, the dataset has {res}x{res}")
    if geo.label_dim:
        raise ValueError("cond: cfg 'dcgan' trains unconditional models; drop --cond")
    for name, what in _STYLEGAN_ONLY.items():
        if getattr(cfg, name) is not None:
            raise ValueError(f"{name}: cfg 'dcgan' has no {what}; leave --{name.replace('_', '-')} unset")
    if cfg.precision == "bf16":
        raise ValueError("precision: cfg 'dcgan' trains in float32 (bf16 applies to the StyleGAN layers); "
                         "use --precision fp32")
    if cfg.freezed:
        raise ValueError("freezed: Freeze-D is a StyleGAN discriminator option; cfg 'dcgan' does not take it")
    batch = cfg.batch or 64
    channels = {"channel_base": cfg.cbase or 2048, "channel_max": cfg.cmax or 512}
    return Recipe(batch=batch, batch_gpu=cfg.batch_gpu or batch // cfg.gpus,
                  G_kwargs={"class_name": G_CLASS, "z_dim": 100, **channels}, D_kwargs={"class_name": D_CLASS, **channels},
                  glr=cfg.glr or 2e-4, dlr=cfg.dlr or 2e-4, gamma=0.0 if cfg.gamma == "auto" else float(cfg.gamma),
                  ema_kimg=0.0, ema_rampup=None, total_kimg=float(cfg.kimg or 5000), G_reg_interval=None,
                  D_reg_interval=None, loss_kwargs={"style_mixing_prob": 0.0, "pl_weight": 0.0},
                  betas=(0.5, 0.999))


FAMILY = register_family(Family("dcgan", ("dcgan",), recipe))
