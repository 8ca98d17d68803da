"""StyleGAN2 TensorFlow-era pickles ((G, D, Gs) tuples of dnnlib.tflib.network.Network): variables read as numpy,
converted by the rules of nvlabs-notes §3, checked against fastgan networks loaded with the same weights directly;
what cannot be mapped is refused by name, and nothing in the pickle runs."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import fastgan
from fastgan.cli import main
from fastgan.nets import stylegan2
from fastgan.serialize import TFNetworkRecord, UnsafePickleError, read_pickle

from nvlabs_pickle import (TF_SRC, pickle_with_globals, tf_discriminator_variables, tf_generator_variables,
                           tf_network)

RES, Z, FMAP_BASE, FMAP_MAX, MAP_LAYERS = 32, 32, 256, 64, 2


def g_static(arch: str) -> dict:
    return dict(num_channels=3, resolution=RES, label_size=0, latent_size=Z, dlatent_size=Z, mapping_layers=MAP_LAYERS,
                fmap_base=FMAP_BASE, fmap_max=FMAP_MAX, architecture=arch, truncation_psi=0.5)


D_STATIC = dict(num_channels=3, resolution=RES, label_size=0, fmap_base=FMAP_BASE, fmap_max=FMAP_MAX,
                mbstd_group_size=4)


def tf_parts(arch: str = "skip", seed: int = 0):
    """TF variables of one G (mapping, synthesis, dlatent_avg) and one D, in TF shapes."""
    rng = np.random.RandomState(seed)
    return (*tf_generator_variables(RES, Z, Z, 2 * FMAP_BASE, FMAP_MAX, MAP_LAYERS, arch, rng),
            tf_discriminator_variables(RES, 2 * FMAP_BASE, FMAP_MAX, rng))


def tf_generator(name: str, mapping, syn, avg, static, synth_func="G_synthesis_stylegan2", version=4):
    comps = {"mapping": tf_network("G_mapping", "G_mapping", dict(static, dlatent_broadcast=None), mapping),
             "synthesis": tf_network("G_synthesis", synth_func, static, syn)}
    return tf_network(name, "G_main", static, {"dlatent_avg": avg}, comps, version=version)


def tf_pickle(arch="skip", d_static=D_STATIC, edit=None, protocol=3, synth_func="G_synthesis_stylegan2", version=4,
              src=TF_SRC) -> tuple:
    """(pickle bytes, Gs parts, D vars); ``edit(mapping, syn, avg, dvars)`` may change Gs's and D's variables."""
    mapping, syn, avg, dvars = tf_parts(arch, seed=1)
    if edit is not None:
        edit(mapping, syn, avg, dvars)
    G_parts = tf_parts(arch, seed=2)[:3]  # the training G differs from Gs
    G = tf_generator("G", *G_parts, g_static(arch))
    Gs = tf_generator("Gs", mapping, syn, avg, g_static(arch), synth_func, version)
    Gs._state["build_module_src"] = src
    D = tf_network("D", "D_stylegan2", d_static, dvars)
    return pickle_with_globals((G, D, Gs), protocol), (mapping, syn, avg), dvars


def _write(tmp_path, data, name="stylegan2-ffhq-config-f.pkl"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- the conversion, written independently from the TF names (the oracle) -----------------------------------------

def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, order="C"))


def expected_generator(parts, arch: str):
    mapping, syn, avg = parts
    kwargs = dict(z_dim=Z, c_dim=0, w_dim=Z, img_resolution=RES, img_channels=3, channel_base=2 * FMAP_BASE,
                  channel_max=FMAP_MAX, num_fp16_res=0, conv_clamp=None, architecture=arch,
                  resample_filter=[1, 3, 3, 1], use_noise=True, activation="lrelu",
                  mapping_kwargs=dict(num_layers=MAP_LAYERS, embed_features=None, layer_features=None,
                                      activation="lrelu", lr_multiplier=0.01, w_avg_beta=0.995))
    sd = {"mapping.w_avg": _t(avg)}
    for i in range(MAP_LAYERS):
        sd[f"mapping.fc{i}.weight"] = _t(mapping[f"Dense{i}/weight"].T)
        sd[f"mapping.fc{i}.bias"] = _t(mapping[f"Dense{i}/bias"])

    def modconv(prefix, scope, flip=False, noise=None):
        w = syn[f"{scope}/weight"].transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]
        sd[f"{prefix}.weight"] = _t(w[:, :, ::-1, ::-1] if flip else w)
        sd[f"{prefix}.bias"] = _t(syn[f"{scope}/bias"])
        sd[f"{prefix}.affine.weight"] = _t(syn[f"{scope}/mod_weight"].T)
        sd[f"{prefix}.affine.bias"] = _t(syn[f"{scope}/mod_bias"] + 1)
        if noise is not None:
            sd[f"{prefix}.noise_strength"] = _t(syn[f"{scope}/noise_strength"])
            sd[f"{prefix}.noise_const"] = _t(syn[f"noise{noise}"][0, 0])

    layer = 0
    for r in (4, 8, 16, 32):
        s, b = f"{r}x{r}", f"synthesis.b{r}"
        if r == 4:
            sd[f"{b}.const"] = _t(syn[f"{s}/Const/const"][0])
            modconv(f"{b}.conv1", f"{s}/Conv", noise=0)
        else:
            modconv(f"{b}.conv0", f"{s}/Conv0_up", flip=True, noise=layer + 1)
            modconv(f"{b}.conv1", f"{s}/Conv1", noise=layer + 2)
            layer += 2
            if arch == "resnet":
                sd[f"{b}.skip.weight"] = _t(syn[f"{s}/Skip/weight"].transpose(3, 2, 0, 1)[:, :, ::-1, ::-1])
        if arch == "skip" or r == RES:
            modconv(f"{b}.torgb", f"{s}/ToRGB")
    return _direct(stylegan2.Generator, kwargs, sd)


def expected_discriminator(dvars, mbstd_group_size=4):
    kwargs = dict(c_dim=0, img_resolution=RES, img_channels=3, architecture="resnet", channel_base=2 * FMAP_BASE,
                  channel_max=FMAP_MAX, num_fp16_res=0, conv_clamp=None, cmap_dim=None,
                  block_kwargs=dict(activation="lrelu", resample_filter=[1, 3, 3, 1], freeze_layers=0),
                  mapping_kwargs=dict(num_layers=0, embed_features=None, layer_features=None, activation="lrelu",
                                      lr_multiplier=0.1),
                  epilogue_kwargs=dict(mbstd_group_size=mbstd_group_size, mbstd_num_channels=1, activation="lrelu"))
    conv = lambda name: _t(dvars[name].transpose(3, 2, 0, 1))  # noqa: E731
    sd = {f"b{RES}.fromrgb.weight": conv(f"{RES}x{RES}/FromRGB/weight"),
          f"b{RES}.fromrgb.bias": _t(dvars[f"{RES}x{RES}/FromRGB/bias"])}
    for r in (32, 16, 8):
        s = f"{r}x{r}"
        sd.update({f"b{r}.conv0.weight": conv(f"{s}/Conv0/weight"), f"b{r}.conv0.bias": _t(dvars[f"{s}/Conv0/bias"]),
                   f"b{r}.conv1.weight": conv(f"{s}/Conv1_down/weight"),
                   f"b{r}.conv1.bias": _t(dvars[f"{s}/Conv1_down/bias"]),
                   f"b{r}.skip.weight": conv(f"{s}/Skip/weight")})
    sd.update({"b4.conv.weight": conv("4x4/Conv/weight"), "b4.conv.bias": _t(dvars["4x4/Conv/bias"]),
               "b4.fc.weight": _t(dvars["4x4/Dense0/weight"].T), "b4.fc.bias": _t(dvars["4x4/Dense0/bias"]),
               "b4.out.weight": _t(dvars["Output/weight"].T), "b4.out.bias": _t(dvars["Output/bias"])})
    return _direct(stylegan2.Discriminator, kwargs, sd)


def _direct(cls, kwargs, sd):
    net = cls(**kwargs)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("resample_filter") for k in missing), (missing, unexpected)
    return net.eval().requires_grad_(False)


def assert_same(net, ref):
    assert type(net) is type(ref) and not net.training
    assert net.init_kwargs == ref.init_kwargs
    a, b = net.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    for k in b:
        assert torch.equal(a[k], b[k]), k


# --- tests -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["skip", "resnet"])
@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_tf_pickle_converts_to_the_same_networks(tmp_path, arch, protocol):
    data, parts, dvars = tf_pickle(arch, protocol=protocol)
    path = _write(tmp_path, data)
    snap = fastgan.load_snapshot(path)
    assert snap.augment_pipe is None and snap.training_set_kwargs is None
    G_ref, D_ref = expected_generator(parts, arch), expected_discriminator(dvars)
    assert_same(snap.G_ema, G_ref)
    assert_same(snap.D, D_ref)
    assert_same(snap.G, expected_generator(tf_parts(arch, seed=2)[:3], arch))
    z = torch.from_numpy(np.random.RandomState(5).randn(4, Z).astype(np.float32))
    with torch.no_grad():
        img = snap.G_ema(z, None, truncation_psi=0.7, noise_mode="const")
        torch.testing.assert_close(img, G_ref(z, None, truncation_psi=0.7, noise_mode="const"), rtol=0, atol=0)
        torch.testing.assert_close(snap.D(img, None), D_ref(img, None), rtol=0, atol=0)
    assert img.std() > 0.01
    # the orientation rules, element by element: Conv0_up flipped in space, Conv1 not
    w_up, w = parts[1]["8x8/Conv0_up/weight"], parts[1]["8x8/Conv1/weight"]
    assert snap.G_ema.synthesis.b8.conv0.weight[5, 7, 0, 2] == float(w_up[2, 0, 7, 5])
    assert snap.G_ema.synthesis.b8.conv1.weight[5, 7, 0, 2] == float(w[0, 2, 7, 5])
    assert snap.G_ema.synthesis.b8.conv1.affine.bias[3] == float(parts[1]["8x8/Conv1/mod_bias"][3] + 1)
    assert_same(fastgan.load_network(path), G_ref)
    assert_same(fastgan.load_network(path, key="D"), D_ref)


def test_tf_records_are_data(tmp_path):
    data = read_pickle(_write(tmp_path, tf_pickle()[0]))
    assert all(isinstance(data[k], TFNetworkRecord) for k in ("G", "D", "G_ema"))
    assert data["G_ema"].get("name") == "Gs" and data["D"].get("build_func_name") == "D_stylegan2"
    assert type(data["G_ema"].get("static_kwargs")) is dict  # EasyDict read as dict


def test_tf_discriminator_without_recorded_group_size_uses_the_whole_batch(tmp_path):
    static = {k: v for k, v in D_STATIC.items() if k != "mbstd_group_size"}
    data, _, dvars = tf_pickle(d_static=static)
    D = fastgan.load_network(_write(tmp_path, data), key="D")
    assert D.init_kwargs["epilogue_kwargs"]["mbstd_group_size"] is None
    assert_same(D, expected_discriminator(dvars, mbstd_group_size=None))


def _drop(name):
    return lambda m, s, a, d: s.pop(name)


def _add(name, value):
    return lambda m, s, a, d: s.__setitem__(name, value)


@pytest.mark.parametrize("edit, message", [
    (_drop("8x8/Conv1/mod_bias"), r"no TF variable for fastgan tensor\(s\) synthesis\.b8\.conv1\.affine\.bias "
                                   r"\(TF synthesis/8x8/Conv1/mod_bias\)"),
    (_add("4x4/Conv/extra_scale", np.ones(3, np.float32)), "no fastgan counterpart: synthesis/4x4/Conv/extra_scale"),
    (_add("lod", np.float32(1.5)), "no fastgan counterpart: synthesis/lod"),
    (lambda m, s, a, d: s.__setitem__("16x16/Conv1/weight", s["16x16/Conv1/weight"][:1]),
     r"synthesis/16x16/Conv1/weight \[1, 3, 32, 32\] does not convert to synthesis\.b16\.conv1\.weight"),
    (lambda m, s, a, d: m.__setitem__("LabelConcat/weight", np.ones((4, Z), np.float32)),
     "no fastgan counterpart: mapping/LabelConcat/weight"),
])
def test_unmappable_variables_are_refused_by_name(tmp_path, edit, message):
    path = _write(tmp_path, tf_pickle(edit=edit)[0])
    with pytest.raises(ValueError, match=f"{path}: TF Gs: .*{message}"):
        fastgan.load_network(path)
    fastgan.load_network(path, key="G")  # the untouched networks still convert


@pytest.mark.parametrize("kwargs, message", [
    (dict(synth_func="G_synthesis_stylegan_revised"), "StyleGAN2 configs A-D"),
    (dict(synth_func="G_synthesis"), r"StyleGAN \(v1\)"),
    (dict(version=3), "version 3 is not supported"),
])
def test_unsupported_tf_networks_are_refused(tmp_path, kwargs, message):
    path = _write(tmp_path, tf_pickle(**kwargs)[0])
    with pytest.raises(ValueError, match=message):
        fastgan.load_snapshot(path)


def test_unsupported_tf_options_are_refused(tmp_path):
    mapping, syn, avg, dvars = tf_parts()
    G = tf_generator("Gs", mapping, syn, avg, dict(g_static("skip"), fmap_decay=0.5))
    path = _write(tmp_path, pickle_with_globals((G, tf_network("D", "D_stylegan2", D_STATIC, dvars), G), 3))
    with pytest.raises(ValueError, match="fmap_decay=0.5"):
        fastgan.load_network(path)


def test_hostile_tf_pickles_run_nothing(tmp_path):
    sentinel = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    data = tf_pickle(edit=_add("noise0", Evil()))[0]
    with pytest.raises(UnsafePickleError, match="refused global .*system"):
        fastgan.load_snapshot(_write(tmp_path, data, "evil.pkl"))
    code = f"open({str(sentinel)!r}, 'w').close()\n"
    G = fastgan.load_network(_write(tmp_path, tf_pickle(src=code + TF_SRC)[0], "src.pkl"))
    assert isinstance(G, stylegan2.Generator)
    data = tf_pickle()[0]
    for cut in (100, len(data) // 2, len(data) - 1):
        path = _write(tmp_path, data[:cut], f"cut{cut}.pkl")
        with pytest.raises(ValueError, match=f"{path}: truncated or corrupt pickle"):
            fastgan.load_snapshot(path)
    assert not sentinel.exists()


def test_cli_convert_and_info_on_a_tf_pickle(tmp_path, capsys):
    path = _write(tmp_path, tf_pickle()[0])
    out = tmp_path / "ffhq.safetensors"
    assert main(["convert", str(path), str(out)]) == 0
    assert_same(fastgan.load_network(out), fastgan.load_network(path))
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "TensorFlow" in text and "fastgan.nets.stylegan2.Generator" in text and "32x32" in text
