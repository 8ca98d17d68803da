"""Benchmark harness shared by ``fastgan bench`` and ``benchmarks/`` (pytest-benchmark)."""
from __future__ import annotations

import importlib.metadata
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch


def environment() -> Dict[str, object]:
    """What a benchmark runs on: Python, torch (and its CUDA/cuDNN), triton, CPU threads and the first GPU.

    ``gpu`` is None without a CUDA device, else its name, compute capability, memory (GiB), number of
    multiprocessors and the number of visible devices. ``triton`` is None when it is not installed.
    """
    try:
        triton_version: Optional[str] = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton_version = None
    gpu = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        gpu = {"name": p.name, "capability": f"{p.major}.{p.minor}", "memory_GiB": round(p.total_memory / 2 ** 30, 1),
               "multiprocessors": p.multi_processor_count, "count": torch.cuda.device_count()}
    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "torch_cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "triton": triton_version, "cpu_threads": torch.get_num_threads(), "gpu": gpu}


def median_seconds(fn: Callable[[], object], repeat: int = 7, warmup: int = 2, min_time: float = 0.0) -> float:
    """Median wall time of ``fn()`` over ``repeat`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved_medians(fns: Sequence[Callable[[], object]], rounds: int = 3, warmup: int = 0,
                        results: Optional[List[object]] = None) -> List[float]:
    """Median wall time of each of ``fns`` over ``rounds`` rounds that run them in turn (A B A B ...).

    For comparisons on a noisy host: a slow spell hits every candidate alike, and no candidate runs
    only right after itself (warm allocator, idle thread pools) while the other never does. A
    ``results`` list, when given, receives each function's last return value (no extra call needed to
    check the outputs).
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: List[List[float]] = [[] for _ in fns]
    last: List[object] = [None] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            last[k] = fn()
            times[k].append(time.perf_counter() - t0)
    if results is not None:
        results[:] = last
    return [statistics.median(ts) for ts in times]


def copy_bandwidth_gbs(nbytes: int = 256 << 20) -> float:
    """Measured bandwidth of a large warm tensor copy in GB/s (bytes read + bytes written)."""
    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    t = median_seconds(lambda: dst.copy_(src), repeat=9, warmup=2)
    return 2 * nbytes / t / 1e9


def conv_peak_case(shape=(8, 512, 32, 32), cout: int = 512, k: int = 3,
                   dtype=torch.float32) -> Tuple[Callable[[], object], float]:
    """A large channels_last conv2d as ``(run, flops)``: the machine's practical compute peak."""
    x = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(cout, shape[1], k, k, dtype=dtype).contiguous(memory_format=torch.channels_last)

    def run():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w, padding=k // 2)
    return run, 2 * shape[0] * cout * shape[1] * k * k * shape[2] * shape[3]


def conv_gflops(shape=(8, 512, 32, 32), cout: int = 512, k: int = 3, dtype=torch.float32) -> float:
    """Achieved GFLOP/s of a channels_last conv2d (:func:`conv_peak_case`), median of 5."""
    run, flops = conv_peak_case(shape, cout, k, dtype)
    return flops / median_seconds(run, repeat=5) / 1e9
