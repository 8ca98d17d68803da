"""Streaming float64 mean and covariance of feature vectors (the statistics behind FID).

The state is n, a shift vector c, s = sum(x - c) and S = sum((x - c)(x - c)^T). The shift is the mean
of the first batch (later re-centred on the global mean when statistics are merged or all-reduced), so
the final ``S/n - (s/n)(s/n)^T`` suffers no cancellation even when features have a large mean.

S is symmetric, so each batch is a symmetric rank-k update: on the CPU through BLAS ``dsyrk`` (half the
flops of a general product; the fastest option measured on CPU), elsewhere as a blocked product that
computes only the upper block triangle. Small batches (the extractor's, e.g. 64 rows) are gathered in a
float64 buffer of up to 4096 rows first: a rank-k update costs a pass over the D x D matrix, so few large
updates are much faster than many small ones. On the CPU the rows enter the buffer through one fused
pass (widen to float64, subtract c, add to s; the operator ``torch.ops.fastgan.center_rows_``) instead of three.
Only the upper triangle of S is kept up to date; the full matrix (and the covariance) is made when it is
read, tile by tile in a single pass.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional, Tuple, Union

import numpy as np
import torch

from .. import backends
from ..backends.prims.stats import CENTER_ROWS

__all__ = ["FeatureStats"]

Array = Union[np.ndarray, torch.Tensor]
_BUFFER_ROWS = 4096  # rows gathered per rank-k update (a 4096 x D float64 buffer)
_BLOCKS = 8          # column blocks of the blocked torch update (upper block triangle: 9/16 of a GEMM)
_TILE = 256          # tile edge of the symmetrising pass (a 512 KiB float64 tile stays in L2)


def _dsyrk():
    try:
        from scipy.linalg.blas import dsyrk
    except ImportError:  # pragma: no cover - scipy is optional
        return None
    return dsyrk


def _center_rows() -> Optional[Callable[..., None]]:
    """``fn(dst, x, shift, sums)``: the fused CPU centring operator, or None where the cpu backend is
    unavailable (the C++ extension is not built)."""
    if not backends.available("cpu"):
        return None
    return functools.partial(CENTER_ROWS, backend="cpu")


class FeatureStats:
    """Streaming statistics of ``(N, D)`` feature batches: count, mean and covariance in float64.

    Args:
        dim: feature dimension D; inferred from the first batch when omitted (required before
            :meth:`all_reduce` on a rank that saw no data).
        device: where the accumulators live (default: the device of the first batch). Keep it on the
            extraction device to avoid host transfers.

    ``append`` adds a batch, ``merge`` adds another ``FeatureStats``, ``all_reduce`` sums over the ranks of
    ``torch.distributed``; ``mean()``/``cov()``/``mean_cov()`` read the result as float64 numpy arrays.
    """

    def __init__(self, dim: Optional[int] = None, device: Optional[Union[str, torch.device]] = None):
        if dim is not None and (not isinstance(dim, int) or dim <= 0):
            raise ValueError(f"FeatureStats: dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.device = torch.device(device) if device is not None else None
        self.n = 0
        self._shift: Optional[torch.Tensor] = None
        self._sum: Optional[torch.Tensor] = None
        self._outer: Optional[torch.Tensor] = None
        self._buf: Optional[torch.Tensor] = None
        self._fill = 0

    # -- accumulation ---------------------------------------------------------------------------
    def _allocate(self, device: torch.device) -> None:
        d = self.dim
        self.device = device
        self._shift = torch.zeros(d, dtype=torch.float64, device=device)
        self._sum = torch.zeros(d, dtype=torch.float64, device=device)
        if device.type == "cpu":
            # Fortran order, so scipy's dsyrk updates this memory in place.
            self._outer = torch.from_numpy(np.zeros((d, d), dtype=np.float64, order="F"))
        else:
            self._outer = torch.zeros(d, d, dtype=torch.float64, device=device)
        self._buf = None
        self._fill = 0

    def append(self, x: Array) -> "FeatureStats":
        """Add a batch of feature vectors, shape ``(N, D)`` (any float dtype, numpy or torch)."""
        x = torch.as_tensor(x)
        if x.ndim != 2:
            raise ValueError(f"FeatureStats.append: x must be (N, D), got shape {tuple(x.shape)}")
        if not (x.is_floating_point() or x.dtype in (torch.uint8, torch.int32, torch.int64)):
            raise TypeError(f"FeatureStats.append: x must be real-valued, got {x.dtype}")
        if self.dim is None:
            self.dim = int(x.shape[1])
        if x.shape[1] != self.dim:
            raise ValueError(f"FeatureStats.append: expected D={self.dim} features, got {x.shape[1]}")
        if x.shape[0] == 0:
            return self
        if self._outer is None:
            self._allocate(self.device or x.device)
        x = x.detach().to(self.device)
        if self.n == 0:
            self._shift.copy_(x[:_BUFFER_ROWS].double().mean(0))
        if self._buf is None:
            self._buf = torch.empty(_BUFFER_ROWS, self.dim, dtype=torch.float64, device=self.device)
        fused = _center_rows() if self.device.type == "cpu" else None
        if fused is not None:   # the kernel reads contiguous float32/float64 rows; copy_ below takes any input
            x = (x if x.dtype in (torch.float32, torch.float64) else x.double()).contiguous()
        i = 0
        while i < x.shape[0]:
            take = min(_BUFFER_ROWS - self._fill, x.shape[0] - i)
            rows = self._buf[self._fill:self._fill + take]
            if fused is not None:
                fused(rows, x[i:i + take], self._shift, self._sum)
            else:
                # widen, then subtract in float64: two fast passes (a mixed-dtype torch.sub is ~4x slower)
                self._sum += rows.copy_(x[i:i + take]).sub_(self._shift).sum(0)
            self._fill += take
            i += take
            if self._fill == _BUFFER_ROWS:
                self._flush()
        self.n += int(x.shape[0])
        return self

    def _flush(self) -> None:
        """Fold the buffered rows (already counted in s) into S."""
        if self._fill:
            self._rank_k_update(self._buf[:self._fill])
            self._fill = 0

    def _rank_k_update(self, xc: torch.Tensor) -> None:
        """S += xc^T xc on the upper triangle."""
        dsyrk = _dsyrk() if xc.device.type == "cpu" else None
        if dsyrk is not None:
            c = self._outer.numpy()           # Fortran-ordered view of S
            a = xc.numpy().T                  # (D, k) Fortran view: dsyrk(trans=0) gives a @ a.T = xc^T xc
            out = dsyrk(1.0, a, beta=1.0, c=c, trans=0, lower=0, overwrite_c=1)
            if out is not c and not np.shares_memory(out, c):  # pragma: no cover - defensive
                c[...] = out
            return
        d = self.dim
        step = -(-d // _BLOCKS)
        for lo in range(0, d, step):
            hi = min(lo + step, d)
            self._outer[lo:hi, lo:].addmm_(xc[:, lo:hi].mT, xc[:, lo:])

    def _full_outer(self, mean: Optional[torch.Tensor] = None, scale: float = 1.0) -> torch.Tensor:
        """``scale * (S - n mean mean^T)`` as a full symmetric matrix (``mean=None``: ``scale * S``).

        Reads the upper triangle of S once and writes each tile and its mirror image once.
        """
        self._flush()
        d, src = self.dim, self._outer
        out = torch.empty(d, d, dtype=torch.float64, device=src.device)
        for i0 in range(0, d, _TILE):
            i1 = min(i0 + _TILE, d)
            for j0 in range(i0, d, _TILE):
                j1 = min(j0 + _TILE, d)
                if mean is None:
                    tile = src[i0:i1, j0:j1] * scale
                else:
                    tile = torch.addr(src[i0:i1, j0:j1], mean[i0:i1], mean[j0:j1], beta=scale, alpha=-self.n * scale)
                if i0 == j0:  # diagonal tile: only its upper triangle is maintained
                    tile = tile.triu_()
                    tile += tile.triu(1).mT
                out[i0:i1, j0:j1] = tile
                if i0 != j0:
                    out[j0:j1, i0:i1] = tile.mT
        return out

    def _recenter(self, new_shift: torch.Tensor) -> None:
        """Express the state relative to ``new_shift`` (exact: S' = S + s d^T + d s^T + n d d^T, d = c - c')."""
        self._flush()
        delta = self._shift - new_shift
        corr = torch.outer(self._sum, delta)
        corr += corr.mT.clone()
        corr += self.n * torch.outer(delta, delta)
        self._outer += corr
        self._sum += self.n * delta
        self._shift.copy_(new_shift)

    def merge(self, other: "FeatureStats") -> "FeatureStats":
        """Add the data of ``other`` (same D) into ``self``; ``other`` is left unchanged."""
        if not isinstance(other, FeatureStats):
            raise TypeError(f"FeatureStats.merge: expected FeatureStats, got {type(other).__name__}")
        if other.n == 0:
            return self
        if self.dim is not None and other.dim != self.dim:
            raise ValueError(f"FeatureStats.merge: dimension mismatch {self.dim} vs {other.dim}")
        if self.n == 0:
            self.dim = other.dim
            self._allocate(self.device or other.device)
            self._shift.copy_(other._shift.to(self.device))
        self._flush()
        other._flush()
        o_shift, o_sum = other._shift.to(self.device), other._sum.to(self.device)
        total = self.n + other.n
        mean = (self._shift * self.n + self._sum + o_shift * other.n + o_sum) / total
        self._recenter(mean)
        tmp = FeatureStats(self.dim, self.device)
        tmp.n, tmp._shift, tmp._sum = other.n, o_shift.clone(), o_sum.clone()
        tmp._outer = other._full_outer().to(self.device)
        tmp._recenter(mean)
        self._outer += tmp._outer
        self._sum += tmp._sum
        self.n = total
        return self

    def all_reduce(self, group=None) -> "FeatureStats":
        """Sum the statistics of all ranks of ``torch.distributed`` (in place; every rank gets the total).

        Ranks are re-centred on the global mean first, so the result equals single-process statistics of
        the union of the shards up to float64 rounding. Accumulators must be on a device that the process
        group's backend supports (CPU for gloo, CUDA for nccl).
        """
        import torch.distributed as dist

        if self.dim is None:
            raise ValueError("FeatureStats.all_reduce: dim unknown on this rank; pass dim= to FeatureStats()")
        if self._outer is None:
            self._allocate(self.device or torch.device("cpu"))
        self._flush()
        head = torch.cat([torch.tensor([float(self.n)], dtype=torch.float64, device=self.device),
                          self._shift * self.n + self._sum])
        dist.all_reduce(head, group=group)
        total = int(round(float(head[0])))
        if total == 0:
            return self
        self._recenter(head[1:] / total)
        full = self._full_outer().contiguous()
        self._buf = None
        dist.all_reduce(full, group=group)
        dist.all_reduce(self._sum, group=group)
        # full is symmetric, so its transpose view is the same matrix in Fortran order (what dsyrk updates).
        self._outer = full.mT if self.device.type == "cpu" else full
        self.n = total
        return self

    # -- results ---------------------------------------------------------------------------------
    def _check_nonempty(self, what: str, need: int = 1) -> None:
        if self.n < need:
            raise ValueError(f"FeatureStats.{what}: needs at least {need} feature vector(s), have {self.n}")

    def mean_cov_torch(self, ddof: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(D,)`` and covariance ``(D, D)`` as float64 tensors on the accumulator device.

        ``ddof=1`` divides by n-1 like ``numpy.cov`` and pytorch-fid; ``ddof=0`` divides by n like NVlabs.
        """
        self._check_nonempty("mean_cov", need=ddof + 1)
        self._flush()
        m = self._sum / self.n
        return self._shift + m, self._full_outer(m, 1.0 / (self.n - ddof))

    def mean_cov(self, ddof: int = 1) -> Tuple[np.ndarray, np.ndarray]:
        """Mean and covariance as float64 numpy arrays (see :meth:`mean_cov_torch`)."""
        mu, cov = self.mean_cov_torch(ddof)
        return mu.cpu().numpy(), cov.cpu().numpy()

    def mean(self) -> np.ndarray:
        self._check_nonempty("mean")
        self._flush()
        return (self._shift + self._sum / self.n).cpu().numpy()

    def cov(self, ddof: int = 1) -> np.ndarray:
        return self.mean_cov(ddof)[1]

    def save(self, path: Union[str, Path], ddof: int = 1, **extra) -> None:
        """Write ``mu``, ``sigma`` and ``n`` as .npz (pytorch-fid's key names), atomically."""
        from ..utils.io import atomic_open

        mu, sigma = self.mean_cov(ddof)
        with atomic_open(path, "wb") as fh:
            np.savez(fh, mu=mu, sigma=sigma, n=np.int64(self.n), **extra)

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim}, device={self.device})"
