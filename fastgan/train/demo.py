"""The training demo (``fastgan demo``, ``make demo``): a class-conditional StyleGAN2 learns the digits.

It writes the scikit-learn digits (1,797 8x8 images, 10 classes) as a labelled image folder, trains the
small digits classifier of :mod:`fastgan.train.quality` on part of them, trains a conditional StyleGAN2
with :class:`fastgan.train.Trainer` for a wall-clock budget, and reports, before and after training:

* class accuracy of conditional samples (does G draw the digit it was asked for?), and
* FID and KID in the classifier's feature space (real vs generated),

next to the values of held-out real digits (what a perfect generator would score). Each network snapshot
is scored too (``metric-digits.jsonl``, NVlabs metric-line format), and the curves are rendered to
``curves.png`` by the code behind ``fastgan plot``. Image grids ``fakes_init.png`` (start) and
``fakes<KIMG>.png`` (end) hold one row per class.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import List, Optional, Tuple, Union

from .config import TrainConfig
from .quality import DigitsJudge, Score
from .runlog import append_jsonl, format_time
from .trainer import Callback, Trainer

__all__ = ["DemoSettings", "DemoResult", "DEFAULT_MINUTES", "main", "demo_config", "summary_table"]

DEFAULT_MINUTES = 3.5
METRIC = "digits"


@dataclass(frozen=True)
class DemoSettings:
    """Training settings of the demo (the defaults are what ``fastgan demo`` runs).

    ``kimg`` caps the run; the wall-clock budget (``minutes`` of :func:`main`) normally ends it first.
    ``eval_kimg`` is the interval of network snapshots, each scored by the digits classifier.
    ``precision`` is the trainer's (``fp32``, or ``bf16`` autocast-style layers).
    """
    resolution: int = 16
    cbase: int = 2048
    cmax: int = 64
    map_depth: int = 2
    batch: int = 16
    mbstd_group: int = 4
    glr: float = 0.004
    dlr: float = 0.004
    gamma: float = 0.05
    kimg: float = 20.0
    eval_kimg: float = 2.0
    judge_epochs: int = 12
    precision: str = "fp32"


@dataclass
class DemoResult:
    """What the demo measured and where it wrote it."""
    run_dir: Path
    kimg: float
    train_seconds: float
    holdout_accuracy: float
    real: Score
    start: Score
    end: Score
    history: List[dict]
    files: List[Path]


def demo_config(data: Union[str, Path], outdir: Union[str, Path], settings: DemoSettings, seed: int) -> TrainConfig:
    """The ``TrainConfig`` of the demo run: a small conditional StyleGAN2 (SG3-style ``stylegan2`` recipe
    with the sizes of ``settings``), no augmentation, ``settings.precision``, a 10x10 grid (one row per class), no Inception
    metrics (the classifier scores the snapshots instead)."""
    return TrainConfig(
        outdir=str(outdir), data=str(data), cfg="stylegan2", cond=True, gpus=1, batch=settings.batch,
        mbstd_group=settings.mbstd_group, cbase=settings.cbase, cmax=settings.cmax, map_depth=settings.map_depth,
        glr=settings.glr, dlr=settings.dlr, gamma=settings.gamma, kimg=settings.kimg, tick=settings.eval_kimg,
        snap=1, aug="noaug", metrics="none", precision=settings.precision, seed=seed, workers=0, grid="10x10",
        keep_checkpoints=1, desc="demo", g_kwargs={"z_dim": 64, "w_dim": 64})


class _Scorer(Callback):
    """Scores G_ema before the first step and at every network snapshot; stops at the time budget."""

    def __init__(self, judge: DigitsJudge, seconds: float, seed: int):
        self.judge, self.seconds, self.seed = judge, seconds, seed
        self.start: Optional[Score] = None
        self.t0 = 0.0
        self.scores: List[Tuple[float, Score]] = []

    def on_batch(self, trainer, images, labels):
        if self.start is None:
            self.start = self.judge.score_generator(trainer.G_ema, self.seed)
            self.t0 = time.time()
        return None

    def on_step(self, trainer) -> None:
        if time.time() - self.t0 >= self.seconds:
            trainer.stop_requested = True

    def on_snapshot(self, trainer, files) -> None:
        t = time.time()
        score = self.judge.score_generator(trainer.G_ema, self.seed)
        seconds = time.time() - t
        kimg = trainer.cur_nimg / 1e3
        record = {"results": {"digits_accuracy": score.accuracy, "digits_fid": score.fid, "digits_kid": score.kid},
                  "metric": METRIC, "total_time": seconds, "total_time_str": format_time(seconds), "num_gpus": 1,
                  "snapshot_pkl": f"network-snapshot-{trainer.cur_nimg // 1000:06d}.json", "kimg": kimg,
                  "timestamp": datetime.now().timestamp()}
        append_jsonl(Path(trainer.run_dir) / f"metric-{METRIC}.jsonl", record)
        self.scores.append((kimg, score))
        print(f"digits quality at kimg {kimg:.2f}: accuracy {score.accuracy:.3f}, FID {score.fid:.3f}, "
              f"KID {score.kid:.4f}", flush=True)


def _digits_folder(dest: Path, resolution: int) -> Path:
    from .demo_data import write_digits_folder

    if not (dest / "dataset.json").is_file():
        write_digits_folder(dest, resolution)
    return dest


def summary_table(result: DemoResult) -> str:
    """The demo's result table: start, end and held-out reals for accuracy, FID and KID."""
    rows = [("class accuracy of samples", "accuracy", "{:.1%}"), ("FID (classifier features)", "fid", "{:.3f}"),
            ("KID (classifier features)", "kid", "{:.4f}")]
    head = f"{'':28s} {'start':>10s} {f'end ({result.kimg:.1f} kimg)':>18s} {'held-out reals':>16s}"
    lines = [head]
    for label, attr, fmt in rows:
        vals = [fmt.format(getattr(s, attr)) for s in (result.start, result.end, result.real)]
        lines.append(f"{label:28s} {vals[0]:>10s} {vals[1]:>18s} {vals[2]:>16s}")
    return "\n".join(lines)


def main(outdir: Union[str, Path] = "demo-run", minutes: float = DEFAULT_MINUTES, seed: int = 0,
         settings: DemoSettings = DemoSettings()) -> DemoResult:
    """Run the demo in ``outdir``: train for ``minutes`` of wall time (at most ``settings.kimg``).

    Prints the summary table and the files written, and returns them as a :class:`DemoResult`.
    """
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    from .demo_data import digits_images
    from .curves import plot_run

    outdir = Path(outdir)
    data = _digits_folder(outdir / f"digits{settings.resolution}", settings.resolution)
    images, labels = digits_images(settings.resolution)
    judge = DigitsJudge(images, labels, seed=seed, epochs=settings.judge_epochs)
    print(f"Digits classifier: {judge.holdout_accuracy:.1%} accuracy on {len(judge.holdout_labels)} held-out "
          f"real digits", flush=True)
    scorer = _Scorer(judge, minutes * 60.0, seed)
    trainer = Trainer(demo_config(data, outdir, settings, seed), [scorer])
    run_dir = Path(trainer.fit())
    train_seconds = time.time() - scorer.t0
    curves = plot_run(run_dir)
    fakes = sorted(run_dir.glob("fakes[0-9]*.png"))
    files = [run_dir / "reals.png", run_dir / "fakes_init.png", fakes[-1], curves, run_dir / "stats.jsonl",
             run_dir / f"metric-{METRIC}.jsonl"]
    history = [{"kimg": kimg, **dataclasses.asdict(score)} for kimg, score in scorer.scores]
    result = DemoResult(run_dir=run_dir, kimg=trainer.cur_nimg / 1e3, train_seconds=train_seconds,
                        holdout_accuracy=judge.holdout_accuracy, real=judge.floor, start=scorer.start,
                        end=scorer.scores[-1][1], history=history, files=files)
    print()
    print(f"Trained a class-conditional StyleGAN2 on {len(labels)} digits at {settings.resolution}x"
          f"{settings.resolution} for {format_time(train_seconds)} ({result.kimg:.1f} kimg).")
    print(summary_table(result))
    print("Files:")
    for path, what in zip(files, ("real digits, one row per class", "samples before training",
                                  "samples after training", "training curves (fastgan plot)",
                                  "per-tick statistics", "digits quality at each snapshot")):
        print(f"  {path}  ({what})")
    return result

