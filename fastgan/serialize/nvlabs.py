"""Build fastgan networks from NVlabs network pickles read by the restricted unpickler.

Only the top-level persistence record of the requested network is turned into a module: its class
name picks a fastgan class (StyleGAN2/StyleGAN3 generator or the StyleGAN2 discriminator), its recorded
constructor kwargs build it, and its state (walked as data) fills it with ``strict=True``.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Union

import torch

from ..nets import network_class
from .safe_pickle import PersistentRecord, UnsafePickleError, record_state_dict, safe_load, to_plain

__all__ = ["read_pickle", "record_family", "network_from_record", "load_pickle_network"]

PICKLE_KEYS = ("G", "D", "G_ema", "augment_pipe", "training_set_kwargs")


def read_pickle(path) -> Dict[str, Any]:
    """Read an NVlabs snapshot as data: ``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}``.

    Networks stay :class:`PersistentRecord` objects; missing ``augment_pipe``/``training_set_kwargs``
    become None (as NVlabs' ``legacy.load_network_pkl`` does). A pickle of one bare network comes back as
    ``{'G_ema': record}``.
    """
    data = safe_load(path)
    if isinstance(data, PersistentRecord):
        return {"G_ema": data}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an NVlabs network pickle (a dict of networks), got {type(data).__name__}")
    data = {k: v if isinstance(v, PersistentRecord) else to_plain(v) for k, v in data.items()}
    for k in ("augment_pipe", "training_set_kwargs"):
        data.setdefault(k, None)
    return data


def record_family(rec: PersistentRecord) -> str:
    """'stylegan3' or 'stylegan2', read from the record's embedded source text and structure (never run)."""
    if "class SynthesisInput" in rec.module_src or "filtered_lrelu" in rec.module_src:
        return "stylegan3"
    synth = (rec.state.get("_modules") or {}).get("synthesis")
    if isinstance(synth, PersistentRecord) and "input" in (synth.state.get("_modules") or {}):
        return "stylegan3"
    return "stylegan2"


def _is_ada(rec: PersistentRecord) -> bool:
    """StyleGAN2-ADA's ``training/networks.py`` (older defaults) rather than StyleGAN3's ``networks_stylegan2``."""
    return "fused_modconv_default" not in rec.module_src and "class SynthesisNetwork" in rec.module_src


def _init_kwargs(rec: PersistentRecord, cls) -> Dict[str, Any]:
    kwargs = dict(rec.init_kwargs)
    if rec.init_args:
        params = [p for p in inspect.signature(cls.__init__).parameters.values()][1:]
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(rec.init_args) > len(names):
            raise ValueError(f"{rec.class_name}: {len(rec.init_args)} positional init args, at most {len(names)} known")
        kwargs.update(zip(names, rec.init_args))
    if _is_ada(rec):
        # StyleGAN2-ADA defaults differ from StyleGAN3's networks_stylegan2 (which fastgan follows).
        if rec.class_name == "Generator":
            syn = dict(kwargs.get("synthesis_kwargs") or {})
            syn.setdefault("num_fp16_res", 0)
            syn.setdefault("conv_clamp", None)
            kwargs["synthesis_kwargs"] = syn
            mapping = dict(kwargs.get("mapping_kwargs") or {})
            mapping.setdefault("w_avg_beta", 0.995)
            kwargs["mapping_kwargs"] = mapping
        elif rec.class_name == "Discriminator":
            kwargs.setdefault("num_fp16_res", 0)
            kwargs.setdefault("conv_clamp", None)
    return kwargs


def network_from_record(rec: PersistentRecord) -> torch.nn.Module:
    """Build the fastgan network described by ``rec`` and load its weights (strict); eval mode, no grad."""
    if not isinstance(rec, PersistentRecord):
        raise ValueError(f"expected a network (persistence record), got {type(rec).__name__}")
    if rec.class_name not in ("Generator", "Discriminator"):
        raise ValueError(f"{rec.class_name}: only NVlabs Generator and Discriminator networks can be built")
    family = "stylegan2" if rec.class_name == "Discriminator" else record_family(rec)
    cls = network_class(f"fastgan.nets.{family}.{rec.class_name}")
    kwargs = _init_kwargs(rec, cls)
    try:
        net = cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{rec.class_name}: init kwargs {sorted(kwargs)} do not fit {cls.__module__}.{cls.__name__}: "
                         f"{e}") from None
    sd = record_state_dict(rec)
    missing, unexpected = _diff_keys(net, sd)
    if missing or unexpected:
        raise ValueError(f"{rec.class_name}: pickle state does not match {cls.__module__}.{cls.__name__}: "
                         f"missing {missing[:8]}, unexpected {unexpected[:8]}")
    net.load_state_dict(sd, strict=True)
    return net.eval().requires_grad_(False)


def _diff_keys(net: torch.nn.Module, sd: Dict[str, torch.Tensor]):
    ours = set(net.state_dict())
    return sorted(ours - set(sd)), sorted(set(sd) - ours)


def load_pickle_network(path, key: Optional[str] = "G_ema") -> Union[torch.nn.Module, Dict[str, Any]]:
    """The network ``key`` of an NVlabs pickle as a fastgan module (``key=None``: every network, a dict)."""
    data = read_pickle(path)
    if key is None:
        return {k: network_from_record(v) if isinstance(v, PersistentRecord) and v.class_name in
                ("Generator", "Discriminator") else v for k, v in data.items()}
    if key not in data or data[key] is None:
        have = [k for k, v in data.items() if isinstance(v, PersistentRecord)]
        raise KeyError(f"{path}: no network {key!r}; it holds {have}")
    return network_from_record(data[key])


__all__ += ["PICKLE_KEYS", "UnsafePickleError"]
