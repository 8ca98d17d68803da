"""``fastgan convert IN OUT``: NVlabs pickle or fastgan network -> fastgan .safetensors (+ .json config),
or a plain state-dict file with NVlabs parameter names (.pt / .pth for torch.load, .npz for numpy)."""
from __future__ import annotations

import io
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a network: .pkl/.safetensors -> .safetensors, .pt or .npz")
    p.add_argument("input", help="NVlabs .pkl or fastgan .safetensors")
    p.add_argument("output", help="OUT.safetensors (fastgan format), OUT.pt/.pth or OUT.npz (state dict)")
    p.add_argument("--key", default="G_ema", help="network inside a pickle: G_ema (default), G or D")
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    import torch

    from ..serialize import save_network
    from ..utils.io import atomic_write_bytes
    from ._netargs import load

    args.network, args.device = args.input, None
    net = load(args)
    out = Path(args.output)
    suffix = out.suffix.lower()
    if suffix == ".safetensors":
        path = save_network(net, out)
        print(f"wrote {path} and {path.with_suffix('.json')}")
        return 0
    sd = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    if suffix in (".pt", ".pth"):
        torch.save(sd, buf)
    elif suffix == ".npz":
        np.savez(buf, **{k: v.numpy() for k, v in sd.items()})
    else:
        raise ValueError(f"output must end in .safetensors, .pt, .pth or .npz, got {out.name!r}")
    atomic_write_bytes(out, buf.getvalue())
    print(f"wrote {len(sd)} tensors with NVlabs names to {out}")
    return 0
