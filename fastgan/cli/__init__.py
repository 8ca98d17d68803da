"""The ``fastgan`` command line: one module per subcommand, each with ``add_parser(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

# Subcommand modules under fastgan.cli; each registers its parser and sets ``func(args) -> int``.
COMMANDS = ["info", "bench", "metrics", "fid", "generate", "mix", "interpolate", "convert", "dataset", "train",
            "plot", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastgan", description="Kernel-accelerated GAN engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"fastgan {args.command}: error: {e}", file=sys.stderr)
        return 2
