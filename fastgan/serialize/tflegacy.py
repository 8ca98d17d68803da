"""StyleGAN2 TensorFlow-era pickles: their variables, read as numpy arrays, become fastgan StyleGAN2 networks.

A TF pickle is the tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects (read as
:class:`~fastgan.serialize.safe_pickle.TFNetworkRecord`). Each network's variables live in its own
``variables`` list and in those of its ``components`` (``mapping``, ``synthesis``); their names are joined
with ``/`` here (``synthesis/8x8/Conv0_up/weight``). No TensorFlow is needed and nothing is executed.

Every fastgan parameter and buffer is looked up under its TF name and converted (nvlabs-notes §3):
convolution kernels ``[kh, kw, in, out] -> [out, in, kh, kw]`` (``Conv0_up`` and ``Skip`` kernels also
flipped in space), dense matrices transposed, ``mod_bias + 1``, ``noise{N}[0, 0]`` as ``noise_const``,
``dlatent_avg`` as ``mapping.w_avg``; the FIR filter buffers are rebuilt, not read. A fastgan tensor without
a TF variable, a TF variable nobody reads, a shape mismatch or an unsupported build function is refused
with a ValueError naming it.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch

from ..nets import network_class
from .nvlabs import load_into
from .safe_pickle import TFNetworkRecord

__all__ = ["tf_variables", "tf_network_kwargs", "network_from_tf_record"]

# Build functions whose networks have no fastgan StyleGAN2 counterpart.
_UNSUPPORTED_FUNCS = {
    "G_style": "StyleGAN (v1) TF generators", "G_synthesis": "StyleGAN (v1) TF synthesis networks",
    "D_basic": "StyleGAN (v1) TF discriminators",
    "G_synthesis_stylegan_revised": "StyleGAN2 configs A-D (revised AdaIN synthesis)",
}
_G_LAYERS = {"conv0": "Conv0_up", "conv1": "Conv1", "torgb": "ToRGB", "skip": "Skip"}
_D_LAYERS = {"fromrgb": "FromRGB", "conv0": "Conv0", "conv1": "Conv1_down", "skip": "Skip", "conv": "Conv",
             "fc": "Dense0"}
_FLIPPED = ("Conv0_up", "Skip")  # TF ran these as transposed / strided convolutions of the other orientation
_PARAMS = {"weight": "weight", "bias": "bias", "noise_strength": "noise_strength", "affine.weight": "mod_weight",
           "affine.bias": "mod_bias"}

Converter = Callable[[np.ndarray], np.ndarray]


def _func_name(rec: TFNetworkRecord) -> str:
    return str(rec.get("build_func_name") or "").rsplit(".", 1)[-1]


def _check_record(rec: Any, who: str) -> TFNetworkRecord:
    if not isinstance(rec, TFNetworkRecord) or not hasattr(rec, "state"):
        raise ValueError(f"{who}: expected a TF network record, got {type(rec).__name__}")
    version = rec.get("version")
    if not isinstance(version, int) or version < 4:
        raise ValueError(f"{who}: TF network pickle version {version!r} is not supported (need >= 4)")
    func = _func_name(rec)
    if func in _UNSUPPORTED_FUNCS:
        raise ValueError(f"{who}: built by {func}: {_UNSUPPORTED_FUNCS[func]} cannot be converted")
    return rec


def tf_variables(rec: TFNetworkRecord, prefix: str = "", who: str = "TF network") -> Dict[str, np.ndarray]:
    """Every variable of ``rec`` and its components as ``{'component/scope/name': float32 array}``."""
    _check_record(rec, who)
    out: Dict[str, np.ndarray] = {}
    for entry in rec.get("variables") or []:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise ValueError(f"{who}: a variables entry is not a (name, array) pair")
        name, value = entry
        value = np.asarray(value)
        if value.dtype.kind not in "fiub":
            raise ValueError(f"{who}: variable {prefix + name} has dtype {value.dtype}, expected numbers")
        out[prefix + name] = value.astype(np.float32)
    for cname, comp in (rec.get("components") or {}).items():
        out.update(tf_variables(comp, f"{prefix}{cname}/", f"{who}/{cname}"))
    return out


def _static_kwargs(rec: TFNetworkRecord) -> Dict[str, Any]:
    """The build kwargs of ``rec``; the top level's override its components' (which received them)."""
    kw: Dict[str, Any] = {}
    for comp in (rec.get("components") or {}).values():
        if isinstance(comp, TFNetworkRecord):
            kw.update(comp.get("static_kwargs") or {})
    kw.update(rec.get("static_kwargs") or {})
    return kw


def _refuse_unmappable_options(kw: Dict[str, Any], who: str) -> None:
    if kw.get("fmap_decay", 1.0) != 1.0:
        raise ValueError(f"{who}: fmap_decay={kw['fmap_decay']} has no fastgan equivalent (channels need decay 1)")
    if kw.get("fmap_min", 1) not in (None, 0, 1):
        raise ValueError(f"{who}: fmap_min={kw['fmap_min']} has no fastgan equivalent")
    if kw.get("normalize_latents", True) is False:
        raise ValueError(f"{who}: normalize_latents=False has no fastgan equivalent")


def tf_network_kwargs(rec: TFNetworkRecord, kind: str) -> Dict[str, Any]:
    """fastgan StyleGAN2 constructor kwargs of a TF ``'G'`` or ``'D'`` (TF defaults when not recorded)."""
    kw = _static_kwargs(rec)
    _refuse_unmappable_options(kw, kind)
    common = dict(c_dim=kw.get("label_size", 0), img_resolution=kw.get("resolution", 1024),
                  img_channels=kw.get("num_channels", 3))
    channels = dict(channel_base=2 * kw.get("fmap_base", 16 << 10), channel_max=kw.get("fmap_max", 512),
                    num_fp16_res=0, conv_clamp=None)
    act, kernel = kw.get("nonlinearity", "lrelu"), kw.get("resample_kernel", [1, 3, 3, 1])
    if kind == "D":
        mapping_fmaps = kw.get("mapping_fmaps")
        return dict(**common, architecture=kw.get("architecture", "resnet"), **channels, cmap_dim=None,
                    block_kwargs=dict(activation=act, resample_filter=kernel, freeze_layers=0),
                    mapping_kwargs=dict(num_layers=kw.get("mapping_layers", 0), embed_features=mapping_fmaps,
                                        layer_features=mapping_fmaps,
                                        activation=kw.get("mapping_nonlinearity", "lrelu"),
                                        lr_multiplier=kw.get("mapping_lrmul", 0.1)),
                    epilogue_kwargs=dict(mbstd_group_size=kw.get("mbstd_group_size"),
                                         mbstd_num_channels=kw.get("mbstd_num_features", 1), activation=act))
    beta = kw.get("dlatent_avg_beta", 0.995)
    return dict(z_dim=kw.get("latent_size", 512), c_dim=common["c_dim"], w_dim=kw.get("dlatent_size", 512),
                img_resolution=common["img_resolution"], img_channels=common["img_channels"], **channels,
                architecture=kw.get("architecture", "skip"), resample_filter=kernel,
                use_noise=kw.get("use_noise", True), activation=act,
                mapping_kwargs=dict(num_layers=kw.get("mapping_layers", 8), embed_features=kw.get("label_fmaps"),
                                    layer_features=kw.get("mapping_fmaps"),
                                    activation=kw.get("mapping_nonlinearity", "lrelu"),
                                    lr_multiplier=kw.get("mapping_lrmul", 0.01),
                                    w_avg_beta=1.0 if beta is None else beta))


def _kernel(flip: bool) -> Converter:
    def convert(a: np.ndarray) -> np.ndarray:
        if a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)
            return a[:, :, ::-1, ::-1] if flip else a
        return a.T if a.ndim == 2 else a
    return convert


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _param(tf_layer: str, param: str) -> Optional[Tuple[str, Converter]]:
    tf_param = _PARAMS.get(param)
    if tf_param is None:
        return None
    if tf_param in ("weight", "mod_weight"):
        return f"{tf_layer}/{tf_param}", _kernel(tf_param == "weight" and tf_layer.rsplit("/", 1)[-1] in _FLIPPED)
    if tf_param == "mod_bias":
        return f"{tf_layer}/mod_bias", lambda a: a + 1
    return f"{tf_layer}/{tf_param}", _same


def _g_source(key: str) -> Optional[Tuple[str, Converter]]:
    """TF name and converter of fastgan generator tensor ``key``; None for tensors with no TF variable."""
    if key == "mapping.w_avg":
        return "dlatent_avg", _same
    m = re.fullmatch(r"mapping\.fc(\d+)\.(weight|bias)", key)
    if m:
        return _param(f"mapping/Dense{m.group(1)}", m.group(2))
    m = re.fullmatch(r"synthesis\.b(\d+)\.const", key)
    if m:
        return f"synthesis/{m.group(1)}x{m.group(1)}/Const/const", lambda a: a[0]
    m = re.fullmatch(r"synthesis\.b(\d+)\.(conv0|conv1|torgb|skip)\.(.+)", key)
    if not m:
        return None
    res, layer, param = int(m.group(1)), m.group(2), m.group(3)
    if param == "noise_const":
        index = 2 * int(np.log2(res)) - (5 if layer == "conv0" else 4)
        return f"synthesis/noise{index}", lambda a: a[0, 0]
    tf_layer = "Conv" if (res, layer) == (4, "conv1") else _G_LAYERS[layer]
    return _param(f"synthesis/{res}x{res}/{tf_layer}", param)


def _d_source(key: str) -> Optional[Tuple[str, Converter]]:
    """TF name and converter of fastgan discriminator tensor ``key``; None for tensors with no TF variable."""
    m = re.fullmatch(r"b(\d+)\.(\w+)\.(weight|bias)", key)
    if not m:
        return None
    res, layer, param = int(m.group(1)), m.group(2), m.group(3)
    if res == 4 and layer == "out":
        return _param("Output", param)
    if layer not in _D_LAYERS:
        return None
    return _param(f"{res}x{res}/{_D_LAYERS[layer]}", param)


def _is_ignorable(name: str, value: np.ndarray) -> bool:
    """The progressive-growing level-of-detail scalar, inert at its final value 0."""
    return name.rsplit("/", 1)[-1] == "lod" and value.size == 1 and float(value.reshape(-1)[0]) == 0.0


def network_from_tf_record(rec: TFNetworkRecord, kind: str) -> torch.nn.Module:
    """The fastgan StyleGAN2 ``'G'`` (also for Gs) or ``'D'`` holding the variables of TF network ``rec``."""
    if kind not in ("G", "D"):
        raise ValueError(f"kind must be 'G' or 'D', got {kind!r}")
    who = f"TF {rec.get('name') or kind}" if isinstance(rec, TFNetworkRecord) else kind
    variables = tf_variables(rec, who=who)
    kwargs = tf_network_kwargs(rec, kind)
    cls = network_class(f"fastgan.nets.stylegan2.{'Generator' if kind == 'G' else 'Discriminator'}")
    net = cls(**kwargs)
    source = _g_source if kind == "G" else _d_source
    sd, used, missing = {}, set(), []
    for key, ours in net.state_dict().items():
        if key.endswith("resample_filter"):
            sd[key] = ours
            continue
        src = source(key)
        if src is None or src[0] not in variables:
            missing.append(f"{key} (TF {src[0]})" if src else key)
            continue
        name, convert = src
        value = np.array(convert(variables[name]), dtype=np.float32, order="C")
        if list(value.shape) != list(ours.shape):
            raise ValueError(f"{who}: TF variable {name} {list(variables[name].shape)} does not convert to "
                             f"{key} {list(ours.shape)}")
        sd[key] = torch.from_numpy(value)
        used.add(name)
    if missing:
        raise ValueError(f"{who}: no TF variable for fastgan tensor(s) {', '.join(missing[:8])}")
    unread = sorted(n for n, v in variables.items() if n not in used and not _is_ignorable(n, v))
    if unread:
        raise ValueError(f"{who}: TF variable(s) with no fastgan counterpart: {', '.join(unread[:8])}")
    return load_into(net, sd, who)
