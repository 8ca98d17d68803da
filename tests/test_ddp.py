"""Multi-process training on CPU (gloo): 2 ranks match 1 rank, 2 torchrun "nodes" train and checkpoint, and a
hung rank ends the run with a clear error instead of hanging it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgan.train.checkpoint import latest_checkpoint, load_checkpoint
from fastgan.train.config import TrainConfig
from fastgan.train.distributed import free_port
from fastgan.train.trainer import Callback, Trainer
from test_trainer import write_tiny_zip

pytestmark = [pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in"),
              pytest.mark.usefixtures("one_torch_thread")]


class SharedLatentTrainer(Trainer):
    """Draws each step's latents from a generator seeded by the step alone and gives rank r the r-th slice
    of every phase block, so the union over ranks is exactly the single-process batch."""

    def generator_inputs(self):
        rc, env = self.rc, self.env
        n = len(self.phases) * rc.batch_size
        z = torch.randn([n, self.G.z_dim], generator=torch.Generator().manual_seed(1000 + self.step))
        share = rc.batch_size // env.world_size
        blocks = [blk[env.rank * share:(env.rank + 1) * share] for blk in z.to(env.device).split(rc.batch_size)]
        zs = [list(blk.split(rc.batch_gpu)) for blk in blocks]
        cs = [[torch.zeros([len(chunk), 0], device=env.device) for chunk in blk] for blk in zs]
        return zs, cs


def test_two_ranks_match_one_rank(tmp_path):
    """2 gloo ranks with 2 images each end with the same parameters as 1 rank with the 4 images.

    Why this comparison is meaningful: the reals of one step are the same 4 stream items either way (the
    sampler's shared stream is strided over ranks); the latents are the same 4 per phase
    (``SharedLatentTrainer``); nothing couples samples inside a batch (minibatch-std group 1, no path-length
    term, whose batch and running mean are per rank) or draws per-rank randomness that changes the result
    (no augmentation, no style mixing, no noise inputs). Each rank's loss is the mean over its 2 samples, the
    all-reduce averages the 2 ranks, so the gradient equals the 1-rank mean over 4 up to float rounding, and
    Adam/EMA are identical functions of it. ``mapping.w_avg`` is a per-rank running mean of the rank's own
    batch (NVlabs semantics), so it is excluded."""
    data = write_tiny_zip(tmp_path / "tiny.zip", n=16)
    base = TrainConfig(outdir=str(tmp_path / "runs"), data=str(data), cfg="tiny", batch=4, mbstd_group=1,
                       aug="noaug", style_mixing=0.0, pl_weight=0.0, g_kwargs={"use_noise": False}, kimg=0.024,
                       tick=1.0, snap=100, metrics="none", workers=0, grid="4x2", dist_timeout=120)
    one = SharedLatentTrainer(base.replace(run_dir=str(tmp_path / "one"))).fit()
    two = SharedLatentTrainer(base.replace(gpus=2, run_dir=str(tmp_path / "two"))).fit()
    a, b = load_checkpoint(latest_checkpoint(one)), load_checkpoint(latest_checkpoint(two))
    assert a["counters"]["step"] == b["counters"]["step"] == 6 and len(b["ranks"]) == 2
    for key in ("G", "D", "G_ema"):
        for name, value in a[key].items():
            if name.endswith("w_avg"):
                continue
            torch.testing.assert_close(b[key][name], value, rtol=1e-4, atol=2e-5, msg=f"{key}.{name}")
    # the per-rank states differ where they must (own RNG streams) and the data stream is shared
    assert not torch.equal(b["ranks"][0]["rng"]["torch"], b["ranks"][1]["rng"]["torch"])
    assert b["ranks"][0]["sampler"]["step"] == b["ranks"][1]["sampler"]["step"] == a["ranks"][0]["sampler"]["step"]


_NODE_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from fastgan.train import TrainConfig, Trainer
Trainer(TrainConfig.from_json(open(sys.argv[1]).read())).fit()
"""


def test_two_torchrun_nodes_train_and_checkpoint(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    data = write_tiny_zip(tmp_path / "tiny.zip", n=8)
    run_dir = tmp_path / "run"
    cfg = TrainConfig(outdir=str(tmp_path), run_dir=str(run_dir), data=str(data), cfg="tiny", gpus=2, batch=4,
                      kimg=0.012, tick=0.008, snap=1, metrics="none", workers=0, grid="4x2", aug="ada",
                      dist_timeout=120)
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    (tmp_path / "node.py").write_text(_NODE_SCRIPT)
    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([torchrun, "--nnodes", "2", "--node-rank", str(rank), "--master-addr", "127.0.0.1",
                               "--master-port", str(port), "--nproc-per-node", "1", str(tmp_path / "node.py"),
                               str(tmp_path / "cfg.json")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for rank in (0, 1)]
    try:
        outputs = [p.communicate(timeout=300)[0].decode(errors="replace") for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    state = load_checkpoint(latest_checkpoint(run_dir))
    assert state["world_size"] == 2 and len(state["ranks"]) == 2 and state["counters"]["step"] == 3
    log = (run_dir / "log.txt").read_text()
    assert "on 2 rank(s)" in log and "ranks disagree" not in log
    assert (run_dir / "network-snapshot-000000-G_ema.safetensors").is_file()
    assert all(np.isfinite(v.float().numpy()).all() for v in state["G"].values())


class HangOnRank1(Callback):
    def on_step(self, trainer):
        if trainer.env.rank == 1 and trainer.step == 2:
            time.sleep(120)


def test_hung_rank_ends_the_run_with_a_clear_error(tmp_path):
    data = write_tiny_zip(tmp_path / "tiny.zip", n=8)
    run_dir = tmp_path / "run"
    cfg = TrainConfig(outdir=str(tmp_path), run_dir=str(run_dir), data=str(data), cfg="tiny", gpus=2, batch=4,
                      kimg=0.04, tick=1.0, snap=100, metrics="none", workers=0, grid="4x2", aug="noaug",
                      dist_timeout=10)
    with pytest.raises(Exception):   # the rank-1 sleep outlasts the 10 s collective timeout
        Trainer(cfg, [HangOnRank1()]).fit()
    log = (run_dir / "log.txt").read_text()
    assert "rank 0/2: gradient all-reduce failed (another rank died, hung or diverged; timeout 10 s)" in log
