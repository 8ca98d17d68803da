"""Network snapshots of a run and the networks of a transfer-learning start (training-spec §1.9, §1.13).

A snapshot at ``KIMG = cur_nimg // 1000`` is written by rank 0 as

* ``network-snapshot-<KIMG:06d>-G.safetensors``, ``-D.safetensors``, ``-G_ema.safetensors`` (each with its
  ``.json`` config; :func:`fastgan.load_network` reads any of them),
* ``network-snapshot-<KIMG:06d>.json``: a manifest naming those files plus the augment pipe's ``p``, the
  training-set kwargs and ``cur_nimg``,
* with ``export_nvlabs_state``: ``network-snapshot-<KIMG:06d>.pt``, ``torch.save({'G': sd, 'D': sd,
  'G_ema': sd})`` of the plain state dicts (NVlabs parameter names) for tools that build NVlabs classes.

A transfer start (``resume`` = an NVlabs pickle, a snapshot manifest or network file, or such a ``.pt``)
copies every parameter and buffer whose name exists in the source; names missing from the source keep
their initial values, extra source names are ignored, a shape mismatch is an error.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch

from ..serialize import load_network, save_network
from ..utils.io import atomic_open, atomic_write_text

__all__ = ["snapshot_stem", "write_snapshot", "read_transfer_source", "copy_params_and_buffers"]

NETWORK_KEYS = ("G", "D", "G_ema")


def snapshot_stem(cur_nimg: int) -> str:
    return f"network-snapshot-{cur_nimg // 1000:06d}"


def _cpu_copy(module: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(module).eval().requires_grad_(False).cpu()


def write_snapshot(run_dir: Path, cur_nimg: int, networks: Mapping[str, torch.nn.Module],
                   augment_p: Optional[float], training_set_kwargs: Dict[str, Any],
                   export_nvlabs_state: bool = False) -> List[Path]:
    """Write the snapshot files of ``networks`` (keys G, D, G_ema); returns the paths written."""
    stem = snapshot_stem(cur_nimg)
    written, manifest = [], {"format": "fastgan.snapshot", "version": 1, "cur_nimg": int(cur_nimg),
                             "augment_pipe": None if augment_p is None else {"p": float(augment_p)},
                             "training_set_kwargs": training_set_kwargs, "networks": {}}
    copies = {k: _cpu_copy(networks[k]) for k in NETWORK_KEYS}
    for key, net in copies.items():
        path = save_network(net, run_dir / f"{stem}-{key}.safetensors")
        manifest["networks"][key] = path.name
        written += [path, path.with_suffix(".json")]
    if export_nvlabs_state:
        pt = run_dir / f"{stem}.pt"
        with atomic_open(pt, "wb") as fh:
            torch.save({k: net.state_dict() for k, net in copies.items()}, fh)
        written.append(pt)
    atomic_write_text(run_dir / f"{stem}.json", json.dumps(manifest, indent=1) + "\n")
    written.append(run_dir / f"{stem}.json")
    return written


def _state(module_or_dict) -> Dict[str, torch.Tensor]:
    if isinstance(module_or_dict, torch.nn.Module):
        return dict(module_or_dict.state_dict())
    return dict(module_or_dict)


def read_transfer_source(path: Path) -> Dict[str, Dict[str, torch.Tensor]]:
    """``{'G': state, 'D': state, 'G_ema': state}`` (whatever the source has) from

    an NVlabs ``.pkl`` (read by fastgan's restricted unpickler; nothing in it runs), a fastgan snapshot
    manifest ``.json``, a single fastgan ``.safetensors`` network (used for both G and G_ema when it is a
    generator, for D otherwise), or a ``.pt`` holding G/D/G_ema state dicts (read with ``weights_only``): an
    exported snapshot, or a training checkpoint copied out of its run (inside a run's ``checkpoints/``
    folder a checkpoint continues that run instead).
    """
    path = Path(path)
    if path.suffix == ".pt":
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict) or not set(obj) & set(NETWORK_KEYS):
            raise ValueError(f"resume: {path} does not hold state dicts under G / D / G_ema")
        return {k: _state(obj[k]) for k in NETWORK_KEYS if k in obj}
    if path.suffix == ".json":
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict) or manifest.get("format") != "fastgan.snapshot":
            path = path.with_suffix(".safetensors")       # a network's own config file
        else:
            return {k: _state(load_network(path.parent / name)) for k, name in manifest["networks"].items()}
    if path.suffix == ".safetensors":
        net = load_network(path)
        state = _state(net)
        if hasattr(net, "mapping") and hasattr(net, "synthesis"):
            return {"G": state, "G_ema": state}
        return {"D": state}
    snapshot = load_network(path, key=None)
    if not isinstance(snapshot, dict):
        raise ValueError(f"resume: {path} is not a network snapshot pickle")
    return {k: _state(snapshot[k]) for k in NETWORK_KEYS if isinstance(snapshot.get(k), torch.nn.Module)}


@torch.no_grad()
def copy_params_and_buffers(source: Mapping[str, torch.Tensor], target: torch.nn.Module, what: str) -> int:
    """Copy the tensors of ``source`` into ``target``'s parameters/buffers of the same name; returns the count."""
    copied = 0
    for name, tensor in list(target.named_parameters()) + list(target.named_buffers()):
        if name not in source:
            continue
        src = source[name]
        if tuple(src.shape) != tuple(tensor.shape):
            raise ValueError(f"resume: {what}.{name} has shape {list(src.shape)} in the source but "
                             f"{list(tensor.shape)} in the configured network")
        tensor.copy_(src.to(device=tensor.device, dtype=tensor.dtype))
        copied += 1
    return copied
