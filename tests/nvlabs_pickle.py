"""Write network pickles in the NVlabs persistence format (for loader tests), without NVlabs code.

A persistent NVlabs module pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` with
``meta = {type: 'class', version: 6, module_src, class_name, state}`` and ``state`` the module's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules`` of nested records, plain attributes,
``_init_args``/``_init_kwargs``). The globals are emitted by placing stand-in modules named
``torch_utils.persistence`` and ``dnnlib.util`` in ``sys.modules`` only while pickling.
"""
from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from typing import Any, Dict, Iterator, Optional

import numpy as np
import torch

SG2_SRC = "# networks_stylegan2 stand-in\nclass SynthesisNetwork: pass\nfused_modconv_default = 'inference_only'\n"
SG3_SRC = "# networks_stylegan3 stand-in\nfrom torch_utils.ops import filtered_lrelu\nclass SynthesisInput: pass\n"


class EasyDict(dict):
    pass


def _reconstruct_persistent_obj(meta):  # never called: only its name is pickled
    raise AssertionError("stand-in reconstructor must not run")


class Persistent:
    """Pickles exactly like an NVlabs persistent object holding ``meta``."""

    def __init__(self, meta: Dict[str, Any]):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,), None)


@contextlib.contextmanager
def nvlabs_globals() -> Iterator[None]:
    pers = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    _reconstruct_persistent_obj.__module__ = pers.__name__
    EasyDict.__module__ = util.__name__
    pers._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util.EasyDict = EasyDict
    mods = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": pers,
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


_PLAIN = (bool, int, float, str, type(None), np.ndarray, np.generic)


def _plain(v) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return isinstance(v, _PLAIN)


def _easy(v):
    if isinstance(v, dict):
        return EasyDict({k: _easy(x) for k, x in v.items()})
    return v


def record(module: torch.nn.Module, module_src: str, init_kwargs: Optional[Dict[str, Any]] = None) -> Persistent:
    """The persistence record of ``module`` (children become nested records)."""
    state: Dict[str, Any] = {}
    for k, v in module.__dict__.items():
        if k == "_modules":
            state[k] = collections.OrderedDict(
                (n, None if c is None else record(c, module_src)) for n, c in v.items())
        elif k in ("_parameters", "_buffers"):
            state[k] = collections.OrderedDict(v)
        elif k == "_non_persistent_buffers_set":
            state[k] = set(v)
        elif isinstance(v, collections.OrderedDict) and not v:
            state[k] = collections.OrderedDict()  # the empty hook dicts
        elif k != "init_kwargs" and _plain(v):
            state[k] = v
    state["_init_args"] = ()
    state["_init_kwargs"] = _easy(dict(init_kwargs or {}))
    meta = dict(type="class", version=6, module_src=module_src, class_name=type(module).__name__, state=state)
    return Persistent(meta)


def snapshot_bytes(G: torch.nn.Module, D: Optional[torch.nn.Module], G_kwargs: Dict[str, Any],
                   D_kwargs: Optional[Dict[str, Any]] = None, module_src: str = SG2_SRC, D_src: str = SG2_SRC,
                   protocol: int = 4) -> bytes:
    """An NVlabs-style training snapshot ``{G, D, G_ema, augment_pipe, training_set_kwargs}`` as bytes."""
    data = {
        "G": record(G, module_src, G_kwargs),
        "D": record(D, D_src, D_kwargs) if D is not None else None,
        "G_ema": record(G, module_src, G_kwargs),
        "augment_pipe": None,
        "training_set_kwargs": _easy({"class_name": "training.dataset.ImageFolderDataset", "resolution": 32,
                                      "use_labels": False, "max_size": None, "xflip": False}),
    }
    with nvlabs_globals():
        return pickle.dumps(data, protocol=protocol)
