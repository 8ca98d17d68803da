"""Write network pickles in the NVlabs formats (for loader tests), without NVlabs code.

PyTorch era: a persistent NVlabs module pickles as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``
with ``meta = {type: 'class', version: 6, module_src, class_name, state}`` and ``state`` the module's
``__dict__`` (``_parameters``, ``_buffers``, ``_modules`` of nested records, plain attributes,
``_init_args``/``_init_kwargs``). TensorFlow era: a ``(G, D, Gs)`` tuple of ``dnnlib.tflib.network.Network``
objects whose pickled state is ``{version, name, static_kwargs, components, build_module_src, build_func_name,
variables: [(name, array)]}``. The globals are emitted by placing stand-in modules named
``torch_utils.persistence``, ``dnnlib.util`` and ``dnnlib.tflib.network`` in ``sys.modules`` only while pickling.

:func:`training_config` gives, per NVlabs ``train.py`` configuration, the kwargs its snapshots record (network-spec
§4.2/§4.3, key order included; sizes scaled down) and the fastgan kwargs they stand for.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import pickle
import sys
import types
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np
import torch

# Stand-ins for the embedded module sources: only the text markers a loader may look for.
SG2_SRC = ("# networks_stylegan2 stand-in (stylegan3 repo)\nclass SynthesisNetwork: pass\n"
           "fused_modconv_default = 'inference_only'\ndef forward(self, z, c, update_emas=False): pass\n")
SG3_SRC = "# networks_stylegan3 stand-in\nfrom torch_utils.ops import filtered_lrelu\nclass SynthesisInput: pass\n"
ADA_SRC = ("# stylegan2-ada-pytorch training/networks.py stand-in\nclass MappingNetwork:\n"
           "    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, skip_w_avg_update=False): pass\n")
AUGMENT_SRC = "# training/augment.py stand-in\nclass AugmentPipe: pass\n"
TF_SRC = "# training/networks_stylegan2.py (TF) stand-in\ndef G_main(): pass\n"


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


class Network:
    """Pickles like a TF-era ``dnnlib.tflib.network.Network`` with the given ``__getstate__`` dict."""

    def __init__(self, state: Dict[str, Any]):
        self._state = state

    def __getstate__(self):
        return self._state


@contextlib.contextmanager
def nvlabs_globals() -> Iterator[None]:
    pers = types.ModuleType("torch_utils.persistence")
    util = types.ModuleType("dnnlib.util")
    tfnet = types.ModuleType("dnnlib.tflib.network")
    _reconstruct_persistent_obj.__module__ = pers.__name__
    EasyDict.__module__ = util.__name__
    Network.__module__ = tfnet.__name__
    pers._reconstruct_persistent_obj = _reconstruct_persistent_obj
    util.EasyDict = EasyDict
    tfnet.Network = Network
    mods = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": pers,
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util, "dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
            "dnnlib.tflib.network": tfnet}
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


def easy(v):
    """Nested dicts as EasyDicts, as NVlabs' train.py records them."""
    if isinstance(v, dict):
        return EasyDict({k: easy(x) for k, x in v.items()})
    return v


def record(module: torch.nn.Module, module_src: str, init_kwargs: Optional[Dict[str, Any]] = None,
           class_name: Optional[str] = None) -> Persistent:
    """The persistence record of ``module`` (children become nested records with their own kwargs)."""
    state: Dict[str, Any] = {}
    for k, v in module.__dict__.items():
        if k == "_modules":
            state[k] = collections.OrderedDict(
                (n, None if c is None else record(c, module_src, getattr(c, "init_kwargs", None)))
                for n, c in v.items())
        elif k in ("_parameters", "_buffers"):
            state[k] = collections.OrderedDict(v)
        elif k == "_non_persistent_buffers_set":
            state[k] = set(v)
        elif isinstance(v, collections.OrderedDict) and not v:
            state[k] = collections.OrderedDict()  # the empty hook dicts
        elif k != "init_kwargs" and _plain(v):
            state[k] = v
    state["_init_args"] = ()
    state["_init_kwargs"] = easy(copy.deepcopy(dict(init_kwargs or {})))
    meta = dict(type="class", version=6, module_src=module_src, class_name=class_name or type(module).__name__,
                state=state)
    return Persistent(meta)


class _AugmentPipe(torch.nn.Module):
    """Holds the buffers an NVlabs AugmentPipe pickles (``p`` and the wavelet filter banks)."""

    def __init__(self, p: float):
        super().__init__()
        self.register_buffer("p", torch.tensor(p))
        self.register_buffer("Hz_geom", torch.linspace(-0.1, 0.3, 12))
        self.register_buffer("Hz_fbank", torch.eye(4, 7))


BGC = {k: 1 for k in ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
                      "lumaflip", "hue", "saturation")}


AUGMENT_P = 0.0371


def augment_pipe_record(p: float = AUGMENT_P, init_kwargs: Optional[Dict[str, Any]] = None) -> Persistent:
    """A pickled ``training.augment.AugmentPipe`` (preset bgc by default) with probability ``p``."""
    return record(_AugmentPipe(p), AUGMENT_SRC, BGC if init_kwargs is None else init_kwargs, "AugmentPipe")


def training_set_kwargs(resolution: int = 32, use_labels: bool = False) -> Dict[str, Any]:
    return {"class_name": "training.dataset.ImageFolderDataset", "path": "/data/set.zip", "use_labels": use_labels,
            "max_size": 1000, "xflip": False, "resolution": resolution, "random_seed": 0}


def pickle_with_globals(obj: Any, protocol: int = 4) -> bytes:
    with nvlabs_globals():
        return pickle.dumps(obj, protocol=protocol)


def snapshot_bytes(G: torch.nn.Module, D: Optional[torch.nn.Module], G_kwargs: Dict[str, Any],
                   D_kwargs: Optional[Dict[str, Any]] = None, module_src: str = SG2_SRC, D_src: str = SG2_SRC,
                   protocol: int = 4, G_ema: Optional[torch.nn.Module] = None, augment_pipe: Any = None,
                   training_set: Optional[Dict[str, Any]] = None) -> bytes:
    """An NVlabs-style training snapshot ``{G, D, G_ema, augment_pipe, training_set_kwargs}`` as bytes."""
    data = {
        "G": record(G, module_src, G_kwargs),
        "D": record(D, D_src, D_kwargs) if D is not None else None,
        "G_ema": record(G if G_ema is None else G_ema, module_src, G_kwargs),
        "augment_pipe": augment_pipe,
        "training_set_kwargs": easy(training_set if training_set is not None else training_set_kwargs()),
    }
    return pickle_with_globals(data, protocol)


# ------------------------------------------------------------------------------------------------------------
# NVlabs train.py configurations. Sizes are scaled down (z/w 512 -> 32, 1024x1024 -> 32x32, channel bases
# divided by 64 for ADA and 128 for stylegan3) while every recorded key, its position and every other value stay.

Z_DIM, RES, CHANNELS, C_DIM = 32, 32, 3, 4
ADA_CFGS = {  # --cfg: (channel_base, mapping layers, mbstd group) at 32x32 (auto: res < 512 -> fmaps 0.5, batch 32)
    "auto": (256, 2, 4), "stylegan2": (512, 8, 4), "paper256": (256, 8, 8), "paper512": (512, 8, 8),
    "paper1024": (512, 8, 4), "cifar": (512, 2, 32)}
SG3_CBASE, SG3_CMAX = 256, 512
MAGNITUDE_EMA_BETA_BATCH32 = 0.9988915792636801  # 0.5 ** (32 / 20000), network-spec §4.2


def _ada(cfg: str, cond: bool, fp32: bool, nhwc: bool, freezed: int):
    cbase, map_layers, mbstd = ADA_CFGS[cfg]
    tail = dict(c_dim=C_DIM if cond else 0, img_resolution=RES, img_channels=CHANNELS)
    syn = dict(channel_base=cbase, channel_max=512, num_fp16_res=4, conv_clamp=256)
    if nhwc:
        syn["fp16_channels_last"] = True
    block = {}
    if freezed:
        block["freeze_layers"] = freezed
    if nhwc:
        block["fp16_channels_last"] = True
    D_rec = dict(block_kwargs=block, mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=mbstd),
                 channel_base=cbase, channel_max=512, num_fp16_res=4, conv_clamp=256)
    if fp32:
        for kw in (syn, D_rec):
            kw.update(num_fp16_res=0, conv_clamp=None)
    if cfg == "cifar":
        D_rec["architecture"] = "orig"
    G_rec = dict(z_dim=Z_DIM, w_dim=Z_DIM, mapping_kwargs=dict(num_layers=map_layers), synthesis_kwargs=syn, **tail)
    D_rec.update(tail)
    # ADA's MappingNetwork default w_avg_beta (0.995) is not recorded; fastgan must be given it.
    G_fast = dict(z_dim=Z_DIM, w_dim=Z_DIM, mapping_kwargs=dict(num_layers=map_layers, w_avg_beta=0.995), **tail, **syn)
    return G_rec, D_rec, G_fast, dict(D_rec), "stylegan2"


def _sg3(cfg: str, cond: bool, fp32: bool, freezed: int):
    tail = dict(c_dim=C_DIM if cond else 0, img_resolution=RES, img_channels=CHANNELS)
    G_rec = dict(z_dim=Z_DIM, w_dim=Z_DIM, mapping_kwargs=dict(num_layers=8 if cfg == "stylegan2" else 2),
                 channel_base=SG3_CBASE, channel_max=SG3_CMAX)
    if cfg == "stylegan2":
        G_rec["fused_modconv_default"] = "inference_only"
    else:
        if cfg == "stylegan3-r":
            G_rec.update(channel_base=2 * SG3_CBASE, channel_max=2 * SG3_CMAX)
        G_rec["magnitude_ema_beta"] = MAGNITUDE_EMA_BETA_BATCH32
        if cfg == "stylegan3-r":
            G_rec.update(conv_kernel=1, use_radial_filters=True)
    D_rec = dict(block_kwargs=dict(freeze_layers=freezed), mapping_kwargs={},
                 epilogue_kwargs=dict(mbstd_group_size=4), channel_base=SG3_CBASE, channel_max=SG3_CMAX)
    for kw in (G_rec, D_rec):
        if fp32:
            kw.update(num_fp16_res=0, conv_clamp=None)
        kw.update(tail)
    # Unrecorded class defaults of the stylegan3 repository, explicit.
    defaults = dict(num_fp16_res=4, conv_clamp=256)
    G_fast = {**defaults, **G_rec, "mapping_kwargs": {**G_rec["mapping_kwargs"], "w_avg_beta": 0.998}}
    return G_rec, D_rec, G_fast, {**defaults, **D_rec}, "stylegan2" if cfg == "stylegan2" else "stylegan3"


Kwargs = Dict[str, Any]


def training_config(repo: str, cfg: str, cond: bool = False, fp32: bool = False, nhwc: bool = False,
                    freezed: int = 0) -> Tuple[Kwargs, Kwargs, Kwargs, Kwargs, str, str]:
    """(G kwargs recorded, D kwargs recorded, fastgan G kwargs, fastgan D kwargs, G family, G module source)."""
    if repo == "ada":
        return (*_ada(cfg, cond, fp32, nhwc, freezed), ADA_SRC)
    G_rec, D_rec, G_fast, D_fast, family = _sg3(cfg, cond, fp32, freezed)
    return G_rec, D_rec, G_fast, D_fast, family, SG3_SRC if family == "stylegan3" else SG2_SRC


def randomize(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every learned tensor and running statistic non-trivial values (filters and transforms stay)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("resample_filter", "up_filter", "down_filter", "transform"):
                continue
            if leaf == "magnitude_ema":
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif leaf in ("bias", "noise_strength"):
                t.add_(torch.randn(t.shape, generator=g) * 0.2)
            elif t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g))
    return net.eval().requires_grad_(False)


@dataclass
class ConfigNetworks:
    """fastgan networks built directly for one train.py configuration, and the kwargs its snapshots record."""

    G: torch.nn.Module
    G_ema: torch.nn.Module
    D: torch.nn.Module
    G_rec: Dict[str, Any]
    D_rec: Dict[str, Any]
    G_src: str
    D_src: str
    cond: bool

    def snapshot(self, G_src: Optional[str] = None, D_src: Optional[str] = None, augment_pipe: Any = None,
                 training_set: Optional[Dict[str, Any]] = None, protocol: int = 4) -> bytes:
        """The training snapshot NVlabs would write for these networks (augment pipe p = AUGMENT_P by default)."""
        return snapshot_bytes(self.G, self.D, self.G_rec, self.D_rec, module_src=G_src or self.G_src,
                              D_src=D_src or self.D_src, G_ema=self.G_ema, protocol=protocol,
                              augment_pipe=augment_pipe if augment_pipe is not None else augment_pipe_record(),
                              training_set=training_set or training_set_kwargs(use_labels=self.cond))


def config_networks(repo: str, cfg: str, **opts) -> ConfigNetworks:
    """Build G, G_ema and D (different random weights) directly from the fastgan kwargs of a configuration."""
    from fastgan.nets import stylegan2, stylegan3

    G_rec, D_rec, G_fast, D_fast, family, src = training_config(repo, cfg, **opts)
    G_cls = stylegan3.Generator if family == "stylegan3" else stylegan2.Generator
    G = randomize(G_cls(**copy.deepcopy(G_fast)), 1)
    G_ema = randomize(G_cls(**copy.deepcopy(G_fast)), 2)
    D = randomize(stylegan2.Discriminator(**copy.deepcopy(D_fast)), 3)
    return ConfigNetworks(G, G_ema, D, G_rec, D_rec, src, ADA_SRC if repo == "ada" else SG2_SRC, bool(opts.get("cond")))


# ------------------------------------------------------------------------------------------------------------
# TensorFlow era (StyleGAN2 TF, config F): variable layout written from TF shapes and names.

def tf_network(name: str, func: str, static_kwargs: Dict[str, Any], variables: Dict[str, np.ndarray],
               components: Optional[Dict[str, Network]] = None, version: int = 4, src: str = TF_SRC) -> Network:
    return Network({"version": version, "name": name, "static_kwargs": easy(static_kwargs),
                    "components": easy(components or {}), "build_module_src": src, "build_func_name": func,
                    "variables": [(k, v) for k, v in variables.items()],
                    "input_shapes": [[None, 512], [None, 0]], "output_shapes": [[None, 3, 1024, 1024]],
                    "input_names": ["latents_in", "labels_in"], "output_names": ["images_out"]})


def tf_generator_variables(res: int, z_dim: int, w_dim: int, channel_base: int, channel_max: int, map_layers: int,
                           architecture: str, rng: np.random.RandomState, img_channels: int = 3):
    """(mapping vars, synthesis vars, dlatent_avg) of a TF StyleGAN2 G in TF shapes."""
    ch = lambda r: min(channel_base // r, channel_max)  # noqa: E731
    f32 = lambda *s: np.asarray(rng.randn(*s), np.float32)  # noqa: E731
    mapping = {}
    for i in range(map_layers):
        fin = z_dim if i == 0 else w_dim
        mapping[f"Dense{i}/weight"], mapping[f"Dense{i}/bias"] = f32(fin, w_dim), f32(w_dim)
    syn: Dict[str, np.ndarray] = {"lod": np.zeros([], np.float32)}

    def modconv(scope, fin, fout, k, noise_index=None):
        syn[f"{scope}/weight"] = f32(k, k, fin, fout)
        syn[f"{scope}/mod_weight"], syn[f"{scope}/mod_bias"] = f32(w_dim, fin), f32(fin)
        if noise_index is not None:
            syn[f"{scope}/noise_strength"] = f32()
        syn[f"{scope}/bias"] = f32(fout)

    log2 = int(np.log2(res))
    for r in [2 ** i for i in range(2, log2 + 1)]:
        s = f"{r}x{r}"
        if r == 4:
            syn[f"{s}/Const/const"] = f32(1, ch(4), 4, 4)
            modconv(f"{s}/Conv", ch(4), ch(4), 3, 0)
        else:
            modconv(f"{s}/Conv0_up", ch(r // 2), ch(r), 3, 2 * int(np.log2(r)) - 5)
            modconv(f"{s}/Conv1", ch(r), ch(r), 3, 2 * int(np.log2(r)) - 4)
            if architecture == "resnet":
                syn[f"{s}/Skip/weight"] = f32(1, 1, ch(r // 2), ch(r))
        if architecture == "skip" or r == res:
            modconv(f"{s}/ToRGB", ch(r), img_channels, 1)
    for i in range(2 * log2 - 3):
        r = 2 ** ((i + 5) // 2)
        syn[f"noise{i}"] = f32(1, 1, r, r)
    return mapping, syn, f32(w_dim)


def tf_discriminator_variables(res: int, channel_base: int, channel_max: int, rng: np.random.RandomState,
                               img_channels: int = 3, mbstd_features: int = 1) -> Dict[str, np.ndarray]:
    """The variables of a TF StyleGAN2 resnet D in TF shapes."""
    ch = lambda r: min(channel_base // r, channel_max)  # noqa: E731
    f32 = lambda *s: np.asarray(rng.randn(*s), np.float32)  # noqa: E731
    v: Dict[str, np.ndarray] = {}
    v[f"{res}x{res}/FromRGB/weight"], v[f"{res}x{res}/FromRGB/bias"] = f32(1, 1, img_channels, ch(res)), f32(ch(res))
    r = res
    while r > 4:
        s = f"{r}x{r}"
        v[f"{s}/Conv0/weight"], v[f"{s}/Conv0/bias"] = f32(3, 3, ch(r), ch(r)), f32(ch(r))
        v[f"{s}/Conv1_down/weight"], v[f"{s}/Conv1_down/bias"] = f32(3, 3, ch(r), ch(r // 2)), f32(ch(r // 2))
        v[f"{s}/Skip/weight"] = f32(1, 1, ch(r), ch(r // 2))
        r //= 2
    c4 = ch(4)
    v["4x4/Conv/weight"], v["4x4/Conv/bias"] = f32(3, 3, c4 + mbstd_features, c4), f32(c4)
    v["4x4/Dense0/weight"], v["4x4/Dense0/bias"] = f32(c4 * 16, c4), f32(c4)
    v["Output/weight"], v["Output/bias"] = f32(c4, 1), f32(1)
    return v
