"""``fastgan bench ops``: time every usable backend against ref, print a table, optionally write JSON."""
from __future__ import annotations

import json

import torch


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark ops (ref vs compiled backends)")
    p.add_argument("suite", choices=["ops"], help="what to benchmark")
    p.add_argument("--quick", action="store_true", help="small shapes (a few seconds)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--json", metavar="PATH", help="also write the rows as JSON (atomically)")
    p.set_defaults(func=run)


def _table(rows, bw: float) -> str:
    out = [f"machine: {torch.get_num_threads()} threads, copy bandwidth {bw:.1f} GB/s",
           f"{'op':18s} {'shape':20s} {'pass':8s} {'backend':8s} {'median ms':>10s} {'GB/s':>7s} "
           f"{'%copy':>6s} {'x ref':>6s}"]
    for r in rows:
        sp = f"{r['speedup_vs_ref']:.2f}" if r["speedup_vs_ref"] else "-"
        out.append(f"{r['op']:18s} {str(r['shape']):20s} {r['pass']:8s} {r['backend']:8s} "
                   f"{r['median_ms']:10.2f} {r['GBps']:7.1f} {100 * r['GBps'] / bw:5.0f}% {sp:>6s}")
    return "\n".join(out)


def run(args) -> int:
    from ..bench import copy_bandwidth_gbs
    from ..bench.ops import default_cases, run_cases
    from ..utils.io import atomic_write_text

    bw = copy_bandwidth_gbs(64 << 20 if args.quick else 256 << 20)
    rows = run_cases(default_cases(args.quick), repeat=args.repeat)
    print(_table(rows, bw))
    if args.json:
        atomic_write_text(args.json, json.dumps({"copy_GBps": bw, "threads": torch.get_num_threads(),
                                                 "rows": rows}, indent=1))
    return 0
