"""Loading and saving networks: NVlabs pickles (read safely, as data) and fastgan's safetensors format."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Union

import torch

from .format import load_safetensors_network, network_config, save_network
from .nvlabs import load_pickle_network, network_from_record, read_pickle
from .safe_pickle import PersistentRecord, UnsafePickleError, safe_load

__all__ = ["load_network", "save_network", "network_config", "read_pickle", "network_from_record", "safe_load",
           "PersistentRecord", "UnsafePickleError"]


def _kind(path: Path) -> str:
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


def load_network(path: Union[str, Path], key: Optional[str] = "G_ema",
                 device: Union[str, torch.device, None] = None) -> Union[torch.nn.Module, Dict[str, Any]]:
    """Load a network without executing anything stored in the file.

    Args:
        path: an NVlabs ``.pkl`` snapshot (read by a restricted unpickler; the embedded source is never
            run) or a fastgan ``.safetensors`` file (with its JSON config).
        key: which network of a pickle: ``'G_ema'`` (default), ``'G'`` or ``'D'``; None returns the whole
            snapshot as a dict (networks built, other entries as plain data). Ignored for safetensors
            files, which hold one network.
        device: move the network there (default: stay on the CPU).

    Returns:
        A fastgan ``torch.nn.Module`` in eval mode with ``requires_grad=False`` parameters.

    Raises:
        UnsafePickleError: the pickle references anything outside the allow-list (nothing was run).
        FileNotFoundError, KeyError, ValueError: missing file, missing key, unknown format or architecture.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such network file: {path}")
    if _kind(path) == "safetensors":
        net = load_safetensors_network(path)
    else:
        net = load_pickle_network(path, key)
    if device is None:
        return net
    if isinstance(net, dict):
        return {k: v.to(device) if isinstance(v, torch.nn.Module) else v for k, v in net.items()}
    return net.to(device)
