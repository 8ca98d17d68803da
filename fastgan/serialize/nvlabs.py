"""Build fastgan networks from the persistence records of NVlabs PyTorch pickles (read as data).

Only the top-level record of a network is turned into a module: its class name and embedded source
(searched as text) pick a fastgan class, its recorded constructor arguments build it, and its state
(walked as data) fills it with ``strict=True``.

Recorded kwargs are normalised first (network-spec §4.5): StyleGAN2-ADA's nested ``synthesis_kwargs``
is flattened, and the keys whose class default depends on the code lineage (``num_fp16_res``,
``conv_clamp``, ``w_avg_beta``, ``magnitude_ema_beta``) are filled in when absent: from the plain
attributes of the pickled sub-modules when they are there (what the network was actually built with),
otherwise from the lineage's class defaults (the stylegan3 repository's when nothing tells the lineage).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional

import torch

from ..nets import network_class
from .safe_pickle import PersistentRecord, record_state_dict

__all__ = ["record_family", "record_lineage", "resolve_kwargs", "network_from_record", "load_into"]

NETWORK_CLASSES = ("Generator", "Discriminator")

# Class defaults that differ between stylegan2-ada-pytorch ('ada') and the stylegan3 repository.
_LINEAGE_DEFAULTS = {
    "ada": {"num_fp16_res": 0, "conv_clamp": None, "w_avg_beta": 0.995},
    "stylegan3": {"num_fp16_res": 4, "conv_clamp": 256, "w_avg_beta": 0.998},
}
_MISSING = object()


def _children(rec: PersistentRecord) -> Dict[str, Any]:
    return rec.state.get("_modules") or {}


def _child(rec: Optional[PersistentRecord], *path: str) -> Optional[PersistentRecord]:
    for name in path:
        if not isinstance(rec, PersistentRecord):
            return None
        rec = _children(rec).get(name)
    return rec if isinstance(rec, PersistentRecord) else None


def record_family(rec: PersistentRecord) -> str:
    """'stylegan3' or 'stylegan2' for a generator record, from its embedded source text and structure."""
    if "class SynthesisInput" in rec.module_src or "filtered_lrelu" in rec.module_src:
        return "stylegan3"
    return "stylegan3" if _child(rec, "synthesis", "input") is not None else "stylegan2"


def record_lineage(rec: PersistentRecord) -> Optional[str]:
    """'ada' (stylegan2-ada-pytorch), 'stylegan3' (the stylegan3 repository) or None when nothing tells.

    Markers: ADA nests the generator's synthesis kwargs and its mapping network has a
    ``skip_w_avg_update`` argument; the stylegan3 repository's StyleGAN2 code has ``update_emas`` and
    ``fused_modconv_default``.
    """
    if isinstance(rec.init_kwargs.get("synthesis_kwargs"), dict) or "skip_w_avg_update" in rec.module_src:
        return "ada"
    if rec.class_name == "Generator" and record_family(rec) == "stylegan3":
        return "stylegan3"
    if "update_emas" in rec.module_src or "fused_modconv_default" in rec.module_src:
        return "stylegan3"
    return None


def _attr(rec: Optional[PersistentRecord], name: str) -> Any:
    return rec.state.get(name, _MISSING) if isinstance(rec, PersistentRecord) else _MISSING


def _fp16_hint(blocks, preferred: int) -> Any:
    """``num_fp16_res`` from the blocks' pickled ``use_fp16`` flags (which mark the highest resolutions).

    Every value >= the number of blocks gives the same network, so ``preferred`` (the lineage default) is kept
    whenever it reproduces the flags.
    """
    flags = [_attr(b, "use_fp16") for b in blocks]
    if not flags or any(f is _MISSING for f in flags):
        return _MISSING
    count = sum(bool(f) for f in flags)
    return preferred if min(preferred, len(flags)) == count else count


def _state_hints(rec: PersistentRecord, family: str, fp16_default: int) -> Dict[str, Any]:
    """Lineage-dependent settings read from the pickled sub-modules' plain attributes."""
    mods = _children(rec)
    if rec.class_name == "Discriminator":
        blocks = [m for n, m in mods.items() if n.startswith("b") and n != "b4"]
        hints = {"conv_clamp": _attr(_child(blocks[0], "conv0") if blocks else None, "conv_clamp"),
                 "num_fp16_res": _fp16_hint(blocks, fp16_default)}
    else:
        hints = {"w_avg_beta": _attr(_child(rec, "mapping"), "w_avg_beta")}
        synth = _child(rec, "synthesis")
        layers = _children(synth) if synth is not None else {}
        if family == "stylegan3":
            first = next((m for n, m in layers.items() if n.startswith("L")), None)
            hints.update(conv_clamp=_attr(first, "conv_clamp"), magnitude_ema_beta=_attr(first, "magnitude_ema_beta"))
        else:
            blocks = [m for n, m in layers.items() if n.startswith("b") and n != "b4"]  # b4 never runs in fp16
            hints.update(conv_clamp=_attr(_child(synth, "b4", "conv1"), "conv_clamp"),
                         num_fp16_res=_fp16_hint(blocks, fp16_default))
    return {k: v for k, v in hints.items() if v is not _MISSING}


def _merge_positional(rec: PersistentRecord, cls) -> Dict[str, Any]:
    kwargs = dict(rec.init_kwargs)
    if rec.init_args:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(rec.init_args) > len(names):
            raise ValueError(f"{rec.class_name}: {len(rec.init_args)} positional init args, at most {len(names)} known")
        for name, value in zip(names, rec.init_args):
            if name in kwargs:
                raise ValueError(f"{rec.class_name}: init argument {name!r} given both by position and by keyword")
            kwargs[name] = value
    return kwargs


def _flatten_synthesis_kwargs(kwargs: Dict[str, Any], who: str) -> Dict[str, Any]:
    nested = kwargs.pop("synthesis_kwargs", None)
    if nested is None:
        return kwargs
    if not isinstance(nested, dict):
        raise ValueError(f"{who}: synthesis_kwargs must be a dict, got {type(nested).__name__}")
    for k, v in nested.items():
        if k in kwargs and kwargs[k] != v:
            raise ValueError(f"{who}: {k!r} is recorded twice with different values ({kwargs[k]!r}, {v!r})")
        kwargs[k] = v
    return kwargs


def resolve_kwargs(rec: PersistentRecord, cls) -> Dict[str, Any]:
    """The fastgan constructor kwargs for the network recorded in ``rec`` (flat, lineage defaults filled)."""
    family = "stylegan2" if rec.class_name == "Discriminator" else record_family(rec)
    kwargs = _flatten_synthesis_kwargs(_merge_positional(rec, cls), rec.class_name)
    defaults = dict(_LINEAGE_DEFAULTS[record_lineage(rec) or "stylegan3"])
    defaults.update(_state_hints(rec, family, defaults["num_fp16_res"]))
    if rec.class_name == "Generator":
        mapping = dict(kwargs.get("mapping_kwargs") or {})
        if "w_avg_beta" not in mapping and "w_avg_beta" in defaults:
            mapping["w_avg_beta"] = defaults["w_avg_beta"]
        kwargs["mapping_kwargs"] = mapping
    for key in ("num_fp16_res", "conv_clamp", "magnitude_ema_beta"):
        if key not in kwargs and key in defaults:
            kwargs[key] = defaults[key]
    return kwargs


def load_into(net: torch.nn.Module, sd: Dict[str, torch.Tensor], who: str) -> torch.nn.Module:
    """Load ``sd`` into ``net`` (exactly the same keys and shapes); eval mode, no grad. ValueError names the keys."""
    ours = net.state_dict()
    missing, unexpected = sorted(set(ours) - set(sd)), sorted(set(sd) - set(ours))
    if missing or unexpected:
        raise ValueError(f"{who}: weights do not match {type(net).__module__}.{type(net).__name__}: "
                         f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''}, "
                         f"unexpected {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
    bad = [f"{k} {list(sd[k].shape)} (expected {list(v.shape)})" for k, v in ours.items() if sd[k].shape != v.shape]
    if bad:
        raise ValueError(f"{who}: shape mismatch: {', '.join(bad[:8])}")
    net.load_state_dict(sd, strict=True)
    return net.eval().requires_grad_(False)


def network_from_record(rec: PersistentRecord) -> torch.nn.Module:
    """Build the fastgan network described by ``rec`` and load its weights (strict); eval mode, no grad."""
    if not isinstance(rec, PersistentRecord):
        raise ValueError(f"expected a network (persistence record), got {type(rec).__name__}")
    if rec.class_name not in NETWORK_CLASSES:
        raise ValueError(f"class {rec.class_name!r}: only NVlabs Generator and Discriminator networks can be built")
    family = "stylegan2" if rec.class_name == "Discriminator" else record_family(rec)
    cls = network_class(f"fastgan.nets.{family}.{rec.class_name}")
    kwargs = resolve_kwargs(rec, cls)
    try:
        net = cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{rec.class_name}: init kwargs {sorted(kwargs)} do not fit {cls.__module__}.{cls.__name__}: "
                         f"{e}") from None
    return load_into(net, record_state_dict(rec), rec.class_name)
