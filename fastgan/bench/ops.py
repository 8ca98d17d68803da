"""Op benchmarks: every usable backend against ``ref`` in one process (``fastgan bench ops``).

The backends of one case take turns (:func:`fastgan.bench.interleaved_medians`), so a slow spell of a
shared host hits them alike. On CPU every run happens inside :func:`fastgan.backends.host_cache.arena`
(when the extension is built): outputs land in warm, reused buffers instead of freshly page-faulted
ones, whose cost on a VM varies by several times from one process to the next; the table compares
kernels, not the kernel's page-fault handling.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch

from .. import backends, ops
from ..backends import host_cache
from . import copy_bandwidth_gbs, interleaved_medians, median_seconds


@dataclass
class OpCase:
    """One benchmark: ``make(backend, backward)`` returns a closure that runs the op once."""
    op: str
    shape: Sequence[int]
    make: Callable[[str, bool], Callable[[], object]]
    bytes_fwd: int          # minimal bytes moved by the forward (read input + write output)
    bytes_fwdbwd: int       # the same for forward + backward


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, backward: bool) -> Callable[[], object]:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)  # time the kernels, not their launch
    if not backward:
        def run():
            with torch.no_grad():
                y = fn(x)
            sync()
            return y
        return run
    xg = x.detach().requires_grad_(True)
    with torch.no_grad():
        dy = torch.randn_like(fn(x))  # made once: a fresh upstream gradient per call would time page faults

    def run_bwd():
        y = fn(xg)
        (g,) = torch.autograd.grad(y, xg, dy)
        sync()
        return g
    return run_bwd


def _resample_case(op: str, shape, dtype=torch.float32, device="cpu") -> OpCase:
    n, c, h, w = shape
    f = ops.setup_filter([1, 3, 3, 1], device=device)
    x = torch.randn(shape, dtype=dtype, device=device)
    fn = {"upsample2d": lambda b: (lambda t: ops.upsample2d(t, f, impl=b)),
          "downsample2d": lambda b: (lambda t: ops.downsample2d(t, f, impl=b)),
          "filter2d": lambda b: (lambda t: ops.filter2d(t, f, impl=b))}[op]
    scale = {"upsample2d": 4, "downsample2d": 0.25, "filter2d": 1}[op]
    elt = x.element_size()
    nin = n * c * h * w
    nout = int(nin * scale)
    return OpCase(op, shape, lambda b, bwd: _fwd_bwd(fn(b), x, bwd),
                  (nin + nout) * elt, 2 * (nin + nout) * elt)


def _bias_act_case(shape, dtype=torch.float32, device="cpu") -> OpCase:
    x = torch.randn(shape, dtype=dtype, device=device)
    b = torch.randn(shape[1], dtype=dtype, device=device)
    nbytes = x.numel() * x.element_size()

    def make(backend, bwd):
        return _fwd_bwd(lambda t: ops.bias_act(t, b, act="lrelu", gain=math.sqrt(2), clamp=256, impl=backend), x, bwd)
    # forward: read x, write y; backward: read dy and x, write dx
    return OpCase("bias_act lrelu", shape, make, 2 * nbytes, 5 * nbytes)


def default_cases(quick: bool = False, device="cpu") -> List[OpCase]:
    def rs(op, shape):
        return _resample_case(op, shape, device=device)
    if quick:
        return [rs("upsample2d", (2, 64, 64, 64)), rs("downsample2d", (2, 64, 64, 64)),
                rs("filter2d", (2, 64, 64, 64)), _bias_act_case((2, 128, 64, 64), device=device)]
    return [rs("upsample2d", (8, 512, 64, 64)), rs("upsample2d", (4, 128, 256, 256)),
            rs("downsample2d", (8, 512, 64, 64)), rs("downsample2d", (4, 128, 256, 256)),
            rs("filter2d", (4, 128, 256, 256)), _bias_act_case((8, 512, 64, 64), device=device)]


def usable_backends(device: torch.device) -> List[str]:
    names = []
    for name in backends.NAMES:
        if name == "ref" or (backends.available(name) and (name == "cpu") == (device.type == "cpu")):
            names.append(name)
    return names


def run_cases(cases: List[OpCase], names: Optional[List[str]] = None, repeat: int = 5,
              device="cpu") -> List[Dict]:
    """Time every case on every backend; ``speedup`` is relative to ref in the same process."""
    names = names or usable_backends(torch.device(device))
    rows = []
    warm = host_cache.arena() if torch.device(device).type == "cpu" and host_cache.available() \
        else contextlib.nullcontext()
    with warm:
        for case in cases:
            for bwd in (False, True):
                fns = [case.make(name, bwd) for name in names]
                for fn in fns:   # warm-up: first-call set-up, and the arena's blocks
                    fn()
                times = interleaved_medians(fns, rounds=repeat)
                base = times[names.index("ref")] if "ref" in names else None
                nbytes = case.bytes_fwdbwd if bwd else case.bytes_fwd
                for name, t in zip(names, times):
                    rows.append({"op": case.op, "shape": list(case.shape), "pass": "fwd+bwd" if bwd else "fwd",
                                 "backend": name, "median_ms": t * 1e3, "GBps": nbytes / t / 1e9,
                                 "speedup_vs_ref": (base / t) if base else None})
    return rows


def format_table(rows: List[Dict], bw: float) -> str:
    out = [f"machine: {torch.get_num_threads()} threads, copy bandwidth {bw:.1f} GB/s",
           f"{'op':18s} {'shape':20s} {'pass':8s} {'backend':8s} {'median ms':>10s} {'GB/s':>7s} "
           f"{'%copy':>6s} {'x ref':>6s}"]
    for r in rows:
        sp = f"{r['speedup_vs_ref']:.2f}" if r["speedup_vs_ref"] else "-"
        out.append(f"{r['op']:18s} {str(r['shape']):20s} {r['pass']:8s} {r['backend']:8s} "
                   f"{r['median_ms']:10.2f} {r['GBps']:7.1f} {100 * r['GBps'] / bw:5.0f}% {sp:>6s}")
    return "\n".join(out)


def _cuda_copy_bandwidth_gbs(nbytes: int) -> float:
    src = torch.ones(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    t = median_seconds(lambda: (dst.copy_(src), torch.cuda.synchronize()), repeat=9, warmup=2)
    return 2 * nbytes / t / 1e9


def run(quick: bool = False, repeat: int = 5, device: Optional[str] = None):
    """The ``fastgan bench ops`` suite: returns (table text, JSON-able dict).

    ``device`` None means CUDA tensors when a GPU is visible (backends triton/cuda vs ref), else CPU.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    nbytes = 64 << 20 if quick else 256 << 20
    bw = _cuda_copy_bandwidth_gbs(nbytes) if device == "cuda" else copy_bandwidth_gbs(nbytes)
    rows = run_cases(default_cases(quick, device), repeat=repeat, device=device)
    return format_table(rows, bw), {"device": device, "copy_GBps": bw, "threads": torch.get_num_threads(),
                                    "rows": rows}
