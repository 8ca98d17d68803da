"""fastgan.train: the StyleGAN2-ADA / StyleGAN3 compatible training engine.

``TrainConfig`` (options), ``resolve_config`` (options + the model family's recipe -> network/optimizer/loss
kwargs), ``Trainer(config).fit()`` (the loop, checkpoints with exact resume, DDP) and the model families it
trains (``fastgan.train.families``: StyleGAN2/3 with the NVlabs cfg tables, DCGAN; a plug-in point). Submodules load on first use so
that importing one of them (e.g. ``fastgan.train.augment``) does not pull in the whole engine.
"""
from __future__ import annotations

import importlib

__all__ = ["TrainConfig", "ResolvedConfig", "resolve_config", "Trainer", "Callback", "cfg_names"]

_LAZY = {
    "TrainConfig": "config", "ResolvedConfig": "config", "resolve_config": "config", "cfg_names": "config",
    "Trainer": "trainer", "Callback": "trainer",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'fastgan.train' has no attribute {name!r}")
