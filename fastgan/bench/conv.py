"""Convolution benchmarks (``fastgan bench conv``): modulated conv and an R1 step of a StyleGAN2
discriminator, each backend against ``ref`` in the same process, the GFLOP/s of a plain
channels_last conv2d, and the ``policy ...`` rows: the candidates behind each measured constant of
:mod:`fastgan.backends.cpu_policy`, timed side by side."""
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
    :func:`fastgan.backends.host_cache.arena`, as training steps on the cpu backend should."""
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
        with backends.use(backend), (host_cache.arena() if backend == "cpu" else contextlib.nullcontext()):
            t = median_seconds(step, repeat=repeat, warmup=1)
        base = t if backend == "ref" else base
        rows.append({"case": "R1 step SG2 D", "shape": [n, 3, res, res], "backend": backend, "dtype": "float32",
                     "median_ms": t * 1e3, "GFLOPs": None, "speedup_vs_ref": base / t})
    return rows


def _row(case: str, shape, label: str, t: float, flops: float) -> Dict:
    return {"case": case, "shape": list(shape), "backend": label, "dtype": "float32", "median_ms": t * 1e3,
            "GFLOPs": flops / t / 1e9, "speedup_vs_ref": None}


def _nchw_rows(n: int, c: int, sizes, repeat: int) -> List[Dict]:
    """``NCHW_CONV_MAX_PIXELS``: an SG3 layer (3x3, padding 2, inference) on NCHW activations, convolved
    NCHW (``cpu/nchw``) or channels_last between two relayouts (``cpu/cl``)."""
    from ..backends import cpu_policy

    g = torch.Generator().manual_seed(3)
    w, s = torch.randn(c, c, 3, 3, generator=g), torch.randn(n, c, generator=g)
    rows, saved = [], cpu_policy.NCHW_CONV_MAX_PIXELS
    try:
        for size in sizes:
            x = torch.randn(n, c, size, size, generator=g)
            flops = 2 * n * c * c * 9 * (size + 2) ** 2
            for label, limit in (("cpu/nchw", size * size), ("cpu/cl", size * size - 1)):
                cpu_policy.NCHW_CONV_MAX_PIXELS = limit
                with torch.no_grad():
                    t = median_seconds(lambda: ops.modulated_conv2d_sg3(x, w, s, padding=2, impl="cpu"),
                                       repeat=repeat, warmup=1)
                rows.append(_row(f"policy nchw {size}x{size}", x.shape, label, t, flops))
    finally:
        cpu_policy.NCHW_CONV_MAX_PIXELS = saved
    return rows


def _deconv_rows(n: int, c: int, res: int, outs, tiles, repeat: int) -> List[Dict]:
    """``GEMM_DECONV_MAX_OUT_CHANNELS`` and ``GEMM_DECONV_TILE_ROWS``: a stride-2 3x3 transposed
    convolution of channels_last activations as tiled GEMMs (``cpu/gemm``) or by oneDNN (``cpu/onednn``);
    the tile sizes at the first output-channel count."""
    from ..backends import cpu_conv_transpose, cpu_policy

    g = torch.Generator().manual_seed(4)
    x = torch.randn(n, c, res, res, generator=g).contiguous(memory_format=torch.channels_last)
    rows, saved = [], cpu_policy.GEMM_DECONV_TILE_ROWS
    for o in outs:
        w = torch.randn(c, o, 3, 3, generator=g)
        flops = 2 * n * c * o * 9 * res * res
        with torch.no_grad():
            t_gemm = median_seconds(lambda: cpu_conv_transpose.conv_transpose2d(x, w, 2), repeat=repeat, warmup=1)
            t_dnn = median_seconds(lambda: torch.nn.functional.conv_transpose2d(x, w, stride=2), repeat=repeat,
                                   warmup=1)
        rows += [_row(f"policy deconv O={o}", x.shape, "cpu/gemm", t_gemm, flops),
                 _row(f"policy deconv O={o}", x.shape, "cpu/onednn", t_dnn, flops)]
    w = torch.randn(c, outs[0], 3, 3, generator=g)
    try:
        for tile in tiles:
            cpu_policy.GEMM_DECONV_TILE_ROWS = tile
            with torch.no_grad():
                t = median_seconds(lambda: cpu_conv_transpose.conv_transpose2d(x, w, 2), repeat=repeat, warmup=1)
            rows.append(_row(f"policy deconv tile={tile}", x.shape, "cpu/gemm", t, 2 * n * c * outs[0] * 9 * res * res))
    finally:
        cpu_policy.GEMM_DECONV_TILE_ROWS = saved
    return rows


def _grad_rows(n: int, c: int, res: int, repeat: int) -> List[Dict]:
    """``DGRAD_CHANNELS_LAST`` / ``WGRAD_CHANNELS_LAST`` / ``wgrad_channels_last``: the data and the weight
    gradient of a 3x3 convolution with activations and output gradient NCHW (``cpu/nchw``) or
    channels_last (``cpu/cl``), at padding 1 and (weight gradient) padding 2, the StyleGAN3 layers'."""
    g = torch.Generator().manual_seed(5)
    w = torch.randn(c, c, 3, 3, generator=g)
    x = torch.randn(n, c, res, res, generator=g)
    rows = []
    for case, mask, pad in (("policy dgrad", [True, False, False], 1), ("policy wgrad", [False, True, False], 1),
                            ("policy wgrad pad=2", [False, True, False], 2)):
        out = res + 2 * pad - 2
        dy = torch.randn(n, c, out, out, generator=g)
        flops = 2 * n * c * c * 9 * out * out
        for label, fmt in (("cpu/nchw", torch.contiguous_format), ("cpu/cl", torch.channels_last)):
            xf, dyf = x.contiguous(memory_format=fmt), dy.contiguous(memory_format=fmt)
            t = median_seconds(lambda: torch.ops.aten.convolution_backward(
                dyf, xf, w, None, [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, mask), repeat=repeat, warmup=1)
            rows.append(_row(case, x.shape, label, t, flops))
    return rows


def policy_rows(quick: bool, repeat: int) -> List[Dict]:
    """The measurements behind :mod:`fastgan.backends.cpu_policy` (empty without the cpu backend)."""
    if not backends.available("cpu"):
        return []
    if quick:
        return (_nchw_rows(2, 16, (12, 20), repeat) + _deconv_rows(1, 16, 8, (8, 16), (16, 64), repeat)
                + _grad_rows(2, 16, 16, repeat))
    return (_nchw_rows(2, 256, (36, 84, 148), repeat)
            + _deconv_rows(2, 256, 64, (128, 64, 256), (512, 2048, 8192), repeat) + _grad_rows(4, 128, 64, repeat))


def run(quick: bool = False, repeat: int = 5):
    """The ``fastgan bench conv`` suite: returns (table text, JSON-able dict)."""
    if quick:
        peak = conv_gflops((2, 64, 16, 16), 64)
        rows = modconv_rows(2, 64, 16, repeat) + r1_rows(2, 16, 256, repeat)
    else:
        peak = conv_gflops((8, 512, 32, 32), 512)
        rows = modconv_rows(8, 512, 32, repeat) + r1_rows(8, 64, 16384, repeat)
    rows += policy_rows(quick, repeat)
    lines = [f"machine: {torch.get_num_threads()} threads; plain channels_last conv2d of the modconv shape: "
             f"{peak:.1f} GFLOP/s",
             f"{'case':24s} {'shape':18s} {'backend':10s} {'dtype':9s} {'median ms':>10s} {'GFLOP/s':>8s} "
             f"{'%conv':>6s} {'x ref':>6s}"]
    for r in rows:
        gf = f"{r['GFLOPs']:8.1f} {100 * r['GFLOPs'] / peak:5.0f}%" if r["GFLOPs"] else f"{'-':>8s} {'-':>6s}"
        sp = f"{r['speedup_vs_ref']:.2f}" if r["speedup_vs_ref"] else "-"
        lines.append(f"{r['case']:24s} {str(r['shape']):18s} {r['backend']:10s} {r['dtype']:9s} "
                     f"{r['median_ms']:10.1f} {gf} {sp:>6s}")
    return "\n".join(lines), {"conv_GFLOPs": peak, "threads": torch.get_num_threads(), "rows": rows}
