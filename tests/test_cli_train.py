"""``fastgan train`` options (errors, dry run, --config, booleans), a 3-step run and ``fastgan plot``."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgan.cli import build_parser, main
from fastgan.train.config import TrainConfig
from fastgan.train.curves import Panel, Series, nice_ticks, read_jsonl, render_png, run_panels


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """16 grey 8x8 PNGs in two classes with dataset.json labels."""
    from PIL import Image

    root = tmp_path_factory.mktemp("data") / "tiny"
    root.mkdir()
    rs = np.random.RandomState(0)
    labels = []
    for i in range(16):
        name = f"img{i:03d}.png"
        Image.fromarray(rs.randint(0, 256, (8, 8), dtype=np.uint8), "L").save(root / name)
        labels.append([name, i % 2])
    (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


def dry_run(capsys, *argv) -> dict:
    """Run ``fastgan train ... --dry-run`` in-process and return the printed resolved options."""
    assert main(["train", *argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Dry run; exiting." in out
    return json.loads(out[:out.rindex("Dry run")])


def test_every_train_option_has_a_flag():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    dests = {a.dest for a in sub._actions} - {"help", "config", "fp32"}
    assert dests == {f.name for f in dataclasses.fields(TrainConfig)}


@pytest.mark.parametrize("argv, flag", [
    (["--batch", "7", "--gpus", "2"], "--batch"),
    (["--batch", "8", "--batch-gpu", "3"], "--batch"),
    (["--target", "1.5"], "--target"),
    (["--gamma", "-1"], "--gamma"),
    (["--augpipe", "nope"], "--augpipe"),
    (["--metrics", "fid_nope"], "--metrics"),
    (["--kimg", "0"], "--kimg"),
])
def test_bad_values_exit_2_naming_the_option(capsys, tmp_path, folder, argv, flag):
    code = main(["train", "--outdir", str(tmp_path), "--data", str(folder), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("fastgan train: error: ") and flag in err
    assert not (tmp_path / "00000").exists() and not list(tmp_path.iterdir())    # nothing trained


def test_missing_dataset_and_cond_without_labels(capsys, tmp_path, folder):
    assert main(["train", "--data", str(tmp_path / "none"), "-n"]) == 2
    assert "--data" in capsys.readouterr().err
    (tmp_path / "nolabels").mkdir()
    (tmp_path / "nolabels" / "a.png").write_bytes((folder / "img000.png").read_bytes())
    assert main(["train", "--data", str(tmp_path / "nolabels"), "--cond", "-n"]) == 2
    assert "--cond" in capsys.readouterr().err


@pytest.mark.parametrize("argv, flag", [(["--cfg", "nope"], "--cfg"), (["--mirror=maybe"], "--mirror"),
                                        (["--batch", "x"], "--batch"), (["--g-kwargs", "[1]"], "--g-kwargs")])
def test_parse_errors_exit_2_naming_the_option(capsys, folder, argv, flag):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", str(folder), *argv])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


def test_user_error_has_no_traceback(tmp_path, folder):
    proc = subprocess.run([sys.executable, "-m", "fastgan", "train", "--data", str(folder), "--batch", "5",
                           "--gpus", "2", "-n"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "--batch" in proc.stderr


def test_dry_run_prints_the_resolved_options(capsys, tmp_path, folder):
    opts = dry_run(capsys, "--outdir", str(tmp_path), "--data", str(folder), "--cfg", "stylegan2", "--batch",
                   "8", "--gamma", "3", "--cbase", "1024", "--cmax", "64", "--cond", "--mirror=1", "--aug",
                   "noaug", "--metrics", "none", "--fp32")
    assert opts["batch_size"] == 8 and opts["batch_gpu"] == 8
    assert opts["loss_kwargs"]["r1_gamma"] == 3.0
    assert opts["G_kwargs"]["channel_base"] == 1024 and opts["D_kwargs"]["channel_max"] == 64
    assert opts["G_kwargs"]["num_fp16_res"] == 0
    assert opts["label_dim"] == 2 and opts["training_set_kwargs"]["xflip"] is True
    assert opts["augment_kwargs"] is None and opts["metrics"] == []
    assert not list(tmp_path.iterdir())                                            # no run directory


def test_data_alone_resolves_the_auto_config(capsys, folder):
    opts = dry_run(capsys, "--data", str(folder))
    # auto at 8x8 on one GPU: batch max(1, min(64, min(32, 4096 // 8))) = 32, gamma 0.0002 * 64 / 32
    assert opts["batch_size"] == 32 and opts["fastgan_config"]["cfg"] == "auto"
    assert math.isclose(opts["loss_kwargs"]["r1_gamma"], 0.0002 * 8 * 8 / 32)


def test_gpus_default_to_the_torchrun_world_size(capsys, monkeypatch, folder):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert dry_run(capsys, "--data", str(folder), "--cfg", "tiny")["num_gpus"] == 2
    assert dry_run(capsys, "--data", str(folder), "--cfg", "tiny", "--gpus", "1")["num_gpus"] == 1


@pytest.mark.parametrize("value, expected", [(None, True), ("1", True), ("yes", True), ("off", False),
                                             ("False", False)])
def test_boolean_options_take_a_value_or_none(value, expected):
    argv = ["train", "--data", "d", "--mirror"] + ([] if value is None else [value])
    args = build_parser().parse_args(argv)
    assert args.mirror is expected


def test_config_file_with_command_line_overrides(capsys, tmp_path, folder):
    run_json = tmp_path / "run.json"
    run_json.write_text(json.dumps({"data": str(folder), "batch": 8, "gamma": 2.0, "metrics": "none",
                                    "mbstd-group": 2, "aug": "noaug", "cfg": "tiny"}))
    opts = dry_run(capsys, "--config", str(run_json), "--gamma", "4")
    assert opts["batch_size"] == 8                                          # from the file
    assert opts["loss_kwargs"]["r1_gamma"] == 4.0                           # the command line wins
    assert opts["D_kwargs"]["epilogue_kwargs"]["mbstd_group_size"] == 2     # dashed key accepted


@pytest.mark.parametrize("content, flag", [({"batchx": 3}, "--config"), ({"batch": "8"}, "--batch"),
                                           ([1, 2], "--config")])
def test_bad_config_files(capsys, tmp_path, folder, content, flag):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(content))
    assert main(["train", "--config", str(path), "--data", str(folder), "-n"]) == 2
    assert flag in capsys.readouterr().err


def test_fp32_contradicting_precision_is_an_error(capsys, folder):
    assert main(["train", "--data", str(folder), "--fp32", "--precision", "bf16", "-n"]) == 2
    assert "--fp32" in capsys.readouterr().err


def test_three_step_run_writes_the_run_directory(capsys, tmp_path, folder):
    code = main(["train", "--outdir", str(tmp_path), "--data", str(folder), "--cfg", "tiny", "--cond",
                 "--batch", "4", "--kimg", "0.012", "--tick", "0.004", "--snap", "2", "--metrics", "none",
                 "--workers", "0", "--grid", "2x2", "--aug", "ada"])
    assert code == 0
    out = capsys.readouterr().out
    (run_dir,) = list(tmp_path.iterdir())
    assert f"Run directory: {run_dir}" in out
    assert ("Tip: on CPU, --host-cache" in out) == (not torch.cuda.is_available())
    assert run_dir.name == "00000-tiny-tiny-gpus1-batch4-gamma0.0032"
    for name in ("log.txt", "training_options.json", "reals.png", "fakes_init.png", "fakes000000.png",
                 "stats.jsonl", "network-snapshot-000000.json", "network-snapshot-000000-G_ema.safetensors"):
        assert (run_dir / name).is_file(), name
    ticks = read_jsonl(run_dir / "stats.jsonl")
    assert [t["Progress/kimg"]["mean"] for t in ticks] == pytest.approx([0.004, 0.008, 0.012])
    assert ticks[0]["Loss/D/loss"]["num"] == 4                      # one step of 4 reals at tick 0
    assert list((run_dir / "checkpoints").glob("ckpt-*.pt"))
    options = json.loads((run_dir / "training_options.json").read_text())
    assert options["label_dim"] == 2 and options["ada_target"] == 0.6

    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "curves.png").is_file()


# -------------------------------------------------------------------------------------------- plot
def synthetic_run(root: Path) -> Path:
    """A run directory with 5 ticks of statistics (tick 2 without D loss) and a metric file."""
    run = root / "00003-synthetic"
    run.mkdir()
    lines = []
    for t in range(5):
        kimg = 4.0 * t
        stats = {"Loss/G/loss": {"num": 8, "mean": 1.0 + 0.1 * t, "std": 0.1},
                 "Loss/D/loss": {"num": 0, "mean": math.nan, "std": math.nan} if t == 2 else
                 {"num": 8, "mean": 1.5 - 0.1 * t, "std": 0.1},
                 "Loss/signs/real": {"num": 8, "mean": 0.2 * t, "std": 0.5},
                 "Progress/kimg": {"num": 1, "mean": kimg, "std": 0.0},
                 "Progress/augment": {"num": 1, "mean": 0.01 * t, "std": 0.0},
                 "Timing/sec_per_kimg": {"num": 1, "mean": 30.0 + t, "std": 0.0}}
        lines.append(json.dumps({**stats, "timestamp": 1000.0 + t}))
    (run / "stats.jsonl").write_text("\n".join(lines) + "\n" + '{"Progress/kimg": {"nu')   # a torn last line
    (run / "training_options.json").write_text(json.dumps({"ada_target": 0.6}))
    metric = [{"results": {"fid50k_full": v}, "metric": "fid50k_full", "total_time": 1.0, "total_time_str": "1s",
               "num_gpus": 1, "snapshot_pkl": f"network-snapshot-{k:06d}.pkl", "timestamp": 1.0}
              for k, v in ((0, 300.0), (8, 120.0), (16, 80.0))]
    (run / "metric-fid50k_full.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metric))
    return run


def test_run_panels_read_the_statistics(tmp_path):
    panels = {p.title: p for p in run_panels(synthetic_run(tmp_path))}
    assert list(panels) == ["losses", "r_t = E[sign(D(real))]", "augmentation p", "sec/kimg", "fid50k_full"]
    g, d = panels["losses"].series
    assert g.label == "Loss/G/loss" and g.x == [0.0, 4.0, 8.0, 12.0, 16.0]
    assert g.y == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.4])
    assert math.isnan(d.y[2]) and d.y[3] == pytest.approx(1.2)     # no samples in tick 2: a gap
    target = panels["r_t = E[sign(D(real))]"].series[-1]
    assert target.label == "target 0.6" and target.y == [0.6, 0.6] and target.x == [0.0, 16.0]
    fid = panels["fid50k_full"].series[0]
    assert fid.x == [0.0, 8.0, 16.0] and fid.y == [300.0, 120.0, 80.0]


def test_plot_cli_writes_a_png(tmp_path, capsys):
    from PIL import Image

    run = synthetic_run(tmp_path)
    out = tmp_path / "plots" / "c.png"
    assert main(["plot", str(run), "--out", str(out), "--renderer", "pil"]) == 0
    assert str(out) in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (24 + 2 * 300, 3 * 480, 3)                         # 5 panels on 3 columns
    blue = np.all(img == (31, 119, 180), axis=-1)                           # the first series' colour
    assert blue[24:324, :480].sum() > 100 and blue[324:, 480:960].sum() > 100
    assert not [p for p in out.parent.iterdir() if p.name != "c.png"]      # no temporary file left


def test_plot_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is optional; the PIL renderer is tested above")
    from PIL import Image

    out = render_png(run_panels(synthetic_run(tmp_path)), tmp_path / "m.png", renderer="matplotlib")
    assert Image.open(out).size == (3 * 480, 2 * 300 + 30)


def test_plot_errors(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "run_dir" in capsys.readouterr().err
    assert main(["plot", str(tmp_path)]) == 2
    assert "stats.jsonl" in capsys.readouterr().err
    (tmp_path / "stats.jsonl").write_text('{"a": 1}\nnot json\n{"b": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        read_jsonl(tmp_path / "stats.jsonl")
    with pytest.raises(ValueError, match="nothing to plot"):
        render_png([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="renderer"):
        render_png([Panel("p", [Series("s", [0, 1], [0, 1])])], tmp_path / "x.png", renderer="svg")


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (-3.7, 12.2), (0.00123, 0.0049), (5.0, 5.0), (1e5, 3.3e5)])
def test_nice_ticks_cover_the_range_with_round_steps(lo, hi):
    ticks = nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 12
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6


@pytest.mark.parametrize("extra, tip", [([], True), (["--host-cache"], False), (["--device", "cuda"], False),
                                        (["--dry-run"], False)])
def test_cpu_runs_without_host_cache_get_the_tip(capsys, monkeypatch, folder, extra, tip):
    from fastgan.train import trainer

    monkeypatch.setattr(trainer.Trainer, "fit", lambda self: None)   # the option handling only
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--data", str(folder), "--cfg", "tiny", *extra]) == 0
    assert ("Tip: on CPU, --host-cache reuses freed activation buffers" in capsys.readouterr().out) == tip
