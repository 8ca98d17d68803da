"""Convolution benchmarks (``fastgan bench conv``): modulated conv and an R1 step of a StyleGAN2
discriminator, each backend against ``ref`` in the same process, plus the GFLOP/s of a plain
channels_last conv2d."""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, List

import torch

from .. import backends, ops
from . import conv_gflops, median_seconds


def _modconv_closure(backend: str, x, weight, styles, noise, up: int, f) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return ops.modconv_bias_act(x, weight, styles, bias=None, noise=noise, up=up, resample_filter=f,
                                        act="lrelu", clamp=256, fused_modconv=True, impl=backend)
    return run


def modconv_rows(n: int, c: int, res: int, repeat: int) -> List[Dict]:
    """Forward of a SG2 synthesis layer (3x3, c->c) at up=1 and up=2; fp32 ref (fused grouped conv)
    against fp32 and bf16 on the other CPU backends."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, res, res, generator=g)
    weight = torch.randn(c, c, 3, 3, generator=g)
    styles = torch.randn(n, c, generator=g) + 1
    f = ops.setup_filter([1, 3, 3, 1])
    rows = []
    for up in (1, 2):
        noise = torch.randn(n, 1, res * up, res * up, generator=g)
        flops = 2 * n * c * c * 9 * res * res
        base = None
        for backend, dtype in (("ref", torch.float32), ("cpu", torch.float32), ("cpu", torch.bfloat16)):
            if not backends.available(backend):
                continue
            t = median_seconds(_modconv_closure(backend, x.to(dtype), weight, styles, noise.to(dtype), up, f),
                               repeat=repeat, warmup=1)
            base = t if backend == "ref" else base
            rows.append({"case": f"modconv 3x3 up={up}", "shape": [n, c, res, res], "backend": backend,
                         "dtype": str(dtype).replace("torch.", ""), "median_ms": t * 1e3, "GFLOPs": flops / t / 1e9,
                         "speedup_vs_ref": base / t if base else None})
    return rows


def r1_rows(n: int, res: int, channel_base: int, repeat: int) -> List[Dict]:
    """One R1 step of a StyleGAN2 discriminator (resnet, minibatch std; ``channel_base`` 16384 is the
    NVlabs 'auto' config below 512x512): forward on reals, non-saturating loss plus gamma/2 * R1 (the
    penalty's inner backward with ``create_graph``), backward to the parameters. The cpu step runs in
    :func:`fastgan.backends.host_cache.scope`, as training steps on the cpu backend should."""
    from ..backends import host_cache
    from ..nets import stylegan2

    torch.manual_seed(1)
    D = stylegan2.Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=channel_base,
                                channel_max=512, num_fp16_res=0)
    img = torch.randn(n, 3, res, res, generator=torch.Generator().manual_seed(2))

    def step():
        D.zero_grad(set_to_none=True)
        x = img.detach().requires_grad_(True)
        logits = D(x, None)
        loss = torch.nn.functional.softplus(-logits).mean() + 5.0 * ops.r1_penalty(logits, x).mean()
        loss.backward()
    rows, base = [], None
    for backend in ("ref", "cpu"):
        if not backends.available(backend):
            continue
        with backends.use(backend), (host_cache.scope() if backend == "cpu" else contextlib.nullcontext()):
            t = median_seconds(step, repeat=repeat, warmup=1)
        base = t if backend == "ref" else base
        rows.append({"case": "R1 step SG2 D", "shape": [n, 3, res, res], "backend": backend, "dtype": "float32",
                     "median_ms": t * 1e3, "GFLOPs": None, "speedup_vs_ref": base / t})
    return rows


def run(quick: bool = False, repeat: int = 5):
    """The ``fastgan bench conv`` suite: returns (table text, JSON-able dict)."""
    if quick:
        peak = conv_gflops((2, 64, 16, 16), 64)
        rows = modconv_rows(2, 64, 16, repeat) + r1_rows(2, 16, 256, repeat)
    else:
        peak = conv_gflops((8, 512, 32, 32), 512)
        rows = modconv_rows(8, 512, 32, repeat) + r1_rows(8, 64, 16384, repeat)
    lines = [f"machine: {torch.get_num_threads()} threads; plain channels_last conv2d of the modconv shape: "
             f"{peak:.1f} GFLOP/s",
             f"{'case':20s} {'shape':18s} {'backend':8s} {'dtype':9s} {'median ms':>10s} {'GFLOP/s':>8s} "
             f"{'%conv':>6s} {'x ref':>6s}"]
    for r in rows:
        gf = f"{r['GFLOPs']:8.1f} {100 * r['GFLOPs'] / peak:5.0f}%" if r["GFLOPs"] else f"{'-':>8s} {'-':>6s}"
        sp = f"{r['speedup_vs_ref']:.2f}" if r["speedup_vs_ref"] else "-"
        lines.append(f"{r['case']:20s} {str(r['shape']):18s} {r['backend']:8s} {r['dtype']:9s} "
                     f"{r['median_ms']:10.1f} {gf} {sp:>6s}")
    return "\n".join(lines), {"conv_GFLOPs": peak, "threads": torch.get_num_threads(), "rows": rows}
