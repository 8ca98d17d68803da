"""How fast can the cpu backend's StyleGAN2 training step get while oneDNN does its convolutions?

    python benchmarks/train_conv_bound.py [--steps 16] [--rounds 1]

Builds the StyleGAN2 64x64 ``auto`` case of ``fastgan bench train`` (batch 8, lazy regularisation) and
times ``--steps`` whole training steps per variant and round (variants in turn), without a profiler: the cpu
and the ref backend, each on torch's own allocator and inside the host-cache arena (``fastgan train
--host-cache``), which spares the page faults of fresh activation buffers.

Then it runs the same number of cpu steps (in the arena) under ``torch.profiler`` and sums the self time of the
convolution operators (``aten::mkldnn_convolution``, ``aten::convolution_backward``, ``aten::_convolution``
and the other ``aten::*conv*`` kernels). The ref backend calls the same oneDNN kernels for the same
layers, so the cpu step can be no faster than that sum even if every other op in it took no time:
``ref step / cpu convolution time`` bounds the cpu backend's speed-up over ref (printed for both ref
variants). Printed: milliseconds per
step (lazy regularisation amortised over the ``--steps``), the convolution sum and its share, the
largest convolution calls by shape, and the bound. Any 16 consecutive steps hold one R1 step (every 16)
and four path-length steps (every 4), so keep ``--steps`` a multiple of 16.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from fastgan import backends
from fastgan.backends import host_cache
from fastgan.bench.train import _Probe, _write_dataset
from fastgan.train import TrainConfig, Trainer


VARIANTS = [("cpu", True), ("ref", False), ("cpu", False), ("ref", True)]


def label(backend: str, arena: bool) -> str:
    return f"{backend} ({'host cache' if arena else 'torch allocator'})"


def is_conv(name: str) -> bool:
    """Whether a profiler event is a convolution kernel of ATen (oneDNN or its fallbacks)."""
    return name.startswith("aten::") and "conv" in name


def timed_steps(trainer, backend: str, steps: int, arena: bool) -> float:
    """Seconds per step of ``steps`` training steps on ``backend`` (in the arena when ``arena``)."""
    with backends.use(backend), (host_cache.arena() if arena else contextlib.nullcontext()):
        trainer._train_step()                                   # first-call and allocator warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer._train_step()
        return (time.perf_counter() - t0) / steps


def conv_profile(trainer, steps: int):
    """(total self ms per step, convolution ms per step, [(ms per step, calls per step, op, shapes)])."""
    with backends.use("cpu"), host_cache.arena():
        trainer._train_step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                trainer._train_step()
    per_op = defaultdict(float)
    calls = []
    for e in prof.key_averages(group_by_input_shape=True):
        ms = e.self_cpu_time_total / 1e3 / steps
        per_op[e.key] += ms
        if is_conv(e.key):
            calls.append((ms, e.count / steps, e.key, str(e.input_shapes)))
    conv = sum(ms for k, ms in per_op.items() if is_conv(k))
    return sum(per_op.values()), conv, sorted(calls, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=16, help="timed steps per variant (default 16)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of all variants (default 1)")
    parser.add_argument("--top", type=int, default=12, help="convolution calls listed (default 12)")
    args = parser.parse_args()
    if not (backends.available("cpu") and host_cache.available()):
        raise SystemExit("the cpu backend (fastgan._C) is not built")
    result = {}

    def body(trainer, probe):
        times = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for backend, arena in VARIANTS:
                times[backend, arena].append(timed_steps(trainer, backend, args.steps, arena))
        result["times"] = {k: sum(v) / len(v) for k, v in times.items()}
        result["profile"] = conv_profile(trainer, args.steps)
        return result

    with tempfile.TemporaryDirectory() as tmp:
        data = _write_dataset(Path(tmp) / "data64", 64)
        config = TrainConfig(outdir=str(Path(tmp) / "runs"), data=str(data), cfg="auto", batch=8, kimg=1e6,
                             tick=1e6, snap=1000000, metrics="none", workers=0, grid="2x2", device="cpu")
        trainer = Trainer(config, [_Probe(body)])
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.fit()
    times = result["times"]
    total, conv, calls = result["profile"]
    print(f"StyleGAN2 64x64 auto, batch 8, torch threads {torch.get_num_threads()}, "
          f"{args.rounds} x {args.steps} steps per variant")
    base = times["ref", False]
    for v in VARIANTS:
        print(f"  {label(*v):28s} {times[v] * 1e3:8.0f} ms per step   {base / times[v]:5.2f}x ref (torch allocator)")
    print(f"cpu (host cache) under the profiler: {total:.0f} ms of op self time per step, convolutions {conv:.0f} ms "
          f"({100 * conv / total:.0f}%)")
    for v in (("ref", False), ("ref", True)):
        print(f"bound over {label(*v)}: {times[v] * 1e3 / conv:.2f}x (its step / the cpu convolution time)")
    print("largest convolution calls (ms per step, calls per step, op, input shapes):")
    for ms, count, name, shapes in calls[:args.top]:
        print(f"  {ms:8.1f}  x{count:5.2f}  {name}  {shapes[:110]}")


if __name__ == "__main__":
    main()
