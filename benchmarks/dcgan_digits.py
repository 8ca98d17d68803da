"""Does the DCGAN family learn? Train ``--cfg dcgan`` on the demo's digits and score it like the demo does.

    python benchmarks/dcgan_digits.py [--kimg 20] [--outdir /tmp/dcgan-digits]

Writes scikit-learn's 8x8 digits as a 16x16 image folder, trains the DCGAN family on it (unconditional,
the paper's recipe, no augmentation) and prints the FID in the feature space of the demo's digits
classifier (``fastgan.train.quality.DigitsJudge``) of G_ema's samples after the first step and at the end,
next to the held-out real digits' floor. Needs scikit-learn.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from fastgan.train import TrainConfig, Trainer
from fastgan.train.demo_data import digits_images, write_digits_folder
from fastgan.train.quality import DigitsJudge
from fastgan.train.trainer import Callback


def sample_fid(judge: DigitsJudge, G: torch.nn.Module, seed: int = 0) -> float:
    """FID of one unconditional sample per held-out digit (eval mode, fixed latents)."""
    G = copy.deepcopy(G).eval()
    z = torch.randn([len(judge.holdout_labels), G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        images = G(z, None).clamp(-1, 1)
    return judge.score(images, judge.holdout_labels).fid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kimg", type=float, default=20)
    parser.add_argument("--outdir", default="/tmp/dcgan-digits")
    args = parser.parse_args()
    out = Path(args.outdir)
    data = out / "digits16"
    if not data.exists():
        write_digits_folder(data, resolution=16)
    images, labels = digits_images(16)
    judge = DigitsJudge(images, labels)
    scores = {}

    class FirstStep(Callback):
        def on_step(self, trainer):
            if trainer.step == 1:
                scores["start"] = sample_fid(judge, trainer.G_ema)

    config = TrainConfig(outdir=str(out / "runs"), data=str(data), cfg="dcgan", kimg=args.kimg, tick=5, snap=1000,
                         metrics="none", workers=0, aug="noaug", grid="8x4")
    trainer = Trainer(config, [FirstStep()])
    start = time.time()
    trainer.fit()
    print(f"DCGAN on digits 16x16: {trainer.cur_nimg / 1000:.1f} kimg in {time.time() - start:.0f} s; "
          f"FID (digits-classifier features) after the first step {scores['start']:.2f}, at the end "
          f"{sample_fid(judge, trainer.G_ema):.2f}; held-out real digits {judge.floor.fid:.3f}")


if __name__ == "__main__":
    main()
