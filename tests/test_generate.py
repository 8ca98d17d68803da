"""Generation API, fastgan's safetensors format and the generate/mix/interpolate/convert/info commands,
on tiny networks written by the tests."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fastgan
from fastgan.cli import main
from fastgan.generation import grid_image, parse_grid, parse_range, seeds_to_z, slerp, to_uint8
from fastgan.nets import stylegan2, stylegan3
from fastgan.serialize import save_network

from nvlabs_pickle import config_networks, snapshot_bytes

TINY = dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=128, channel_max=16,
            num_fp16_res=0, mapping_kwargs={"num_layers": 2})


def tiny_G(c_dim: int = 0, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    G = stylegan2.Generator(**{**TINY, "c_dim": c_dim}).eval()
    with torch.no_grad():  # non-trivial noise strengths, biases and w_avg
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", "bias")):
                p.normal_(0, 0.1)
        G.mapping.w_avg.normal_(0, 1)
    return G.requires_grad_(False)


@pytest.fixture(scope="module")
def tiny_pkl(tmp_path_factory):
    path = tmp_path_factory.mktemp("net") / "tiny.pkl"
    path.write_bytes(snapshot_bytes(tiny_G(), None, TINY))
    return path


def test_parse_helpers():
    assert parse_range("0-3,7,10-11") == [0, 1, 2, 3, 7, 10, 11]
    assert parse_range([3, 1]) == [3, 1]
    assert parse_grid("8x4") == (8, 4)
    for bad in ("3-1", "a", "1,,2"):
        with pytest.raises(ValueError):
            parse_range(bad)
    with pytest.raises(ValueError, match="COLSxROWS"):
        parse_grid("8")


def test_seeds_follow_nvlabs_randomstate():
    z = seeds_to_z([0, 42], 5)
    assert z.dtype == np.float32
    np.testing.assert_array_equal(z[1], np.random.RandomState(42).randn(1, 5)[0].astype(np.float32))
    with pytest.raises(ValueError, match="seeds"):
        seeds_to_z([-1], 3)


def test_generate_matches_manual_forward_and_is_batch_independent():
    G = tiny_G()
    imgs = fastgan.generate(G, seeds=[3, 1, 4], truncation_psi=0.7, batch_size=2)
    assert imgs.dtype == np.uint8 and imgs.shape == (3, 16, 16, 3)
    z = torch.from_numpy(seeds_to_z([3, 1, 4], G.z_dim))
    with torch.no_grad():
        ref = G(z, None, truncation_psi=0.7, noise_mode="const")
    expect = (ref.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(imgs, expect)
    np.testing.assert_array_equal(fastgan.generate(G, seeds=[4], truncation_psi=0.7, batch_size=1)[0], imgs[2])
    assert len(np.unique(imgs)) > 20  # not a constant image


def test_generate_classes_and_precision():
    G = tiny_G(c_dim=4)
    a = fastgan.generate(G, seeds=[0, 1], class_idx=1)
    b = fastgan.generate(G, seeds=[0, 1], class_idx=2)
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="conditional"):
        fastgan.generate(G, seeds=[0])
    with pytest.raises(ValueError, match="class index"):
        fastgan.generate(G, seeds=[0], class_idx=4)
    with pytest.raises(ValueError, match="unconditional"):
        fastgan.generate(tiny_G(), seeds=[0], class_idx=0)
    low = fastgan.generate(G, seeds=[0, 1], class_idx=1, precision="bf16").astype(np.float64)
    assert np.abs(low - a).mean() < 0.02 * 127.5  # mean |diff| <= 0.02 in [-1, 1] units


def test_grid_slerp_to_uint8():
    imgs = np.arange(2 * 2 * 2 * 1, dtype=np.uint8).reshape(2, 2, 2, 1)
    g = grid_image(imgs, 2, 1)
    assert g.shape == (2, 4, 1) and np.array_equal(g[:, 2:], imgs[1])
    a, b = torch.randn(3, 6), torch.randn(3, 6)
    torch.testing.assert_close(slerp(a, b, torch.zeros(3)), a)
    torch.testing.assert_close(slerp(a, b, torch.ones(3)), b, rtol=1e-5, atol=1e-5)
    assert to_uint8(torch.tensor([[[[-2.0, 0.0, 2.0]]]])).tolist() == [[[[0], [128], [255]]]]


@pytest.mark.parametrize("kind", ["sg2", "sg3"])
def test_save_load_round_trip(tmp_path, kind):
    if kind == "sg2":
        G = tiny_G(c_dim=3)
    else:
        torch.manual_seed(0)
        G = stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64,
                                channel_max=8, num_layers=4, num_critical=1, num_fp16_res=0,
                                mapping_kwargs={"num_layers": 1}).eval()
    path = save_network(G, tmp_path / "net")
    assert path.name == "net.safetensors" and (tmp_path / "net.json").is_file()
    config = json.loads((tmp_path / "net.json").read_text())
    assert config["class"] == f"fastgan.nets.{'stylegan2' if kind == 'sg2' else 'stylegan3'}.Generator"
    H = fastgan.load_network(path)
    assert type(H) is type(G) and not H.training
    for (k, a), (k2, b) in zip(G.state_dict().items(), H.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    ws = torch.randn(2, G.num_ws, G.w_dim)
    with torch.no_grad():
        torch.testing.assert_close(H.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"),
                                   rtol=0, atol=0)
    assert type(fastgan.load_network(tmp_path / "net.json")) is type(G)


def test_format_refuses_unknown_classes(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "evil.safetensors"), metadata={"fastgan": json.dumps(
        {"format": "fastgan.network", "version": 1, "class": "os.system", "init_kwargs": {}})})
    with pytest.raises(ValueError, match="unknown network class 'os.system'"):
        fastgan.load_network(tmp_path / "evil.safetensors")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(ValueError, match="no fastgan config"):
        fastgan.load_network(tmp_path / "bare.safetensors")


def test_cli_generate(tmp_path, tiny_pkl, capsys):
    out = tmp_path / "out"
    rc = main(["generate", "--network", str(tiny_pkl), "--seeds", "0-4", "--trunc", "0.7", "--outdir", str(out),
               "--grid", "3x2", "--batch", "2", "--no-progress"])
    assert rc == 0
    from PIL import Image

    files = sorted(p.name for p in out.iterdir())
    assert files == ["grid.png", "seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png", "seed0004.png"]
    expect = fastgan.generate(fastgan.load_network(tiny_pkl), seeds=range(5), truncation_psi=0.7, batch_size=2)
    for s in range(5):
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"seed{s:04d}.png")), expect[s])
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (32, 48, 3)
    np.testing.assert_array_equal(grid[16:, :16], expect[3])
    assert not list(out.glob(".*tmp"))  # atomic writes leave no temporaries


def test_cli_mix_interpolate_info(tmp_path, tiny_pkl, capsys):
    from PIL import Image

    assert main(["mix", "--network", str(tiny_pkl), "--rows", "1,2", "--cols", "3,4,5", "--styles", "0-3",
                 "--outdir", str(tmp_path / "mix"), "--save-cells", "--no-progress"]) == 0
    grid = np.asarray(Image.open(tmp_path / "mix" / "grid.png"))
    assert grid.shape == (3 * 16, 4 * 16, 3)
    cell = np.asarray(Image.open(tmp_path / "mix" / "1-4.png"))
    np.testing.assert_array_equal(grid[16:32, 32:48], cell)
    G = fastgan.load_network(tiny_pkl)
    np.testing.assert_array_equal(grid[:16, 16:32], fastgan.generate(G, seeds=[1, 2, 3, 4, 5])[2])  # same batch

    assert main(["interpolate", "--network", str(tiny_pkl), "--seeds", "1,2", "--frames", "3",
                 "--out", str(tmp_path / "frames"), "--no-progress"]) == 0
    frames = sorted((tmp_path / "frames").glob("frame*.png"))
    assert len(frames) == 4  # 3 transition frames + the last keyframe
    # frames run in a batch of 4, the keyframes here in a batch of 2: fp32 results differ by ulps, which can
    # move a pixel across a uint8 rounding boundary
    keys = fastgan.generate(G, seeds=[1, 2]).astype(np.int16)
    assert np.abs(np.asarray(Image.open(frames[0])) - keys[0]).max() <= 1
    assert np.abs(np.asarray(Image.open(frames[-1])) - keys[1]).max() <= 1
    pytest.importorskip("imageio", reason="GIF output needs imageio")
    assert main(["interpolate", "--network", str(tiny_pkl), "--seeds", "1,2", "--frames", "2", "--space", "z",
                 "--out", str(tmp_path / "walk.gif"), "--no-progress"]) == 0
    assert (tmp_path / "walk.gif").stat().st_size > 0

    capsys.readouterr()
    assert main(["info", str(tiny_pkl)]) == 0
    text = capsys.readouterr().out
    assert "fastgan.nets.stylegan2.Generator" in text and "16x16" in text and "num_ws=6" in text


def test_cli_convert_round_trip(tmp_path, tiny_pkl):
    st = tmp_path / "g.safetensors"
    assert main(["convert", str(tiny_pkl), str(st)]) == 0
    assert main(["convert", str(st), str(tmp_path / "g.pt")]) == 0
    assert main(["convert", str(tiny_pkl), str(tmp_path / "g.npz")]) == 0
    ref = fastgan.load_network(tiny_pkl).state_dict()
    sd = torch.load(tmp_path / "g.pt", weights_only=True)
    assert list(sd) == list(ref) and "mapping.fc0.weight" in sd and "synthesis.b4.conv1.noise_const" in sd
    with np.load(tmp_path / "g.npz") as z:
        for k, v in ref.items():
            assert torch.equal(sd[k], v) and np.array_equal(z[k], v.numpy()), k
    assert main(["convert", str(tiny_pkl), str(tmp_path / "g.txt")]) == 2


def test_cli_refuses_hostile_pickle(tmp_path, capsys):
    import os
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"G_ema": Evil()}))
    assert main(["generate", "--network", str(bad), "--seeds", "0", "--outdir", str(tmp_path / "o")]) == 2
    assert "refused global" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()


def test_stylegan_v1_layer_matches_plain_torch():
    from fastgan.nets.stylegan import StyleLayer

    torch.manual_seed(1)
    layer = StyleLayer(4, 5, w_dim=6, resolution=8, up=True)
    with torch.no_grad():
        layer.noise_strength.normal_()
        layer.bias.normal_()
    x, w = torch.randn(2, 4, 4, 4), torch.randn(2, 6)
    y = layer(x, w, noise_mode="const")
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    h = torch.nn.functional.conv2d(up, layer.weight / 6.0, padding=1)  # 1/sqrt(4*9)
    blur = torch.tensor([1.0, 2.0, 1.0])
    k = torch.outer(blur, blur) / 16
    h = torch.nn.functional.conv2d(torch.nn.functional.pad(h, [1, 1, 1, 1]), k.expand(5, 1, 3, 3), groups=5)
    h = h + layer.noise_const * layer.noise_strength.reshape(1, -1, 1, 1) + layer.bias.reshape(1, -1, 1, 1)
    h = torch.nn.functional.leaky_relu(h, 0.2) * np.sqrt(2)
    h = (h - h.mean([2, 3], keepdim=True)) * (h.var([2, 3], unbiased=False, keepdim=True) + 1e-8).rsqrt()
    s = layer.style(w).reshape(2, 2, 5)
    torch.testing.assert_close(y, h * (s[:, 0, :, None, None] + 1) + s[:, 1, :, None, None], rtol=1e-4, atol=1e-5)


def test_stylegan_v1_generator_truncation_mixing_round_trip(tmp_path):
    from fastgan.nets import stylegan

    torch.manual_seed(0)
    G = stylegan.Generator(z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=16,
                           mapping_kwargs={"num_layers": 2}).eval()
    assert G.num_ws == 6
    z = torch.randn(3, 8)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.normal_()
        a = G(z, None, noise_mode="const")
        b = G(z, None, truncation_psi=0.0, noise_mode="const")
        torch.testing.assert_close(b[0], b[1])  # psi 0: every sample is the average image
        assert not torch.allclose(a[0], a[1])
        assert not torch.equal(G(z, None, noise_mode="random"), G(z, None, noise_mode="random"))
        ws_a, ws_b = G.mapping(z, None), G.mapping(torch.randn(3, 8), None)
        mixed = stylegan.mix_styles(ws_a, ws_b, range(4, 6))
        assert torch.equal(mixed[:, :4], ws_a[:, :4]) and torch.equal(mixed[:, 4:], ws_b[:, 4:])
        G.train()
        torch.manual_seed(5)
        assert not torch.allclose(G(z, None, noise_mode="const"), a)  # style mixing regularisation
        G.eval()
    H = fastgan.load_network(save_network(G, tmp_path / "v1"))
    with torch.no_grad():
        torch.testing.assert_close(H(z, None, noise_mode="const"), a, rtol=0, atol=0)
    assert fastgan.generate(H, seeds=[0, 1], truncation_psi=0.7).shape == (2, 16, 16, 3)


def test_dcgan_shapes_training_step_and_round_trip(tmp_path):
    from fastgan.nets import dcgan

    torch.manual_seed(0)
    G, D = dcgan.Generator(z_dim=8, img_resolution=16, channel_base=128), dcgan.Discriminator(16, channel_base=128)
    img = G(torch.randn(4, 8))
    assert img.shape == (4, 3, 16, 16) and img.abs().max() <= 1
    logits = D(img)
    assert logits.shape == (4, 1)
    torch.nn.functional.softplus(-logits).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    G.eval()
    z = torch.randn(2, 8)
    H = fastgan.load_network(save_network(G, tmp_path / "dcgan"))
    with torch.no_grad():
        torch.testing.assert_close(H(z), G(z), rtol=0, atol=0)
    assert fastgan.generate(H, seeds=[0, 1]).shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="power of 2"):
        dcgan.Generator(img_resolution=48)


def test_sg3_translate_rotate(tmp_path):
    from fastgan.generation import set_input_transform

    torch.manual_seed(0)
    G = stylegan3.Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, channel_base=64,
                            channel_max=8, num_layers=4, num_critical=1, num_fp16_res=0,
                            mapping_kwargs={"num_layers": 1}).eval()
    base = fastgan.generate(G, seeds=[0])
    set_input_transform(G, (0.25, 0.0), 90.0)
    t = G.synthesis.input.transform
    torch.testing.assert_close(torch.linalg.inv(t)[:2], torch.tensor([[0.0, 1.0, 0.25], [-1.0, 0.0, 0.0]]),
                               rtol=0, atol=1e-6)
    assert not np.array_equal(fastgan.generate(G, seeds=[0]), base)
    set_input_transform(G)
    np.testing.assert_array_equal(fastgan.generate(G, seeds=[0]), base)
    with pytest.raises(ValueError, match="StyleGAN3"):
        set_input_transform(tiny_G(), (0.1, 0))


def test_iter_generate_streams_one_batch_at_a_time():
    from fastgan.generation import iter_generate

    G = tiny_G()
    it = iter_generate(G, range(5), batch_size=2)
    first_seeds, first = next(it)  # nothing beyond the first batch is computed yet
    assert first_seeds == [0, 1] and first.shape == (2, 16, 16, 3)
    rest = list(it)
    assert [s for s, _ in rest] == [[2, 3], [4]]
    np.testing.assert_array_equal(np.concatenate([first] + [b for _, b in rest]), fastgan.generate(G, range(5)))
    with pytest.raises(ValueError, match="batch_size"):
        next(iter_generate(G, [0], batch_size=0))


# --- the commands on NVlabs training snapshots: StyleGAN3 T and R, conditional networks ---------------------------

SNAPSHOT_CFGS = {"sg3-t": ("sg3", "stylegan3-t", {}), "sg3-r-cond": ("sg3", "stylegan3-r", {"cond": True}),
                 "ada-cifar-cond": ("ada", "cifar", {"cond": True})}


@pytest.fixture(scope="module", params=list(SNAPSHOT_CFGS))
def snapshot_pkl(request, tmp_path_factory):
    """(config name, snapshot path, the G_ema built directly, class args for the CLI)."""
    repo, cfg, opts = SNAPSHOT_CFGS[request.param]
    nets = config_networks(repo, cfg, **opts)
    path = tmp_path_factory.mktemp(request.param) / "network-snapshot-000100.pkl"
    path.write_bytes(nets.snapshot())
    return request.param, path, nets.G_ema, ["--class", "1"] if nets.cond else []


def _png(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path))


def test_cli_on_snapshots(tmp_path, snapshot_pkl, capsys):
    name, pkl, G, cls = snapshot_pkl
    cidx = 1 if cls else None
    expect = fastgan.generate(G, seeds=[1, 2, 3], truncation_psi=0.7, class_idx=cidx)
    assert main(["generate", "--network", str(pkl), "--seeds", "1-3", "--trunc", "0.7", "--outdir", str(tmp_path / "g"),
                 "--grid", "3x1", "--no-progress", *cls]) == 0
    for i, s in enumerate([1, 2, 3]):
        np.testing.assert_array_equal(_png(tmp_path / "g" / f"seed{s:04d}.png"), expect[i])
    np.testing.assert_array_equal(_png(tmp_path / "g" / "grid.png")[:, 32:64], expect[1])

    assert main(["mix", "--network", str(pkl), "--rows", "1,2", "--cols", "3", "--styles", "0-3", "--trunc", "0.7",
                 "--outdir", str(tmp_path / "m"), "--no-progress", *cls]) == 0
    grid = _png(tmp_path / "m" / "grid.png")
    assert grid.shape == (3 * 32, 2 * 32, 3)
    np.testing.assert_array_equal(grid[:32, 32:], expect[2])  # the column seed, unmixed
    np.testing.assert_array_equal(grid[32:64, :32], expect[0])  # the first row seed, unmixed

    assert main(["interpolate", "--network", str(pkl), "--seeds", "1,3", "--frames", "2", "--trunc", "0.7",
                 "--out", str(tmp_path / "f"), "--no-progress", *cls]) == 0
    frames = sorted((tmp_path / "f").glob("frame*.png"))
    assert len(frames) == 3
    # the keyframes' ws come from a mapping batch of 2 here (3 in expect): equal up to fp32 ulps, so a pixel may
    # cross a uint8 rounding boundary
    assert np.abs(_png(frames[0]).astype(np.int16) - expect[0]).max() <= 1
    assert np.abs(_png(frames[-1]).astype(np.int16) - expect[2]).max() <= 1

    out = tmp_path / "c.safetensors"
    assert main(["convert", str(pkl), str(out)]) == 0
    H = fastgan.load_network(out)
    assert type(H) is type(G) and H.init_kwargs == fastgan.load_network(pkl).init_kwargs
    np.testing.assert_array_equal(fastgan.generate(H, seeds=[1, 2, 3], truncation_psi=0.7, class_idx=cidx), expect)
    assert main(["convert", str(pkl), str(tmp_path / "d.safetensors"), "--key", "D"]) == 0
    assert type(fastgan.load_network(tmp_path / "d.safetensors")).__name__ == "Discriminator"

    capsys.readouterr()
    assert main(["info", str(pkl)]) == 0
    text = capsys.readouterr().out
    assert f"{type(G).__module__}.Generator" in text and "image: 32x32" in text
    assert "networks: G, D, G_ema; showing G_ema" in text and "augment_pipe: AugmentPipe p=0.0371" in text
    assert ("conditioning: c_dim=4" in text) == bool(cls)
    assert ("StyleGAN3-R" in text) == name.startswith("sg3-r")
    assert main(["info", str(pkl), "--key", "D"]) == 0
    assert "fastgan.nets.stylegan2.Discriminator" in capsys.readouterr().out


def test_cli_class_is_required_exactly_for_conditional_snapshots(tmp_path, snapshot_pkl, capsys):
    _, pkl, _, cls = snapshot_pkl
    wrong = [] if cls else ["--class", "0"]
    assert main(["generate", "--network", str(pkl), "--seeds", "0", "--outdir", str(tmp_path), *wrong]) == 2
    assert ("is conditional" if cls else "is unconditional") in capsys.readouterr().err


def test_cli_translate_rotate_stylegan3_snapshot(tmp_path, snapshot_pkl):
    name, pkl, G, cls = snapshot_pkl
    if not name.startswith("sg3"):
        pytest.skip("translate/rotate needs a StyleGAN3 generator")
    base = fastgan.generate(G, seeds=[5], class_idx=1 if cls else None)[0]
    assert main(["generate", "--network", str(pkl), "--seeds", "5", "--outdir", str(tmp_path), "--translate", "0.2,0",
                 "--rotate", "15", "--no-progress", *cls]) == 0
    moved = _png(tmp_path / "seed0005.png")
    assert moved.shape == base.shape and not np.array_equal(moved, base)
