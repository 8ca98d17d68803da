"""A restricted unpickler for NVlabs network pickles: reads them as data, never runs code from them.

NVlabs snapshots (``network-snapshot-*.pkl``, released ``ffhq.pkl`` ...) store every network as a
*persistence record*: a call of ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose
``meta`` dict carries the full source of the defining module, the class name and the object state.
Unpickling them the NVlabs way ``exec``s that source. :func:`safe_load` instead maps the reconstructor
to :class:`PersistentRecord`, a passive container, and refuses every global outside a short
allow-list (torch tensor/storage rebuild helpers, numpy array/scalar/dtype rebuild, a few builtins).
Any other global raises :class:`UnsafePickleError` naming it before anything is called.

TensorFlow-era pickles (StyleGAN2 TF: a ``(G, D, Gs)`` tuple of ``dnnlib.tflib.network.Network``
objects) come back as :class:`TFNetworkRecord` objects holding the pickled state as data.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import os
import pickle
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Dict, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["UnsafePickleError", "PersistentRecord", "TFNetworkRecord", "safe_load", "safe_loads", "record_state_dict",
           "to_plain"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something outside the allow-list; nothing from it was executed."""


@dataclass
class PersistentRecord:
    """An NVlabs persistent object, kept as data: its class name, constructor arguments and state.

    ``module_src`` is the source text embedded in the pickle. It is only ever inspected as a string.
    """

    class_name: str
    module_src: str
    state: Dict[str, Any]
    version: int = 0
    init_args: Tuple[Any, ...] = ()
    init_kwargs: Dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # the module source is long; keep reprs readable
        return f"PersistentRecord(class_name={self.class_name!r}, init_kwargs={self.init_kwargs!r})"


class TFNetworkRecord:
    """A TensorFlow-era ``dnnlib.tflib.network.Network``, kept as data (its pickled ``__getstate__`` dict).

    The state holds ``version``, ``name``, ``static_kwargs`` (the build function's keyword arguments),
    ``components`` (nested networks, e.g. ``mapping`` and ``synthesis``), ``build_module_src`` (only ever
    a string here), ``build_func_name`` and ``variables`` (a list of ``(name, numpy array)``).
    """

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError(f"dnnlib.tflib.network.Network: expected a state dict, got {type(state).__name__}")
        self.state = to_plain(state)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, "state", {}).get(key, default)

    def __repr__(self) -> str:
        return f"TFNetworkRecord(name={self.get('name')!r}, build_func_name={self.get('build_func_name')!r})"


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict subclass); converted to ``dict`` by :func:`to_plain`."""


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict):
        raise UnsafePickleError(f"persistence record: expected a meta dict, got {type(meta).__name__}")
    if meta.get("type") != "class":
        raise UnsafePickleError(f"persistence record of type {meta.get('type')!r}: only 'class' records are read")
    name, src, state = meta.get("class_name"), meta.get("module_src", ""), meta.get("state")
    if not isinstance(name, str) or not isinstance(src, str) or not isinstance(state, dict):
        raise UnsafePickleError("persistence record: class_name/module_src must be str and state a dict")
    args = state.get("_init_args", ())
    kwargs = state.get("_init_kwargs", {})
    return PersistentRecord(class_name=name, module_src=src, state=state, version=int(meta.get("version", 0)),
                            init_args=tuple(to_plain(args)) if args else (), init_kwargs=to_plain(kwargs or {}))


def _load_from_bytes(b: Any):
    if not isinstance(b, (bytes, bytearray)):
        raise UnsafePickleError(f"torch.storage._load_from_bytes: expected bytes, got {type(b).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(io.BytesIO(bytes(b)), weights_only=True, map_location="cpu")


def _no_hooks(hooks: Any, what: str) -> None:
    if hooks:
        raise UnsafePickleError(f"{what}: tensors with backward hooks are refused (hooks would be callables)")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    _no_hooks(backward_hooks, "torch._utils._rebuild_tensor_v2")
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f"torch._utils._rebuild_tensor_v2: storage must be a torch storage, "
                                f"got {type(storage).__name__}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, bool(requires_grad),
                                            collections.OrderedDict())
    return t


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    _no_hooks(backward_hooks, "torch._utils._rebuild_parameter")
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError(f"torch._utils._rebuild_parameter: data must be a tensor, got {type(data).__name__}")
    if state:
        raise UnsafePickleError("torch._utils._rebuild_parameter_with_state: parameter state is refused")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _check_dtype(dt: Any, what: str) -> np.dtype:
    if not isinstance(dt, np.dtype):
        raise UnsafePickleError(f"{what}: expected a numpy dtype, got {type(dt).__name__}")
    if dt.hasobject:
        raise UnsafePickleError(f"{what}: object dtypes are refused")
    return dt


def _np_dtype(obj, align=False, copy=False):
    dt = np.dtype(obj, align=bool(align), copy=bool(copy))
    return dt


def _np_scalar(dtype, data=None):
    dt = _check_dtype(dtype, "numpy scalar")
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError(f"numpy scalar: expected raw bytes, got {type(data).__name__}")
    return np.frombuffer(bytes(data), dtype=dt, count=1)[0]


def _np_reconstruct(subtype, shape, dtype):
    if subtype is not np.ndarray:
        raise UnsafePickleError(f"numpy _reconstruct: only numpy.ndarray is allowed, got {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, _check_dtype(np.dtype(dtype), "numpy array"))


def _np_frombuffer(buf, dtype, shape, order="C"):
    """numpy's protocol-5 array rebuild: raw buffer + dtype + shape."""
    dt = _check_dtype(dtype, "numpy _frombuffer")
    if not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise UnsafePickleError(f"numpy _frombuffer: expected a buffer, got {type(buf).__name__}")
    if order not in ("C", "F"):
        raise UnsafePickleError(f"numpy _frombuffer: order must be 'C' or 'F', got {order!r}")
    return np.frombuffer(bytes(memoryview(buf)), dtype=dt).reshape(shape, order=order).copy(order=order)


def _codecs_encode(obj, encoding="utf-8"):
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode: only str -> latin1 bytes (protocol 2 bytes) is allowed")
    return obj.encode("latin1")


_TORCH_CONSTANTS = {name: getattr(torch, name) for name in (
    "float16", "bfloat16", "float32", "float64", "half", "float", "double", "uint8", "int8", "int16", "int32",
    "int64", "long", "int", "bool", "contiguous_format", "channels_last", "preserve_format")}


def _torch_device(spec, index=None):
    if not isinstance(spec, (str, int)) or (index is not None and not isinstance(index, int)):
        raise UnsafePickleError("torch.device: expected a device string and optional index")
    return torch.device(spec) if index is None else torch.device(spec, index)

_ALLOWED: Dict[Tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("numpy", "dtype"): _np_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): bytearray,
    ("torch", "device"): _torch_device,
    **{("torch", n): v for n, v in _TORCH_CONSTANTS.items()},
    **{("torch._utils", f"torch.{n}"): getattr(torch, n) for n in ("contiguous_format", "channels_last",
                                                                    "preserve_format")},
    **{(m, "scalar"): _np_scalar for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_reconstruct"): _np_reconstruct for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _np_frombuffer for m in ("numpy.core.numeric", "numpy._core.numeric")},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        # Protocol < 3 pickles name Python 2 modules (__builtin__.set); map them as pickle itself does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise UnsafePickleError(f"refused global {module}.{name}: not on fastgan's allow-list for network "
                                    f"pickles (nothing from the file was executed)")
        return fn

    def persistent_load(self, pid):
        raise UnsafePickleError(f"refused persistent id {pid!r}: network pickles do not use persistent ids")


def safe_load(file: Union[BinaryIO, str, "os.PathLike[str]"]) -> Any:
    """Unpickle ``file`` (a path or binary file object) with the restricted unpickler.

    NVlabs persistence records come back as :class:`PersistentRecord`, TensorFlow networks as
    :class:`TFNetworkRecord`; tensors as CPU tensors and parameters; ``dnnlib.util.EasyDict`` as
    ``dict``. Raises :class:`UnsafePickleError` for anything else, and ValueError for a truncated or
    corrupt file; both messages start with the file name.
    """
    if isinstance(file, (str, bytes)) or hasattr(file, "__fspath__"):
        with open(file, "rb") as fh:
            return _load_named(fh, os.fsdecode(file))
    return _load_named(file, str(getattr(file, "name", "<pickle stream>")))


def _load_named(fh: BinaryIO, name: str) -> Any:
    try:
        return _RestrictedUnpickler(fh).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{name}: {e}") from None
    except Exception as e:  # anything the pickle machinery raises on malformed input
        raise ValueError(f"{name}: truncated or corrupt pickle ({type(e).__name__}: {e})") from None


def safe_loads(data: bytes) -> Any:
    """:func:`safe_load` of an in-memory pickle."""
    return safe_load(io.BytesIO(data))


def to_plain(obj: Any) -> Any:
    """Recursively turn EasyDicts into dicts (and tuples/lists of them), leaving other values as they are."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_plain(v) for v in obj)
    return obj


def record_state_dict(rec: PersistentRecord, prefix: str = "",
                      out: Optional["collections.OrderedDict[str, torch.Tensor]"] = None
                      ) -> "collections.OrderedDict[str, torch.Tensor]":
    """The ``state_dict()`` the recorded module would have: parameters, persistent buffers, children."""
    out = collections.OrderedDict() if out is None else out
    st = rec.state
    skip = set(st.get("_non_persistent_buffers_set", ()) or ())
    for group in ("_parameters", "_buffers"):
        for name, t in (st.get(group) or {}).items():
            if t is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(t, torch.Tensor):
                raise UnsafePickleError(f"{prefix}{name}: expected a tensor in {group}, got {type(t).__name__}")
            out[prefix + name] = t.detach()
    for name, child in (st.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise UnsafePickleError(f"{prefix}{name}: sub-module is not a persistence record ({type(child).__name__})")
        record_state_dict(child, f"{prefix}{name}.", out)
    return out
