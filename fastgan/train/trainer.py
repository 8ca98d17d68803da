"""The training loop (training-spec §1): ``Trainer(config, callbacks=()).fit()``.

One step: fetch ``batch / gpus`` reals per rank, draw latents and labels for every phase, run the phases
(``Gmain, Greg, Dmain, Dreg`` or ``Gboth, Dmain, Dreg``; reg phases every I steps) with ``rounds``
accumulation rounds each, average the gradients over ranks, check them, step Adam, update G_ema, advance
the counters, move ADA's p every 4 steps, and do the tick maintenance (status line, image grid, network
snapshot, metrics, ``stats.jsonl``) when a tick ends.

Beyond NVlabs:

* **Exact resume.** A training-state checkpoint (``checkpoint.py``) is written at the end of every tick (or
  every ``checkpoint_every_steps`` steps) and at the end. It holds G, D, G_ema, both Adam states, the
  counters, ADA's p and pending statistics, every rank's ``pl_mean``, G buffers, RNG states (torch CPU and
  CUDA, numpy, python) and sampler position, and the config. ``resume='latest'``, ``resume=<run dir or
  checkpoint>`` or rerunning with ``run_dir`` set continues the run bit for bit.
* **Non-finite safety.** Gradients are checked after the all-reduce; a phase whose gradients hold NaN/Inf
  skips its optimizer step, and the step is counted as bad (``Progress/nonfinite_grads``,
  ``Progress/bad_steps``). ``max_bad_steps`` consecutive bad steps roll the run back to the newest
  checkpoint (at most ``max_rollbacks`` times). No checkpoint is written from a non-finite state. With
  ``compat='nvlabs'`` the NVlabs substitution (NaN->0, +-Inf->+-1e5) is applied and the step is taken.
* ADA's p stays in [0, 1] (``compat='nvlabs'``: lower bound only); ``Progress/rt`` logs r_t.

Accumulation sums the rounds' gradients (not averaged over rounds), as NVlabs does; see ``distributed.py``
for how ranks are synchronised.
"""
from __future__ import annotations

import contextlib
import json
import random
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import distributed as dist_utils
from . import stats
from .checkpoint import (find_run_with_checkpoints, is_checkpoint_source, latest_checkpoint, load_checkpoint,
                         remove_stale_temps, write_checkpoint)
from .config import TrainConfig, resolve_config
from .ema import ema_beta, update_ema
from .runlog import StatsWriter, Tee, cpu_rss_gb, progress_line, status_line

__all__ = ["Trainer", "Callback", "plan_run"]

# Options a continued run takes from the new invocation; everything else comes from the checkpoint.
CONTINUE_OVERRIDES = ("outdir", "data", "kimg", "tick", "snap", "metrics", "workers", "keep_checkpoints",
                      "checkpoint_every_steps", "max_bad_steps", "max_rollbacks", "export_nvlabs_state", "grid",
                      "metrics_detector", "metrics_num_gen", "dist_timeout", "device", "dry_run", "host_cache")


class Callback:
    """Training hooks; override any of them. They run on every rank.

    ``on_batch(trainer, images, labels)`` may return replacement ``(images, labels)`` for the step (uint8
    images [B/gpus, C, H, W], float32 labels); ``on_step(trainer)`` runs after each step's bookkeeping;
    ``on_tick(trainer, stats)`` after each tick (stats: the tick's ``{name: {num, mean, std}}``);
    ``on_snapshot(trainer, files)`` after a network snapshot (files written by rank 0, empty elsewhere).
    A callback may set ``trainer.stop_requested = True`` to end training after the current step.
    """

    def on_batch(self, trainer: "Trainer", images: torch.Tensor, labels: torch.Tensor):
        return None

    def on_step(self, trainer: "Trainer") -> None:
        pass

    def on_tick(self, trainer: "Trainer", stats: Dict[str, Dict[str, float]]) -> None:
        pass

    def on_snapshot(self, trainer: "Trainer", files: List[Path]) -> None:
        pass


def _new_run_dir(outdir: Path, desc: str) -> Path:
    ids = []
    if outdir.is_dir():
        for sub in outdir.iterdir():
            head = sub.name.split("-", 1)[0]
            if sub.is_dir() and head.isdigit():
                ids.append(int(head))
    return outdir / f"{max(ids, default=-1) + 1:05d}-{desc}"


def plan_run(cfg: TrainConfig, desc: str) -> Tuple[Path, Optional[Path]]:
    """``(run directory, checkpoint to continue from or None)`` for ``cfg``.

    ``resume`` = a run directory with checkpoints or a checkpoint file continues that run in its directory;
    ``run_dir`` set: that directory, continued if it holds checkpoints; ``resume='latest'``: the newest
    numbered run under ``outdir`` that holds checkpoints (a fresh run when there is none); otherwise a new
    ``<outdir>/<ID:05d>-<desc>``.
    """
    if cfg.resume not in (None, "latest") and is_checkpoint_source(cfg.resume):
        src = Path(cfg.resume)
        if src.is_dir():
            return src, latest_checkpoint(src)
        return src.parent.parent, src
    if cfg.run_dir:
        run_dir = Path(cfg.run_dir)
    elif cfg.resume == "latest":
        run_dir = find_run_with_checkpoints(cfg.outdir) or _new_run_dir(Path(cfg.outdir), desc)
    else:
        return _new_run_dir(Path(cfg.outdir), desc), None
    return run_dir, latest_checkpoint(run_dir) if run_dir.is_dir() else None


def _continued_config(current: TrainConfig, stored: Dict[str, Any], run_dir: Path) -> TrainConfig:
    base = TrainConfig.from_dict(stored)
    changes = {k: getattr(current, k) for k in CONTINUE_OVERRIDES}
    differs = [f for f in TrainConfig.__dataclass_fields__ if f not in CONTINUE_OVERRIDES + ("resume", "run_dir")
               and getattr(current, f) != getattr(base, f) and getattr(current, f) != getattr(TrainConfig(), f)]
    if differs:
        warnings.warn(f"continuing {run_dir}: option(s) {differs} differ from the checkpoint's and are ignored "
                      f"(a continued run keeps its configuration)")
    return base.replace(run_dir=str(run_dir), **changes)


def _rng_state() -> Dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if torch.cuda.is_available() and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def _named_buffers(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.named_buffers()}


@torch.no_grad()
def _load_buffers(module: torch.nn.Module, buffers: Dict[str, torch.Tensor]) -> None:
    for name, b in module.named_buffers():
        if name in buffers:
            b.copy_(buffers[name])


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors if torch.is_tensor(t) and t.is_floating_point())


def _nonfinite_count(flat: torch.Tensor) -> int:
    """Number of NaN/inf elements of ``flat``: one reduction when there are none (a sum of finite values
    is finite unless it overflows, and an overflow falls through to the exact count)."""
    if bool(torch.isfinite(flat.sum())):
        return 0
    return int(flat.numel() - torch.isfinite(flat).sum().item())


class Trainer:
    """Runs one training run described by a :class:`TrainConfig`.

    ``fit()`` validates the options (``dry_run``: print them and stop), starts ``gpus`` processes when it is
    not already running under torchrun (each builds ``type(self)`` with the same callbacks, so both must be
    picklable), and trains; it returns the run directory (None for a dry run).
    Attributes available to callbacks: ``config``, ``rc`` (ResolvedConfig), ``env`` (rank/world/device),
    ``G``, ``D``, ``G_ema``, ``augment_pipe``, ``loss``, ``phases``, ``cur_nimg``, ``step``, ``cur_tick``,
    ``run_dir``, ``dataset``.
    """

    def __init__(self, config: TrainConfig, callbacks: Sequence[Callback] = ()):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self.callbacks = list(callbacks)
        self.stop_requested = False

    # ------------------------------------------------------------------------------------------ entry
    def fit(self) -> Optional[Path]:
        cfg = self.config
        if cfg.dry_run:
            rc = resolve_config(cfg)
            print(json.dumps(rc.to_dict(), indent=2))
            print("Dry run; exiting.")
            return None
        if cfg.gpus > 1 and dist_utils.world_from_env() is None:
            rc = resolve_config(cfg)
            run_dir, _ = plan_run(cfg, rc.desc)
            dist_utils.spawn(_spawned_fit, cfg.gpus, (type(self), cfg.replace(run_dir=str(run_dir)), self.callbacks))
            return run_dir
        return self._run()

    def _log(self, msg: str) -> None:
        if self.env.is_main:
            print(msg, flush=True)

    def _run(self) -> Path:
        self.env = dist_utils.setup(self.config.device, self.config.dist_timeout)
        self.stats_writer = None
        try:
            self._prepare()
            with Tee(self.run_dir / "log.txt"):
                try:
                    self._setup()
                    self._train()
                except dist_utils.CollectiveError as e:
                    print(f"error: {e}", file=sys.stderr, flush=True)
                    raise
                finally:
                    if self.stats_writer is not None:
                        self.stats_writer.close()
            return self.run_dir
        finally:
            dist_utils.shutdown(self.env)

    # ------------------------------------------------------------------------------------------ setup
    def _prepare(self) -> None:
        """Validate, choose the run directory (and the checkpoint to continue from), create it."""
        env, cfg = self.env, self.config
        self.start_time = time.time()
        found = resolve_config(cfg)                                           # validate before anything else
        if env.world_size != cfg.gpus:
            raise ValueError(f"gpus is {cfg.gpus} but the process group has {env.world_size} ranks")
        plan = plan_run(cfg, found.desc) if env.is_main else None
        run_dir, self.ckpt_path = dist_utils.all_gather_object(env, plan)[0]
        self.run_dir = Path(run_dir)
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.run_dir)
        dist_utils.barrier(env)

    def _setup(self) -> None:
        env, cfg, ckpt_path = self.env, self.config, self.ckpt_path
        ckpt = load_checkpoint(ckpt_path) if ckpt_path is not None else None
        if ckpt is not None:
            cfg = _continued_config(cfg, ckpt["config"], self.run_dir)
            if len(ckpt["ranks"]) != env.world_size:
                raise ValueError(f"gpus: checkpoint {ckpt_path} was written by {len(ckpt['ranks'])} ranks; "
                                 f"continue it with gpus={len(ckpt['ranks'])}")
        self.config = cfg
        from .families import family_of

        self.family = family = family_of(cfg.cfg)
        self.dataset = family.dataset(cfg)
        self.rc = rc = resolve_config(cfg, self.dataset, continuing=ckpt is not None)
        rc.run_dir = str(self.run_dir)
        if env.is_main:
            print(f"Run directory: {self.run_dir}" + (f" (continuing from {ckpt_path})" if ckpt else ""))
            print(f"Training for {rc.total_kimg:g} kimg on {env.world_size} rank(s), {env.device}, batch "
                  f"{rc.batch_size} = {env.world_size} x {rc.rounds} x {rc.batch_gpu}")
            from ..utils.io import atomic_write_text

            atomic_write_text(self.run_dir / "training_options.json", json.dumps(rc.to_dict(), indent=2) + "\n")

        seed = cfg.seed * env.world_size + env.rank
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = rc.cudnn_benchmark
            torch.backends.cuda.matmul.allow_tf32 = rc.allow_tf32
            torch.backends.cudnn.allow_tf32 = rc.allow_tf32

        from .data import InfiniteSampler

        self.sampler = InfiniteSampler(self.dataset, rank=env.rank, num_replicas=env.world_size, seed=cfg.seed)
        self.G, self.D, self.G_ema = family.build_networks(rc, env.device)
        if rc.resume_pkl is not None and ckpt is None:
            self._transfer(rc.resume_pkl)
        for net in (self.G, self.D, self.G_ema):
            dist_utils.broadcast_module(env, net)
        self.augment_pipe = family.build_augment_pipe(rc, env.device)
        self.ada = None
        if rc.ada_target is not None and self.augment_pipe is not None:
            from .ada import AdaController

            self.ada = AdaController(self.augment_pipe, rc.ada_target, rc.batch_size, interval=rc.ada_interval,
                                     kimg=rc.ada_kimg, clamp_max=cfg.compat == "fastgan")
        self.loss = family.build_loss(rc, env.device, self.G, self.D, self.augment_pipe)
        self.phases = family.build_phases(rc, self.G, self.D)
        self.precision = contextlib.nullcontext
        if cfg.precision == "bf16":
            from ..nets import precision

            self.precision = lambda: precision("bf16")

        self.cur_nimg = self.step = self.cur_tick = self.tick_start_nimg = 0
        self.elapsed_before = 0.0
        self.bad_steps = self.total_bad_steps = self.rollbacks = 0
        self.tick_nonfinite = self.tick_bad_steps = 0
        self.last_checkpoint_step: Optional[int] = None
        self.metric_runner = self._metric_runner()
        self.stats_collector = stats.Collector(regex=".*")
        self.stats_writer = StatsWriter(self.run_dir, self.start_time) if env.is_main else None
        self._setup_grid(fresh=ckpt is None)
        if ckpt is not None:
            self._restore(ckpt, continuing=True)
        else:
            self.loader = self._make_loader()
        self.maintenance_time = time.time() - self.start_time

    def _make_loader(self):
        from .data import make_loader

        return make_loader(self.dataset, self.sampler, batch_size=self.rc.batch_size // self.env.world_size,
                           num_workers=self.config.workers)

    def _transfer(self, source: str) -> None:
        from .snapshot import copy_params_and_buffers, read_transfer_source

        if not self.env.is_main:
            return                                    # rank 0 loads; the broadcast that follows shares it
        states = read_transfer_source(Path(source))
        counts = {k: copy_params_and_buffers(states[k], getattr(self, k), k) for k in ("G", "D", "G_ema")
                  if k in states}
        print(f"Resuming from {source}: copied " + ", ".join(f"{n} tensors into {k}" for k, n in counts.items()))

    def _metric_runner(self):
        names = self.rc.metrics
        if not names:
            return None
        from .evaluation import MetricRunner, find_detector

        detector, why = find_detector(self.config.metrics_detector)
        if detector is None:
            self._log(f"Metrics {', '.join(names)} disabled: no Inception weights available ({why})")
            return None
        return MetricRunner(names, self.config.data, detector, self.config.metrics_num_gen, self.env.rank,
                            self.env.world_size, self.env.device, self.config.workers)

    def _setup_grid(self, fresh: bool) -> None:
        from .grids import generate_fakes, real_grid, save_image_grid

        self.grid = None
        if not self.env.is_main:
            return
        size = tuple(int(v) for v in self.config.grid.split("x")) if self.config.grid else None
        grid, images, labels = real_grid(self.dataset, size)
        z = torch.randn([grid[0] * grid[1], self.G.z_dim], device=self.env.device)
        c = torch.from_numpy(labels).to(self.env.device)
        self.grid = (grid, z, c)
        if fresh or not (self.run_dir / "reals.png").exists():
            save_image_grid(images, self.run_dir / "reals.png", drange=[0, 255], grid=grid)
        if fresh:
            with self.precision():
                fakes = generate_fakes(self.G_ema, z, c, self.rc.batch_gpu)
            save_image_grid(fakes, self.run_dir / "fakes_init.png", drange=[-1, 1], grid=grid)

    # ------------------------------------------------------------------------------------ state I/O
    def _optimizers(self) -> Dict[str, torch.optim.Optimizer]:
        return {f"{ph.name[0]}_opt": ph.opt for ph in self.phases}

    def _training_state(self) -> Optional[Dict[str, Any]]:
        """The checkpoint contents (on rank 0; None elsewhere). Collective: every rank must call it."""
        if self.ada is not None:
            self.ada.gather()
        nets = (self.G, self.D, self.G_ema)
        tensors = [t for n in nets for t in list(n.parameters()) + list(n.buffers())]
        tensors += [v for opt in self._optimizers().values() for s in opt.state.values() for v in s.values()]
        finite = all(dist_utils.all_gather_object(self.env, _all_finite(tensors)))
        if not finite:
            self._log(f"step {self.step}: the training state holds non-finite values; checkpoint not written")
            return None
        mine = {"rng": _rng_state(), "sampler": self.loader.state_dict(),
                "loss": {k: v.detach().cpu() for k, v in self.loss.state_dict().items()},
                "G_buffers": _named_buffers(self.G), "G_ema_buffers": _named_buffers(self.G_ema)}
        ranks = dist_utils.all_gather_object(self.env, mine)
        if not self.env.is_main:
            return None
        return {
            "config": self.config.to_dict(), "world_size": self.env.world_size,
            "counters": {"cur_nimg": self.cur_nimg, "step": self.step, "batch_idx": self.step,
                         "cur_tick": self.cur_tick, "tick_start_nimg": self.tick_start_nimg,
                         "elapsed": self.elapsed_before + time.time() - self.start_time},
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self._optimizers().items()},
            "augment_p": None if self.augment_pipe is None or not hasattr(self.augment_pipe, "p")
            else self.augment_pipe.p.detach().cpu().clone(),
            "ada": None if self.ada is None else self.ada.state_dict(),
            "metrics": None if self.metric_runner is None else self.metric_runner.state_dict(),
            "ranks": ranks,
        }

    def _save_checkpoint(self) -> None:
        state = self._training_state()
        if self.env.is_main and state is not None:
            path = write_checkpoint(state, self.run_dir, self.step, keep=self.config.keep_checkpoints)
            self._log(f"Checkpoint {path.name} (step {self.step}, kimg {self.cur_nimg / 1e3:.3f})")
        self.last_checkpoint_step = self.step
        dist_utils.barrier(self.env)

    def _restore(self, ckpt: Dict[str, Any], continuing: bool) -> None:
        """Load a checkpoint into the live objects (every rank takes its own per-rank entry)."""
        for key in ("G", "D", "G_ema"):
            getattr(self, key).load_state_dict(ckpt[key])
        for key, opt in self._optimizers().items():
            opt.load_state_dict(ckpt["optimizers"][key])
        if ckpt["augment_p"] is not None and self.augment_pipe is not None:
            with torch.no_grad():
                self.augment_pipe.p.copy_(ckpt["augment_p"])
        if self.ada is not None and ckpt["ada"] is not None:
            self.ada.load_state_dict(ckpt["ada"])
        if self.metric_runner is not None and ckpt.get("metrics"):
            self.metric_runner.load_state_dict(ckpt["metrics"])
        c = ckpt["counters"]
        self.cur_nimg, self.step, self.cur_tick = int(c["cur_nimg"]), int(c["step"]), int(c["cur_tick"])
        self.tick_start_nimg = int(c["tick_start_nimg"])
        if continuing:
            self.elapsed_before = float(c["elapsed"])
            self.start_time = time.time()
        self.tick_start_time = time.time()
        self.last_checkpoint_step = self.step
        self.bad_steps = 0
        mine = ckpt["ranks"][self.env.rank]
        self.loss.load_state_dict(mine["loss"])
        _load_buffers(self.G, mine["G_buffers"])
        _load_buffers(self.G_ema, mine["G_ema_buffers"])
        self.sampler.load_state_dict(mine["sampler"])
        self.loader = self._make_loader()
        _set_rng_state(mine["rng"])

    def _rollback(self) -> None:
        self.rollbacks += 1
        path = latest_checkpoint(self.run_dir) if self.env.is_main else None
        path = dist_utils.all_gather_object(self.env, path)[0]
        k = self.config.max_bad_steps
        if path is None:
            raise RuntimeError(f"step {self.step}: {k} consecutive steps with non-finite gradients and no "
                               f"checkpoint to roll back to; training stopped")
        if self.rollbacks > self.config.max_rollbacks:
            raise RuntimeError(f"step {self.step}: {k} consecutive steps with non-finite gradients again after "
                               f"{self.config.max_rollbacks} rollback(s); training stopped")
        self._log(f"step {self.step}: {k} consecutive steps with non-finite gradients; rolling back to "
                  f"{path} (rollback {self.rollbacks}/{self.config.max_rollbacks})")
        self._restore(load_checkpoint(path), continuing=False)

    # ------------------------------------------------------------------------------------------ loop
    def generator_inputs(self) -> Tuple[List[List[torch.Tensor]], List[List[torch.Tensor]]]:
        """Latents and labels of one step: per phase, ``rounds`` chunks of ``batch_gpu``.

        ``z ~ N(0, I)`` of shape ``[P * batch, z_dim]`` from the device RNG and labels of uniformly drawn
        dataset items (numpy global RNG), split into one ``batch``-sized block per phase of which each rank
        uses the first ``batch / gpus`` (training-spec §1.2).
        """
        rc, dev = self.rc, self.env.device
        n = len(self.phases) * rc.batch_size
        z = torch.randn([n, self.G.z_dim], device=dev)
        labels = np.stack([self.dataset.get_label(np.random.randint(len(self.dataset))) for _ in range(n)])
        c = torch.from_numpy(labels.astype(np.float32)).to(dev)
        zs = [blk.split(rc.batch_gpu)[:rc.rounds] for blk in z.split(rc.batch_size)]
        cs = [blk.split(rc.batch_gpu)[:rc.rounds] for blk in c.split(rc.batch_size)]
        return [list(v) for v in zs], [list(v) for v in cs]

    def _run_phase(self, idx: int, reals, real_cs, zs, cs) -> int:
        """One phase; returns the number of non-finite gradient elements (0: the step was taken)."""
        ph, env = self.phases[idx], self.env
        timer = self._phase_timer(ph)
        ph.opt.zero_grad(set_to_none=True)
        ph.module.requires_grad_(True)
        with self.precision():
            for r in range(self.rc.rounds):
                self.loss.accumulate_gradients(ph.name, reals[r], real_cs[r], zs[r], cs[r], gain=ph.interval,
                                               cur_nimg=self.cur_nimg)
        ph.module.requires_grad_(False)
        params = [p for p in ph.module.parameters() if p.grad is not None]
        flat = dist_utils.all_reduce_gradients(env, params)
        bad = 0
        if flat is not None:
            bad = _nonfinite_count(flat)
            if bad and self.config.compat == "nvlabs":
                for p in params:
                    torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
            if not bad or self.config.compat == "nvlabs":
                ph.opt.step()
                if ph.module is self.D:
                    self.loss.clip_weights(self.D)
        timer()
        return bad

    def _phase_timer(self, ph):
        """Start timing ``ph``; the returned function stops it (CUDA events on GPU, wall clock on CPU)."""
        if self.env.device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()

            def stop():
                end.record()
                ph.events = [start, end]
            return stop
        t0 = time.perf_counter()

        def stop_cpu():
            ph.last_ms = (time.perf_counter() - t0) * 1e3
        return stop_cpu

    def _train_step(self) -> None:
        rc, dev = self.rc, self.env.device
        images, labels = next(self.loader)
        for cb in self.callbacks:
            replaced = cb.on_batch(self, images, labels)
            if replaced is not None:
                images, labels = replaced
        reals = (images.to(dev).to(torch.float32) / 127.5 - 1).split(rc.batch_gpu)
        real_cs = labels.to(dev).split(rc.batch_gpu)
        zs, cs = self.generator_inputs()
        bad_phases = []
        for i, ph in enumerate(self.phases):
            if self.step % ph.interval:
                continue
            bad = self._run_phase(i, reals, real_cs, zs[i], cs[i])
            if bad:
                bad_phases.append(f"{ph.name} ({bad})")
                self.tick_nonfinite += bad
        update_ema(self.G_ema, self.G, ema_beta(rc.batch_size, self.cur_nimg, rc.ema_kimg, rc.ema_rampup))
        self.cur_nimg += rc.batch_size
        self.step += 1
        if self.ada is not None and self.step % self.ada.interval == 0:
            rt = self.ada.step()
            if rt is not None:
                stats.report0("Progress/rt", rt)
        if bad_phases:
            self.bad_steps += 1
            self.total_bad_steps += 1
            self.tick_bad_steps += 1
            action = "substituted (compat nvlabs)" if self.config.compat == "nvlabs" else "optimizer step skipped"
            self._log(f"step {self.step - 1}: non-finite gradient elements in {', '.join(bad_phases)}; {action} "
                      f"({self.bad_steps} consecutive, {self.total_bad_steps} in total)")
        else:
            self.bad_steps = 0

    def _train(self) -> None:
        with self._allocator():
            self._train_loop()

    def _allocator(self):
        """``host_cache.arena()`` when asked for (``host_cache``) on a CPU run; otherwise torch's allocator."""
        if not (self.config.host_cache and self.env.device.type == "cpu"):
            return contextlib.nullcontext()
        from ..backends import host_cache

        if not host_cache.available():
            self._log("host_cache: the cpu extension (fastgan._C) is not built; using torch's allocator")
            return contextlib.nullcontext()
        return host_cache.arena()

    def _train_loop(self) -> None:
        cfg, rc = self.config, self.rc
        self.tick_start_time = time.time()
        every = cfg.checkpoint_every_steps
        self._log(f"Training from kimg {self.cur_nimg / 1e3:.3f} (step {self.step}) to {rc.total_kimg:g} kimg")
        while self.cur_nimg < rc.total_kimg * 1000:
            self._train_step()
            for cb in self.callbacks:
                cb.on_step(self)
            if self.bad_steps >= cfg.max_bad_steps and cfg.compat == "fastgan":
                self._rollback()
                continue
            done = self.cur_nimg >= rc.total_kimg * 1000 or self.stop_requested
            if done or self.cur_tick == 0 or self.cur_nimg >= self.tick_start_nimg + rc.kimg_per_tick * 1000:
                self._tick(done)
                if every is None:
                    self._save_checkpoint()
            if every is not None and self.step % every == 0 and self.last_checkpoint_step != self.step:
                self._save_checkpoint()
            if done:
                break
        if self.last_checkpoint_step != self.step:
            self._save_checkpoint()
        self._log("Exiting...")

    # ------------------------------------------------------------------------------------ maintenance
    def _tick(self, done: bool) -> None:
        env, rc = self.env, self.rc
        tick_end = time.time()
        total = self.elapsed_before + tick_end - self.start_time
        tick_sec = tick_end - self.tick_start_time
        tick_kimg = (self.cur_nimg - self.tick_start_nimg) / 1e3
        sec_per_kimg = tick_sec / max(tick_kimg, 1e-9)
        cuda = env.device.type == "cuda"
        gpumem = torch.cuda.max_memory_allocated(env.device) / 2 ** 30 if cuda else 0.0
        reserved = torch.cuda.max_memory_reserved(env.device) / 2 ** 30 if cuda else 0.0
        p = float(self.augment_pipe.p) if self.augment_pipe is not None and hasattr(self.augment_pipe, "p") else 0.0
        cpumem = cpu_rss_gb()
        values = {"Progress/tick": self.cur_tick, "Progress/kimg": self.cur_nimg / 1e3, "Timing/total_sec": total,
                  "Timing/sec_per_tick": tick_sec, "Timing/sec_per_kimg": sec_per_kimg,
                  "Timing/maintenance_sec": self.maintenance_time, "Resources/cpu_mem_gb": cpumem,
                  "Resources/peak_gpu_mem_gb": gpumem, "Resources/peak_gpu_mem_reserved_gb": reserved,
                  "Progress/augment": p, "Timing/total_hours": total / 3600, "Timing/total_days": total / 86400,
                  "Progress/nonfinite_grads": self.tick_nonfinite, "Progress/bad_steps": self.tick_bad_steps}
        for name, value in values.items():
            stats.report0(name, value)
        self._log(status_line(self.cur_tick, self.cur_nimg / 1e3, total, tick_sec, sec_per_kimg,
                              self.maintenance_time, cpumem, gpumem, reserved, p))
        if cuda:
            torch.cuda.reset_peak_memory_stats(env.device)

        if env.is_main and (done or self.cur_tick % rc.image_snapshot_ticks == 0):
            self._save_fakes()
        if done or self.cur_tick % rc.network_snapshot_ticks == 0:
            self._network_snapshot()

        for ph in self.phases:
            if ph.events:
                ph.events[1].synchronize()
                ph.last_ms = ph.events[0].elapsed_time(ph.events[1])
            if ph.last_ms is not None:
                stats.report0(f"Timing/{ph.name}", ph.last_ms)
        self.stats_collector.update()
        tick_stats = self.stats_collector.as_dict()
        if self.stats_writer is not None:
            latest = {} if self.metric_runner is None else self.metric_runner.latest
            self.stats_writer.write(tick_stats, latest, self.cur_nimg)
        losses = {k.split("/", 1)[1]: v["mean"] for k, v in tick_stats.items()
                  if k in ("Loss/G/loss", "Loss/D/loss", "Loss/G/reg", "Loss/D/reg") and v["num"]}
        rate = tick_kimg * 1e3 / max(tick_sec, 1e-9)
        eta = (rc.total_kimg - self.cur_nimg / 1e3) * sec_per_kimg
        self._log(progress_line(self.cur_nimg / 1e3, rc.total_kimg, sec_per_kimg, rate, eta, losses, p,
                                None if self.ada is None else self.ada.rt))
        for cb in self.callbacks:
            cb.on_tick(self, tick_stats)
        self.tick_nonfinite = self.tick_bad_steps = 0
        self.cur_tick += 1
        self.tick_start_nimg = self.cur_nimg
        self.tick_start_time = time.time()
        self.maintenance_time = self.tick_start_time - tick_end

    def _save_fakes(self) -> None:
        from .grids import generate_fakes, save_image_grid

        grid, z, c = self.grid
        with self.precision():
            fakes = generate_fakes(self.G_ema, z, c, self.rc.batch_gpu)
        save_image_grid(fakes, self.run_dir / f"fakes{self.cur_nimg // 1000:06d}.png", drange=[-1, 1], grid=grid)

    def _network_snapshot(self) -> None:
        from .snapshot import snapshot_stem, write_snapshot

        env = self.env
        for name in ("G", "D", "G_ema"):
            differ = dist_utils.modules_agree(env, getattr(self, name))
            if differ:
                self._log(f"warning: ranks disagree on {name} tensors {differ[:5]}; writing rank 0's copy")
        files: List[Path] = []
        if env.is_main:
            p = float(self.augment_pipe.p) if self.augment_pipe is not None and hasattr(self.augment_pipe, "p") \
                else None
            files = write_snapshot(self.run_dir, self.cur_nimg, {"G": self.G, "D": self.D, "G_ema": self.G_ema}, p,
                                   self.rc.training_set_kwargs, self.config.export_nvlabs_state)
        if self.metric_runner is not None:
            stem = snapshot_stem(self.cur_nimg)
            self.metric_runner.evaluate(self.G_ema, self.run_dir if env.is_main else None, f"{stem}.json",
                                        self.cur_nimg)
            if env.is_main and self.metric_runner.best is not None:
                from ..utils.io import atomic_write_text

                atomic_write_text(self.run_dir / "best.json", json.dumps(self.metric_runner.best, indent=1) + "\n")
        for cb in self.callbacks:
            cb.on_snapshot(self, files)


def _spawned_fit(cls: type, config: TrainConfig, callbacks: Sequence[Callback]) -> None:
    cls(config, callbacks)._run()
