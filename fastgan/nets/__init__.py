"""fastgan networks: StyleGAN2, StyleGAN3, StyleGAN (v1) and DCGAN on fastgan ops.

``NETWORKS`` maps the class names written by :func:`fastgan.save_network` to the classes that
:func:`fastgan.load_network` may build; nothing outside this table is ever instantiated from a file.
"""
from __future__ import annotations

import importlib
from typing import Dict, Type

import torch

from .layers import precision

__all__ = ["NETWORKS", "network_class", "precision"]

NETWORKS: Dict[str, str] = {
    "fastgan.nets.stylegan2.Generator": "stylegan2",
    "fastgan.nets.stylegan2.Discriminator": "stylegan2",
    "fastgan.nets.stylegan3.Generator": "stylegan3",
    "fastgan.nets.stylegan.Generator": "stylegan",
    "fastgan.nets.dcgan.Generator": "dcgan",
    "fastgan.nets.dcgan.Discriminator": "dcgan",
}


def network_class(name: str) -> Type[torch.nn.Module]:
    """The fastgan class registered under ``name`` (e.g. ``'fastgan.nets.stylegan2.Generator'``)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network class {name!r}; known: {', '.join(NETWORKS)}")
    module = importlib.import_module(f"{__name__}.{NETWORKS[name]}")
    return getattr(module, name.rsplit(".", 1)[1])


def class_name(net: torch.nn.Module) -> str:
    """The registry name of ``net``'s class; ValueError for classes outside :data:`NETWORKS`."""
    name = f"{type(net).__module__}.{type(net).__qualname__}"
    if name not in NETWORKS:
        raise ValueError(f"{name} is not a registered fastgan network; known: {', '.join(NETWORKS)}")
    return name
