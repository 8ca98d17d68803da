"""fastgan.train: the StyleGAN2-ADA / StyleGAN3 compatible training engine.

``TrainConfig`` (options), ``resolve_config`` (the NVlabs cfg tables -> network/optimizer/loss kwargs) and
``Trainer(config).fit()`` (the loop, checkpoints with exact resume, DDP). Submodules load on first use so
that importing one of them (e.g. ``fastgan.train.augment``) does not pull in the whole engine.
"""
from __future__ import annotations

import importlib

__all__ = ["TrainConfig", "ResolvedConfig", "resolve_config", "Trainer", "Callback", "CFG_NAMES"]

_LAZY = {
    "TrainConfig": "config", "ResolvedConfig": "config", "resolve_config": "config", "CFG_NAMES": "config",
    "Trainer": "trainer", "Callback": "trainer",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'fastgan.train' has no attribute {name!r}")
