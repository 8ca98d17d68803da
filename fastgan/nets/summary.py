"""Human-readable summaries of networks and network files (``fastgan info NETWORK``)."""
from __future__ import annotations

from pathlib import Path
from typing import List

import torch


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe(net: torch.nn.Module) -> str:
    """Class, architecture, resolution, latent sizes, conditioning and parameter counts of ``net``."""
    cls = f"{type(net).__module__}.{type(net).__qualname__}"
    lines: List[str] = [f"class: {cls}"]
    kw = getattr(net, "init_kwargs", {}) or {}
    res, ch = getattr(net, "img_resolution", None), getattr(net, "img_channels", None)
    if res is not None:
        lines.append(f"image: {res}x{res}, {ch} channel(s)")
    arch = kw.get("architecture") or (kw.get("synthesis_kwargs") or {}).get("architecture")
    if "stylegan3" in cls:
        arch = "StyleGAN3-R (radial filters, 1x1 convs)" if kw.get("use_radial_filters") else "StyleGAN3-T"
    elif "stylegan2" in cls and arch is None:
        arch = "skip" if cls.endswith("Generator") else "resnet"
    if arch:
        lines.append(f"architecture: {arch}")
    if hasattr(net, "z_dim"):
        lines.append(f"latents: z_dim={net.z_dim}, w_dim={net.w_dim}, num_ws={net.num_ws}")
    c_dim = getattr(net, "c_dim", 0)
    lines.append(f"conditioning: {'c_dim=' + str(c_dim) + ' classes/labels' if c_dim else 'unconditional'}")
    for name in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp"):
        v = kw.get(name, (kw.get("synthesis_kwargs") or {}).get(name))
        if v is not None:
            lines.append(f"{name}: {v}")
    parts = [f"{n} {_count(m):,}" for n, m in net.named_children() if _count(m)]
    lines.append(f"parameters: {_count(net):,}" + (f" ({', '.join(parts)})" if len(parts) > 1 else ""))
    lines.append(f"buffers: {sum(b.numel() for b in net.buffers()):,}")
    return "\n".join(lines)


def describe_file(path, key: str = "G_ema") -> str:
    """:func:`describe` of network ``key`` in ``path``, plus what else an NVlabs snapshot holds."""
    from ..serialize import PersistentRecord, UnsafePickleError, load_network, read_pickle
    from ..serialize import _kind

    path = Path(path)
    try:
        head = [f"file: {path}"]
        if path.exists() and _kind(path) == "pickle":
            data = read_pickle(path)
            nets = [k for k, v in data.items() if isinstance(v, PersistentRecord)]
            head.append(f"pickle networks: {', '.join(nets)}; showing {key}")
            if data.get("training_set_kwargs"):
                head.append(f"training_set_kwargs: {data['training_set_kwargs']}")
        return "\n".join(head + [describe(load_network(path, key=key))])
    except (UnsafePickleError, KeyError) as e:
        raise ValueError(f"{path}: {e.args[0] if e.args else e}") from None
