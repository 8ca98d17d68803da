"""Every NVlabs training-snapshot configuration loads through the safe loader and reproduces the networks.

For each ``train.py`` configuration (stylegan2-ada-pytorch ``--cfg`` auto/stylegan2/paper256/paper512/
paper1024/cifar, stylegan3 ``--cfg`` stylegan2/stylegan3-t/stylegan3-r; conditional or not; fp16 or
``--fp32``; ``--nhwc``, ``--freezed``) the test builds fastgan networks directly from the fastgan kwargs the
configuration stands for, writes them as an NVlabs snapshot recording exactly the kwargs that configuration's
``train.py`` records (network-spec §4.2/§4.3), loads it, and requires the same configuration, the same weights and
bit-identical images and logits. Hostile variants of every snapshot are refused and provably run nothing.
"""
from __future__ import annotations

import copy
import functools
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

import fastgan
from fastgan.nets import stylegan2
from fastgan.serialize import AugmentPipeInfo, Snapshot, UnsafePickleError

from nvlabs_pickle import (ADA_SRC, AUGMENT_P, BGC, SG2_SRC, ConfigNetworks, Persistent, augment_pipe_record, config_networks,
                           pickle_with_globals, randomize, record, training_config, training_set_kwargs)

CONFIGS = {
    "ada-auto-cond": ("ada", "auto", dict(cond=True)),
    "ada-auto-fp32": ("ada", "auto", dict(fp32=True)),
    "ada-stylegan2": ("ada", "stylegan2", {}),
    "ada-stylegan2-fp32-cond": ("ada", "stylegan2", dict(fp32=True, cond=True)),
    "ada-paper256-nhwc": ("ada", "paper256", dict(nhwc=True)),
    "ada-paper512-cond": ("ada", "paper512", dict(cond=True)),
    "ada-paper1024-freezed": ("ada", "paper1024", dict(freezed=1)),
    "ada-cifar-cond": ("ada", "cifar", dict(cond=True)),
    "sg3-stylegan2": ("sg3", "stylegan2", {}),
    "sg3-stylegan2-fp32-cond": ("sg3", "stylegan2", dict(fp32=True, cond=True)),
    "sg3-t": ("sg3", "stylegan3-t", {}),
    "sg3-t-fp32-cond": ("sg3", "stylegan3-t", dict(fp32=True, cond=True)),
    "sg3-r-cond": ("sg3", "stylegan3-r", dict(cond=True)),
    "sg3-r-fp32-freezed": ("sg3", "stylegan3-r", dict(fp32=True, freezed=2)),
}
NAMES = list(CONFIGS)


@functools.lru_cache(maxsize=None)
def built(name: str) -> ConfigNetworks:
    repo, cfg, opts = CONFIGS[name]
    return config_networks(repo, cfg, **opts)


def snapshot_of(name: str, **kwargs) -> bytes:
    return built(name).snapshot(**kwargs)


@functools.lru_cache(maxsize=None)
def snapshot_cached(name: str) -> bytes:
    return snapshot_of(name)


def _write(tmp_path, data: bytes, name: str = "network-snapshot-000000.pkl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def inputs(G, n: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn([n, G.z_dim], generator=g)
    c = torch.nn.functional.one_hot(torch.arange(n) % G.c_dim, G.c_dim).float() if G.c_dim else None
    return z, c


def _equal(a, b) -> bool:
    if isinstance(a, (np.ndarray, np.generic)) or isinstance(b, (np.ndarray, np.generic)):
        return np.array_equal(np.asarray(a), np.asarray(b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    return a == b


def _settings(net: torch.nn.Module):
    """Every sub-module's plain (non-tensor) attributes: resolutions, clamps, fp16 flags, betas, init kwargs."""
    return {name: {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"
                   and not isinstance(v, torch.Tensor)} for name, m in net.named_modules()}


def assert_same_network(net: torch.nn.Module, ref: torch.nn.Module) -> None:
    assert type(net) is type(ref)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    ours, theirs = _settings(net), _settings(ref)
    assert list(ours) == list(theirs)
    for name in theirs:
        assert ours[name].keys() == theirs[name].keys(), name
        for k in theirs[name]:
            assert _equal(ours[name][k], theirs[name][k]), f"{name}.{k}: {ours[name][k]!r} != {theirs[name][k]!r}"
    sd, ref_sd = net.state_dict(), ref.state_dict()
    assert list(sd) == list(ref_sd)
    for k, v in ref_sd.items():
        assert torch.equal(sd[k], v), k


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_reproduces_directly_built_networks(tmp_path, name):
    b = built(name)
    path = _write(tmp_path, snapshot_cached(name))
    snap = fastgan.load_snapshot(path)
    assert isinstance(snap, Snapshot)
    for key, ref in (("G", b.G), ("G_ema", b.G_ema), ("D", b.D)):
        assert_same_network(getattr(snap, key), ref)
    z, c = inputs(b.G)
    with torch.no_grad():
        for key, ref in (("G", b.G), ("G_ema", b.G_ema)):
            img = getattr(snap, key)(z, c, truncation_psi=0.7, noise_mode="const")
            torch.testing.assert_close(img, ref(z, c, truncation_psi=0.7, noise_mode="const"), rtol=0, atol=0)
            assert img.shape == (4, 3, 32, 32) and img.std() > 0.01
        torch.testing.assert_close(snap.D(img, c), b.D(img, c), rtol=0, atol=0)
    assert snap.augment_pipe == AugmentPipeInfo("AugmentPipe", BGC, float(torch.tensor(AUGMENT_P)))
    assert snap.training_set_kwargs == training_set_kwargs(use_labels=b.cond)
    assert type(snap.training_set_kwargs) is dict


@pytest.mark.parametrize("name", ["ada-paper512-cond", "sg3-r-cond"])
def test_load_network_keys_match_the_snapshot(tmp_path, name):
    path = _write(tmp_path, snapshot_cached(name))
    b = built(name)
    for key, ref in (("G", b.G), ("G_ema", b.G_ema), ("D", b.D)):
        assert_same_network(fastgan.load_network(path, key=key), ref)
    whole = fastgan.load_network(path, key=None)
    assert set(whole) == {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert whole["augment_pipe"].p == pytest.approx(AUGMENT_P)
    with pytest.raises(KeyError, match="augment_pipe"):
        fastgan.load_network(path, key="augment_pipe")


def test_recorded_kwargs_follow_the_spec_tables():
    """Spot checks of the recorded kwargs against network-spec §4.2/§4.3 (order included)."""
    G_rec, D_rec = training_config("sg3", "stylegan3-r", fp32=True)[:2]
    assert list(G_rec) == ["z_dim", "w_dim", "mapping_kwargs", "channel_base", "channel_max", "magnitude_ema_beta",
                           "conv_kernel", "use_radial_filters", "num_fp16_res", "conv_clamp", "c_dim",
                           "img_resolution", "img_channels"]
    assert G_rec["channel_base"] == 2 * D_rec["channel_base"]  # R doubles G's channel_base, not D's
    G_rec, D_rec = training_config("ada", "cifar", fp32=True)[:2]
    assert list(G_rec) == ["z_dim", "w_dim", "mapping_kwargs", "synthesis_kwargs", "c_dim", "img_resolution",
                           "img_channels"]
    assert G_rec["synthesis_kwargs"] == {"channel_base": 512, "channel_max": 512, "num_fp16_res": 0,
                                         "conv_clamp": None}
    assert list(D_rec)[:3] == ["block_kwargs", "mapping_kwargs", "epilogue_kwargs"] and D_rec["architecture"] == "orig"


@pytest.mark.parametrize("name, beta, clamp, fp16", [
    ("ada-stylegan2", 0.995, 256, [False, True, True, True]),
    ("ada-stylegan2-fp32-cond", 0.995, None, [False] * 4),
    ("sg3-stylegan2", 0.998, 256, [False, True, True, True]),
    ("sg3-stylegan2-fp32-cond", 0.998, None, [False] * 4),
])
def test_lineage_settings_of_stylegan2_generators(tmp_path, name, beta, clamp, fp16):
    G = fastgan.load_network(_write(tmp_path, snapshot_cached(name)))
    assert G.mapping.w_avg_beta == beta
    assert [getattr(G.synthesis, f"b{r}").use_fp16 for r in (4, 8, 16, 32)] == fp16
    assert G.synthesis.b32.conv1.conv_clamp == clamp and G.synthesis.b4.torgb.conv_clamp == clamp


def _strip(rec: Persistent, names) -> Persistent:
    """Drop plain attributes from a record tree (a hand-made pickle that carries only kwargs and weights)."""
    for k in names:
        rec.meta["state"].pop(k, None)
    for child in rec.meta["state"]["_modules"].values():
        if child is not None:
            _strip(child, names)
    return rec


LINEAGE_ATTRS = ("conv_clamp", "use_fp16", "w_avg_beta", "magnitude_ema_beta")


@pytest.mark.parametrize("src, clamp, fp16, beta", [
    (ADA_SRC, None, False, 0.995),       # ADA class defaults
    (SG2_SRC, 256, True, 0.998),         # stylegan3-repo class defaults
    ("# no markers\n", 256, True, 0.998),  # nothing tells: fastgan's (= stylegan3-repo) defaults
])
def test_lineage_defaults_when_neither_kwargs_nor_state_tell(tmp_path, src, clamp, fp16, beta):
    G = randomize(stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=256,
                                      channel_max=32), 0)
    kwargs = dict(z_dim=8, w_dim=8, mapping_kwargs=dict(num_layers=8), channel_base=256, channel_max=32, c_dim=0,
                  img_resolution=16, img_channels=3)
    data = pickle_with_globals({"G_ema": _strip(record(G, src, kwargs), LINEAGE_ATTRS)})
    H = fastgan.load_network(_write(tmp_path, data))
    assert H.mapping.w_avg_beta == beta
    assert H.synthesis.b16.conv1.conv_clamp == clamp and H.synthesis.b16.use_fp16 is fp16


def test_pickled_attributes_win_over_lineage_defaults(tmp_path):
    """ADA kwargs silent on conv_clamp/num_fp16_res, but the pickled layers say what they were built with."""
    kwargs = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2, w_avg_beta=0.9))
    G = randomize(stylegan2.Generator(**kwargs, channel_base=256, channel_max=32, num_fp16_res=1, conv_clamp=64), 0)
    rec = record(G, ADA_SRC, {**kwargs, "synthesis_kwargs": dict(channel_base=256, channel_max=32)})
    H = fastgan.load_network(_write(tmp_path, pickle_with_globals({"G_ema": rec})))
    assert H.synthesis.b16.conv1.conv_clamp == 64 and H.synthesis.b16.use_fp16 and not H.synthesis.b8.use_fp16
    assert H.mapping.w_avg_beta == 0.9  # recorded kwargs are used as they are
    sd = G.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in H.state_dict().items())


def test_conflicting_synthesis_kwargs_are_refused(tmp_path):
    b = built("ada-stylegan2")
    G_rec = copy.deepcopy(b.G_rec)
    G_rec["channel_base"] = 2048  # also nested as 1024
    data = pickle_with_globals({"G_ema": record(b.G, ADA_SRC, G_rec)})
    with pytest.raises(ValueError, match="channel_base.*recorded twice"):
        fastgan.load_network(_write(tmp_path, data))


# ------------------------------------------------------------------------------------------------------------
# Hostile variants of every configuration.

class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("where", ["training_set_kwargs", "G_ema", "augment_pipe"])
def test_reduce_to_a_callable_is_refused(tmp_path, name, where):
    sentinel = tmp_path / "PWNED"
    if where == "training_set_kwargs":
        evil = _Reduce(os.system, f"touch {sentinel}")
        data = snapshot_of(name, training_set={**training_set_kwargs(), "path": evil})
        culprit = "system"
    elif where == "augment_pipe":
        data = snapshot_of(name, augment_pipe=_Reduce(exec, f"open({str(sentinel)!r}, 'w')"))
        culprit = "builtins.exec"
    else:
        b = built(name)
        rec = record(b.G_ema, b.G_src, b.G_rec)
        mapping_state = rec.meta["state"]["_modules"]["mapping"].meta["state"]
        mapping_state["w_avg_beta"] = _Reduce(eval, f"open({str(sentinel)!r}, 'w')")
        data = pickle_with_globals({"G": record(b.G, b.G_src, b.G_rec), "G_ema": rec})
        culprit = "builtins.eval"
    path = _write(tmp_path, data)
    with pytest.raises(UnsafePickleError, match=f"{path}.*refused global .*{culprit}"):
        fastgan.load_snapshot(path)
    with pytest.raises(UnsafePickleError):
        fastgan.load_network(path, key="G")
    assert not sentinel.exists()


@pytest.mark.parametrize("name", NAMES)
def test_code_in_module_src_never_runs(tmp_path, name):
    sentinel = tmp_path / "PWNED"
    payload = f"import pathlib\npathlib.Path({str(sentinel)!r}).write_text('ran')\n"
    b = built(name)
    path = _write(tmp_path, snapshot_of(name, G_src=payload + b.G_src, D_src=payload + b.D_src))
    snap = fastgan.load_snapshot(path)
    assert not sentinel.exists()
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules
    z, c = inputs(b.G, 2)
    with torch.no_grad():
        torch.testing.assert_close(snap.G_ema(z, c, noise_mode="const"), b.G_ema(z, c, noise_mode="const"), rtol=0,
                                   atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_unknown_class_names_are_refused(tmp_path, name):
    b = built(name)
    evil = record(b.G_ema, b.G_src, b.G_rec, class_name="Backdoor")
    path = _write(tmp_path, pickle_with_globals({"G_ema": evil, "D": record(b.D, b.D_src, b.D_rec)}))
    with pytest.raises(ValueError, match=f"{path}.*'Backdoor'"):
        fastgan.load_snapshot(path)
    assert_same_network(fastgan.load_network(path, key="D"), b.D)  # the other network is still readable

    # A network pickled as a plain (non-persistent) class: its global is refused before anything is called.
    mod = types.ModuleType("training.networks")

    class Generator:
        def __reduce__(self):
            return (Generator, ())

    Generator.__module__, Generator.__qualname__ = mod.__name__, "Generator"
    mod.Generator = Generator
    saved = {k: sys.modules.get(k) for k in ("training", "training.networks")}
    sys.modules.update({"training": types.ModuleType("training"), "training.networks": mod})
    try:
        data = pickle.dumps({"G_ema": Generator()})
    finally:
        for k, v in saved.items():
            if v is None:
                del sys.modules[k]
            else:
                sys.modules[k] = v
    path = _write(tmp_path, data, "plain.pkl")
    with pytest.raises(UnsafePickleError, match="refused global training.networks.Generator"):
        fastgan.load_snapshot(path)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_snapshot_is_refused_naming_the_file(tmp_path, name):
    data = snapshot_cached(name)
    for cut in (200, len(data) // 2, len(data) - 1):
        path = _write(tmp_path, data[:cut], f"cut{cut}.pkl")
        with pytest.raises(ValueError, match=f"{path}: truncated or corrupt pickle"):
            fastgan.load_snapshot(path)
        with pytest.raises(ValueError, match=f"{path}: truncated or corrupt pickle"):
            fastgan.load_network(path)


def test_augment_pipe_is_read_as_data_only(tmp_path):
    pipe = augment_pipe_record(0.25, {"xflip": 1, "noise": 1, "noise_std": 0.05})
    pipe.meta["module_src"] = f"open({str(tmp_path / 'PWNED')!r}, 'w')\n"
    path = _write(tmp_path, snapshot_of("ada-stylegan2", augment_pipe=pipe))
    info = fastgan.load_snapshot(path).augment_pipe
    assert info == AugmentPipeInfo("AugmentPipe", {"xflip": 1, "noise": 1, "noise_std": 0.05}, 0.25)
    assert not (tmp_path / "PWNED").exists()
    del pipe.meta["state"]["_buffers"]["p"]
    with pytest.raises(ValueError, match="augment_pipe.*'p'"):
        fastgan.load_snapshot(_write(tmp_path, snapshot_of("ada-stylegan2", augment_pipe=pipe), "nop.pkl"))


def test_missing_entries_are_none(tmp_path):
    b = built("sg3-t")
    path = _write(tmp_path, pickle_with_globals({"G_ema": record(b.G_ema, b.G_src, b.G_rec)}))
    snap = fastgan.load_snapshot(path)
    assert snap.G is None and snap.D is None and snap.augment_pipe is None and snap.training_set_kwargs is None
    assert_same_network(snap.G_ema, b.G_ema)
    with pytest.raises(KeyError, match=r"no network 'D'.*\['G_ema'\]"):
        fastgan.load_network(path, key="D")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 layers run in fp16 only on CUDA")
@pytest.mark.parametrize("name", ["ada-stylegan2", "sg3-stylegan2", "sg3-t", "sg3-r-cond"])
def test_fp16_layers_on_cuda_match_the_direct_networks(tmp_path, name):
    b = built(name)
    snap = fastgan.load_snapshot(_write(tmp_path, snapshot_cached(name)))
    z, c = inputs(b.G)
    z, c = z.cuda(), None if c is None else c.cuda()
    G, ref, D, ref_D = (copy.deepcopy(m).cuda() for m in (snap.G_ema, b.G_ema, snap.D, b.D))
    with torch.no_grad():
        img, ref_img = G(z, c, noise_mode="const"), ref(z, c, noise_mode="const")
        fp32 = ref(z, c, noise_mode="const", force_fp32=True)
        torch.testing.assert_close(img, ref_img, rtol=0, atol=0)
        torch.testing.assert_close(D(img, c), ref_D(img, c), rtol=0, atol=0)
    assert torch.isfinite(img).all() and not torch.equal(img, fp32)  # the fp16 layers did run in fp16
