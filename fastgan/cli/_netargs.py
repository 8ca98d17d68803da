"""Options shared by the network subcommands (generate, mix, interpolate, convert, info)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def add_network_args(p, sampling: bool = True) -> None:
    p.add_argument("--network", required=True, metavar="PATH", help="NVlabs .pkl or fastgan .safetensors network")
    p.add_argument("--key", default="G_ema", help="network inside a pickle: G_ema (default), G or D")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--backend", default=None, choices=["auto", "ref", "cpu", "triton", "cuda"],
                   help="op backend (default: FASTGAN_BACKEND or auto)")
    if sampling:
        p.add_argument("--trunc", type=float, default=1.0, metavar="PSI", help="truncation psi (default 1)")
        p.add_argument("--trunc-cutoff", type=int, default=None, metavar="N",
                       help="truncate only the first N ws (default: all)")
        p.add_argument("--noise-mode", default="const", choices=["const", "random", "none"])
        p.add_argument("--class", dest="class_idx", type=int, default=None, metavar="IDX",
                       help="class label of a conditional network")
        p.add_argument("--batch", type=int, default=16, help="images per forward pass (default 16)")
        p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                       help="compute precision of the synthesis network (fp16 needs CUDA)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")


def load(args) -> torch.nn.Module:
    """The network named by ``--network/--key`` on ``--device``; loader errors (which name the file) become
    ValueErrors."""
    from ..serialize import UnsafePickleError, load_network

    try:
        return load_network(args.network, key=args.key, device=args.device)
    except (UnsafePickleError, KeyError) as e:
        raise ValueError(e.args[0] if e.args else str(e)) from None


@contextlib.contextmanager
def backend_scope(args) -> Iterator[None]:
    """The backend of ``--backend`` (if given) and, for CPU generation, a host-cache arena for this thread."""
    with contextlib.ExitStack() as stack:
        if getattr(args, "backend", None):
            from .. import backends

            stack.enter_context(backends.use(args.backend))
        device = str(getattr(args, "device", None) or "cpu")
        if device.startswith("cpu"):
            from ..backends import host_cache

            if host_cache.available():
                stack.enter_context(host_cache.arena())
        yield


def require_generator(G, what: str) -> None:
    if not hasattr(G, "mapping") or not hasattr(G, "synthesis"):
        raise ValueError(f"{what} needs a StyleGAN2/StyleGAN3 generator, got {type(G).__name__}")
