"""Network benchmarks (``fastgan bench models``): image generation with fastgan's backends vs ``ref``.

Per network: seconds per image and achieved GFLOP/s (convolution + matmul FLOPs counted once with
``torch.utils.flop_counter`` on the ref backend) of ``G.synthesis`` with noise 'const' under no_grad for
  * ``ref``  fp32: the same network with every op on the ref backend (the baseline),
  * ``auto`` fp32 and bf16 (``fastgan.nets.precision``): the fastest usable backend,
  * ``auto`` fp32 compiled: ``torch.compile(G.synthesis, fullgraph=True)`` (inductor) on that backend,
plus the mean absolute image difference of each run vs ref fp32 (images in [-1, 1]) and the GFLOP/s of a
large channels_last conv2d as the machine's practical peak. ref fp32, auto fp32, auto fp32 compiled and
the peak conv are timed in alternating rounds (medians), so the ratios compare runs at the same host
speed; the compilation itself happens in the untimed warm-up call. The timed fastgan runs use the opt-in
:func:`fastgan.backends.host_cache.arena` (ref and the peak conv run on torch's own allocator).
Full sizes follow the issue: StyleGAN2 config-f at 256x256 batch 4 and StyleGAN3-T/R at 256x256 batch 2;
``--quick`` uses small 16x16 nets and compiles only the first one (compiling takes far longer than the
quick runs themselves).
"""
from __future__ import annotations

import contextlib
import functools
from typing import Callable, Dict, List, NamedTuple, Tuple

import torch

from .. import backends
from ..backends import host_cache
from ..nets import precision, stylegan2, stylegan3
from . import conv_peak_case, interleaved_medians, median_seconds


def _configs(quick: bool) -> List[Tuple[str, Callable[[], torch.nn.Module], int]]:
    res = 16 if quick else 256
    small = dict(channel_base=256, channel_max=32) if quick else {}
    map8 = {"num_layers": 2 if quick else 8}
    return [
        (f"SG2 config-f {res}x{res}", lambda: stylegan2.Generator(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, num_fp16_res=0,
            mapping_kwargs=map8, **{"channel_base": 32768, "channel_max": 512, **small}), 2 if quick else 4),
        (f"SG3-T {res}x{res}", lambda: stylegan3.Generator(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, num_fp16_res=0,
            mapping_kwargs={"num_layers": 2}, **{"channel_base": 32768, "channel_max": 512, **small}),
         1 if quick else 2),
        (f"SG3-R {res}x{res}", lambda: stylegan3.Generator(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3, num_fp16_res=0, conv_kernel=1,
            use_radial_filters=True, mapping_kwargs={"num_layers": 2},
            **({"channel_base": 512, "channel_max": 64} if quick else {"channel_base": 65536,
                                                                        "channel_max": 1024})),
         1 if quick else 2),
    ]


def _flops_per_image(G: torch.nn.Module, ws: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), backends.use("ref"), counter:
        G.synthesis(ws[:1], noise_mode="const")
    return float(counter.get_total_flops())


class _Variant(NamedTuple):
    backend: str
    precision: str
    compiled: bool = False


def run(quick: bool = False, repeat: int = 5) -> Tuple[str, Dict]:
    torch.manual_seed(0)
    peak_run, peak_flops = conv_peak_case((2, 128, 32, 32), 128) if quick else conv_peak_case()
    rows: List[Dict] = []
    peaks: List[float] = []
    for k, (name, make, batch) in enumerate(_configs(quick)):
        G = make().eval().requires_grad_(False)
        with torch.no_grad():
            ws = G.mapping(torch.randn(batch, G.z_dim), None, truncation_psi=0.7)
        flops = _flops_per_image(G, ws)
        # traced at its first call, under auto fp32: the graph keeps that backend and precision
        compiled = torch.compile(G.synthesis, fullgraph=True, dynamic=False)

        def step(v: _Variant) -> torch.Tensor:
            # ref keeps torch's own allocator inside the timing arena, as a user's plain forward would
            allocator = host_cache.paused() if v.backend == "ref" else contextlib.nullcontext()
            with torch.no_grad(), backends.use(v.backend), precision(v.precision), allocator:
                return (compiled if v.compiled else G.synthesis)(ws, noise_mode="const")
        bf16 = _Variant("auto", "bf16")
        variants = [_Variant("ref", "fp32"), _Variant("auto", "fp32"), bf16]
        if not quick or k == 0:
            variants.append(_Variant("auto", "fp32", compiled=True))
        imgs = {v: step(v) for v in variants}   # first calls: warm-up (and compilation), and the images compared
        # the fp32 runs and the peak conv take turns, so all see the same host speed; bf16 convolutions fall
        # back to slow oneDNN paths on CPUs without native bf16 (AVX2): timed once.
        rounds = max(1, repeat if quick else min(repeat, 3))
        peak_reps = 3   # several conv calls per round: one is short next to a network step

        def peak_step():
            with host_cache.paused():
                for _ in range(peak_reps):
                    peak_run()
        fp32 = [v for v in variants if v.precision == "fp32"]
        with host_cache.arena():   # fastgan's runs reuse freed blocks (the opt-in page-fault control)
            *medians, t_peak = interleaved_medians([functools.partial(step, v) for v in fp32] + [peak_step],
                                                   rounds=rounds)
            times = dict(zip(fp32, medians))
            slow_bf16 = not torch.cuda.is_available()
            times[bf16] = median_seconds(lambda: step(bf16), repeat=1 if slow_bf16 else rounds, warmup=0)
        t_ref = times[variants[0]]
        peak = peak_reps * peak_flops / t_peak / 1e9
        peaks.append(peak)
        for v in variants:
            with backends.use(v.backend):
                resolved = backends.resolve(None, ws, "bench")
            t = times[v]
            rows.append({"net": name, "batch": batch, "backend": resolved, "precision": v.precision,
                         "mode": "compiled" if v.compiled else "eager",
                         "s_per_image": t / batch, "GFLOPs_per_image": flops / 1e9,
                         "GFLOP_per_s": flops * batch / t / 1e9, "peak_GFLOP_per_s": peak,
                         "pct_peak": 100 * flops * batch / t / 1e9 / peak, "speedup_vs_ref_fp32": t_ref / t,
                         "mean_abs_diff_vs_ref_fp32": float((imgs[v] - imgs[variants[0]]).abs().mean())})
    lines = [f"machine: {torch.get_num_threads()} threads; channels_last conv2d peak, timed in turn with each"
             f" network: {', '.join(f'{p:.1f}' for p in peaks)} GFLOP/s" + ("  (--quick: 16x16 nets)" if quick else ""),
             f"{'network':20s} {'batch':>5s} {'backend':8s} {'prec':5s} {'mode':8s} {'s/img':>8s} {'GFLOP/img':>9s} "
             f"{'GFLOP/s':>8s} {'%peak':>6s} {'x ref':>6s} {'|d| vs ref':>10s}"]
    for r in rows:
        lines.append(f"{r['net']:20s} {r['batch']:5d} {r['backend']:8s} {r['precision']:5s} {r['mode']:8s} "
                     f"{r['s_per_image']:8.3f} {r['GFLOPs_per_image']:9.1f} {r['GFLOP_per_s']:8.1f} "
                     f"{r['pct_peak']:5.0f}% {r['speedup_vs_ref_fp32']:6.2f} {r['mean_abs_diff_vs_ref_fp32']:10.2e}")
    return "\n".join(lines), {"peak_conv_GFLOP_per_s": peaks, "rows": rows}
