"""``fastgan bench filtered``: filtered_lrelu (StyleGAN3 layer shapes) and adain against ref.

Times forward and forward+backward of every usable CPU backend against ``ref`` in one process, and
measures the peak memory of one forward+backward per backend in a fresh subprocess (peak RSS minus
the RSS just before the call; Linux only), since torch's CPU allocator is invisible to tracemalloc.
"""
from __future__ import annotations

import json
import subprocess
import sys
from typing import Callable, Dict, List, Tuple

import numpy as np
import torch

from .. import backends, ops
from . import median_seconds


def kaiser_lowpass(taps: int, cutoff: float, width: float, fs: float) -> torch.Tensor:
    """Kaiser-windowed sinc low-pass taps (the kind StyleGAN3 designs), normalised to unit DC gain."""
    atten = 2.285 * (taps - 1) * np.pi * (width / (fs / 2)) + 7.95
    beta = 0.1102 * (atten - 8.7) if atten > 50 else (0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
                                                      if atten > 21 else 0.0)
    t = np.arange(taps) - (taps - 1) / 2
    h = np.sinc(2 * cutoff / fs * t) * np.kaiser(taps, beta)
    return torch.tensor(h / h.sum(), dtype=torch.float32)


def _cases(quick: bool) -> Dict[str, Tuple[Callable[[str], Callable[[torch.Tensor], object]], Tuple[int, ...]]]:
    f = kaiser_lowpass(12, cutoff=10.0, width=8.0, fs=64.0)
    radial = torch.outer(f, f)  # stands in for the 2-D radial down filter of SG3-R
    n, c = (1, 32) if quick else (4, 512)
    torch.manual_seed(0)
    b = torch.randn(c)
    kw = dict(b=b, up=2, down=2, padding=[11, 10, 11, 10], gain=float(np.sqrt(2)), slope=0.2, clamp=256.0)
    an, ac = (2, 32) if quick else (8, 512)
    scale, bias = torch.randn(an, ac), torch.randn(an, ac)
    return {
        "filtered_lrelu sep": (lambda impl: lambda x: ops.filtered_lrelu(x, f, f, impl=impl, **kw), (n, c, 36, 36)),
        "filtered_lrelu 2-D fd": (lambda impl: lambda x: ops.filtered_lrelu(x, f, radial, impl=impl, **kw),
                                  (n, c, 36, 36)),
        "adain": (lambda impl: lambda x: ops.adain(x, scale, bias, impl=impl), (an, ac, 64, 64)),
    }


def _runner(fn, x: torch.Tensor, backward: bool):
    if not backward:
        def fwd():
            with torch.no_grad():
                return fn(x)
        return fwd
    xg = x.detach().requires_grad_(True)

    def fwd_bwd():
        y = fn(xg)
        return torch.autograd.grad(y, xg, torch.ones_like(y))[0]
    return fwd_bwd


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory(case: str, impl: str, quick: bool) -> int:
    """Peak RSS growth (bytes) of one forward+backward (Linux: VmHWM after resetting it, minus VmRSS)."""
    make, shape = _cases(quick)[case]
    x = torch.randn(shape)
    fn = _runner(make(impl), x, True)
    if case.startswith("filtered"):  # load the kernels first
        ops.filtered_lrelu(torch.randn(1, 1, 16, 16), impl=impl)
    with open("/proc/self/clear_refs", "w") as fh:  # "5" resets the peak RSS (VmHWM) to the current RSS
        fh.write("5")
    base = _status_kib("VmRSS")
    fn()
    return max(_status_kib("VmHWM") - base, 0) * 1024


def _peak_in_subprocess(case: str, impl: str, quick: bool) -> int:
    code = ("import json,sys; from fastgan.bench.filtered import peak_memory; "
            f"print(json.dumps(peak_memory({case!r}, {impl!r}, {quick!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def run(quick: bool = False, repeat: int = 5):
    """The suite: returns (table text, JSON-able dict)."""
    names = ["ref"] + (["cpu"] if backends.available("cpu") else [])
    rows: List[Dict] = []
    for case, (make, shape) in _cases(quick).items():
        x = torch.randn(shape)
        mem = {impl: _peak_in_subprocess(case, impl, quick) for impl in names}
        for bwd in (False, True):
            base = None
            for impl in names:
                t = median_seconds(_runner(make(impl), x, bwd), repeat=repeat, warmup=1)
                base = t if impl == "ref" else base
                rows.append({"op": case, "shape": list(shape), "pass": "fwd+bwd" if bwd else "fwd", "backend": impl,
                             "median_ms": t * 1e3, "speedup_vs_ref": base / t,
                             "peak_MiB_fwd_bwd": mem[impl] / 2 ** 20,
                             "peak_vs_ref": mem[impl] / mem["ref"] if mem["ref"] else None})
    lines = [f"{torch.get_num_threads()} threads; peak = RSS growth of one fwd+bwd in a fresh process",
             f"{'op':22s} {'shape':18s} {'pass':8s} {'backend':7s} {'median ms':>10s} {'x ref':>6s} {'peak MiB':>9s} "
             f"{'/ref':>5s}"]
    for r in rows:
        pr = f"{r['peak_vs_ref']:.2f}" if r["peak_vs_ref"] is not None else "-"
        lines.append(f"{r['op']:22s} {str(r['shape']):18s} {r['pass']:8s} {r['backend']:7s} {r['median_ms']:10.2f} "
                     f"{r['speedup_vs_ref']:6.2f} {r['peak_MiB_fwd_bwd']:9.1f} {pr:>5s}")
    return "\n".join(lines), {"threads": torch.get_num_threads(), "rows": rows}
