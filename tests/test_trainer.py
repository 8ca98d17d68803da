"""fastgan.train: config resolution (cfg tables §4), EMA, ADA p, grids, the loop on a tiny CPU run, Freeze-D,
transfer starts, non-finite safety. Tiny networks (16x16, cfg 'tiny') keep every run to a few seconds."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgan.train import stats
from fastgan.train.ada import AdaController
from fastgan.train.build import build_phases
from fastgan.train.config import TrainConfig, resolve_config
from fastgan.train.ema import ema_beta, update_ema
from fastgan.train.grids import grid_size, save_image_grid, to_grid
from fastgan.train.runlog import format_time, status_line
from fastgan.train.trainer import Callback, Trainer, _nonfinite_count


# ---------------------------------------------------------------------------------------------- helpers
def write_tiny_zip(path: Path, n: int = 24, res: int = 16, channels: int = 3, classes: int = 0) -> Path:
    """A zip of ``n`` smooth random PNGs (NVlabs layout), with ``dataset.json`` class labels if ``classes``."""
    from PIL import Image

    rs = np.random.RandomState(123)
    y, x = np.mgrid[0:res, 0:res]
    labels = []
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            cx, cy = rs.uniform(res / 4, 3 * res / 4, 2)
            blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (res / 2))
            arr = (blob[..., None] * rs.uniform(0.2, 1, channels) * 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr[..., 0] if channels == 1 else arr, "L" if channels == 1 else "RGB").save(buf, "PNG")
            name = f"00000/img{i:08d}.png"
            zf.writestr(name, buf.getvalue())
            labels.append([name, i % classes] if classes else None)
        if classes:
            zf.writestr("dataset.json", json.dumps({"labels": labels}))
    return path


def tiny_config(tmp: Path, data: Path, **kw) -> TrainConfig:
    """cfg 'tiny', no metrics, no workers, a 4x2 grid; 4 images per step."""
    base = dict(outdir=str(tmp / "runs"), data=str(data), cfg="tiny", kimg=0.008, tick=0.008, snap=1,
                metrics="none", workers=0, grid="4x2", aug="noaug")
    base.update(kw)
    return TrainConfig(**base)


class FakeDataset:
    """What resolve_config reads from a dataset, without files."""

    def __init__(self, res: int, channels: int = 3, label_dim: int = 0):
        self.name, self.resolution, self.num_channels, self.label_dim = "fake", res, channels, label_dim
        self.has_labels = label_dim > 0


def resolve(res=256, channels=3, **kw):
    return resolve_config(TrainConfig(data="fake.zip", **kw), dataset=FakeDataset(res, channels))


def tensors(module: torch.nn.Module):
    return {k: v.detach().clone() for k, v in list(module.named_parameters()) + list(module.named_buffers())}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_zip(tmp_path_factory) -> Path:
    return write_tiny_zip(tmp_path_factory.mktemp("data") / "tiny.zip")


# -------------------------------------------------------------------------------------- cfg tables (§4)
@pytest.mark.parametrize("res,gpus,mb,b,gamma,ema,cbase,lr", [
    (32, 1, 32, 32, 0.0064, 10, 16384, 0.0025),
    (256, 1, 16, 16, 0.8192, 5, 16384, 0.0025),
    (256, 2, 32, 16, 0.4096, 10, 16384, 0.0025),
    (512, 1, 8, 8, 6.5536, 2.5, 32768, 0.0025),
    (1024, 4, 16, 4, 13.1072, 5, 32768, 0.002),
    (1024, 8, 32, 4, 6.5536, 10, 32768, 0.002),
])
def test_auto_cfg_formulas(res, gpus, mb, b, gamma, ema, cbase, lr):
    rc = resolve(res, cfg="auto", gpus=gpus)
    assert (rc.batch_size, rc.batch_gpu, rc.rounds) == (mb, b, 1)
    assert rc.loss_kwargs["r1_gamma"] == pytest.approx(gamma, rel=1e-12)
    assert rc.ema_kimg == pytest.approx(ema) and rc.ema_rampup == 0.05
    assert rc.G_kwargs["channel_base"] == cbase == rc.D_kwargs["channel_base"]
    assert rc.G_opt_kwargs["lr"] == lr == rc.D_opt_kwargs["lr"]
    assert rc.D_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 4
    assert rc.G_kwargs["mapping_kwargs"] == {"num_layers": 2, "w_avg_beta": 0.995}
    assert rc.loss_kwargs["ema_every_pass"] is True  # w_avg moves in every training G forward (ADA)
    assert (rc.G_kwargs["num_fp16_res"], rc.G_kwargs["conv_clamp"]) == (4, 256)
    assert rc.total_kimg == 25000 and rc.G_reg_interval == 4 and rc.D_reg_interval == 16


def test_ada_cfg_rows():
    rc = resolve(256, cfg="paper256")
    assert (rc.batch_size, rc.batch_gpu, rc.rounds) == (64, 8, 8)     # ref_gpus 8: accumulation on 1 GPU
    assert rc.D_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 8 and rc.G_kwargs["channel_base"] == 16384
    assert rc.loss_kwargs["r1_gamma"] == 1 and rc.ema_kimg == 20 and rc.ema_rampup is None
    assert rc.G_kwargs["mapping_kwargs"]["num_layers"] == 8 and rc.G_opt_kwargs["lr"] == 0.0025
    rc = resolve(1024, cfg="paper1024", gpus=8)
    assert (rc.batch_size, rc.batch_gpu, rc.rounds, rc.G_opt_kwargs["lr"]) == (32, 4, 1, 0.002)
    rc = resolve(32, cfg="cifar")
    assert (rc.batch_size, rc.batch_gpu, rc.rounds, rc.total_kimg) == (64, 32, 2, 100000)
    assert rc.D_kwargs["architecture"] == "orig" and rc.D_kwargs["epilogue_kwargs"]["mbstd_group_size"] == 32
    assert rc.loss_kwargs["pl_weight"] == 0 and rc.loss_kwargs["style_mixing_prob"] == 0
    assert rc.G_reg_interval == 4 and rc.loss_kwargs["r1_gamma"] == 0.01 and rc.ema_kimg == 500
    rc = resolve(256, cfg="paper256", batch=32)                       # --batch: b = batch // gpus
    assert (rc.batch_size, rc.batch_gpu) == (32, 32)
    with pytest.raises(ValueError, match="batch_gpu"):                # NVlabs bug §7.5 is rejected
        resolve(32, cfg="cifar", gpus=4)


def test_sg3_cfg_rows():
    rc = resolve(256, cfg="stylegan3-r")
    G = rc.G_kwargs
    assert G["class_name"] == "fastgan.nets.stylegan3.Generator"
    assert (G["channel_base"], G["channel_max"]) == (65536, 1024)
    assert (rc.D_kwargs["channel_base"], rc.D_kwargs["channel_max"]) == (32768, 512)
    assert G["conv_kernel"] == 1 and G["use_radial_filters"] is True and G["mapping_kwargs"]["num_layers"] == 2
    assert G["magnitude_ema_beta"] == pytest.approx(0.9988915792636801, rel=1e-15)
    assert rc.loss_kwargs["blur_init_sigma"] == 10 and rc.loss_kwargs["blur_fade_kimg"] == 200
    assert rc.G_reg_interval is None and rc.loss_kwargs["pl_weight"] == 0
    assert rc.loss_kwargs["r1_gamma"] == 2 and rc.ema_kimg == 10 and rc.ema_rampup == 0.05
    assert (rc.G_opt_kwargs["lr"], rc.D_opt_kwargs["lr"]) == (0.0025, 0.002)
    rc = resolve(512, cfg="stylegan3-t", batch=64)
    assert rc.G_kwargs["magnitude_ema_beta"] == pytest.approx(0.9977843871238888, rel=1e-15)
    assert "conv_kernel" not in rc.G_kwargs and rc.loss_kwargs["blur_init_sigma"] == 0
    assert rc.loss_kwargs["r1_gamma"] == 8
    rc = resolve(256, cfg="stylegan2", precision="fp32")
    assert rc.G_kwargs["fused_modconv_default"] == "inference_only" and rc.G_kwargs["mapping_kwargs"]["num_layers"] == 8
    assert rc.loss_kwargs["pl_weight"] == 2 and rc.loss_kwargs["style_mixing_prob"] == 0.9
    assert rc.loss_kwargs["r1_gamma"] == 10 and rc.G_reg_interval == 4 and rc.G_opt_kwargs["lr"] == 0.002
    assert rc.loss_kwargs["ema_every_pass"] is False  # SG3 lineage: w_avg moves in the Dmain fake pass only
    for kw in (rc.G_kwargs, rc.D_kwargs):
        assert (kw["num_fp16_res"], kw["conv_clamp"]) == (0, None)


def test_transfer_start_overrides(tmp_path):
    pkl = tmp_path / "net.pkl"
    pkl.write_bytes(b"\x80")
    rc = resolve(256, cfg="stylegan3-r", resume=str(pkl))
    assert rc.resume_pkl == str(pkl) and rc.ada_kimg == 100 and rc.ema_rampup is None
    assert rc.loss_kwargs["blur_init_sigma"] == 0
    assert resolve(256, cfg="stylegan3-r").ada_kimg == 500
    with pytest.raises(ValueError, match="resume"):
        resolve(256, resume=str(tmp_path / "missing.pkl"))


def test_lazy_regularisation_compensation():
    G, D = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    phases = build_phases(resolve(256, cfg="stylegan2"), G, D)
    assert [(p.name, p.interval) for p in phases] == [("Gmain", 1), ("Greg", 4), ("Dmain", 1), ("Dreg", 16)]
    assert phases[0].opt is phases[1].opt and phases[2].opt is phases[3].opt
    g, d = phases[0].opt.param_groups[0], phases[2].opt.param_groups[0]
    assert g["lr"] == pytest.approx(0.002 * 0.8) and g["betas"][1] == pytest.approx(0.99 ** 0.8)
    assert d["lr"] == pytest.approx(0.002 * 16 / 17) and d["betas"][1] == pytest.approx(0.9905855, abs=1e-7)
    assert g["betas"][0] == 0 and g["eps"] == 1e-8
    phases = build_phases(resolve(256, cfg="stylegan3-t"), G, D)
    assert [p.name for p in phases] == ["Gboth", "Dmain", "Dreg"]
    assert phases[0].opt.param_groups[0]["lr"] == 0.0025 and phases[0].opt.param_groups[0]["betas"] == (0, 0.99)


@pytest.mark.parametrize("kw,res,match", [
    (dict(gpus=3, batch=32), 256, r"batch \(32\) must be a multiple of gpus"),
    (dict(cfg="stylegan2", batch=32, batch_gpu=3), 256, "batch_gpu"),
    (dict(cfg="stylegan2", batch=32, batch_gpu=2), 256, "mbstd_group"),
    (dict(cfg="stylegan2", batch=32, batch_gpu=64), 256, "batch_gpu"),
    (dict(), 24, "power-of-two"),
    (dict(cfg="stylegan3-t"), 8, "power-of-two resolution >= 16"),
    (dict(cfg="bogus"), 256, "unknown cfg"),
    (dict(loss="bogus"), 256, "unknown loss"),
    (dict(augpipe="bogus"), 256, "augpipe"),
    (dict(aug="bogus"), 256, "unknown aug"),
    (dict(metrics="bogus50k"), 256, "metrics"),
    (dict(p=1.5), 256, "p must be in"),
    (dict(target=-0.1), 256, "target must be in"),
    (dict(gamma="big"), 256, "gamma"),
    (dict(precision="fp8"), 256, "unknown precision"),
    (dict(grid="4by2"), 256, "grid"),
    (dict(workers=-1), 256, "workers"),
])
def test_validation_names_the_option(kw, res, match):
    with pytest.raises(ValueError, match=match):
        resolve(res, **kw)


def test_validation_types_and_data(tmp_path):
    with pytest.raises(TypeError, match="batch"):
        resolve(256, batch=32.0)
    with pytest.raises(TypeError, match="kimg must be a number"):
        resolve(256, kimg="10")
    with pytest.raises(ValueError, match="grid"):
        resolve(256, grid="0x4")
    with pytest.raises(ValueError, match="data"):
        resolve_config(TrainConfig(data=str(tmp_path / "missing.zip")))
    with pytest.raises(ValueError, match="channels"):
        resolve(256, channels=4)


def test_cond_needs_labels(tmp_path):
    plain = write_tiny_zip(tmp_path / "plain.zip", n=4)
    with pytest.raises(ValueError, match="cond"):
        resolve_config(TrainConfig(data=str(plain), cfg="tiny", cond=True))
    labelled = write_tiny_zip(tmp_path / "labelled.zip", n=6, classes=3)
    rc = resolve_config(TrainConfig(data=str(labelled), cfg="tiny", cond=True, metrics="none"))
    assert rc.label_dim == 3 and rc.training_set_kwargs["use_labels"] is True


def test_loss_names_match_the_loss_zoo():
    from fastgan.train.config import LOSS_NAMES
    from fastgan.train.loss import LOSSES

    assert set(LOSS_NAMES) == set(LOSSES)


def test_config_json_roundtrip(tmp_path):
    cfg = TrainConfig(data="x.zip", cfg="stylegan3-t", gamma=8.2, batch=32, g_kwargs={"z_dim": 64})
    assert TrainConfig.from_json(cfg.to_json()) == cfg
    path = tmp_path / "cfg.json"
    path.write_text(cfg.to_json())
    assert TrainConfig.from_json(str(path)) == cfg
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_dict({"bogus": 1})


# ------------------------------------------------------------------------------------ EMA, ADA, grids
@pytest.mark.parametrize("values, bad", [([1.0, -2.0, 0.5], 0), ([1.0, float("nan"), float("inf"), 2.0], 2),
                                         ([float("-inf")], 1), ([3e38, 3e38, -1.0], 0)])
def test_nonfinite_count_is_exact(values, bad):
    # the last case: the fast path's float32 sum overflows to inf, the exact count then finds no bad element
    assert _nonfinite_count(torch.tensor(values, dtype=torch.float32)) == bad


def test_ema_beta_is_a_half_life():
    assert ema_beta(32, 0, 10, 0.05) == 0.0                     # first step with ramp-up: exact copy
    beta = ema_beta(32, 10 ** 9, 10, 0.05)
    assert beta ** (10_000 / 32) == pytest.approx(0.5, rel=1e-12)
    assert ema_beta(32, 1000, 10, 0.05) == pytest.approx(0.5 ** (32 / 50), rel=1e-15)   # 5% of 1000 images
    assert ema_beta(32, 1000, 10, None) == pytest.approx(0.5 ** (32 / 10_000), rel=1e-15)


def test_update_ema_lerps_parameters_and_copies_buffers():
    torch.manual_seed(0)
    src, ema = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        for p in list(src.parameters()) + list(ema.parameters()):
            p.normal_()
        src.running_mean.normal_()
    before = [p.clone() for p in ema.parameters()]
    update_ema(ema, src, 0.25)
    for old, new, s in zip(before, ema.parameters(), src.parameters()):
        torch.testing.assert_close(new, 0.25 * old + 0.75 * s, rtol=0, atol=1e-6)
    assert torch.equal(ema.running_mean, src.running_mean)
    with pytest.raises(ValueError, match="architecture"):
        update_ema(torch.nn.Linear(2, 2), torch.nn.Linear(2, 3, bias=False), 0.5)


def _pipe(p: float = 0.0) -> torch.nn.Module:
    pipe = torch.nn.Module()
    pipe.register_buffer("p", torch.tensor(p))
    return pipe


def test_ada_controller_moves_p_by_the_spec_step():
    pipe = _pipe()
    ada = AdaController(pipe, target=0.6, batch_size=32, interval=4, kimg=500)
    delta = 32 * 4 / 500_000
    assert ada.step() is None and float(pipe.p) == 0                    # nothing reported yet: no change
    stats.report("Loss/signs/real", torch.tensor([1.0, 1.0, 1.0, -1.0]))   # r_t = 0.5 < 0.6
    assert ada.step() == 0.5 and float(pipe.p) == 0                      # clamped at 0
    stats.report("Loss/signs/real", torch.ones(6))
    stats.report("Loss/signs/real", torch.tensor([1.0, -1.0]))           # r_t = 6/8, over two reports
    assert ada.step() == pytest.approx(0.75) and float(pipe.p) == pytest.approx(delta, rel=1e-6)
    assert ada.step() == pytest.approx(0.75) and float(pipe.p) == pytest.approx(2 * delta, rel=1e-6)  # kept r_t
    still = AdaController(_pipe(0.5), target=0.0, batch_size=32)
    stats.report("Loss/signs/real", torch.tensor([1.0, -1.0]))           # r_t == target: sign 0, no move
    assert still.step() == 0.0 and float(still.pipe.p) == 0.5


def test_ada_clamp_to_one_and_nvlabs_compat():
    for clamp, expected in ((True, 1.0), (False, 1.0 + 32 * 4 / 500_000 - 1e-6)):
        pipe = _pipe(1.0 - 1e-6)
        ada = AdaController(pipe, target=0.6, batch_size=32, kimg=500, clamp_max=clamp)
        stats.report("Loss/signs/real", torch.ones(3))
        ada.step()
        assert float(pipe.p) == pytest.approx(expected, abs=1e-6)


def test_ada_state_keeps_pending_signs():
    a = AdaController(_pipe(0.5), target=0.6, batch_size=8, kimg=1)
    stats.report("Loss/signs/real", torch.tensor([1.0, -1.0, -1.0]))
    a.gather()
    state = a.state_dict()
    b = AdaController(_pipe(), target=0.6, batch_size=8, kimg=1)
    b.load_state_dict(state)
    assert b.step() == pytest.approx(-1 / 3) and float(b.pipe.p) == pytest.approx(0.5 - 8 * 4 / 1000)


@pytest.mark.parametrize("side,expected", [(1024, (7, 4)), (512, (15, 8)), (256, (30, 16)), (128, (32, 32)),
                                           (16, (32, 32))])
def test_grid_size(side, expected):
    assert grid_size(side, side) == expected


def test_to_grid_layout_and_pixels(tmp_path):
    gw, gh = 3, 2
    imgs = np.stack([np.full([1, 2, 2], v, np.float32) for v in np.linspace(-1, 1, gw * gh)])
    arr = to_grid(imgs, [-1, 1], (gw, gh))
    assert arr.shape == (2 * gh, 2 * gw, 1)
    for i in range(gw * gh):
        block = arr[(i // gw) * 2:(i // gw) * 2 + 2, (i % gw) * 2:(i % gw) * 2 + 2]
        want = np.clip(np.rint((imgs[i, 0, 0, 0] + 1) * 255 / 2), 0, 255)
        assert (block == want).all()
    assert to_grid(np.full([1, 3, 1, 1], 2.0), [-1, 1], (1, 1)).max() == 255          # clipped
    from PIL import Image

    save_image_grid(np.zeros([6, 3, 4, 4]), tmp_path / "rgb.png", [0, 255], (3, 2))
    save_image_grid(np.zeros([6, 1, 4, 4]), tmp_path / "l.png", [0, 255], (3, 2))
    assert Image.open(tmp_path / "rgb.png").mode == "RGB" and Image.open(tmp_path / "l.png").mode == "L"
    assert Image.open(tmp_path / "rgb.png").size == (12, 8)
    with pytest.raises(ValueError, match="channels"):
        to_grid(np.zeros([6, 2, 4, 4]), [0, 1], (3, 2))
    with pytest.raises(ValueError, match="gw"):
        to_grid(np.zeros([5, 3, 4, 4]), [0, 1], (3, 2))


def test_time_format_and_status_line():
    assert [format_time(s) for s in (0, 59.4, 59.6, 3599, 3600, 86399, 90061)] == \
        ["0s", "59s", "1m 00s", "59m 59s", "1h 00m 00s", "23h 59m 59s", "1d 01h 01m"]
    line = status_line(3, 12.34, 125, 10.26, 1.234, 0.5, 1.5, 0, 0, 0.123)
    assert line.startswith("tick 3     kimg 12.3     time 2m 05s       sec/tick 10.3    sec/kimg 1.23    ")
    assert line.endswith("augment 0.123")


# ----------------------------------------------------------------------------------------- the loop
class Recorder(Callback):
    def __init__(self):
        self.calls, self.ticks, self.snapshots, self.ema_equal_after_first = [], [], [], None

    def on_batch(self, trainer, images, labels):
        if trainer.step == 0:
            inner = trainer.loss.accumulate_gradients

            def spy(phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
                self.calls.append((trainer.step, phase, real_img.shape[0], gen_z.shape[0], gain, cur_nimg))
                return inner(phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg)
            trainer.loss.accumulate_gradients = spy

    def on_step(self, trainer):
        if trainer.step == 1:
            self.ema_equal_after_first = all(torch.equal(a, b) for a, b in zip(trainer.G.parameters(),
                                                                                 trainer.G_ema.parameters()))

    def on_tick(self, trainer, tick_stats):
        self.ticks.append(dict(tick_stats))

    def on_snapshot(self, trainer, files):
        self.snapshots.append(list(files))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_zip):
    tmp = tmp_path_factory.mktemp("run")
    rec = Recorder()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASTGAN_CACHE_DIR", str(tmp / "cache"))
        mp.delenv("FASTGAN_INCEPTION_WEIGHTS", raising=False)
        cfg = tiny_config(tmp, tiny_zip, kimg=0.016, tick=0.008, batch_gpu=2, aug="ada", metrics="fid50k_full",
                          export_nvlabs_state=True, keep_checkpoints=2)
        trainer = Trainer(cfg, [rec])
        run_dir = trainer.fit()
    return trainer, rec, run_dir


def test_phases_rounds_and_gains(tiny_run):
    _, rec, _ = tiny_run
    step0 = [(ph, rb, zb, gain) for s, ph, rb, zb, gain, _ in rec.calls if s == 0]
    assert step0 == [("Gmain", 2, 2, 1)] * 2 + [("Greg", 2, 2, 4)] * 2 + [("Dmain", 2, 2, 1)] * 2 + \
        [("Dreg", 2, 2, 16)] * 2
    step1 = [(ph, cur) for s, ph, _, _, _, cur in rec.calls if s == 1]
    assert step1 == [("Gmain", 4)] * 2 + [("Dmain", 4)] * 2          # reg phases skipped; cur_nimg at step start
    assert rec.ema_equal_after_first is True                         # ramp-up: β = 0 at cur_nimg = 0


def test_run_directory_outputs(tiny_run):
    trainer, rec, run_dir = tiny_run
    from PIL import Image

    opts = json.loads((run_dir / "training_options.json").read_text())
    for key in ("G_kwargs", "D_kwargs", "G_opt_kwargs", "D_opt_kwargs", "loss_kwargs", "augment_kwargs",
                "training_set_kwargs", "batch_size", "batch_gpu", "ema_kimg", "total_kimg", "random_seed"):
        assert key in opts
    assert (opts["batch_size"], opts["batch_gpu"]) == (4, 2)
    log = (run_dir / "log.txt").read_text()
    assert "tick 0     kimg 0.0" in log and "progress: kimg" in log
    assert "Metrics fid50k_full disabled" in log                      # no Inception weights offline
    lines = [json.loads(x) for x in (run_dir / "stats.jsonl").read_text().splitlines()]
    assert len(lines) == len(rec.ticks) == 3                          # ticks after steps 1, 3 and 4
    for i, line in enumerate(lines):
        assert line["Progress/tick"]["mean"] == i and "timestamp" in line
        assert list(line)[-1] == "timestamp"
    first = lines[0]
    for key in ("Loss/scores/fake", "Loss/signs/fake", "Loss/G/loss", "Loss/pl_penalty", "Loss/G/reg",
                "Loss/scores/real", "Loss/signs/real", "Loss/D/loss", "Loss/r1_penalty", "Loss/D/reg",
                "Progress/kimg", "Progress/augment", "Timing/total_sec", "Timing/sec_per_kimg",
                "Resources/cpu_mem_gb", "Timing/Gmain", "Timing/Dreg", "Progress/nonfinite_grads"):
        assert key in first, key
    assert first["Loss/G/loss"]["num"] == 4 and first["Progress/kimg"]["mean"] == pytest.approx(0.004)
    assert lines[-1]["Progress/kimg"]["mean"] == pytest.approx(0.016)
    assert Image.open(run_dir / "reals.png").size == (64, 32)         # 4x2 grid of 16x16
    assert (run_dir / "fakes_init.png").is_file() and (run_dir / "fakes000000.png").is_file()


def test_snapshots_and_checkpoints(tiny_run):
    trainer, rec, run_dir = tiny_run
    import fastgan
    from fastgan.train.checkpoint import list_checkpoints, load_checkpoint

    assert len(rec.snapshots) == 3 and any(p.name.endswith("G_ema.safetensors") for p in rec.snapshots[-1])
    G_ema = fastgan.load_network(run_dir / "network-snapshot-000000-G_ema.safetensors")
    for k, v in G_ema.state_dict().items():
        assert torch.equal(v, trainer.G_ema.state_dict()[k]), k
    exported = torch.load(run_dir / "network-snapshot-000000.pt", weights_only=True)
    assert set(exported) == {"G", "D", "G_ema"}
    assert torch.equal(exported["D"]["b4.out.weight"], trainer.D.state_dict()["b4.out.weight"])
    manifest = json.loads((run_dir / "network-snapshot-000000.json").read_text())
    assert manifest["cur_nimg"] == 16 and manifest["augment_pipe"]["p"] == pytest.approx(float(trainer.augment_pipe.p))
    ckpts = list_checkpoints(run_dir)
    assert [p.name for p in ckpts] == ["ckpt-000000003.pt", "ckpt-000000004.pt"]   # keep_checkpoints=2
    state = load_checkpoint(ckpts[-1])
    assert state["counters"]["cur_nimg"] == 16 and state["counters"]["step"] == 4
    assert set(state["optimizers"]) == {"G_opt", "D_opt"} and len(state["ranks"]) == 1
    assert set(state["ranks"][0]) >= {"rng", "sampler", "loss", "G_buffers"}
    assert float(state["augment_p"]) == float(trainer.augment_pipe.p)


def test_worker_processes_feed_the_same_batches(tmp_path, tiny_zip):
    runs = [Trainer(tiny_config(tmp_path, tiny_zip, workers=w, kimg=0.012)) for w in (0, 2)]
    for t in runs:
        t.fit()
    for a, b in zip(runs[0].G.state_dict().values(), runs[1].G.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.cpu_ext
@pytest.mark.parametrize("workers", [0, 2])
def test_host_cache_arena_covers_the_steps_and_changes_no_result(tmp_path, tiny_zip, workers):
    """``host_cache=True``: the steps run inside the arena (with forked loader workers too), the allocator
    is torch's again after the run, and the networks end bitwise equal to a run without it."""
    from fastgan.backends import host_cache

    if not host_cache.available():
        pytest.skip("the cpu extension (fastgan._C) is not built")
    seen = []

    class Probe(Callback):
        def on_step(self, trainer):
            seen.append(host_cache.stats()["installed"])

    runs = [Trainer(tiny_config(tmp_path, tiny_zip, kimg=0.012, host_cache=on, workers=workers), [Probe()])
            for on in (False, True)]
    for t in runs:
        t.fit()
    assert seen == [False] * 3 + [True] * 3 and not host_cache.stats()["installed"]
    for a, b in zip(runs[0].G.state_dict().values(), runs[1].G.state_dict().values()):
        assert torch.equal(a, b)


def test_freeze_d_layers_are_buffers_and_never_change(tmp_path, tiny_zip):
    class Capture(Callback):
        def on_batch(self, trainer, images, labels):
            if trainer.step == 0:
                self.before = tensors(trainer.D)

    cap = Capture()
    trainer = Trainer(tiny_config(tmp_path, tiny_zip, freezed=2, kimg=0.008), [cap])
    trainer.fit()
    params, buffers = dict(trainer.D.named_parameters()), dict(trainer.D.named_buffers())
    for name in ("b16.fromrgb.weight", "b16.fromrgb.bias", "b16.conv0.weight"):   # layers 0 and 1
        assert name in buffers and name not in params
        assert torch.equal(buffers[name], cap.before[name])
    assert "b16.conv1.weight" in params and not torch.equal(params["b16.conv1.weight"], cap.before["b16.conv1.weight"])


def test_transfer_start_copies_networks_by_name(tmp_path, tiny_zip, tiny_run):
    _, _, src_dir = tiny_run

    class Capture(Callback):
        def on_batch(self, trainer, images, labels):
            if trainer.step == 0:
                self.start = {k: tensors(getattr(trainer, k)) for k in ("G", "D", "G_ema")}

    from nvlabs_pickle import snapshot_bytes

    from fastgan.train.build import build_networks

    torch.manual_seed(5)                                 # an NVlabs-format pickle of other random networks
    G, D, _ = build_networks(resolve_config(tiny_config(tmp_path, tiny_zip)), torch.device("cpu"))
    (tmp_path / "nvlabs.pkl").write_bytes(snapshot_bytes(G, D, G.init_kwargs, D.init_kwargs))
    nvlabs = {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G.state_dict()}
    saved = torch.load(src_dir / "network-snapshot-000000.pt", weights_only=True)
    from fastgan.train.checkpoint import latest_checkpoint, load_checkpoint

    ckpt = latest_checkpoint(src_dir)                    # a checkpoint copied out of its run: a warm start
    (tmp_path / "warm.pt").write_bytes(ckpt.read_bytes())
    for source, expected in ((src_dir / "network-snapshot-000000.json", saved),
                             (src_dir / "network-snapshot-000000.pt", saved), (tmp_path / "nvlabs.pkl", nvlabs),
                             (tmp_path / "warm.pt", load_checkpoint(ckpt))):
        cap = Capture()
        trainer = Trainer(tiny_config(tmp_path, tiny_zip, resume=str(source), kimg=0.004), [cap])
        trainer.fit()
        assert trainer.rc.ada_kimg == 100 and trainer.rc.ema_rampup is None
        for key in ("G", "D", "G_ema"):
            for name, value in expected[key].items():
                assert torch.equal(cap.start[key][name], value), (source.name, key, name)


class _TinyDetector(torch.nn.Module):
    """An NVlabs-style TorchScript detector stand-in: per-channel mean and std of the uint8 image."""

    def forward(self, x: torch.Tensor, return_features: bool = False, no_output_bias: bool = False):
        x = x.float() / 255
        return torch.cat([x.mean(dim=[2, 3]), x.std(dim=[2, 3])], dim=1)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")         # torch.jit, the NVlabs detector format
def test_metrics_at_snapshots_and_best_value(tmp_path, tiny_zip, monkeypatch):
    det = tmp_path / "detector.pt"
    torch.jit.save(torch.jit.script(_TinyDetector()), str(det))
    monkeypatch.setenv("FASTGAN_CACHE_DIR", str(tmp_path / "cache"))
    cfg = tiny_config(tmp_path, tiny_zip, metrics="fid50k_full", metrics_detector=str(det), metrics_num_gen=8)
    run_dir = Trainer(cfg).fit()                                      # snapshots at kimg 0 (tick 0) and the end
    lines = [json.loads(x) for x in (run_dir / "metric-fid50k_full.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert set(line) == {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl",
                             "timestamp"}
        assert line["metric"] == "fid50k_full" and line["num_gpus"] == 1
        assert line["snapshot_pkl"] == "network-snapshot-000000.json" and line["results"]["fid50k_full"] >= 0
    best = json.loads((run_dir / "best.json").read_text())
    assert best["metric"] == "fid50k_full"
    assert best["value"] == min(line["results"]["fid50k_full"] for line in lines)


# ---------------------------------------------------------------------------------------- safety
def _finite(module):
    return all(bool(torch.isfinite(t).all()) for t in tensors(module).values())


def test_poisoned_parameter_rolls_back_to_last_good_checkpoint(tmp_path, tiny_zip):
    from fastgan.train.checkpoint import list_checkpoints, load_checkpoint

    class Poison(Callback):
        done = False

        def on_step(self, trainer):
            if trainer.step == 3 and not self.done:
                self.done = True
                with torch.no_grad():
                    trainer.G.mapping.fc0.weight.fill_(float("nan"))

    cfg = tiny_config(tmp_path, tiny_zip, kimg=0.024, checkpoint_every_steps=2, max_bad_steps=2, tick=1.0)
    trainer = Trainer(cfg, [Poison()])
    run_dir = trainer.fit()
    assert trainer.rollbacks == 1 and trainer.total_bad_steps == 2 and trainer.step == 6
    assert _finite(trainer.G) and _finite(trainer.D) and _finite(trainer.G_ema)
    log = (run_dir / "log.txt").read_text()
    assert "rolling back to" in log and "ckpt-000000002.pt" in log
    assert "non-finite values; checkpoint not written" in log          # step 4 was poisoned
    for path in list_checkpoints(run_dir):
        state = load_checkpoint(path)
        assert all(bool(torch.isfinite(v).all()) for k in ("G", "D", "G_ema") for v in state[k].values()
                   if v.is_floating_point())


def test_rollback_without_checkpoint_is_a_clear_error(tmp_path, tiny_zip):
    class Poison(Callback):
        def on_step(self, trainer):
            with torch.no_grad():
                trainer.D.b4.out.weight.fill_(float("inf"))

    cfg = tiny_config(tmp_path, tiny_zip, kimg=0.04, checkpoint_every_steps=100, max_bad_steps=2, tick=1.0)
    trainer = Trainer(cfg, [Poison()])
    with pytest.raises(RuntimeError, match="no checkpoint to roll back to"):
        trainer.fit()


@pytest.mark.parametrize("compat", ["fastgan", "nvlabs"])
def test_nan_batch_skips_the_d_step(tmp_path, tiny_zip, compat):
    def adam_steps(trainer):
        opt = next(ph.opt for ph in trainer.phases if ph.name == "Dmain")
        return [int(s["step"]) for s in opt.state.values()]

    class Poison(Callback):
        def on_batch(self, trainer, images, labels):
            if trainer.step == 1:
                self.d_before, self.steps_before = tensors(trainer.D), adam_steps(trainer)
                return torch.full(images.shape, float("nan")), labels
            return None

        def on_step(self, trainer):
            if trainer.step == 2:
                self.d_after, self.steps_after = tensors(trainer.D), adam_steps(trainer)

    poison = Poison()
    trainer = Trainer(tiny_config(tmp_path, tiny_zip, kimg=0.012, compat=compat), [poison])
    trainer.fit()
    # every D gradient is NaN; fastgan skips the step, NVlabs substitutes 0 and steps (Adam, beta1 = 0:
    # a zero gradient moves nothing), so D is unchanged either way but Adam's step count differs
    assert all(torch.equal(poison.d_before[k], poison.d_after[k]) for k in poison.d_before)
    taken = {a - b for a, b in zip(poison.steps_after, poison.steps_before)}
    assert taken == ({0} if compat == "fastgan" else {1})
    assert trainer.total_bad_steps == 1 and trainer.rollbacks == 0
    assert _finite(trainer.D) and _finite(trainer.G)


def test_wgan_clips_d_and_diffaug_runs(tmp_path, tiny_zip):
    trainer = Trainer(tiny_config(tmp_path, tiny_zip, loss="wgan", aug="diffaug", kimg=0.008))
    trainer.fit()
    assert max(float(p.abs().max()) for p in trainer.D.parameters()) <= 0.01
    assert trainer.augment_pipe is not None


def test_dry_run_prints_options_and_trains_nothing(tmp_path, tiny_zip, capsys):
    assert Trainer(tiny_config(tmp_path, tiny_zip, dry_run=True)).fit() is None
    out = capsys.readouterr().out
    assert '"G_kwargs"' in out and "Dry run" in out
    assert not (tmp_path / "runs").exists()
    with pytest.raises(TypeError, match="TrainConfig"):
        Trainer({"data": "x"})
