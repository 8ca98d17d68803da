"""Model families, the trainer's plug-in point: the registry, the DCGAN family's recipe and errors, a DCGAN
run on the shared loop (it learns something, checkpoints and continues bitwise), and a family registered
from outside whose builders the trainer really calls."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from fastgan.train import families
from fastgan.train.config import TrainConfig, cfg_names, resolve_config
from fastgan.train.trainer import Callback, Trainer
from test_trainer import FakeDataset, tensors, write_tiny_zip

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def zip16(tmp_path_factory):
    return write_tiny_zip(tmp_path_factory.mktemp("data") / "tiny16.zip")


def dcgan_config(tmp, data, **kw) -> TrainConfig:
    base = dict(outdir=str(tmp / "runs"), data=str(data), cfg="dcgan", batch=4, cbase=64, cmax=16, kimg=0.024,
                tick=0.008, snap=1, metrics="none", workers=0, grid="2x2", aug="noaug")
    base.update(kw)
    return TrainConfig(**base)


def test_registry():
    assert {"auto", "stylegan2", "stylegan3-t", "tiny", "dcgan"} <= set(cfg_names())
    assert families.family_of("paper256").name == "stylegan" and families.family_of("dcgan").name == "dcgan"
    with pytest.raises(ValueError, match="unknown cfg 'nope'; expected one of auto,"):
        families.family_of("nope")
    with pytest.raises(ValueError, match=r"cfg \['dcgan'\] already belongs to family 'dcgan'"):
        families.register_family(families.Family("other", ("dcgan",), families.stylegan.recipe))
    with pytest.raises(TypeError, match="expected a Family"):
        families.register_family("dcgan")
    with pytest.raises(ValueError, match="unknown cfg"):
        resolve_config(TrainConfig(data="x.zip", cfg="nope"), dataset=FakeDataset(16))


def test_dcgan_recipe():
    rc = resolve_config(TrainConfig(data="x.zip", cfg="dcgan", gpus=2), dataset=FakeDataset(64))
    assert rc.G_kwargs == {"class_name": "fastgan.nets.dcgan.Generator", "z_dim": 100, "channel_base": 2048,
                           "channel_max": 512}
    assert rc.D_kwargs["class_name"] == "fastgan.nets.dcgan.Discriminator"
    assert (rc.batch_size, rc.batch_gpu, rc.G_reg_interval, rc.D_reg_interval) == (64, 32, None, None)
    for opt in (rc.G_opt_kwargs, rc.D_opt_kwargs):
        assert opt["lr"] == 2e-4 and opt["betas"] == [0.5, 0.999]
    assert rc.loss_kwargs["r1_gamma"] == 0 and rc.loss_kwargs["pl_weight"] == 0 and rc.ema_kimg == 0
    assert rc.desc.startswith("dcgan-fake-gpus2-batch64-gamma0")


@pytest.mark.parametrize("kw, res, match", [
    (dict(map_depth=2), 64, "map_depth: cfg 'dcgan' has no mapping network"),
    (dict(mbstd_group=4), 64, "mbstd_group: cfg 'dcgan' has no"),
    (dict(pl_weight=1.0), 64, "pl_weight: cfg 'dcgan' has no"),
    (dict(style_mixing=0.5), 64, "style_mixing: cfg 'dcgan' has no"),
    (dict(freezed=2), 64, "freezed: Freeze-D"),
    (dict(precision="bf16"), 64, "precision: cfg 'dcgan' trains in float32"),
    (dict(), 4, "data: cfg 'dcgan' needs a square power-of-two resolution >= 8"),
])
def test_dcgan_option_errors(kw, res, match):
    with pytest.raises(ValueError, match=match):
        resolve_config(TrainConfig(data="x.zip", cfg="dcgan", **kw), dataset=FakeDataset(res))


def test_dcgan_refuses_labels(tmp_path):
    data = write_tiny_zip(tmp_path / "labelled.zip", classes=3)
    with pytest.raises(ValueError, match="cond: cfg 'dcgan' trains unconditional models"):
        resolve_config(dcgan_config(tmp_path, data, cond=True))


def test_dcgan_trains_checkpoints_and_continues_bitwise(tmp_path, zip16):
    """6 steps at once equal 3 steps, a new process-level start, then 3 more (the run directory is continued)."""
    full = Trainer(dcgan_config(tmp_path / "a", zip16))
    start = None

    class First(Callback):
        def on_step(self, trainer):
            nonlocal start
            if start is None:
                start = tensors(trainer.G)

    full.callbacks.append(First())
    full.fit()
    assert [p.name for p in full.phases] == ["Gboth", "Dboth"] and full.step == 6
    end = tensors(full.G)
    assert any(not torch.equal(start[k], end[k]) for k in end)
    assert all(torch.isfinite(v).all() for v in end.values())
    assert (full.run_dir / "fakes000000.png").exists() and (full.run_dir / "stats.jsonl").exists()

    half = Trainer(dcgan_config(tmp_path / "b", zip16, kimg=0.012))
    half.fit()
    resumed = Trainer(dcgan_config(tmp_path / "b", zip16, run_dir=str(half.run_dir)))
    resumed.fit()
    assert resumed.step == 6
    for name, net in (("G", "G"), ("D", "D"), ("G_ema", "G_ema")):
        a, b = tensors(getattr(full, net)), tensors(getattr(resumed, net))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_family_registered_from_outside_is_what_the_trainer_runs(tmp_path, zip16, monkeypatch):
    """A plug-in family: its cfg name is accepted, its recipe and every builder are the ones called."""
    calls = []

    def traced(name, fn):
        def run(*args, **kwargs):
            calls.append(name)
            return fn(*args, **kwargs)
        return run

    base = families.family_of("dcgan")
    toy = families.Family("toy", ("toy",), recipe=traced("recipe", base.recipe),
                          dataset=traced("dataset", base.dataset),
                          build_networks=traced("networks", base.build_networks),
                          build_augment_pipe=traced("augment", base.build_augment_pipe),
                          build_loss=traced("loss", base.build_loss), build_phases=traced("phases", base.build_phases))
    monkeypatch.setitem(families._FAMILIES, "toy", toy)
    assert "toy" in cfg_names()
    trainer = Trainer(dataclasses.replace(dcgan_config(tmp_path, zip16), cfg="toy", kimg=0.004))
    trainer.fit()
    assert trainer.step == 1 and trainer.family is toy
    assert {"recipe", "dataset", "networks", "augment", "loss", "phases"} <= set(calls)
    monkeypatch.delitem(families._FAMILIES, "toy")
    assert "toy" not in cfg_names()


def test_the_shared_loss_refuses_styles_for_a_plain_generator():
    from fastgan.nets import dcgan
    from fastgan.train.loss import StyleGAN2Loss

    G, D = dcgan.Generator(img_resolution=8, channel_base=32, channel_max=8), dcgan.Discriminator(img_resolution=8)
    for kw in (dict(pl_weight=1.0), dict(style_mixing_prob=0.5)):
        with pytest.raises(ValueError, match="need a G with mapping and synthesis networks; Generator has none"):
            StyleGAN2Loss("cpu", G, D, **kw)
