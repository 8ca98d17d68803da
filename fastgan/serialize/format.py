"""fastgan's network format: safetensors weights with a JSON config (class + constructor kwargs).

``net.safetensors`` holds the state dict (NVlabs names) and, in its metadata under ``fastgan``, the config
``{"format": "fastgan.network", "version": 1, "class": ..., "init_kwargs": {...}}``; the same config is
written beside it as ``net.json`` for people and tools. Only classes in :data:`fastgan.nets.NETWORKS`
are ever built from a config.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
import torch

from ..nets import class_name, network_class
from ..utils.io import atomic_write_bytes, atomic_write_text

__all__ = ["save_network", "load_safetensors_network", "network_config", "FORMAT", "VERSION"]

FORMAT = "fastgan.network"
VERSION = 1
_META_KEY = "fastgan"


def _json_default(o: Any):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    raise TypeError(f"init kwarg of type {type(o).__name__} is not JSON-serialisable")


def network_config(net: torch.nn.Module) -> Dict[str, Any]:
    """The JSON-able config of a fastgan network: format, version, class and init kwargs."""
    kwargs = getattr(net, "init_kwargs", None)
    if kwargs is None:
        raise ValueError(f"{type(net).__name__} has no recorded init_kwargs; only fastgan top-level networks "
                         f"can be saved")
    return {"format": FORMAT, "version": VERSION, "class": class_name(net),
            "init_kwargs": json.loads(json.dumps(kwargs, default=_json_default))}


def save_network(net: torch.nn.Module, path: Union[str, Path]) -> Path:
    """Write ``net`` as ``path`` (``.safetensors`` appended when missing) plus its ``.json`` config, atomically.

    Returns the path of the safetensors file.
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    config = network_config(net)
    text = json.dumps(config, indent=1, sort_keys=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in net.state_dict().items()}
    atomic_write_bytes(path, st_save(tensors, metadata={_META_KEY: text}))
    atomic_write_text(path.with_suffix(".json"), text + "\n")
    return path


def _read_config(path: Path, metadata: Dict[str, str]) -> Dict[str, Any]:
    if metadata and _META_KEY in metadata:
        config = json.loads(metadata[_META_KEY])
    elif path.with_suffix(".json").is_file():
        config = json.loads(path.with_suffix(".json").read_text())
    else:
        raise ValueError(f"{path}: no fastgan config in the safetensors metadata and no {path.with_suffix('.json')}")
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path}: not a fastgan network config (format {config.get('format')!r})")
    if int(config.get("version", 0)) > VERSION:
        raise ValueError(f"{path}: config version {config['version']} is newer than this fastgan ({VERSION})")
    if not isinstance(config.get("init_kwargs"), dict):
        raise ValueError(f"{path}: config init_kwargs must be a dict")
    return config


def load_safetensors_network(path: Union[str, Path]) -> torch.nn.Module:
    """Rebuild a network written by :func:`save_network`; eval mode, parameters without grad."""
    from safetensors import safe_open

    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    config = _read_config(path, metadata)
    net = network_class(config["class"])(**config["init_kwargs"])
    net.load_state_dict(tensors, strict=True)
    return net.eval().requires_grad_(False)
