"""StyleGAN2 networks against the clean-room spec (shared/docs/network-spec.md §2, §4.5, §6) where the golden
networks say nothing: reference sizes of the full configs, initialisation, fp16/channel tables, ws routing,
truncation, w_avg tracking, minibatch std, freeze-D, the D projection, ADA kwargs and the precision policy.
Formulas are recomputed directly in the tests; tolerances are stated per assertion.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fastgan.ops
from fastgan import backends
from fastgan.nets import layers, precision, stylegan2
from fastgan.nets.layers import FullyConnectedLayer, MappingNetwork, layer_dtype

from golden import assert_close
from test_nets_golden import GRAD, golden_net, io

TINY_G = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
              num_fp16_res=0, mapping_kwargs={"num_layers": 2})


def _backend(name: str):
    if not backends.available(name):
        pytest.skip(f"backend {name!r} unavailable here: the fastgan._C extension is not built")
    return backends.use(name)


# ---------------------------------------------------------------------------------------------- sizes, tables

@pytest.mark.parametrize("res, channel_base, g_keys, g_params, d_keys, d_params", [
    (1024, 32768, 182, 30_370_060, 82, 29_012_513),
    (512, 32768, 163, 30_276_583, 73, 28_982_849),
    (256, 16384, 144, 24_767_458, 64, 24_001_089),
])
def test_reference_sizes(res, channel_base, g_keys, g_params, d_keys, d_params):
    """§2.14: state_dict key counts and parameter counts of the NVlabs configs (c_dim 0, 8 mapping layers)."""
    with torch.device("meta"):
        G = stylegan2.Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
                                channel_base=channel_base)
        D = stylegan2.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=channel_base)
    assert (len(G.state_dict()), sum(p.numel() for p in G.parameters())) == (g_keys, g_params)
    assert (len(D.state_dict()), sum(p.numel() for p in D.parameters())) == (d_keys, d_params)
    assert G.num_ws == 2 * int(math.log2(res)) - 2


@pytest.mark.parametrize("channel_base, row", [
    (32768, [512, 512, 512, 512, 512, 256, 128, 64, 32]),
    (16384, [512, 512, 512, 512, 256, 128, 64, 32, 16]),
])
def test_channel_table(channel_base, row):
    """§2.8: channels(res) = min(channel_base // res, 512), for G blocks and D blocks/epilogue."""
    resolutions = [2 ** i for i in range(2, 11)]
    with torch.device("meta"):
        G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=1024, img_channels=3,
                                channel_base=channel_base, mapping_kwargs={"num_layers": 1})
        D = stylegan2.Discriminator(c_dim=0, img_resolution=1024, img_channels=3, channel_base=channel_base)
    assert [getattr(G.synthesis, f"b{r}").conv1.weight.shape[0] for r in resolutions] == row
    assert [getattr(D, f"b{r}").conv0.weight.shape[0] for r in resolutions[1:]] == row[1:]
    assert D.b4.conv.weight.shape[0] == row[0]


@pytest.mark.parametrize("res, num_fp16_res, fp16", [
    (1024, 4, [128, 256, 512, 1024]), (256, 4, [32, 64, 128, 256]), (64, 0, []),
    (64, 10, [8, 16, 32, 64]),   # never below 8: the 4x4 block and the epilogue stay fp32
    (32, 1, [32]),
])
def test_fp16_block_rule(res, num_fp16_res, fp16):
    """§2.8/§6.27: a block is marked for fp16 iff res >= max(2^(log2 R + 1 - num_fp16_res), 8)."""
    with torch.device("meta"):
        syn = stylegan2.SynthesisNetwork(w_dim=8, img_resolution=res, img_channels=3, channel_base=4 * res,
                                         channel_max=8, num_fp16_res=num_fp16_res)
        D = stylegan2.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=4 * res,
                                    channel_max=8, num_fp16_res=num_fp16_res)
    assert [r for r in syn.block_resolutions if getattr(syn, f"b{r}").use_fp16] == fp16
    assert sorted(r for r in D.block_resolutions if getattr(D, f"b{r}").use_fp16) == fp16


@pytest.mark.parametrize("architecture", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("res", [4, 8, 32, 256])
def test_num_ws_formula(architecture, res):
    """§2.8: num_ws = sum of num_conv + the last block's torgb = 2 log2(R) - 2 for every architecture."""
    with torch.device("meta"):
        syn = stylegan2.SynthesisNetwork(w_dim=4, img_resolution=res, img_channels=3, channel_base=4 * res,
                                         channel_max=4, architecture=architecture)
    assert syn.num_ws == 2 * int(math.log2(res)) - 2
    blocks = [getattr(syn, f"b{r}") for r in syn.block_resolutions]
    assert [b.num_torgb for b in blocks] == [int(architecture == "skip" or b.is_last) for b in blocks]


def test_img_resolution_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of 2"):
        stylegan2.SynthesisNetwork(w_dim=4, img_resolution=48, img_channels=3)
    with pytest.raises(ValueError, match="architecture"):
        stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, architecture="unet")


# ---------------------------------------------------------------------------------------------- initialisation

def test_fully_connected_init_and_equalised_lr():
    """§2.1: weight ~ N(0, 1/lr^2) stored, bias = bias_init (not divided), forward and parameter gradients."""
    torch.manual_seed(0)
    lr = 0.01
    fc = FullyConnectedLayer(256, 512, lr_multiplier=lr, bias_init=0.5)
    w = fc.weight.detach().double()
    assert abs(w.std().item() * lr - 1) < 0.01   # 131072 samples: the std's relative error is ~0.2%
    assert abs(w.mean().item() * lr) < 0.01
    assert torch.equal(fc.bias.detach(), torch.full([512], 0.5))
    x = torch.randn(3, 256, dtype=torch.float64)
    fc64 = fc.double()
    y = fc64(x)
    expect = x @ (fc64.weight * (lr / 16)).t() + fc64.bias * lr   # 16 = sqrt(256)
    torch.testing.assert_close(y, expect, rtol=1e-12, atol=1e-12)
    g = torch.randn(3, 512, dtype=torch.float64)
    gw, gb = torch.autograd.grad((y * g).sum(), [fc64.weight, fc64.bias])
    torch.testing.assert_close(gw, g.t() @ x * (lr / 16), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, g.sum(0) * lr, rtol=1e-12, atol=1e-12)
    lrelu = FullyConnectedLayer(4, 3, activation="lrelu", lr_multiplier=0.5, bias_init=[0.0, 1.0, -1.0]).double()
    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    pre = x @ (lrelu.weight * (0.5 / 2)).t() + lrelu.bias * 0.5
    torch.testing.assert_close(lrelu(x), torch.nn.functional.leaky_relu(pre, 0.2) * math.sqrt(2))
    assert torch.autograd.gradcheck(lrelu, (x,))


def test_fully_connected_weight_init_and_no_bias():
    zero = FullyConnectedLayer(8, 4, weight_init=0, bias_init=[1, 0, 0, 0])
    assert not zero.weight.any() and zero.bias.tolist() == [1, 0, 0, 0]
    plain = FullyConnectedLayer(8, 4, bias=False)
    assert plain.bias is None and [n for n, _ in plain.named_parameters()] == ["weight"]
    x = torch.randn(2, 8)
    torch.testing.assert_close(plain(x), x @ (plain.weight / math.sqrt(8)).t())
    with pytest.raises(ValueError, match="activation"):
        FullyConnectedLayer(8, 4, activation="gelu")


def test_generator_init_statistics():
    """§2.1/§2.2/§2.5: mapping weights std 1/lr = 100, affine biases 1, conv weights N(0, 1), zero biases and
    noise strengths, const and noise_const N(0, 1)."""
    torch.manual_seed(0)
    G = stylegan2.Generator(z_dim=64, c_dim=3, w_dim=64, img_resolution=32, img_channels=3, channel_base=2048,
                            channel_max=64, mapping_kwargs={"num_layers": 4})
    sd = G.state_dict()

    def std(keys):
        return torch.cat([sd[k].flatten() for k in keys]).double().std().item()

    fc = [k for k in sd if k.startswith("mapping.fc") and k.endswith("weight")]
    assert len(fc) == 4 and abs(std(fc) / 100 - 1) < 0.02   # 16384 samples
    assert abs(std(["mapping.embed.weight"]) - 1) < 0.5      # lr multiplier 1, 192 samples
    assert all(not sd[k].any() for k in sd if k.startswith("mapping.") and k.endswith("bias"))
    assert all(torch.equal(sd[k], torch.ones_like(sd[k])) for k in sd if k.endswith("affine.bias"))
    conv = [k for k in sd if k.endswith(("conv0.weight", "conv1.weight", "torgb.weight", "affine.weight"))]
    assert abs(std(conv) - 1) < 0.02
    others = [k for k in sd if k.endswith((".bias", "noise_strength")) and "affine" not in k and "mapping" not in k]
    assert others and all(not sd[k].any() for k in others)
    assert abs(std(["synthesis.b4.const"] + [k for k in sd if k.endswith("noise_const")]) - 1) < 0.1
    assert not sd["mapping.w_avg"].any()
    assert torch.equal(sd["synthesis.b8.conv0.resample_filter"],
                       torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64)


def test_init_consumes_the_generator_in_spec_order():
    """§5: one randn per weight, in construction order (affine, weight, noise_const; blocks, then mapping)."""
    torch.manual_seed(3)
    G = stylegan2.Generator(z_dim=4, c_dim=0, w_dim=4, img_resolution=8, img_channels=1, channel_base=32,
                            channel_max=4, mapping_kwargs={"num_layers": 1})
    torch.manual_seed(3)
    order = [("synthesis.b4.const", [4, 4, 4]), ("synthesis.b4.conv1.affine.weight", [4, 4]),
             ("synthesis.b4.conv1.weight", [4, 4, 3, 3]), ("synthesis.b4.conv1.noise_const", [4, 4]),
             ("synthesis.b4.torgb.affine.weight", [4, 4]), ("synthesis.b4.torgb.weight", [1, 4, 1, 1]),
             ("synthesis.b8.conv0.affine.weight", [4, 4]), ("synthesis.b8.conv0.weight", [4, 4, 3, 3]),
             ("synthesis.b8.conv0.noise_const", [8, 8]), ("synthesis.b8.conv1.affine.weight", [4, 4]),
             ("synthesis.b8.conv1.weight", [4, 4, 3, 3]), ("synthesis.b8.conv1.noise_const", [8, 8]),
             ("synthesis.b8.torgb.affine.weight", [4, 4]), ("synthesis.b8.torgb.weight", [1, 4, 1, 1]),
             ("mapping.fc0.weight", [4, 4])]
    sd = G.state_dict()
    for key, shape in order:
        scale = 100.0 if key.startswith("mapping") else 1.0
        torch.testing.assert_close(sd[key], torch.randn(shape) * scale, rtol=1e-6, atol=0, msg=key)


# ---------------------------------------------------------------------------------------------- mapping

def _mapping(num_ws=4, **kw):
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=6, c_dim=0, w_dim=5, num_ws=num_ws, num_layers=2, **kw)
    with torch.no_grad():
        if m.w_avg is not None:
            m.w_avg.normal_()
    return m


@pytest.mark.parametrize("psi, cutoff", [(0.5, None), (0.5, 2), (0.0, 1), (-0.7, 4), (1.0, 2)])
def test_truncation_cutoff(psi, cutoff):
    """§2.3/§6.10: the first ``cutoff`` ws (all when None) become w_avg + psi (w - w_avg); the rest stay."""
    m = _mapping()
    z = torch.randn(3, 6)
    plain = m(z, None)
    assert plain.shape == (3, 4, 5) and torch.equal(plain[:, 0], plain[:, 3])
    out = m(z, None, truncation_psi=psi, truncation_cutoff=cutoff)
    n = 4 if cutoff is None else cutoff
    torch.testing.assert_close(out[:, :n], m.w_avg + psi * (plain[:, :n] - m.w_avg), rtol=1e-6, atol=1e-6)
    assert torch.equal(out[:, n:], plain[:, n:])


def test_truncation_without_broadcast_and_without_w_avg():
    m = _mapping(num_ws=None)
    assert m.w_avg is None and "w_avg" not in m.state_dict()
    z = torch.randn(2, 6)
    assert m(z, None).shape == (2, 5)
    with pytest.raises(ValueError, match="w_avg"):
        m(z, None, truncation_psi=0.5)
    tracked = _mapping(num_ws=None, w_avg_beta=0.9)
    assert tracked.w_avg is None   # tracking needs a broadcast output


def test_w_avg_tracking_only_with_update_emas():
    """§2.3 step 4: w_avg <- beta w_avg + (1 - beta) mean_n(w), only when update_emas (stylegan3-repo rule)."""
    m = _mapping(w_avg_beta=0.9).train()
    z = torch.randn(5, 6)
    before = m.w_avg.clone()
    m(z, None)
    assert torch.equal(m.w_avg, before)   # train mode alone does not update (unlike StyleGAN2-ADA)
    out = m(z, None, truncation_psi=0.5, update_emas=True)
    w = m(z, None)[:, 0]
    torch.testing.assert_close(m.w_avg, 0.9 * before + 0.1 * w.mean(0), rtol=1e-6, atol=1e-6)
    # the output is truncated towards the w_avg *after* the update
    torch.testing.assert_close(out[:, 0], m.w_avg + 0.5 * (w - m.w_avg), rtol=1e-6, atol=1e-6)


def test_mapping_label_embedding_and_checks():
    """§2.3: x = concat(normalize(z), normalize(embed(c))); the D form (z_dim 0) maps the label alone."""
    torch.manual_seed(0)
    m = MappingNetwork(z_dim=4, c_dim=3, w_dim=6, num_ws=None, num_layers=0, embed_features=5)
    assert [k for k in m.state_dict()] == ["embed.weight", "embed.bias"]
    z, c = torch.randn(2, 4), torch.randn(2, 3)
    e = c @ (m.embed.weight / math.sqrt(3)).t() + m.embed.bias

    def norm(t):
        return t / t.square().mean(1, keepdim=True).add(1e-8).sqrt()
    torch.testing.assert_close(m(z, c), torch.cat([norm(z), norm(e)], 1), rtol=1e-6, atol=1e-6)
    d_map = MappingNetwork(z_dim=0, c_dim=3, w_dim=6, num_ws=None, num_layers=0)
    torch.testing.assert_close(d_map(None, c), norm(c @ (d_map.embed.weight / math.sqrt(3)).t() + d_map.embed.bias))
    with pytest.raises(ValueError, match=r"c must have shape \[N, 3\]"):
        m(z, None)
    with pytest.raises(ValueError, match=r"z must have shape \[N, 4\]"):
        m(torch.randn(2, 5), c)
    with pytest.raises(ValueError, match="z_dim > 0 or c_dim > 0"):
        MappingNetwork(z_dim=0, c_dim=0, w_dim=4, num_ws=None)


# ---------------------------------------------------------------------------------------------- synthesis

def test_ws_routing_consecutive_blocks_share_one_w():
    """§2.8: block b{res} reads ws[j : j + num_conv + num_torgb]; a torgb shares its w with the next conv0."""
    torch.manual_seed(0)
    G = stylegan2.Generator(**TINY_G)
    seen = {}
    for name, module in G.synthesis.named_modules():
        if name.endswith("affine"):
            module.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, args[0]))
    ws = torch.randn(2, G.num_ws, G.w_dim)
    G.synthesis(ws, noise_mode="none")
    routes = {"b4.conv1": 0, "b4.torgb": 1, "b8.conv0": 1, "b8.conv1": 2, "b8.torgb": 3, "b16.conv0": 3,
              "b16.conv1": 4, "b16.torgb": 5}
    assert sorted(seen) == sorted(f"{k}.affine" for k in routes)
    for layer, j in routes.items():
        assert torch.equal(seen[f"{layer}.affine"], ws[:, j]), layer


def test_noise_modes():
    """§6.12: 'const' adds noise_const * noise_strength, 'random' fresh [N, 1, R, R] noise, 'none' nothing."""
    torch.manual_seed(0)
    layer = stylegan2.SynthesisLayer(3, 4, w_dim=5, resolution=6).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.7)
        layer.bias.normal_()
    x, w = torch.randn(2, 3, 6, 6, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    none = layer(x, w, noise_mode="none")
    const = layer(x, w, noise_mode="const")
    # in the linear region of lrelu the difference is the gain times the noise (a loose check elsewhere)
    pre_none = torch.where(none >= 0, none, none / 0.2) / math.sqrt(2)
    pre_const = torch.where(const >= 0, const, const / 0.2) / math.sqrt(2)
    torch.testing.assert_close(pre_const - pre_none, (0.7 * layer.noise_const).expand(2, 4, 6, 6),
                               rtol=1e-9, atol=1e-9)
    assert not torch.equal(layer(x, w, noise_mode="random"), layer(x, w, noise_mode="random"))
    with pytest.raises(ValueError, match="noise_mode"):
        layer(x, w, noise_mode="bogus")


def test_fused_modconv_default_inference_only(monkeypatch):
    """§2.7/§6.28: None takes fused_modconv_default; 'inference_only' means fused exactly in eval mode."""
    calls = []
    real = fastgan.ops.modconv_bias_act

    def spy(*args, **kwargs):
        calls.append(kwargs["fused_modconv"])
        return real(*args, **kwargs)
    monkeypatch.setattr(fastgan.ops, "modconv_bias_act", spy)
    G = stylegan2.Generator(**TINY_G, fused_modconv_default="inference_only")
    ws = torch.zeros(1, G.num_ws, G.w_dim)
    layers_per_call = 2 * 3 + 3 - 1   # 5 synthesis layers + 3 torgb
    for training, fused in ((True, False), (False, True)):
        calls.clear()
        G.train(training)(torch.zeros(1, 8), None)
        assert calls == [fused] * layers_per_call
    calls.clear()
    G.synthesis(ws, fused_modconv=False)
    assert set(calls) == {False}
    with pytest.raises(ValueError, match="fused_modconv"):
        G.synthesis(ws, fused_modconv="always")


@pytest.mark.parametrize("backend", ["ref", "cpu"])
@pytest.mark.parametrize("name", ["sg2_G_c0_skip", "sg2_G_c5_skip", "sg2_G_c0_resnet", "sg2_G_c0_orig"])
def test_grad_ws_on_backend(name, backend):
    """test_nets_golden.test_grad_ws on an explicit backend (d sum(img * g) / d ws against NVlabs)."""
    G, d = golden_net(name), io(name)
    ws = torch.from_numpy(d["ws/psi1"][:4]).requires_grad_(True)
    with _backend(backend):
        img = G.synthesis(ws, noise_mode="const")
        (g,) = torch.autograd.grad((img * torch.from_numpy(d["grad/g_img"][:4])).sum(), [ws])
    assert_close(g, d["grad/ws"][:4], f"{name} grad/ws on {backend}", **GRAD)


# ---------------------------------------------------------------------------------------------- ADA kwargs

def test_ada_synthesis_kwargs_are_flattened():
    """§4.5: StyleGAN2-ADA's nested ``synthesis_kwargs`` builds the same network as the flat form."""
    syn = {k: TINY_G[k] for k in ("channel_base", "channel_max", "num_fp16_res")}
    flat_kw = {k: v for k, v in TINY_G.items() if k not in syn}
    torch.manual_seed(1)
    flat = stylegan2.Generator(**flat_kw, **syn, conv_clamp=None)
    torch.manual_seed(1)
    nested = stylegan2.Generator(**flat_kw, synthesis_kwargs={**syn, "conv_clamp": None})
    assert list(flat.state_dict()) == list(nested.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(flat.state_dict().values(), nested.state_dict().values()))
    assert nested.synthesis.b16.conv1.conv_clamp is None and nested.synthesis.b16.torgb.conv_clamp is None
    assert nested.init_kwargs["synthesis_kwargs"] == {**syn, "conv_clamp": None}   # recorded as passed
    rebuilt = type(nested)(**nested.init_kwargs)
    assert [(k, v.shape) for k, v in rebuilt.state_dict().items()] == \
        [(k, v.shape) for k, v in nested.state_dict().items()]
    with pytest.raises(ValueError, match="channel_base"):
        stylegan2.Generator(**flat_kw, channel_base=64, synthesis_kwargs={"channel_base": 128})


def test_defaults_follow_the_stylegan3_repo_and_ada_values_apply():
    """§2.15: class defaults are the stylegan3 repo's (fp16 4 res, clamp 256, beta 0.998, SG2 G skip, D resnet);
    ADA's values (0 fp16 res, no clamp, beta 0.995), passed explicitly as the loader does, reach every layer."""
    with torch.device("meta"):
        G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3, channel_base=256,
                                channel_max=8)
        D = stylegan2.Discriminator(c_dim=0, img_resolution=64, img_channels=3, channel_base=256, channel_max=8)
        ada_G = stylegan2.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=64, img_channels=3,
                                    mapping_kwargs={"w_avg_beta": 0.995},
                                    synthesis_kwargs={"channel_base": 256, "channel_max": 8, "num_fp16_res": 0,
                                                      "conv_clamp": None})
        ada_D = stylegan2.Discriminator(c_dim=0, img_resolution=64, img_channels=3, channel_base=256, channel_max=8,
                                        num_fp16_res=0, conv_clamp=None)
    syn = G.synthesis
    assert G.mapping.w_avg_beta == 0.998 and G.mapping.num_layers == 8
    assert [r for r in syn.block_resolutions if getattr(syn, f"b{r}").use_fp16] == [8, 16, 32, 64]
    assert syn.b64.conv1.conv_clamp == 256 and syn.b64.torgb.conv_clamp == 256 and syn.b8.num_torgb == 1
    assert D.b64.use_fp16 and D.b64.conv1.conv_clamp == 256 and hasattr(D.b64, "skip")
    assert ada_G.mapping.w_avg_beta == 0.995
    assert not any(getattr(ada_G.synthesis, f"b{r}").use_fp16 for r in ada_G.synthesis.block_resolutions)
    assert all(m.conv_clamp is None for m in ada_G.modules() if hasattr(m, "conv_clamp"))
    assert not any(getattr(ada_D, f"b{r}").use_fp16 for r in ada_D.block_resolutions)
    assert all(m.conv_clamp is None for m in ada_D.modules() if hasattr(m, "conv_clamp"))


def test_records_init_converts_positionals_and_deep_copies():
    mapping = {"num_layers": 1}
    G = stylegan2.Generator(8, 0, 8, 8, 1, mapping, channel_base=64, channel_max=8)
    assert G.init_kwargs == {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 8, "img_channels": 1,
                             "mapping_kwargs": {"num_layers": 1}, "channel_base": 64, "channel_max": 8}
    mapping["num_layers"] = 5
    assert G.init_kwargs["mapping_kwargs"] == {"num_layers": 1}
    D = stylegan2.Discriminator(0, 8, 1, channel_base=64, channel_max=8)
    assert list(D.init_kwargs) == ["c_dim", "img_resolution", "img_channels", "channel_base", "channel_max"]
    assert list(type(D)(**D.init_kwargs).state_dict()) == list(D.state_dict())


# ---------------------------------------------------------------------------------------------- discriminator

def _mbstd_direct(x: np.ndarray, group_size, num_channels: int) -> np.ndarray:
    """§2.11 written out: strided groups, biased variance, sqrt per element, then the mean."""
    n, c, h, w = x.shape
    g = n if group_size is None else min(group_size, n)
    m = n // g
    stats = np.zeros((n, num_channels, h, w))
    for group in range(m):
        members = x[group::m]                                  # samples group, group + m, ...
        sd = np.sqrt(members.var(axis=0) + 1e-8)               # [c, h, w]
        for f in range(num_channels):
            value = sd[f * c // num_channels:(f + 1) * c // num_channels].mean()
            stats[group::m, f] = value
    return np.concatenate([x, stats], axis=1)


@pytest.mark.parametrize("n, group_size, num_channels", [(8, 4, 1), (8, 2, 2), (6, None, 1), (3, 4, 3), (4, 1, 1)])
def test_minibatch_std_matches_direct_formula(n, group_size, num_channels):
    torch.manual_seed(0)
    x = torch.randn(n, 6, 3, 2, dtype=torch.float64)
    layer = stylegan2.MinibatchStdLayer(group_size, num_channels)
    out = layer(x)
    np.testing.assert_allclose(out.numpy(), _mbstd_direct(x.numpy(), group_size, num_channels), rtol=1e-12,
                               atol=1e-12)
    assert torch.autograd.gradcheck(layer, (x[:, :, :2, :1].clone().requires_grad_(True),))


def test_minibatch_std_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="divisible"):
        stylegan2.MinibatchStdLayer(4)(torch.randn(6, 2, 4, 4))
    with pytest.raises(ValueError, match="num_channels"):
        stylegan2.MinibatchStdLayer(2, 3)(torch.randn(4, 4, 4, 4))


def test_frozen_layers_are_buffers_in_spec_order():
    """§2.10/§6.4: layers numbered globally from the first block; index < freeze_layers is frozen and stores
    weight/bias as buffers, so its keys come as resample_filter, weight, bias."""
    D = stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=64, channel_max=8,
                                num_fp16_res=0, block_kwargs={"freeze_layers": 5})
    # b16: fromrgb 0, conv0 1, conv1 2, skip 3; b8: conv0 4, conv1 5, skip 6; then the epilogue
    assert [D.b16.num_layers, D.b8.num_layers, D.b8.first_layer_idx] == [4, 3, 4]
    keys = [k for k in D.state_dict() if k.startswith(("b16.", "b8."))]
    assert keys == ["b16.resample_filter",
                    "b16.fromrgb.resample_filter", "b16.fromrgb.weight", "b16.fromrgb.bias",
                    "b16.conv0.resample_filter", "b16.conv0.weight", "b16.conv0.bias",
                    "b16.conv1.resample_filter", "b16.conv1.weight", "b16.conv1.bias",
                    "b16.skip.resample_filter", "b16.skip.weight",
                    "b8.resample_filter",
                    "b8.conv0.resample_filter", "b8.conv0.weight", "b8.conv0.bias",
                    "b8.conv1.weight", "b8.conv1.bias", "b8.conv1.resample_filter",
                    "b8.skip.weight", "b8.skip.resample_filter"]
    trainable = [n for n, _ in D.named_parameters()]
    assert trainable[:4] == ["b8.conv1.weight", "b8.conv1.bias", "b8.skip.weight", "b4.conv.weight"]
    img = torch.randn(2, 3, 16, 16)
    D(img, None).sum().backward()
    assert all(p.grad is not None for p in D.parameters())
    assert D.b16.conv0.weight.grad is None and not D.b16.conv0.weight.requires_grad
    unfrozen = stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=64,
                                       channel_max=8, num_fp16_res=0)
    assert [k for k in unfrozen.state_dict() if k.startswith("b16.conv0")] == \
        ["b16.conv0.weight", "b16.conv0.bias", "b16.conv0.resample_filter"]


def test_conditioning_projection():
    """§2.12/§6.24: logits = sum_j out_j cmap_j / sqrt(cmap_dim), cmap = mapping(None, c) (8 layers, no w_avg)."""
    torch.manual_seed(0)
    D = stylegan2.Discriminator(c_dim=4, img_resolution=8, img_channels=1, channel_base=64, channel_max=8,
                                num_fp16_res=0, cmap_dim=6)
    assert D.mapping.num_layers == 8 and D.mapping.w_avg is None and D.b4.out.out_features == 6
    captured = {}
    D.b4.out.register_forward_hook(lambda mod, args, out: captured.__setitem__("out", out))
    img, c = torch.randn(2, 1, 8, 8), torch.randn(2, 4)
    logits = D(img, c)
    cmap = D.mapping(None, c)
    torch.testing.assert_close(logits, (captured["out"] * cmap).sum(1, keepdim=True) / math.sqrt(6),
                               rtol=1e-6, atol=1e-6)
    assert stylegan2.Discriminator(c_dim=4, img_resolution=8, img_channels=1, channel_base=64,
                                   channel_max=8).cmap_dim == 8   # default: channels(4)
    with pytest.raises(ValueError, match=r"img must have shape \[N, 1, 8, 8\]"):
        D(torch.randn(2, 3, 8, 8), c)


# ---------------------------------------------------------------------------------------------- precision

def test_layer_dtype_policy():
    """Precision rule: force_fp32, then the precision scope, then fp16 only for marked layers on CUDA."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert layer_dtype(True, False, cpu) == torch.float32            # NVlabs: off CUDA always fp32
    assert layer_dtype(True, False, cuda) == torch.float16
    assert layer_dtype(False, False, cuda) == torch.float32
    assert layer_dtype(True, True, cuda) == torch.float32
    with precision("bf16"):
        assert layer_dtype(False, False, cpu) == torch.bfloat16
        assert layer_dtype(False, True, cpu) == torch.float32
        with precision(None):
            assert layer_dtype(True, False, cpu) == torch.float32
    with precision("fp16"):
        assert layer_dtype(False, False, cuda) == torch.float16
        with pytest.raises(ValueError, match="fp16"):
            layer_dtype(False, False, cpu)
    with precision("fp32"):
        assert layer_dtype(True, False, cuda) == torch.float32
    with pytest.raises(ValueError, match="precision"):
        with precision("int8"):
            pass
    assert layers.activation_format(True, torch.float16) == torch.channels_last
    assert layers.activation_format(True, torch.float32) == torch.preserve_format
    assert layers.activation_format(False, torch.bfloat16) == torch.preserve_format


def test_bf16_scope_runs_blocks_in_bf16_and_keeps_the_epilogue_fp32():
    torch.manual_seed(0)
    G = stylegan2.Generator(**TINY_G).eval()
    D = stylegan2.Discriminator(c_dim=0, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
                                num_fp16_res=0)
    dtypes = {}
    for name, module in [("conv1", G.synthesis.b16.conv1), ("d_conv1", D.b16.conv1), ("epilogue", D.b4.conv)]:
        module.register_forward_pre_hook(lambda mod, args, name=name: dtypes.__setitem__(name, args[0].dtype))
    ws = G.mapping(torch.randn(2, 8), None)
    with torch.no_grad(), precision("bf16"):
        img = G.synthesis(ws, noise_mode="const")
        logits = D(img, None)
    assert img.dtype == logits.dtype == torch.float32
    assert dtypes == {"conv1": torch.bfloat16, "d_conv1": torch.bfloat16, "epilogue": torch.float32}
