"""A/B of the cpu training policies on the StyleGAN2 64x64 ``auto`` networks of ``fastgan bench train``.

    python benchmarks/cpu_train_ab.py [--rounds 3]

Times, in interleaved rounds (medians, milliseconds), at batch 8:
  * ``D fwd+bwd``: the discriminator's forward and backward on generated images (Dmain's work per input);
  * ``G+D``: generator and discriminator forward and backward (Gmain's work);
for the cpu backend with the weight gradient in each layout (``cpu_policy.WGRAD_CHANNELS_LAST``), listed
both ways round (a variant's place in the rotation can shift its time on a shared host), and the ref
backend, all on torch's allocator; then the same with and without the host-cache arena (``fastgan train --host-cache``), the arena
opened once around all rounds and paused for the variants without it.
"""
from __future__ import annotations

import argparse
import contextlib

import torch

from fastgan import backends
from fastgan.backends import cpu_policy, host_cache
from fastgan.bench import interleaved_medians
from fastgan.nets import stylegan2


def networks():
    """G and D as ``--cfg auto`` builds them for 64x64 RGB, batch 8 (channel_base 16384, 2 mapping layers)."""
    torch.manual_seed(0)
    common = dict(c_dim=0, img_resolution=64, img_channels=3, channel_base=16384, channel_max=512, num_fp16_res=0)
    G = stylegan2.Generator(z_dim=512, w_dim=512, mapping_kwargs={"num_layers": 2}, **common)
    D = stylegan2.Discriminator(epilogue_kwargs={"mbstd_group_size": 4}, **common)
    return G, D


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    if not backends.available("cpu"):
        raise SystemExit("the cpu backend (fastgan._C) is not built")
    G, D = networks()
    z = torch.randn(8, G.z_dim)
    with torch.no_grad():
        img = G(z, None)

    def d_step():
        D.requires_grad_(True)
        torch.nn.functional.softplus(D(img, None)).sum().backward()

    def g_step():
        G.requires_grad_(True)
        D.requires_grad_(False)
        torch.nn.functional.softplus(-D(G(z, None), None)).sum().backward()
        D.requires_grad_(True)

    def variant(step, backend, wgrad_cl=cpu_policy.WGRAD_CHANNELS_LAST, arena=True):
        def run():
            saved = cpu_policy.WGRAD_CHANNELS_LAST
            cpu_policy.WGRAD_CHANNELS_LAST = wgrad_cl
            try:
                with backends.use(backend), (contextlib.nullcontext() if arena else host_cache.paused()):
                    step()
            finally:
                cpu_policy.WGRAD_CHANNELS_LAST = saved
                G.zero_grad(set_to_none=True)
                D.zero_grad(set_to_none=True)
        return run

    print(f"torch threads {torch.get_num_threads()}, cpu kernels {backends.get('cpu').isa()}, "
          f"torch capability {torch.backends.cpu.get_cpu_capability()}; ms, medians of {rounds} rounds")
    for name, step in (("D fwd+bwd", d_step), ("G+D", g_step)):
        labels = ["cpu wgrad-cl", "cpu wgrad-nchw", "ref", "cpu wgrad-nchw", "cpu wgrad-cl"]
        fns = [variant(step, "cpu", True, arena=False), variant(step, "cpu", False, arena=False),
               variant(step, "ref", arena=False), variant(step, "cpu", False, arena=False),
               variant(step, "cpu", True, arena=False)]
        for f in fns:
            f()
        times = interleaved_medians(fns, rounds=rounds)
        print(f"{name:10s} layouts: " + "  ".join(f"{lb} {t * 1e3:.0f}" for lb, t in zip(labels, times)))
        labels = ["cpu", "cpu+arena", "ref", "ref+arena"]
        fns = [variant(step, "cpu", arena=False), variant(step, "cpu"), variant(step, "ref", arena=False),
               variant(step, "ref")]
        with host_cache.arena():
            for f in fns:
                f()
            times = interleaved_medians(fns, rounds=rounds)
        print(f"{name:10s} arena:   " + "  ".join(f"{lb} {t * 1e3:.0f}" for lb, t in zip(labels, times)))


if __name__ == "__main__":
    main()
