"""Loading and saving networks: NVlabs pickles (read safely, as data) and fastgan's safetensors format."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .format import load_safetensors_network, network_config, save_network
from .nvlabs import network_from_record
from .safe_pickle import PersistentRecord, TFNetworkRecord, UnsafePickleError, safe_load
from .snapshot import (NETWORK_KEYS, AugmentPipeInfo, Snapshot, augment_pipe_info, build_network, load_snapshot,
                       read_pickle)

__all__ = ["load_network", "load_snapshot", "save_network", "network_config", "read_pickle", "build_network",
           "network_from_record", "augment_pipe_info", "safe_load", "file_kind", "Snapshot", "AugmentPipeInfo",
           "PersistentRecord", "TFNetworkRecord", "UnsafePickleError"]


def file_kind(path: Path) -> str:
    """'pickle' or 'safetensors', from the suffix and the first bytes; ValueError for anything else."""
    if path.suffix in (".safetensors", ".json"):
        return "safetensors"
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:2] == b"PK":
        raise ValueError(f"{path}: a torch.save zip archive; fastgan loads NVlabs pickles and its own "
                         f".safetensors networks (a bare state dict has no architecture to build)")
    raise ValueError(f"{path}: neither a network pickle nor a fastgan .safetensors file")


_kind = file_kind  # the name fastgan.nets.summary.describe_file imports


def _existing(path: Union[str, Path]) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such network file: {path}")
    return path


def load_network(path: Union[str, Path], key: Optional[str] = "G_ema",
                 device: Union[str, torch.device, None] = None) -> Union[torch.nn.Module, Dict[str, Any]]:
    """Load a network without executing anything stored in the file.

    Args:
        path: an NVlabs ``.pkl`` (a PyTorch training snapshot or released network, or a StyleGAN2
            TensorFlow ``(G, D, Gs)`` pickle; read by a restricted unpickler, embedded source never run)
            or a fastgan ``.safetensors`` file (with its JSON config).
        key: which network of a pickle: ``'G_ema'`` (default; Gs of a TF pickle), ``'G'`` or ``'D'``;
            None returns :meth:`load_snapshot(path).as_dict() <Snapshot.as_dict>`. Ignored for
            safetensors files, which hold one network.
        device: move the network(s) there (default: stay on the CPU).

    Returns:
        A fastgan ``torch.nn.Module`` in eval mode with ``requires_grad=False`` parameters.

    Raises:
        UnsafePickleError: the pickle references anything outside the allow-list (nothing was run).
        FileNotFoundError, KeyError, ValueError: missing file, missing key, corrupt file, unknown format or
        architecture (messages name the file).
    """
    path = _existing(path)
    if file_kind(path) == "safetensors":
        net = load_safetensors_network(path)
    elif key is None:
        net = load_snapshot(path).as_dict()
    else:
        data = read_pickle(path)
        if key not in NETWORK_KEYS or data.get(key) is None:
            have = [k for k in NETWORK_KEYS if data.get(k) is not None]
            raise KeyError(f"{path}: no network {key!r}; it holds {have}")
        try:
            net = build_network(data[key], key)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    if device is None:
        return net
    if isinstance(net, dict):
        return {k: v.to(device) if isinstance(v, torch.nn.Module) else v for k, v in net.items()}
    return net.to(device)
