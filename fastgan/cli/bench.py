"""``fastgan bench SUITE``: time fastgan against its ref backend in one process, print, optionally save JSON.

Each suite is a module ``fastgan.bench.<suite>`` with ``run(quick: bool, repeat: int) -> (text, data)``.
"""
from __future__ import annotations

import importlib
import json

SUITES = ["ops", "metrics", "models", "conv", "filtered", "train"]


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark fastgan against the ref backend")
    p.add_argument("suite", choices=SUITES, help="what to benchmark")
    p.add_argument("--quick", action="store_true", help="small shapes (seconds, for smoke runs)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (median reported)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON (atomically)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..utils.io import atomic_write_text

    text, data = importlib.import_module(f"fastgan.bench.{args.suite}").run(args.quick, args.repeat)
    print(text)
    if args.json:
        atomic_write_text(args.json, json.dumps(data, indent=1))
    return 0
