"""``fastgan info``: which backends are usable here (and, given a network file, what it holds)."""
from __future__ import annotations

from pathlib import Path
from typing import List


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show usable backends, CPU ISA and threads; or describe a network file")
    p.add_argument("network", nargs="?", help="NVlabs .pkl or fastgan .safetensors: describe it instead")
    p.add_argument("--key", default="G_ema", help="network inside a pickle (default G_ema)")
    p.set_defaults(func=run)


def describe_pickle(path: Path, key: str) -> List[str]:
    """Header lines for an NVlabs pickle: its era, the networks it holds, augment pipe and dataset kwargs."""
    from ..serialize import TFNetworkRecord, augment_pipe_info, read_pickle

    data = read_pickle(path)
    nets = [k for k in ("G", "D", "G_ema") if data[k] is not None]
    tf = any(isinstance(data[k], TFNetworkRecord) for k in nets)
    lines = [f"format: {'StyleGAN2 TensorFlow pickle (G, D, Gs)' if tf else 'NVlabs PyTorch pickle'}",
             f"networks: {', '.join(nets)}; showing {key}"]
    pipe = augment_pipe_info(data["augment_pipe"])
    if pipe is not None:
        lines.append(f"augment_pipe: {pipe.class_name} p={pipe.p:.4f} {pipe.init_kwargs}")
    if data["training_set_kwargs"]:
        lines.append(f"training_set_kwargs: {data['training_set_kwargs']}")
    return lines


def run(args) -> int:
    if args.network:
        from ..nets.summary import describe
        from ..serialize import file_kind
        from ._netargs import load

        path = Path(args.network)
        args.device = None
        net = load(args)
        head = [f"file: {path}"] + (describe_pickle(path, args.key) if file_kind(path) == "pickle" else [])
        print("\n".join(head + [describe(net)]))
        return 0
    from .. import backends
    print(backends.info())
    return 0
