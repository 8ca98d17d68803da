"""Image grids of the training run: ``reals.png``, ``fakes_init.png``, ``fakes<KIMG>.png`` (training-spec §1.11)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..utils.io import atomic_write_bytes

__all__ = ["grid_size", "to_grid", "save_image_grid", "real_grid", "generate_fakes"]


def grid_size(width: int, height: int) -> Tuple[int, int]:
    """``(gw, gh)``: ``clip(7680 // W, 7, 32)`` columns and ``clip(4320 // H, 4, 32)`` rows."""
    return int(np.clip(7680 // width, 7, 32)), int(np.clip(4320 // height, 4, 32))


def to_grid(images: Union[np.ndarray, torch.Tensor], drange: Sequence[float], grid: Tuple[int, int]) -> np.ndarray:
    """Tile ``gw * gh`` images [N, C, H, W] into one uint8 array [gh*H, gw*W, C].

    Pixels map ``[lo, hi] -> [0, 255]`` (rounded to nearest, clipped); item ``i`` goes to row ``i // gw``,
    column ``i % gw``; C must be 1 or 3.
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    gw, gh = grid
    if images.ndim != 4 or images.shape[0] != gw * gh:
        raise ValueError(f"images must be [gw*gh={gw * gh}, C, H, W], got shape {list(images.shape)}")
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels for a PNG grid, got {c}")
    lo, hi = float(drange[0]), float(drange[1])
    pixels = np.clip(np.rint((images - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)
    tiled = pixels.reshape(gh, gw, c, h, w).transpose(0, 3, 1, 4, 2)   # [gh, H, gw, W, C]
    return tiled.reshape(gh * h, gw * w, c)


def save_image_grid(images, path: Union[str, Path], drange: Sequence[float], grid: Tuple[int, int]) -> Path:
    """Write :func:`to_grid` as a PNG (mode L or RGB), atomically."""
    from PIL import Image

    arr = to_grid(images, drange, grid)
    img = Image.fromarray(arr[:, :, 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr, "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def real_grid(dataset, grid: Optional[Tuple[int, int]] = None):
    """``(grid, uint8 images [gw*gh, C, H, W], float32 labels [gw*gh, label_dim])`` chosen by
    :func:`fastgan.train.data.grid_indices` (its own RandomState(0), independent of the run's seed)."""
    from .data import grid_indices

    if grid is None:
        grid = grid_size(dataset.image_shape[2], dataset.image_shape[1])
    items = [dataset[i] for i in grid_indices(dataset, grid[0], grid[1])]
    images = np.stack([img for img, _ in items])
    labels = np.stack([lab for _, lab in items]).astype(np.float32)
    return grid, images, labels


@torch.no_grad()
def generate_fakes(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor, batch: int) -> torch.Tensor:
    """``G(z, c, noise_mode='const')`` with ψ = 1 in chunks of ``batch``; float [N, C, H, W] on the CPU."""
    out = [G(zz, cc, noise_mode="const").float().cpu() for zz, cc in zip(z.split(batch), c.split(batch))]
    return torch.cat(out)
