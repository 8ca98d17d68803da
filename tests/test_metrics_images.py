"""Image sources, extraction options, the statistics cache and the high-level API (with a tiny extractor)."""
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("PIL", reason="reading image files needs Pillow")
from PIL import Image  # noqa: E402

from fastgan.metrics import ExtractOptions, FeatureStats, fid, fid_stats, frechet_distance  # noqa: E402
from fastgan.metrics import inception_score, kid, kid_from_features, precision_recall  # noqa: E402
from fastgan.metrics import cache as cache_mod  # noqa: E402
from fastgan.metrics.api import _stats  # noqa: E402
from fastgan.metrics.features import GeneratorImages, ImageArray, ImageFiles, compute_features  # noqa: E402


class Tiny(torch.nn.Module):
    """A small deterministic extractor: 4x4 average pool of each channel (48 features) plus 5 logits."""

    identity = "tiny-test-extractor"
    feature_dim = 48

    def __init__(self):
        super().__init__()
        self.head = torch.nn.Conv2d(3, 5, 1)

    def forward(self, x):
        pool = torch.nn.functional.adaptive_avg_pool2d(x.float(), 4).flatten(1)
        logits = self.head(x.float() / 255).mean(dim=(2, 3))
        return {"pool": pool, "logits_unbiased": logits}


def tiny_features(images_nhwc):
    x = torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)
    return torch.nn.functional.adaptive_avg_pool2d(x.double(), 4).flatten(1).numpy()


def _images(seed, n=10, size=16):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _write_folder(root, images):
    root.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        Image.fromarray(im).save(root / f"img{i:03d}.png")
    return root


OPTS = ExtractOptions(device="cpu", batch_size=4, num_workers=0)


def test_folder_zip_and_array_give_the_same_features(tmp_path):
    imgs = _images(0)
    folder = _write_folder(tmp_path / "a", imgs)
    zpath = tmp_path / "a.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, p.name)
    expected = tiny_features(imgs)
    for src in (ImageFiles(folder, num_workers=0), ImageFiles(zpath, num_workers=0), ImageArray(imgs),
                ImageArray(imgs.transpose(0, 3, 1, 2))):
        got = compute_features(src, Tiny(), batch_size=3, device="cpu")["pool"]
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_fid_of_paths_matches_features(tmp_path):
    a, b = _images(1, n=12), _images(2, n=9)
    fa, fb = tiny_features(a), tiny_features(b)
    ref = frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
    got = fid(_write_folder(tmp_path / "a", a), b, detector=Tiny(), opts=OPTS, cache=False)
    assert got == pytest.approx(ref, rel=1e-6)
    out = tmp_path / "b.npz"
    fid_stats(b, out, detector=Tiny(), opts=OPTS)
    assert fid(tmp_path / "a", out, detector=Tiny(), opts=OPTS, cache=False) == pytest.approx(ref, rel=1e-6)


def test_stats_cache_reused_and_invalidated_by_one_changed_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(tmp_path / "cache"))
    folder = _write_folder(tmp_path / "data", _images(3, n=8))
    calls = []
    real_compute = cache_mod.cached_stats

    def counting(source, identity, options, compute, directory=None):
        def wrapped():
            calls.append(1)
            return compute()
        return real_compute(source, identity, options, wrapped, directory)

    monkeypatch.setattr("fastgan.metrics.api.cached_stats", counting)
    mu1, s1 = _stats(folder, Tiny(), OPTS, None, True, 1)
    mu2, s2 = _stats(folder, Tiny(), OPTS, None, True, 1)
    assert len(calls) == 1 and np.array_equal(mu1, mu2) and np.array_equal(s1, s2)
    # Same size, same name, different content in one image: a new key, recomputed stats.
    im = np.array(Image.open(folder / "img005.png"))
    im[0, 0] ^= 0xFF
    Image.fromarray(im).save(folder / "img005.png")
    mu3, _ = _stats(folder, Tiny(), OPTS, None, True, 1)
    assert len(calls) == 2 and not np.array_equal(mu1, mu3)
    np.testing.assert_allclose(mu3, tiny_features(np.stack([np.array(Image.open(p)) for p in
                                                            sorted(folder.iterdir())])).mean(0), rtol=1e-6)
    # Other options (here: fewer items) are another key as well.
    _stats(folder, Tiny(), OPTS, 5, True, 1)
    assert len(calls) == 3
    assert len(list((tmp_path / "cache" / "metrics").glob("*.npz"))) == 3


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_error_names_the_file(tmp_path, workers):
    folder = _write_folder(tmp_path / "d", _images(4, n=3))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    src = ImageFiles(folder, num_workers=workers)
    with pytest.raises(ValueError, match="broken.png"):
        compute_features(src, Tiny(), batch_size=2, device="cpu")


def test_mixed_sizes_error_names_the_file(tmp_path):
    folder = _write_folder(tmp_path / "d", _images(5, n=2))
    Image.fromarray(_images(6, n=1, size=8)[0]).save(folder / "img001.png")
    with pytest.raises(ValueError, match="img001.png"):
        compute_features(ImageFiles(folder, num_workers=0), Tiny(), batch_size=4, device="cpu")
    with pytest.raises(FileNotFoundError, match="missing"):
        ImageFiles(tmp_path / "missing")


def test_grayscale_and_rgba_become_rgb(tmp_path):
    folder = tmp_path / "g"
    folder.mkdir()
    g = _images(7, n=1)[0, :, :, 0]
    Image.fromarray(g, mode="L").save(folder / "a.png")
    rgba = np.dstack([_images(8, n=1)[0], np.full((16, 16), 7, np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(folder / "b.png")
    feats = compute_features(ImageFiles(folder, num_workers=0), Tiny(), device="cpu")["pool"].numpy()
    np.testing.assert_allclose(feats[0], tiny_features(np.repeat(g[None, :, :, None], 3, 3))[0], rtol=1e-6)
    np.testing.assert_allclose(feats[1], tiny_features(rgba[None, :, :, :3])[0], rtol=1e-6)


class FakeG(torch.nn.Module):
    z_dim, c_dim = 8, 3

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(self.z_dim + self.c_dim, 3 * 8 * 8, generator=torch.Generator().manual_seed(0)))

    def forward(self, z, c, truncation_psi=1.0, noise_mode="const"):
        return torch.tanh(torch.cat([z, c], 1) @ self.w).reshape(-1, 3, 8, 8) * truncation_psi


def test_generator_source_is_batch_and_shard_invariant():
    G = FakeG()
    whole = torch.cat(list(GeneratorImages(G, range(10)).batches(4)))
    assert whole.shape == (10, 3, 8, 8) and whole.dtype == torch.uint8
    assert torch.equal(whole, torch.cat(list(GeneratorImages(G, range(10)).batches(3))))
    shards = [torch.cat(list(GeneratorImages(G, range(10)).batches(2, rank=r, world_size=3))) for r in range(3)]
    for r in range(3):
        assert torch.equal(shards[r], whole[r::3])
    assert not torch.equal(whole[0], whole[1])


def test_kid_is_pr_and_autocast_through_the_api():
    a, b = _images(9, n=16), _images(10, n=12)
    k_mean, _ = kid(a, b, detector=Tiny(), opts=OPTS, num_subsets=3, max_subset_size=8, seed=1)
    ref, _ = kid_from_features(tiny_features(a), tiny_features(b), num_subsets=3, max_subset_size=8, seed=1)
    assert k_mean == pytest.approx(ref, rel=1e-5)
    torch.manual_seed(0)
    tiny = Tiny()
    with torch.no_grad():
        logits = tiny(torch.from_numpy(b).permute(0, 3, 1, 2))["logits_unbiased"]
    from fastgan.metrics import inception_score_from_logits
    assert inception_score(b, detector=tiny, opts=OPTS, num_splits=2) == pytest.approx(
        inception_score_from_logits(logits, num_splits=2), rel=1e-6)
    p, r = precision_recall(a, a, detector=Tiny(), opts=OPTS)
    assert (p, r) == (1.0, 1.0)
    bf16 = ExtractOptions(device="cpu", batch_size=4, num_workers=0, autocast="bf16")
    f32 = compute_features(ImageArray(a), Tiny(), device="cpu")["pool"]
    f16 = compute_features(ImageArray(a), Tiny(), device="cpu", autocast=bf16.autocast)["pool"]
    assert f16.dtype == torch.float32
    torch.testing.assert_close(f16, f32, rtol=2e-2, atol=1.0)
    with pytest.raises(ValueError, match="autocast"):
        compute_features(ImageArray(a), Tiny(), device="cpu", autocast="int8")


def test_feature_stats_input_to_fid():
    fa, fb = tiny_features(_images(11, n=10)), tiny_features(_images(12, n=10))
    sa, sb = FeatureStats().append(fa), FeatureStats().append(fb)
    ref = frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
    assert fid(sa, sb) == pytest.approx(ref, rel=1e-9)
