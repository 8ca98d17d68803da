"""The training demo: its quality measure (digits classifier, FID/KID in its feature space) and a
seconds-long end-to-end run with tiny settings."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("sklearn", reason="the digits demo data ships with scikit-learn (extra 'demo')")

from fastgan.cli import build_parser  # noqa: E402
from fastgan.train.demo import DemoSettings, main, summary_table  # noqa: E402
from fastgan.train.demo_data import digits_images  # noqa: E402
from fastgan.train.quality import (DigitsJudge, as_model_input, feature_fid, feature_kid,  # noqa: E402
                                   split_holdout)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    return digits_images(16)


@pytest.fixture(scope="module")
def judge(digits):
    return DigitsJudge(*digits, epochs=6)


def test_classifier_is_accurate_on_held_out_reals(judge):
    assert len(judge.holdout_labels) == 450
    assert judge.holdout_accuracy > 0.9
    assert judge.floor.count == 450 and judge.floor.fid < 1.0


def test_noise_and_wrong_labels_score_at_chance(judge, digits):
    n = len(judge.holdout_labels)
    noise = torch.from_numpy(np.random.RandomState(1).uniform(-1, 1, (n, 1, 16, 16)).astype(np.float32))
    s = judge.score(noise, judge.holdout_labels)
    assert s.accuracy < 0.25                          # 10 classes: chance is about 0.1
    assert s.fid > 20 * judge.floor.fid and s.kid > 20 * max(judge.floor.kid, 1e-3)
    images, labels = digits
    wrong = (labels[:n] + 1 + np.random.RandomState(2).randint(0, 9, n)) % 10   # never the true class
    assert judge.score(images[:n], wrong).accuracy < 0.1


def test_fid_and_kid_formulas():
    rs = np.random.RandomState(0)
    a = torch.from_numpy(rs.randn(400, 8))
    assert abs(feature_fid(a, a)) < 1e-8
    shift = torch.linspace(-1, 1, 8, dtype=torch.float64)
    # equal covariances: FID is the squared distance of the means
    assert feature_fid(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-8)
    # scaled copy: |mu1 - mu2|^2 + tr(S) + tr(4 S) - 2 tr(sqrt(S * 4 S)) = tr(S) with mu = mean(a) scaled
    mu, cov = a.mean(0), torch.cov(a.T)
    expected = float((mu - 2 * mu) @ (mu - 2 * mu) + torch.trace(cov))
    assert feature_fid(a, 2 * a) == pytest.approx(expected, rel=1e-6)
    same, shifted = feature_kid(a, a), feature_kid(a, a + 1)
    assert abs(same) < 0.05 * shifted


def test_split_holdout_is_stratified():
    labels = np.repeat(np.arange(4), [10, 20, 30, 41])
    train, held = split_holdout(labels, 0.25, seed=3)
    assert np.intersect1d(train, held).size == 0 and len(train) + len(held) == len(labels)
    assert [int((labels[held] == c).sum()) for c in range(4)] == [2, 5, 8, 10]   # round(0.25 * count)
    with pytest.raises(ValueError, match="fraction"):
        split_holdout(labels, 1.0)


def test_model_input_conversion():
    u8 = np.full((2, 32, 32), 255, np.uint8)
    x = as_model_input(u8)
    assert x.shape == (2, 1, 16, 16) and torch.allclose(x, torch.ones_like(x))
    rgb = torch.zeros(3, 3, 8, 8)
    assert as_model_input(rgb).shape == (3, 1, 16, 16)
    with pytest.raises(ValueError, match="images must be"):
        as_model_input(np.zeros((4, 4)))


def test_sample_needs_a_generator_conditioned_on_the_classes(judge):
    from fastgan.nets.stylegan2 import Generator

    G = Generator(z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=1, channel_base=64, channel_max=8,
                  mapping_kwargs={"num_layers": 1})
    with pytest.raises(ValueError, match="conditional on 10 classes"):
        judge.sample(G)


def test_demo_end_to_end_with_tiny_settings(tmp_path, capsys):
    settings = DemoSettings(resolution=8, cbase=128, cmax=16, batch=4, mbstd_group=2, kimg=0.016, eval_kimg=0.008,
                            judge_epochs=1)
    result = main(tmp_path, minutes=5.0, seed=0, settings=settings)
    out = capsys.readouterr().out
    assert result.kimg == pytest.approx(0.016)                             # 4 steps of 4 images
    assert result.run_dir.parent == tmp_path and result.run_dir.name.endswith("-demo")
    for path in result.files:
        assert path.is_file(), path
    assert (result.run_dir / "curves.png").is_file() and (tmp_path / "digits8" / "dataset.json").is_file()
    for score in (result.start, result.end, result.real):
        assert 0 <= score.accuracy <= 1 and math.isfinite(score.fid) and math.isfinite(score.kid)
    lines = [json.loads(x) for x in (result.run_dir / "metric-digits.jsonl").read_text().splitlines()]
    assert [x["kimg"] for x in lines] == pytest.approx([0.004, 0.012, 0.016])   # ticks 0, 1 and the end
    assert set(lines[0]) >= {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl",
                             "timestamp"}
    assert lines[-1]["results"]["digits_fid"] == pytest.approx(result.end.fid)
    assert [h["kimg"] for h in result.history] == [x["kimg"] for x in lines]
    table = summary_table(result)
    assert "class accuracy of samples" in table and "FID (classifier features)" in table
    assert table in out and str(result.run_dir) in out


def test_demo_rejects_a_non_positive_budget(tmp_path):
    with pytest.raises(ValueError, match="minutes"):
        main(tmp_path, minutes=0)


def test_demo_command_is_registered():
    args = build_parser().parse_args(["demo", "--outdir", "x", "--minutes", "2", "--seed", "3"])
    assert (args.outdir, args.minutes, args.seed) == ("x", 2.0, 3)
