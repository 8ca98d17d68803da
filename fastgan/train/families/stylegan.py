"""The StyleGAN family: the NVlabs ``--cfg`` tables of StyleGAN2-ADA and StyleGAN3 (training-spec §4).

* ADA tables ``auto``, ``paper256``, ``paper512``, ``paper1024``, ``cifar`` (stylegan2-ada-pytorch):
  batch, R1 gamma, learning rate, capacity and EMA come from the table (``auto``: formulas of resolution and
  GPU count); the accumulation sub-batch defaults to ``batch // ref_gpus``; ``w_avg_beta = 0.995``, updated
  in every training G forward (``ema_every_pass``; the SG3 tables update it in the Dmain fake pass only).
* SG3 tables ``stylegan2``, ``stylegan3-t``, ``stylegan3-r`` (stylegan3 ``train.py``). Where SG3 makes an
  option mandatory fastgan gives it a default: ``batch`` 32; ``gamma`` 10 for ``stylegan2`` (the ADA
  ``stylegan2`` row, which SG3 documents as the equivalent of ``--batch=32 --gamma=10``) and
  ``res**2 / 32768`` for ``stylegan3-*`` (the recommended values of SG3's docs: 0.5 at 128, 2 at 256, 8 at
  512, 32 at 1024).
* ``tiny`` (fastgan, for tests and smoke runs; not an NVlabs config): the SG3-style ``stylegan2`` recipe with
  z/w 32, 2 mapping layers, ``cbase`` 256, ``cmax`` 32, batch 4, minibatch-std group 2, lr 0.0025, fp32,
  gamma from the ``auto`` formula, 10 kimg.
"""
from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional

from . import Family, Geometry, Recipe, register_family

__all__ = ["ADA_CFGS", "SG3_CFGS", "FAMILY"]

ADA_CFGS = ("auto", "paper256", "paper512", "paper1024", "cifar")
SG3_CFGS = ("stylegan2", "stylegan3-t", "stylegan3-r")

G2_CLASS = "fastgan.nets.stylegan2.Generator"
G3_CLASS = "fastgan.nets.stylegan3.Generator"
D_CLASS = "fastgan.nets.stylegan2.Discriminator"


class _AdaRow(NamedTuple):
    ref_gpus: int
    kimg: float
    batch: int
    mbstd: int
    fmaps: float
    lr: float
    gamma: float
    ema: float
    ramp: Optional[float]
    map: int


# training-spec §4.1 (``auto`` is computed by _ada_auto_row)
_ADA_ROWS = {
    "paper256": _AdaRow(8, 25000, 64, 8, 0.5, 0.0025, 1, 20, None, 8),
    "paper512": _AdaRow(8, 25000, 64, 8, 1, 0.0025, 0.5, 20, None, 8),
    "paper1024": _AdaRow(8, 25000, 32, 4, 1, 0.002, 2, 10, None, 8),
    "cifar": _AdaRow(2, 100000, 64, 32, 1, 0.0025, 0.01, 500, 0.05, 2),
}


def _ada_auto_row(res: int, gpus: int) -> _AdaRow:
    batch = max(gpus, min(64, gpus * min(32, 4096 // res)))
    return _AdaRow(ref_gpus=gpus, kimg=25000, batch=batch, mbstd=min(4, batch // gpus),
                   fmaps=1 if res >= 512 else 0.5, lr=0.002 if res >= 1024 else 0.0025,
                   gamma=0.0002 * res * res / batch, ema=batch * 10 / 32, ramp=0.05, map=2)


def _is_pow2(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


def recipe(cfg, geo: Geometry, transfer: bool) -> Recipe:
    """The StyleGAN settings of ``cfg`` (a ``TrainConfig``) for a dataset of geometry ``geo``."""
    res = geo.resolution
    min_res = 16 if cfg.cfg.startswith("stylegan3") else 4
    if not _is_pow2(res) or res < min_res:
        raise ValueError(f"data: cfg {cfg.cfg!r} needs a square power-of-two resolution >= {min_res}, "
                         f"the dataset has {res}x{res}")
    g = cfg.gpus
    sg3_family = cfg.cfg in SG3_CFGS or cfg.cfg == "tiny"
    fp32 = cfg.precision == "fp32"

    if sg3_family:
        is_t3 = cfg.cfg.startswith("stylegan3")
        batch = cfg.batch or (4 if cfg.cfg == "tiny" else 32)
        batch_gpu = cfg.batch_gpu or batch // g
        mbstd = cfg.mbstd_group or (2 if cfg.cfg == "tiny" else 4)
        cbase = cfg.cbase or (256 if cfg.cfg == "tiny" else 32768)
        cmax = cfg.cmax or (32 if cfg.cfg == "tiny" else 512)
        map_depth = cfg.map_depth if cfg.map_depth is not None else (8 if cfg.cfg == "stylegan2" else 2)
        glr = cfg.glr or (0.002 if cfg.cfg == "stylegan2" else 0.0025)
        dlr = cfg.dlr or (0.0025 if cfg.cfg == "tiny" else 0.002)
        zw = 32 if cfg.cfg == "tiny" else 512
        if cfg.gamma != "auto":
            gamma = float(cfg.gamma)
        elif cfg.cfg == "stylegan2":
            gamma = 10.0
        elif is_t3:
            gamma = res * res / 32768
        else:
            gamma = 0.0002 * res * res / batch
        ema_kimg, ema_rampup = batch * 10 / 32, 0.05
        total_kimg = cfg.kimg or (10 if cfg.cfg == "tiny" else 25000)
        G_kwargs: Dict[str, Any] = {"class_name": G3_CLASS if is_t3 else G2_CLASS, "z_dim": zw, "w_dim": zw,
                                    "mapping_kwargs": {"num_layers": map_depth}}
        if cfg.cfg == "stylegan3-r":
            G_kwargs.update(channel_base=2 * cbase, channel_max=2 * cmax)
        else:
            G_kwargs.update(channel_base=cbase, channel_max=cmax)
        if is_t3:
            G_kwargs["magnitude_ema_beta"] = 0.5 ** (batch / (20 * 1e3))
            if cfg.cfg == "stylegan3-r":
                G_kwargs.update(conv_kernel=1, use_radial_filters=True)
        else:
            G_kwargs["fused_modconv_default"] = "inference_only"
        if fp32 or cfg.cfg == "tiny":
            G_kwargs.update(num_fp16_res=0, conv_clamp=None)
        D_kwargs: Dict[str, Any] = {"class_name": D_CLASS, "block_kwargs": {"freeze_layers": cfg.freezed},
                                    "mapping_kwargs": {}, "epilogue_kwargs": {"mbstd_group_size": mbstd},
                                    "channel_base": cbase, "channel_max": cmax}
        if fp32 or cfg.cfg == "tiny":
            D_kwargs.update(num_fp16_res=0, conv_clamp=None)
        style_mixing = 0.0 if is_t3 else 0.9
        pl_weight = 0.0 if is_t3 else 2.0
        G_reg_interval: Optional[int] = None if is_t3 else 4
        blur_sigma = 10.0 if cfg.cfg == "stylegan3-r" else 0.0
        blur_fade = batch * 200 / 32 if cfg.cfg == "stylegan3-r" else 0.0
        pl_no_weight_grad = not is_t3
    else:
        row = _ada_auto_row(res, g) if cfg.cfg == "auto" else _ADA_ROWS[cfg.cfg]
        batch = cfg.batch or row.batch
        batch_gpu = cfg.batch_gpu or (batch // g if cfg.batch else row.batch // row.ref_gpus)
        mbstd = cfg.mbstd_group or row.mbstd
        cbase = cfg.cbase or int(row.fmaps * 32768)
        cmax = cfg.cmax or 512
        map_depth = cfg.map_depth if cfg.map_depth is not None else row.map
        glr = cfg.glr or row.lr
        dlr = cfg.dlr or row.lr
        gamma = row.gamma if cfg.gamma == "auto" else float(cfg.gamma)
        ema_kimg, ema_rampup = row.ema, row.ramp
        total_kimg = cfg.kimg or row.kimg
        G_kwargs = {"class_name": G2_CLASS, "z_dim": 512, "w_dim": 512,
                    "mapping_kwargs": {"num_layers": map_depth, "w_avg_beta": 0.995},
                    "channel_base": cbase, "channel_max": cmax, "fused_modconv_default": "inference_only",
                    "num_fp16_res": 0 if fp32 else 4, "conv_clamp": None if fp32 else 256}
        D_kwargs = {"class_name": D_CLASS, "block_kwargs": {"freeze_layers": cfg.freezed}, "mapping_kwargs": {},
                    "epilogue_kwargs": {"mbstd_group_size": mbstd}, "channel_base": cbase, "channel_max": cmax,
                    "num_fp16_res": 0 if fp32 else 4, "conv_clamp": None if fp32 else 256}
        if cfg.cfg == "cifar":
            D_kwargs["architecture"] = "orig"
        style_mixing = 0.0 if cfg.cfg == "cifar" else 0.9
        pl_weight = 0.0 if cfg.cfg == "cifar" else 2.0
        G_reg_interval = 4
        blur_sigma = blur_fade = 0.0
        pl_no_weight_grad = True

    if cfg.pl_weight is not None:
        pl_weight = float(cfg.pl_weight)
    if cfg.style_mixing is not None:
        style_mixing = float(cfg.style_mixing)
    if transfer:                                    # §1.13 overrides of a warm start
        ema_rampup = None
        blur_sigma = 0.0
    loss_kwargs = {"style_mixing_prob": style_mixing, "pl_weight": pl_weight, "pl_no_weight_grad": pl_no_weight_grad,
                   "blur_init_sigma": blur_sigma, "blur_fade_kimg": blur_fade, "ema_every_pass": not sg3_family}
    return Recipe(batch=batch, batch_gpu=batch_gpu, G_kwargs=G_kwargs, D_kwargs=D_kwargs, glr=glr, dlr=dlr,
                  gamma=gamma, ema_kimg=ema_kimg, ema_rampup=ema_rampup, total_kimg=float(total_kimg),
                  G_reg_interval=G_reg_interval, D_reg_interval=16, loss_kwargs=loss_kwargs, mbstd_group=mbstd)


FAMILY = register_family(Family("stylegan", ADA_CFGS + SG3_CFGS + ("tiny",), recipe))
