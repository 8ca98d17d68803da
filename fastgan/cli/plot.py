"""``fastgan plot RUN_DIR``: training curves (losses, r_t, ADA p, sec/kimg, metrics) as one PNG."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("plot", help="render the training curves of a run directory to a PNG")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory holding stats.jsonl / metric-*.jsonl")
    p.add_argument("--out", default=None, metavar="PNG", help="output file (default RUN_DIR/curves.png)")
    p.add_argument("--renderer", default="auto", choices=["auto", "matplotlib", "pil"],
                   help="auto: matplotlib when installed, else the built-in PIL renderer")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train.curves import plot_run

    path = plot_run(args.run_dir, args.out, renderer=args.renderer)
    print(f"wrote {path}")
    return 0
