"""Would a Winograd convolution make the StyleGAN2 discriminator faster on this CPU?

    python benchmarks/winograd_probe.py [--rounds 3]

The discriminator of ``fastgan bench train``'s StyleGAN2 64x64 ``auto`` case spends most of its time in
3x3 stride-1 convolutions that oneDNN already runs near the machine's peak, in both the cpu and the ref
backend. Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016) does 4x fewer multiplications: 36 independent [K, C] x [C, tiles] matrix products
plus input and output transforms. This probe times, for the two large layer shapes at batch 8 (interleaved
rounds, medians, milliseconds), the direct convolution (channels_last and NCHW), the 36 matrix products
alone (``torch.bmm``, a lower bound for any Winograd kernel: zero-cost transforms) and a complete Winograd
convolution written with PyTorch ops, and prints the maximum error of the direct and the Winograd result
against a float64 convolution.
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from fastgan.bench import interleaved_medians

# F(4x4, 3x3) with interpolation points 0, +-1, +-2, +-1/2 (the paper's matrices).
B_T = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], dtype=torch.float64)
G_M = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                    [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], dtype=torch.float64)
A_T = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
                   dtype=torch.float64)


def winograd_conv3x3(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, w, padding=1)`` for x [N, C, H, W] with H and W multiples of 4, w [K, C, 3, 3]."""
    n, c, h, wd = x.shape
    k = w.shape[0]
    th, tw = h // 4, wd // 4
    bt, g, at = (m.to(x.dtype) for m in (B_T, G_M, A_T))
    tiles = F.pad(x, (1, 1, 1, 1)).unfold(2, 6, 4).unfold(3, 6, 4)            # N C th tw 6 6
    v = torch.einsum("ai,nctuij,bj->abcntu", bt, tiles, bt).reshape(36, c, n * th * tw)
    u = torch.einsum("ai,kcij,bj->abkc", g, w, g).reshape(36, k, c)
    m = torch.bmm(u, v).reshape(6, 6, k, n, th, tw)
    return torch.einsum("ia,abkntu,jb->nktiuj", at, m, at).reshape(n, k, h, wd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}; ms, medians of {args.rounds} interleaved rounds")
    print(f"{'layer':28s} {'direct CL':>9s} {'direct':>9s} {'bmm only':>9s} {'winograd':>9s}  "
          f"{'max err direct':>14s} {'max err wino':>12s}")
    for c, res in ((256, 64), (512, 32)):
        torch.manual_seed(0)
        x = torch.randn(8, c, res, res)
        w = torch.randn(c, c, 3, 3) / (9 * c) ** 0.5
        exact = F.conv2d(x.double(), w.double(), padding=1)
        err_direct = (F.conv2d(x, w, padding=1).double() - exact).abs().max().item()
        err_wino = (winograd_conv3x3(x, w).double() - exact).abs().max().item()
        xc, wc = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
        u = torch.randn(36, c, c)
        v = torch.randn(36, c, 8 * res * res // 16)
        fns = [lambda: F.conv2d(xc, wc, padding=1), lambda: F.conv2d(x, w, padding=1),
               lambda: torch.bmm(u, v), lambda: winograd_conv3x3(x, w)]
        times = interleaved_medians(fns, rounds=args.rounds, warmup=1)
        print(f"{f'3x3 {c}->{c} at {res}x{res}, b8':28s} "
              + " ".join(f"{t * 1e3:9.1f}" for t in times) + f"  {err_direct:14.2e} {err_wino:12.2e}")


if __name__ == "__main__":
    main()
