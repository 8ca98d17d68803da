"""``fastgan info``: which backends are usable here (and, given a network file, what it holds)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show usable backends, CPU ISA and threads")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import backends
    print(backends.info())
    return 0
