"""``fastgan demo``: train a small class-conditional StyleGAN2 on the scikit-learn digits and show it learns."""
from __future__ import annotations


def add_parser(sub) -> None:
    from ..train.demo import DEFAULT_MINUTES

    p = sub.add_parser("demo", help="train a small conditional StyleGAN2 on 8x8 digits (a few CPU minutes)")
    p.add_argument("--outdir", default="demo-run", help="output folder (default demo-run)")
    p.add_argument("--minutes", type=float, default=DEFAULT_MINUTES,
                   help=f"wall-clock training budget (default {DEFAULT_MINUTES:g})")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="training precision (default fp32; bf16 pays off on CPUs with native bf16)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train.demo import DemoSettings, main

    main(args.outdir, minutes=args.minutes, seed=args.seed, settings=DemoSettings(precision=args.precision))
    return 0
