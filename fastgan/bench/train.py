"""Training benchmarks (``fastgan bench train``): the full training iteration of :class:`fastgan.train.Trainer`.

Cases (full / ``--quick``):

* StyleGAN2 at 64x64, batch 8 (the ``auto`` recipe with ``--batch 8``: channel_base 16384, 2 mapping layers,
  R1 every 16 steps, path length every 4, ADA pipe ``bgc``), fp32: the ``cpu`` backend vs the same trainer
  on the ``ref`` backend, plus bf16 (``--precision bf16``) on CPUs with native bf16 (``avx512_bf16`` or
  ``amx_bf16``); otherwise the report says bf16 was not timed. When the cpu extension is built, also
  ``cpu fp32 +hc``: the cpu backend inside the host-cache arena (``fastgan train --host-cache``).
* StyleGAN3-T at 64x64, batch 4 (``stylegan3-t``, channel_base 8192 / channel_max 256): cpu vs ref.
* ``--quick``: StyleGAN2 at 8x8 and StyleGAN3-T at 16x16 with a few channels, batch 2, rounds of 2 steps
  (seconds; a smoke test of the harness, not a measurement).
* On a machine with a CUDA GPU (what ``benchmarks/gpu_check.sh`` runs): StyleGAN2 at 256x256 with the
  ``auto`` recipe (batch 16, NVlabs mixed precision ``--precision fp16``) on each usable GPU backend
  (``cuda``, ``triton``) and on ``ref``, reported next to NVlabs' published 12.53 s/kimg on one A100 (20.84 on
  a V100) for the same configuration (SG3 ``docs/configs.md``, the ADA ``--cfg=auto`` equivalent);
  ``--quick``: the same at 64x64, batch 8. Every step ends with a device synchronisation.

A case builds one trainer on a synthetic dataset (random smooth RGB images) and, after one untimed step
per variant, times rounds of 16 consecutive training steps (each round therefore holds one R1 step and four path-length
steps: lazy regularisation amortised exactly), with the variants taking turns
(:func:`fastgan.bench.interleaved_medians`). Reported per variant: sec/kimg and img/s (median round), the
speed-up vs ref, and the mean per-step breakdown: data (the loader runs in the main process,
``workers=0``), each phase (Gmain, Greg, Dmain, Dreg or Gboth), EMA and the ADA update (timed on their
own; ADA runs every 4 steps) and the rest (latents, labels, bookkeeping). Every variant trains with the
trainer's defaults, torch's own allocator included (no ``--host-cache``), except the ``+hc`` variant: when a
case has one, the arena is opened once around all its rounds (so freed blocks carry over from round to
round) and the other variants run under :func:`fastgan.backends.host_cache.paused`; the RSS printed after
each round then includes the blocks the arena keeps.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import resource
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from .. import backends
from ..backends import host_cache
from ..train.trainer import Callback
from . import interleaved_medians, median_seconds

__all__ = ["run", "native_bf16", "cpu_model"]

ROUND_STEPS = 16          # one R1 step (interval 16) and four path-length steps (interval 4) per round


def _cpu_flags() -> Dict[str, str]:
    """``model name`` and ``flags`` of the first processor in /proc/cpuinfo (empty off Linux)."""
    out: Dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "flags") and key not in out:
                out[key] = value.strip()
    return out


def native_bf16() -> Tuple[bool, str]:
    """``(True, flags)`` when the CPU lists ``amx_bf16`` or ``avx512_bf16``, else ``(False, reason)``."""
    flags = set(_cpu_flags().get("flags", "").split())
    found = sorted(flags & {"amx_bf16", "avx512_bf16"})
    if found:
        return True, ", ".join(found)
    return False, "the CPU lists neither avx512_bf16 nor amx_bf16"


def cpu_model() -> str:
    return _cpu_flags().get("model name", "unknown CPU")


def _write_dataset(dest: Path, resolution: int, count: int = 32, seed: int = 0) -> Path:
    """``count`` random smooth RGB PNGs (low-resolution noise upscaled bilinearly)."""
    from PIL import Image

    rng = np.random.RandomState(seed)
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        small = rng.randint(0, 256, size=(max(resolution // 4, 2),) * 2 + (3,), dtype=np.uint8)
        Image.fromarray(small).resize((resolution, resolution), Image.BILINEAR).save(dest / f"img{i:05d}.png")
    return dest


@dataclass
class _Variant:
    """One timed configuration of a case and its accumulated per-step breakdown (milliseconds)."""
    backend: str
    precision: str
    arena: bool = False
    sums: Dict[str, float] = field(default_factory=dict)
    steps: int = 0

    @property
    def label(self) -> str:
        return f"{self.backend} {self.precision}" + (" +hc" if self.arena else "")

    def add(self, key: str, ms: float) -> None:
        self.sums[key] = self.sums.get(key, 0.0) + ms


class _Probe(Callback):
    """Training callback: notes when each step's batch arrived and runs the benchmark after step 0."""

    def __init__(self, body: Callable):
        self.body = body
        self.batch_time = 0.0
        self.result = None

    def on_batch(self, trainer, images, labels):
        self.batch_time = time.perf_counter()
        return None

    def on_step(self, trainer) -> None:
        if self.result is None:
            self.result = self.body(trainer, self)
            trainer.stop_requested = True


def _round(trainer, probe: _Probe, variant: _Variant, steps: int) -> None:
    """``steps`` training steps of ``trainer`` on ``variant``'s backend and precision."""
    from ..nets import precision

    saved = trainer.precision
    trainer.precision = (lambda: precision("bf16")) if variant.precision == "bf16" else contextlib.nullcontext
    allocator = contextlib.nullcontext() if variant.arena else host_cache.paused()   # paused: no-op outside an arena
    try:
        with backends.use(variant.backend), allocator:
            for _ in range(steps):
                ran = [ph for ph in trainer.phases if trainer.step % ph.interval == 0]
                t0 = time.perf_counter()
                trainer._train_step()
                if trainer.env.device.type == "cuda":
                    torch.cuda.synchronize(trainer.env.device)
                total = (time.perf_counter() - t0) * 1e3
                data = (probe.batch_time - t0) * 1e3
                variant.add("step", total)
                variant.add("data", data)
                for ph in ran:
                    variant.add(ph.name, ph.last_ms)
                variant.steps += 1
    finally:
        trainer.precision = saved


def _side_costs(trainer) -> Dict[str, float]:
    """Milliseconds of one EMA update and one ADA update (state restored afterwards)."""
    from ..train.ema import update_ema

    out = {"EMA": median_seconds(lambda: update_ema(trainer.G_ema, trainer.G, 0.999), repeat=5, warmup=1) * 1e3}
    if trainer.ada is not None:
        state = trainer.ada.state_dict()
        out["ADA"] = median_seconds(trainer.ada.step, repeat=5, warmup=1) * 1e3
        trainer.ada.load_state_dict(state)
    return out


def rss_gb() -> float:
    """Resident set size of this process now, in GiB (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    except (OSError, ValueError, IndexError):
        return math.nan


def _bench_case(trainer, probe: _Probe, variants: List[_Variant], rounds: int, steps: int) -> Dict:
    with host_cache.arena() if any(v.arena for v in variants) else contextlib.nullcontext():
        return _bench_rounds(trainer, probe, variants, rounds, steps)


def _bench_rounds(trainer, probe: _Probe, variants: List[_Variant], rounds: int, steps: int) -> Dict:
    for v in variants:                      # one untimed step each: first-call costs (kernel set-up, caches)
        _round(trainer, probe, v, 1)
        v.sums.clear()
        v.steps = 0
    rss: List[float] = []                   # after each timed round of the last variant: growth shows a leak

    def timed(v: _Variant, last: bool) -> None:
        _round(trainer, probe, v, steps)
        if last:
            rss.append(rss_gb())
    fns = [lambda v=v, k=k: timed(v, k == len(variants) - 1) for k, v in enumerate(variants)]
    times = interleaved_medians(fns, rounds=rounds)
    side = _side_costs(trainer)
    return {"seconds_per_round": times, "side": side, "phases": [ph.name for ph in trainer.phases],
            "ada_interval": None if trainer.ada is None else trainer.ada.interval, "rss_GB": rss}


def _train_case(name: str, options: Dict, variants: List[_Variant], rounds: int, steps: int,
                workdir: Path, device: str) -> List[Dict]:
    from ..train import TrainConfig, Trainer

    res = options.pop("resolution")
    data = _write_dataset(workdir / f"data{res}", res)
    config = TrainConfig(outdir=str(workdir / "runs"), data=str(data), kimg=1e6, tick=1e6, snap=1000000,
                         metrics="none", workers=0, precision=options.pop("precision", "fp32"), grid="2x2",
                         keep_checkpoints=1, device=device, **options)
    probe = _Probe(lambda tr, pr: _bench_case(tr, pr, variants, rounds, steps))
    trainer = Trainer(config, [probe])
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.fit()
    batch = trainer.rc.batch_size
    ref = next((t for v, t in zip(variants, probe.result["seconds_per_round"]) if v.backend == "ref"), None)
    rows = []
    for v, seconds in zip(variants, probe.result["seconds_per_round"]):
        per_step = {k: s / v.steps for k, s in v.sums.items()}
        breakdown = {"data": per_step["data"]}
        breakdown.update({ph: per_step.get(ph, 0.0) for ph in probe.result["phases"]})
        breakdown["EMA"] = probe.result["side"]["EMA"]
        if "ADA" in probe.result["side"]:
            breakdown["ADA"] = probe.result["side"]["ADA"] / probe.result["ada_interval"]
        breakdown["other"] = max(per_step["step"] - sum(breakdown.values()), 0.0)
        sec_per_step = seconds / steps
        rows.append({"case": name, "batch": batch, "variant": v.label, "backend": v.backend, "precision": v.precision,
                     "host_cache": v.arena,
                     "sec_per_kimg": sec_per_step * 1000 / batch, "img_per_s": batch / sec_per_step,
                     "speedup_vs_ref": (ref / seconds) if ref else math.nan,
                     "data_share": breakdown["data"] / per_step["step"], "ms_per_step": breakdown,
                     "rss_GB_per_round": probe.result["rss_GB"]})
    return rows


# NVlabs' published sec/kimg of the GPU case (SG3 docs/configs.md, ADA --cfg=auto equivalent, 256x256, 1 GPU).
PUBLISHED_256 = {"A100": 12.53, "V100": 20.84}


def _gpu_cases(quick: bool) -> List[Tuple[str, Dict, List[_Variant]]]:
    names = [n for n in backends.NAMES if n not in ("ref", "cpu") and backends.available(n)]
    variants = [_Variant(n, "fp16") for n in names] + [_Variant("ref", "fp16")]
    if quick:
        return [("StyleGAN2 64x64 (quick)", {"resolution": 64, "cfg": "auto", "batch": 8, "precision": "fp16"},
                 variants)]
    return [("StyleGAN2 256x256 (auto)", {"resolution": 256, "cfg": "auto", "precision": "fp16"}, variants)]


def _cases(quick: bool, bf16: bool) -> List[Tuple[str, Dict, List[_Variant]]]:
    def fp32() -> List[_Variant]:
        return [_Variant("cpu", "fp32"), _Variant("ref", "fp32")]
    arena = [_Variant("cpu", "fp32", arena=True)] if host_cache.available() else []
    sg2_variants = fp32() + arena + ([_Variant("cpu", "bf16")] if bf16 else [])
    if quick:
        sg2 = {"resolution": 8, "cfg": "auto", "batch": 2, "cbase": 128, "cmax": 16, "mbstd_group": 2,
               "g_kwargs": {"z_dim": 16, "w_dim": 16}}
        sg3 = {"resolution": 16, "cfg": "stylegan3-t", "batch": 2, "cbase": 64, "cmax": 8, "mbstd_group": 2,
               "g_kwargs": {"z_dim": 16, "w_dim": 16}}
        return [("StyleGAN2 8x8 (quick)", sg2, sg2_variants), ("StyleGAN3-T 16x16 (quick)", sg3, fp32())]
    sg2 = {"resolution": 64, "cfg": "auto", "batch": 8}
    sg3 = {"resolution": 64, "cfg": "stylegan3-t", "batch": 4, "cbase": 8192, "cmax": 256}
    return [("StyleGAN2 64x64 (auto)", sg2, sg2_variants), ("StyleGAN3-T 64x64", sg3, fp32())]


COLUMNS = ("data", "Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth", "EMA", "ADA", "other")


def _table(rows: List[Dict]) -> List[str]:
    keys = [k for k in COLUMNS if any(k in r["ms_per_step"] for r in rows)]
    lines = [f"{'case':26s} {'variant':13s} {'sec/kimg':>9s} {'img/s':>7s} {'x ref':>6s} {'data%':>6s}  "
             + " ".join(f"{k:>7s}" for k in keys) + "   (ms per step, lazy regularisation amortised)"]
    for r in rows:
        cells = " ".join(f"{r['ms_per_step'][k]:7.1f}" if k in r["ms_per_step"] else f"{'-':>7s}" for k in keys)
        lines.append(f"{r['case']:26s} {r['variant']:13s} {r['sec_per_kimg']:9.2f} {r['img_per_s']:7.1f} "
                     f"{r['speedup_vs_ref']:6.2f} {100 * r['data_share']:5.1f}%  {cells}")
    return lines


def run(quick: bool = False, repeat: int = 3) -> Tuple[str, Dict]:
    """Benchmark the training iteration; returns ``(text report, data)``. ``repeat`` = rounds per variant."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    bf16, why = native_bf16()
    rounds = 2 if quick else max(2, min(repeat, 3))
    steps = 2 if quick else ROUND_STEPS
    rows: List[Dict] = []
    cases = _gpu_cases(quick) if device == "cuda" else _cases(quick, bf16)
    with tempfile.TemporaryDirectory(prefix="fastgan-bench-train-") as tmp:
        for name, options, variants in cases:
            rows += _train_case(name, dict(options), variants, rounds, steps, Path(tmp), device)
    if device == "cuda":
        head = [f"machine: {torch.cuda.get_device_name()} (CUDA), host {cpu_model()}",
                "NVlabs published for StyleGAN2 256x256, --cfg=auto, 1 GPU: "
                + ", ".join(f"{v} s/kimg on {k}" for k, v in PUBLISHED_256.items())]
    else:
        isa = backends.get("cpu").isa() if backends.available("cpu") else "none (fastgan._C not built)"
        head = [f"machine: {cpu_model()}, torch threads {torch.get_num_threads()}, fastgan cpu kernels: {isa}",
                f"bf16: {'native (' + why + '): timed' if bf16 else 'not timed: ' + why}",
                "allocator: torch's (the trainer's default, no --host-cache); '+hc': inside the host-cache arena"]
    lines = [*head,
             f"{rounds} alternating rounds of {steps} steps per variant (medians)"
             + ("; --quick: tiny nets, 2-step rounds (regularisation not amortised)" if quick else ""),
             *_table(rows),
             *(f"RSS after each round, {name}: " + " ".join(f"{g:.2f}" for g in rss) + " GiB"
               for name, rss in dict((r["case"], r["rss_GB_per_round"]) for r in rows).items())]
    return "\n".join(lines), {"rows": rows, "device": device, "native_bf16": bf16, "bf16_note": why,
                              "rounds": rounds, "steps_per_round": steps, "cpu": cpu_model(),
                              "published_256_sec_per_kimg": PUBLISHED_256 if device == "cuda" else None,
                              "max_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20}
