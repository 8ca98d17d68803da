"""Training-state checkpoints: atomic writes, retention, discovery, and an exact (bitwise) continuation of a run
that is killed with SIGKILL at random points, including in the middle of a checkpoint write."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fastgan.train.checkpoint import (DELAY_ENV, decode_state, encode_state, find_run_with_checkpoints,
                                      is_checkpoint_source, latest_checkpoint, list_checkpoints, load_checkpoint,
                                      remove_stale_temps, write_checkpoint)
from fastgan.train.config import TrainConfig
from fastgan.train.trainer import plan_run
from test_trainer import write_tiny_zip


def test_numpy_state_roundtrip_through_weights_only_load(tmp_path):
    np.random.seed(7)
    state = {"numpy": np.random.get_state(), "arr": np.arange(6, dtype=np.uint32).reshape(2, 3), "x": np.float64(2)}
    path = write_checkpoint(state, tmp_path, 0)
    back = load_checkpoint(path)                                   # torch.load(weights_only=True) inside
    assert back["arr"].dtype == np.uint32 and (back["arr"] == state["arr"]).all() and back["x"] == 2.0
    expected = np.random.rand(3)
    np.random.set_state(tuple(back["numpy"]))
    assert (np.random.rand(3) == expected).all()
    assert decode_state(encode_state([1, (2, "a")])) == [1, (2, "a")]


def test_retention_atomicity_and_corrupt_files(tmp_path, monkeypatch):
    for step in (1, 2, 3, 4):
        write_checkpoint({"step": step, "t": torch.full([3], float(step))}, tmp_path, step, keep=2)
    names = [p.name for p in list_checkpoints(tmp_path)]
    assert names == ["ckpt-000000003.pt", "ckpt-000000004.pt"]
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 4
    # a failing write leaves neither a checkpoint nor a temporary file behind
    with pytest.raises(Exception):
        write_checkpoint({"bad": lambda: 0}, tmp_path, 5)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == names
    # the test hook sleeps mid-write; the result is still complete
    monkeypatch.setenv(DELAY_ENV, "0.01")
    write_checkpoint({"step": 6}, tmp_path, 6, keep=5)
    monkeypatch.delenv(DELAY_ENV)
    assert load_checkpoint(list_checkpoints(tmp_path)[-1])["step"] == 6
    # a truncated newest file (e.g. a disk error) is skipped in favour of the previous one
    corrupt = tmp_path / "checkpoints" / "ckpt-000000009.pt"
    corrupt.write_bytes(b"PK\x03\x04 truncated")
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        assert latest_checkpoint(tmp_path).name == "ckpt-000000006.pt"
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a fastgan training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    stale = tmp_path / "checkpoints" / ".ckpt-abc.tmp"
    stale.write_bytes(b"partial")
    assert remove_stale_temps(tmp_path) == [stale] and not stale.exists()
    with pytest.raises(ValueError, match="keep"):
        write_checkpoint({}, tmp_path, 7, keep=0)


def test_run_discovery(tmp_path):
    out = tmp_path / "runs"
    for name, step in (("00000-a", 1), ("00002-c", 5)):
        write_checkpoint({"s": step}, out / name, step)
    (out / "00003-b").mkdir()
    assert find_run_with_checkpoints(out) == out / "00002-c"
    cfg = TrainConfig(outdir=str(out), data="x.zip", resume="latest")
    assert plan_run(cfg, "desc") == (out / "00002-c", out / "00002-c" / "checkpoints" / "ckpt-000000005.pt")
    assert plan_run(cfg.replace(resume=None), "desc") == (out / "00004-desc", None)
    ckpt = out / "00000-a" / "checkpoints" / "ckpt-000000001.pt"
    assert is_checkpoint_source(ckpt) and is_checkpoint_source(out / "00000-a")
    assert not is_checkpoint_source(out / "00003-b")
    assert plan_run(cfg.replace(resume=str(ckpt)), "desc") == (out / "00000-a", ckpt)
    assert plan_run(cfg.replace(resume=None, run_dir=str(out / "00003-b")), "desc") == (out / "00003-b", None)
    empty = tmp_path / "empty"
    assert plan_run(TrainConfig(outdir=str(empty), data="x.zip", resume="latest"), "d") == (empty / "00000-d", None)


# ------------------------------------------------------------------------------- kill and resume
_SCRIPT = ("import sys, torch; torch.set_num_threads(1); from fastgan.train import TrainConfig, Trainer; "
           "Trainer(TrainConfig.from_json(sys.argv[1])).fit()")


def _start(cfg: TrainConfig, delay: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(DELAY_ENV, None)
    if delay:
        env[DELAY_ENV] = str(delay)
    return subprocess.Popen([sys.executable, "-c", _SCRIPT, cfg.to_json()], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 180.0) -> bool:
    """Poll until ``predicate()``; False if the process ended first."""
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the training process")


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()


def _temps(run_dir: Path):
    d = run_dir / "checkpoints"
    return [p for p in d.iterdir() if p.name.endswith(".tmp")] if d.is_dir() else []


def _log_text(run_dir: Path) -> str:
    path = run_dir / "log.txt"
    return path.read_text() if path.exists() else ""


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def test_sigkilled_run_resumes_bitwise(tmp_path):
    """A run killed with SIGKILL three times (once while a checkpoint is half written) and restarted with
    ``resume='latest'`` ends with exactly the parameters, buffers, optimizer states, ADA state, loss state,
    sampler and RNG states of an uninterrupted run of the same length.

    The run is conditional (labels drawn from the numpy RNG), augmented (ADA, torch RNG), accumulates over
    2 rounds and checkpoints every 2 of its 12 steps, so every piece of state matters."""
    data = write_tiny_zip(tmp_path / "labelled.zip", n=12, classes=3)
    base = TrainConfig(outdir=str(tmp_path / "runs"), data=str(data), cfg="tiny", cond=True, aug="ada",
                       batch_gpu=2, kimg=0.048, tick=0.012, snap=100, metrics="none", workers=0, grid="4x2",
                       checkpoint_every_steps=2, keep_checkpoints=2, resume="latest")
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    ref = _start(base.replace(run_dir=str(ref_dir)))
    cfg = base.replace(run_dir=str(run_dir))
    rng = random.Random(1234)

    # 1: killed at a random moment after its first checkpoint
    proc = _start(cfg)
    if _wait_for(lambda: list_checkpoints(run_dir), proc):
        time.sleep(rng.uniform(0.0, 0.5))
    _kill(proc)
    # 2: killed while a checkpoint is half written (the writer sleeps after its first chunk)
    proc = _start(cfg, delay=60)
    before = [p.name for p in list_checkpoints(run_dir)]
    mid_write = _wait_for(lambda: any(p.stat().st_size > 0 for p in _temps(run_dir)), proc)
    _kill(proc)
    assert mid_write, "the second run finished without writing a checkpoint"
    assert [p.name for p in list_checkpoints(run_dir)] == before           # the interrupted write left no file
    assert _temps(run_dir)
    # 3: killed at a random moment in its first steps (between checkpoints)
    starts = _log_text(run_dir).count("Training from")
    proc = _start(cfg)
    if _wait_for(lambda: _log_text(run_dir).count("Training from") > starts, proc):
        time.sleep(rng.uniform(0.0, 0.6))
    _kill(proc)
    # 4: runs to the end
    final = _start(cfg)
    assert final.wait(timeout=300) == 0, final.stderr.read().decode()[-3000:]
    assert ref.wait(timeout=300) == 0, ref.stderr.read().decode()[-3000:]

    assert not _temps(run_dir)
    a, b = load_checkpoint(latest_checkpoint(ref_dir)), load_checkpoint(latest_checkpoint(run_dir))
    assert a["counters"]["step"] == b["counters"]["step"] == 12
    for key in ("G", "D", "G_ema", "optimizers", "augment_p", "ada", "ranks"):
        _assert_same(a[key], b[key], key)
    assert _log_text(run_dir).count("continuing from") == 3
    assert json.loads((run_dir / "training_options.json").read_text())["batch_gpu"] == 2
