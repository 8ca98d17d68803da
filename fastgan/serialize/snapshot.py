"""NVlabs network pickles as a whole: training snapshots (PyTorch) and ``(G, D, Gs)`` TensorFlow pickles.

``network-snapshot-*.pkl`` of stylegan2-ada-pytorch and stylegan3 hold ``G``, ``D``, ``G_ema``,
``augment_pipe`` and ``training_set_kwargs``. :func:`load_snapshot` returns the networks as fastgan
modules and everything else as plain data; the augmentation pipeline is described (class name, init
kwargs, ``p``), never constructed.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional

import torch

from .nvlabs import NETWORK_CLASSES, network_from_record
from .safe_pickle import PersistentRecord, TFNetworkRecord, safe_load, to_plain
from .tflegacy import network_from_tf_record

__all__ = ["PICKLE_KEYS", "NETWORK_KEYS", "AugmentPipeInfo", "Snapshot", "read_pickle", "build_network",
           "augment_pipe_info", "load_snapshot"]

PICKLE_KEYS = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")
NETWORK_KEYS = ("G", "D", "G_ema")


@dataclass
class AugmentPipeInfo:
    """The pickled augmentation pipeline, as data: class name, recorded init kwargs and probability ``p``."""

    class_name: str
    init_kwargs: Dict[str, Any] = field(default_factory=dict)
    p: float = 0.0


@dataclass
class Snapshot:
    """A loaded NVlabs pickle. Networks are fastgan modules (eval mode, no grad) or None when absent."""

    G: Optional[torch.nn.Module] = None
    D: Optional[torch.nn.Module] = None
    G_ema: Optional[torch.nn.Module] = None
    augment_pipe: Optional[AugmentPipeInfo] = None
    training_set_kwargs: Optional[Dict[str, Any]] = None

    def as_dict(self) -> Dict[str, Any]:
        """The fields as a dict keyed like the pickle."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def read_pickle(path) -> Dict[str, Any]:
    """Read an NVlabs pickle as data: ``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}``.

    Networks stay records (:class:`PersistentRecord`, or :class:`TFNetworkRecord` for the
    ``(G, D, Gs)`` tuple of a TensorFlow pickle, whose Gs is ``G_ema``); missing entries are None, as in
    NVlabs' ``legacy.load_network_pkl``. A pickle of one bare network comes back as ``{'G_ema': record}``.
    """
    data = safe_load(path)
    if isinstance(data, (PersistentRecord, TFNetworkRecord)):
        data = {"G_ema": data}
    elif isinstance(data, tuple) and len(data) == 3 and all(isinstance(v, TFNetworkRecord) for v in data):
        data = dict(zip(("G", "D", "G_ema"), data))
    elif not isinstance(data, dict):
        raise ValueError(f"{path}: expected an NVlabs network pickle (a dict of networks or a TF (G, D, Gs) tuple), "
                         f"got {type(data).__name__}")
    data = {k: v if isinstance(v, (PersistentRecord, TFNetworkRecord)) else to_plain(v) for k, v in data.items()}
    for k in PICKLE_KEYS:
        data.setdefault(k, None)
    return data


def build_network(rec: Any, key: str = "G_ema") -> Optional[torch.nn.Module]:
    """The fastgan module of a network record read by :func:`read_pickle` (None stays None)."""
    if rec is None:
        return None
    if isinstance(rec, TFNetworkRecord):
        return network_from_tf_record(rec, "D" if key == "D" else "G")
    if isinstance(rec, PersistentRecord) and rec.class_name in NETWORK_CLASSES:
        return network_from_record(rec)
    what = f"class {rec.class_name!r}" if isinstance(rec, PersistentRecord) else type(rec).__name__
    raise ValueError(f"{key}: {what} is not a network fastgan can build (Generator or Discriminator)")


def augment_pipe_info(rec: Any) -> Optional[AugmentPipeInfo]:
    """Describe a pickled augmentation pipeline record without constructing it (None stays None)."""
    if rec is None:
        return None
    if not isinstance(rec, PersistentRecord):
        raise ValueError(f"augment_pipe: expected a persistence record, got {type(rec).__name__}")
    p = (rec.state.get("_buffers") or {}).get("p")
    if not isinstance(p, torch.Tensor) or p.numel() != 1:
        raise ValueError(f"augment_pipe ({rec.class_name}): no scalar buffer 'p'")
    return AugmentPipeInfo(class_name=rec.class_name, init_kwargs=dict(rec.init_kwargs), p=float(p))


def load_snapshot(path) -> Snapshot:
    """Every network of an NVlabs pickle as a fastgan module, the rest as plain data; nothing is executed.

    Reads training snapshots of stylegan2-ada-pytorch and stylegan3 (every ``--cfg``, conditional or
    not, fp16 or ``--fp32``), their released pickles, and StyleGAN2 TensorFlow pickles (``G_ema`` is
    Gs; no augment_pipe or training_set_kwargs).

    Raises:
        UnsafePickleError: the pickle references anything outside the allow-list.
        ValueError: truncated/corrupt file, or a record fastgan cannot build (the message names it).
    """
    data = read_pickle(path)
    kwargs = data["training_set_kwargs"]
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ValueError(f"{path}: training_set_kwargs must be a dict, got {type(kwargs).__name__}")
    try:
        nets = {k: build_network(data[k], k) for k in NETWORK_KEYS}
        pipe = augment_pipe_info(data["augment_pipe"])
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return Snapshot(**nets, augment_pipe=pipe, training_set_kwargs=kwargs)
