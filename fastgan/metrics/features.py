"""Image sources and batched feature extraction.

A *source* yields uint8 image batches ``(B, 3, H, W)`` for one shard (``rank`` of ``world_size``; item
``i`` belongs to rank ``i % world_size``):

* :class:`ImageFiles` - an image folder (searched recursively) or a .zip of images, read with Pillow in
  DataLoader workers;
* :class:`ImageArray` - a uint8 array or tensor, NCHW or NHWC;
* :class:`GeneratorImages` - a generator network ``G(z, c, truncation_psi=..., noise_mode=...)`` driven by
  integer seeds; images are made and consumed batch by batch, never all held in memory.

An *extractor* is any ``nn.Module`` mapping ``(B, 3, H, W)`` images with values in [0, 255] to a feature
tensor ``(B, D)`` or a dict of them (the FID Inception returns ``'pool'``, ``'logits'`` and
``'logits_unbiased'``). :func:`iter_features` runs it on the chosen device with optional channels_last and
bf16/fp16 autocast; :func:`compute_stats` and :func:`compute_features` consume it.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .stats import FeatureStats

__all__ = ["ImageFiles", "ImageArray", "GeneratorImages", "as_source", "iter_features", "compute_stats",
           "compute_features", "IMAGE_EXTENSIONS", "AUTOCAST_DTYPES"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _shard(n: int, rank: int, world_size: int) -> range:
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    return range(rank, n, world_size)


def _to_rgb_chw(arr: np.ndarray, name: str) -> torch.Tensor:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"image {name}: unsupported shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr[:, :, :3])).permute(2, 0, 1)


class _Failure:
    """An error found in a DataLoader worker, handed to the main process (which raises it cleanly)."""

    def __init__(self, message: str):
        self.message = message


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, root: Path, names: List[str], is_zip: bool):
        self.root, self.names, self.is_zip = root, names, is_zip
        self._zip: Optional[zipfile.ZipFile] = None

    def __len__(self) -> int:
        return len(self.names)

    def _read_bytes(self, name: str) -> bytes:
        if self.is_zip:
            if self._zip is None:          # opened lazily: one handle per worker process
                self._zip = zipfile.ZipFile(self.root)
            return self._zip.read(name)
        return (self.root / name).read_bytes()

    def __getitem__(self, idx: int) -> Tuple[Union[torch.Tensor, _Failure], int]:
        try:
            return self._load(idx), idx
        except ValueError as e:
            return _Failure(str(e)), idx

    def _load(self, idx: int) -> torch.Tensor:
        from PIL import Image

        name = self.names[idx]
        where = f"{self.root}:{name}" if self.is_zip else str(self.root / name)
        try:
            with Image.open(io.BytesIO(self._read_bytes(name))) as im:
                im.load()
                if im.mode not in ("L", "RGB", "RGBA"):
                    im = im.convert("RGB")
                arr = np.array(im)
        except Exception as e:  # PIL raises many types; the caller needs the file name
            raise ValueError(f"cannot read image {where}: {type(e).__name__}: {e}") from None
        if arr.dtype != np.uint8:
            raise ValueError(f"image {where}: expected 8-bit pixels, got {arr.dtype}")
        return _to_rgb_chw(arr, where)


class ImageFiles:
    """Images in a folder (recursive) or a .zip, in sorted name order.

    Args:
        path: folder or .zip file. max_items: use only the first ``max_items`` images.
        num_workers: DataLoader worker processes (0 reads in the main process).
    """

    def __init__(self, path: Union[str, os.PathLike], max_items: Optional[int] = None, num_workers: int = 3):
        self.path = Path(path)
        self.is_zip = self.path.is_file() and zipfile.is_zipfile(self.path)
        if self.is_zip:
            with zipfile.ZipFile(self.path) as zf:
                names = [n for n in zf.namelist() if n.lower().endswith(IMAGE_EXTENSIONS)]
        elif self.path.is_dir():
            names = [p.relative_to(self.path).as_posix() for p in self.path.rglob("*")
                     if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
        else:
            raise FileNotFoundError(f"image source not found (expected a folder or .zip): {self.path}")
        names.sort()
        if not names:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.path}")
        self.names = names[:max_items] if max_items is not None else names
        self.num_workers = num_workers

    def __len__(self) -> int:
        return len(self.names)

    def _collate(self, items) -> Union[torch.Tensor, _Failure]:
        for t, _ in items:
            if isinstance(t, _Failure):
                return t
        first = items[0][0].shape
        for t, idx in items:
            if t.shape != first:
                return _Failure(f"image {self.names[idx]} in {self.path} has shape {tuple(t.shape)} but "
                                f"{self.names[items[0][1]]} has {tuple(first)}: all images must be the same size")
        return torch.stack([t for t, _ in items])

    def batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[torch.Tensor]:
        ds = _FileDataset(self.path, self.names, self.is_zip)
        sub = torch.utils.data.Subset(ds, list(_shard(len(ds), rank, world_size)))
        loader = torch.utils.data.DataLoader(sub, batch_size=batch_size, num_workers=self.num_workers,
                                             collate_fn=self._collate, pin_memory=torch.cuda.is_available())
        for batch in loader:
            if isinstance(batch, _Failure):
                raise ValueError(batch.message)
            yield batch


class ImageArray:
    """uint8 images in memory: array or tensor ``(N, 3|1, H, W)`` or ``(N, H, W, 3|1)``."""

    def __init__(self, images: Union[np.ndarray, torch.Tensor], max_items: Optional[int] = None):
        t = torch.as_tensor(images)
        if t.dtype != torch.uint8:
            raise TypeError(f"ImageArray: images must be uint8, got {t.dtype}")
        if t.ndim != 4:
            raise ValueError(f"ImageArray: images must be 4-D (N, C, H, W) or (N, H, W, C), got {tuple(t.shape)}")
        if t.shape[1] not in (1, 3) and t.shape[3] in (1, 3):
            t = t.permute(0, 3, 1, 2)
        if t.shape[1] not in (1, 3):
            raise ValueError(f"ImageArray: expected 1 or 3 channels, got shape {tuple(t.shape)}")
        self.images = t[:max_items] if max_items is not None else t

    def __len__(self) -> int:
        return self.images.shape[0]

    def batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[torch.Tensor]:
        idx = torch.tensor(list(_shard(len(self), rank, world_size)), dtype=torch.long)
        for i in range(0, len(idx), batch_size):
            b = self.images[idx[i:i + batch_size]]
            yield b.expand(-1, 3, -1, -1) if b.shape[1] == 1 else b


class GeneratorImages:
    """Images from a generator network, one per integer seed.

    ``z`` for seed s is ``numpy.random.RandomState(s).randn(G.z_dim)``; for conditional generators
    (``G.c_dim > 0``) the class is ``class_idx`` or, when None, drawn from the same RandomState. Outputs in
    [-1, 1] become uint8 via ``clamp(x * 127.5 + 128, 0, 255)``.
    """

    def __init__(self, G: nn.Module, seeds: Sequence[int], truncation_psi: float = 1.0, noise_mode: str = "const",
                 class_idx: Optional[int] = None, device: Union[str, torch.device, None] = None):
        self.G, self.seeds = G, list(seeds)
        self.truncation_psi, self.noise_mode, self.class_idx = truncation_psi, noise_mode, class_idx
        self.device = torch.device(device) if device is not None else next(G.parameters()).device

    def __len__(self) -> int:
        return len(self.seeds)

    def _latents(self, seeds: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
        z_dim, c_dim = int(self.G.z_dim), int(getattr(self.G, "c_dim", 0))
        zs, cs = [], np.zeros((len(seeds), c_dim), dtype=np.float32)
        for i, s in enumerate(seeds):
            rs = np.random.RandomState(int(s) % (1 << 32))
            zs.append(rs.randn(z_dim))
            if c_dim:
                cs[i, self.class_idx if self.class_idx is not None else rs.randint(c_dim)] = 1
        z = torch.from_numpy(np.stack(zs).astype(np.float32)).to(self.device)
        return z, torch.from_numpy(cs).to(self.device)

    @torch.no_grad()
    def batches(self, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[torch.Tensor]:
        mine = [self.seeds[i] for i in _shard(len(self.seeds), rank, world_size)]
        for i in range(0, len(mine), batch_size):
            z, c = self._latents(mine[i:i + batch_size])
            img = self.G(z, c, truncation_psi=self.truncation_psi, noise_mode=self.noise_mode)
            img = (img.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
            yield img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img


Source = Union[ImageFiles, ImageArray, GeneratorImages]


def as_source(obj, max_items: Optional[int] = None, num_workers: int = 3) -> Source:
    """A source from a path (folder/.zip), a uint8 array/tensor, or an existing source."""
    if isinstance(obj, (ImageFiles, ImageArray, GeneratorImages)):
        return obj
    if isinstance(obj, (str, os.PathLike)):
        return ImageFiles(obj, max_items=max_items, num_workers=num_workers)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return ImageArray(obj, max_items=max_items)
    raise TypeError(f"expected an image folder/.zip path, uint8 array/tensor or source, got {type(obj).__name__}")


class _Progress:
    def __init__(self, label: str, total: int, enabled: bool):
        self.label, self.total, self.enabled, self.done = label, total, enabled, 0
        self.t0 = time.perf_counter()

    def update(self, n: int) -> None:
        self.done += n
        if self.enabled:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            end = "\n" if self.done >= self.total else ""
            print(f"\r{self.label}: {self.done}/{self.total} images ({rate:.1f} img/s)", end=end,
                  file=sys.stderr, flush=True)


def iter_features(source: Source, extractor: nn.Module, batch_size: int = 64,
                  device: Union[str, torch.device, None] = None, channels_last: bool = True,
                  autocast: Optional[str] = None, rank: int = 0, world_size: int = 1,
                  progress: Union[bool, str] = False) -> Iterator[Dict[str, torch.Tensor]]:
    """Yield the extractor's outputs (float32 tensors on ``device``) for each image batch of this shard.

    Args:
        device: where the extractor runs (default: its parameters' device).
        channels_last: run convolutions in NHWC (faster with cuDNN/oneDNN).
        autocast: None, ``'bf16'`` or ``'fp16'``: mixed-precision extraction (see docs/metrics.md for its
            effect on FID; statistics are still accumulated in float64).
        progress: print a progress line to stderr (a string is used as its label).
    """
    if autocast is not None and autocast not in AUTOCAST_DTYPES:
        raise ValueError(f"autocast must be None or one of {tuple(AUTOCAST_DTYPES)}, got {autocast!r}")
    params = list(extractor.parameters())
    device = torch.device(device) if device is not None else (params[0].device if params else torch.device("cpu"))
    extractor = extractor.to(device).eval()
    if channels_last:
        extractor = extractor.to(memory_format=torch.channels_last)
    total = len(_shard(len(source), rank, world_size))
    bar = _Progress(progress if isinstance(progress, str) else "features", total, bool(progress))
    for images in source.batches(batch_size, rank, world_size):
        images = images.to(device, non_blocking=True)
        amp = (torch.autocast(device.type, dtype=AUTOCAST_DTYPES[autocast]) if autocast is not None
               else contextlib.nullcontext())
        with torch.no_grad(), amp:
            out = extractor(images)
        if isinstance(out, torch.Tensor):
            out = {"pool": out}
        yield {k: v.float() for k, v in out.items()}
        bar.update(images.shape[0])


def compute_stats(source: Source, extractor: nn.Module, key: str = "pool", rank: int = 0, world_size: int = 1,
                  **kwargs) -> FeatureStats:
    """Float64 :class:`FeatureStats` of output ``key`` over the source; all-reduced when world_size > 1."""
    stats = None
    for out in iter_features(source, extractor, rank=rank, world_size=world_size, **kwargs):
        if stats is None:
            stats = FeatureStats(dim=out[key].shape[1])
        stats.append(out[key])
    if stats is None:
        stats = FeatureStats(dim=int(getattr(extractor, "feature_dim", 0)) or None)
    if world_size > 1:
        stats.all_reduce()
    return stats


def compute_features(source: Source, extractor: nn.Module, keys: Sequence[str] = ("pool",),
                     on_batch: Optional[Callable[[Dict[str, torch.Tensor]], None]] = None,
                     rank: int = 0, world_size: int = 1, **kwargs) -> Dict[str, torch.Tensor]:
    """All outputs named in ``keys``, concatenated on the CPU: ``{key: (N, D_key)}``.

    ``on_batch`` also sees every batch's outputs of this rank (e.g. to feed a :class:`FeatureStats` in the
    same pass). With ``world_size > 1`` every rank gets the features of all ranks (rank-major order).
    """
    parts: Dict[str, List[torch.Tensor]] = {k: [] for k in keys}
    for out in iter_features(source, extractor, rank=rank, world_size=world_size, **kwargs):
        missing = [k for k in keys if k not in out]
        if missing:
            raise ValueError(f"extractor outputs {sorted(out)} lack {missing}")
        if on_batch is not None:
            on_batch(out)
        for k in keys:
            parts[k].append(out[k].cpu())
    result = {k: torch.cat(v) if v else torch.empty(0) for k, v in parts.items()}
    if world_size > 1:
        import torch.distributed as dist

        gathered: List[Optional[Dict[str, torch.Tensor]]] = [None] * world_size
        dist.all_gather_object(gathered, result)
        result = {k: torch.cat([g[k] for g in gathered if g[k].numel()]) for k in keys}
    return result
