"""``fastgan info``: which backends are usable here (and, given a network file, what it holds)."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show usable backends, CPU ISA and threads; or describe a network file")
    p.add_argument("network", nargs="?", help="NVlabs .pkl or fastgan .safetensors: describe it instead")
    p.add_argument("--key", default="G_ema", help="network inside a pickle (default G_ema)")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.network:
        from ..nets.summary import describe_file
        print(describe_file(args.network, args.key))
        return 0
    from .. import backends
    print(backends.info())
    return 0
