"""``fastgan fid``, ``fid-stats`` and ``metrics`` end to end, with a tiny TorchScript detector file."""
import json

import numpy as np
import pytest
import torch

from fastgan.cli import main
from fastgan.metrics import frechet_distance

pytest.importorskip("PIL", reason="reading image files needs Pillow")
from PIL import Image  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _TinyDetector(torch.nn.Module):
    """NVlabs TorchScript calling convention; features are 2x2 channel means (12-d)."""

    def forward(self, img: torch.Tensor, return_features: bool = False, use_fp16: bool = False,
                no_output_bias: bool = False) -> torch.Tensor:
        feats = torch.nn.functional.adaptive_avg_pool2d(img.float(), 2).flatten(1)
        if return_features:
            return feats
        return torch.softmax(feats[:, :6] / 64.0, dim=1)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    path = tmp_path_factory.mktemp("det") / "tiny.pt"
    torch.jit.save(torch.jit.script(_TinyDetector()), str(path))
    return path


def _folder(root, seed, n=6):
    root.mkdir()
    imgs = np.random.default_rng(seed).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(root / f"{i}.png")
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).double()
    return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1).numpy()


def test_fid_stats_then_fid(tmp_path, detector, capsys, monkeypatch):
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(tmp_path / "cache"))
    fa, fb = _folder(tmp_path / "a", 0), _folder(tmp_path / "b", 1, n=7)
    common = ["--detector", str(detector), "--device", "cpu", "--workers", "0", "--no-progress"]
    assert main(["fid-stats", str(tmp_path / "a"), "--out", str(tmp_path / "a.npz")] + common) == 0
    assert main(["fid", str(tmp_path / "a.npz"), str(tmp_path / "b"), "--out", str(tmp_path / "r.jsonl")]
                + common) == 0
    ref = frechet_distance(fa.mean(0), np.cov(fa, rowvar=False), fb.mean(0), np.cov(fb, rowvar=False))
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["metric"] == "fid" and printed["value"] == pytest.approx(ref, rel=1e-6)
    assert json.loads((tmp_path / "r.jsonl").read_text())["value"] == printed["value"]


def test_cli_errors_are_reported(tmp_path, capsys):
    assert main(["fid", str(tmp_path / "none"), str(tmp_path / "none2"), "--detector", str(tmp_path / "x.pt")]) == 2
    assert "x.pt" in capsys.readouterr().err
    assert main(["metrics", "--metrics", "fid1k", "--network", "n.pkl"]) == 2
    assert "unknown metric" in capsys.readouterr().err


@pytest.fixture
def saved_generator(tmp_path):
    import fastgan
    try:
        from fastgan.nets.stylegan2 import Generator
        G = Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=8, img_channels=3,
                      mapping_kwargs={"num_layers": 1}, channel_base=64, channel_max=16)
        fastgan.save_network(G, tmp_path / "g.safetensors")
    except Exception as e:  # the networks are another module's work; these tests only drive the CLI
        pytest.skip(f"cannot build/save a small StyleGAN2 generator here: {e}")
    _folder(tmp_path / "real", 2, n=8)
    return tmp_path


def _run_metrics(root, names, capsys, *detector_args):
    rc = main(["metrics", "--metrics", names, "--network", str(root / "g.safetensors"), "--data",
               str(root / "real"), "--num-gen", "12", "--device", "cpu", "--workers", "0", "--no-progress",
               "--batch", "4", "--no-cache", *detector_args])
    assert rc == 0
    return {r["metric"]: r for r in (json.loads(line) for line in capsys.readouterr().out.strip().splitlines())}


def test_metrics_on_a_saved_generator(saved_generator, detector, capsys):
    by = _run_metrics(saved_generator, "fid50k_full,is50k,kid50k_full,pr50k3_full", capsys,
                      "--detector", str(detector))
    assert set(by) == {"fid50k_full", "is50k", "kid50k_full", "pr50k3_full"}
    assert np.isfinite(by["fid50k_full"]["value"]) and by["fid50k_full"]["num_gen"] == 12
    assert 1.0 <= by["is50k"]["mean"] <= 6.0
    assert 0.0 <= by["pr50k3_full"]["precision"] <= 1.0


class _TinyPRDetector(torch.nn.Module):
    """A second feature space (VGG16's role in NVlabs' pr50k3) in which every image maps to the same point,
    so precision and recall are both 1; the Inception stand-in above gives other values on these images."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return torch.zeros(img.shape[0], 5)


def test_pr_detector_is_used_for_precision_recall_only(saved_generator, detector, capsys):
    pr_det = saved_generator / "pr.pt"
    torch.jit.save(torch.jit.script(_TinyPRDetector()), str(pr_det))
    both = _run_metrics(saved_generator, "fid50k_full,pr50k3_full", capsys,
                        "--detector", str(detector), "--pr-detector", str(pr_det))
    inception_only = _run_metrics(saved_generator, "fid50k_full,pr50k3_full", capsys, "--detector", str(detector))
    assert both["fid50k_full"]["value"] == pytest.approx(inception_only["fid50k_full"]["value"], rel=1e-12)
    pr = [(r["pr50k3_full"]["precision"], r["pr50k3_full"]["recall"]) for r in (both, inception_only)]
    assert pr[0] == (1.0, 1.0) and pr[1] != pr[0]
