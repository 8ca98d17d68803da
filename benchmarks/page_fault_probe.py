"""How much do fresh large tensors cost on this machine, with and without the host-cache arena?

    python benchmarks/page_fault_probe.py [--calls 12]

Calls one cpu ``bias_act`` on a [8, 256, 64, 64] channels_last float32 tensor (the largest activation of
the StyleGAN2 64x64 discriminator, 32 MiB) repeatedly, with other allocations in between as a network
makes them, and prints each call's milliseconds on torch's allocator and inside
``fastgan.backends.host_cache.arena()``, twice each. Each output is a fresh 32 MiB block: on torch's
allocator glibc maps it anew, so the time includes the page faults of mapping it in; in the arena it reuses
a block freed earlier. Where the spread of the first rows is large, ``fastgan train --host-cache`` pays off.
"""
from __future__ import annotations

import argparse
import contextlib
import time

import torch

from fastgan import ops
from fastgan.backends import host_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=12)
    args = parser.parse_args()
    x = torch.randn(8, 256, 64, 64).contiguous(memory_format=torch.channels_last)
    b = torch.randn(256)
    others = []
    print(f"bias_act [8, 256, 64, 64] channels_last, ms per call; arena available: {host_cache.available()}")
    for mode in ("torch allocator", "arena", "torch allocator", "arena"):
        times = []
        with host_cache.arena() if mode == "arena" else contextlib.nullcontext():
            for _ in range(args.calls):
                start = time.perf_counter()
                ops.bias_act(x, b, act="lrelu", gain=2 ** 0.5, impl="cpu")
                times.append((time.perf_counter() - start) * 1e3)
                others = (others + [torch.randn(2 << 20)])[-8:]   # 8 MiB blocks in between
        print(f"{mode:16s} " + " ".join(f"{t:6.1f}" for t in times))


if __name__ == "__main__":
    main()
