"""Image generation from StyleGAN-family generators: seeds -> latents -> uint8 images, in streamed batches.

Seeds map to latents exactly as NVlabs' ``gen_images.py`` does (``np.random.RandomState(seed).randn(z_dim)``),
so a seed gives the same image as with the NVlabs tools. Images are converted like NVlabs:
``clamp(img * 127.5 + 128, 0, 255)`` as uint8, NHWC.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .nets import precision as _precision
from .utils.io import atomic_write_bytes

__all__ = ["generate", "iter_generate", "seeds_to_z", "class_labels", "to_uint8", "parse_range", "parse_grid",
           "grid_image", "save_png", "synthesize_ws", "slerp", "set_input_transform"]


def parse_range(text: Union[str, Sequence[int]]) -> List[int]:
    """'0-3,7,10-11' -> [0, 1, 2, 3, 7, 10, 11] (ranges inclusive); lists pass through."""
    if not isinstance(text, str):
        return [int(v) for v in text]
    out: List[int] = []
    for part in text.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)-(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"range {part!r}: the end is before the start")
            out.extend(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            out.append(int(part))
        else:
            raise ValueError(f"expected a list like '0-63' or '1,5,7-9', got {text!r}")
    return out


def parse_grid(text: str) -> Tuple[int, int]:
    """'8x4' -> (8 columns, 4 rows)."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise ValueError(f"grid must look like COLSxROWS, e.g. 8x8, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def seeds_to_z(seeds: Sequence[int], z_dim: int) -> np.ndarray:
    """[len(seeds), z_dim] float32 latents, one ``RandomState(seed).randn(z_dim)`` row per seed."""
    for s in seeds:
        if not 0 <= int(s) < 2 ** 32:
            raise ValueError(f"seeds must be in [0, 2**32), got {s}")
    return np.stack([np.random.RandomState(int(s)).randn(z_dim) for s in seeds]).astype(np.float32) \
        if len(seeds) else np.zeros([0, z_dim], np.float32)


def class_labels(G: torch.nn.Module, class_idx: Optional[int], n: int, device: torch.device) -> torch.Tensor:
    """One-hot labels [n, c_dim] (or [n, 0] for unconditional G); ``class_idx`` is required iff c_dim > 0."""
    c = torch.zeros([n, G.c_dim], device=device)
    if G.c_dim > 0:
        if class_idx is None:
            raise ValueError(f"this network is conditional (c_dim={G.c_dim}): pass a class index")
        if not 0 <= class_idx < G.c_dim:
            raise ValueError(f"class index must be in [0, {G.c_dim}), got {class_idx}")
        c[:, class_idx] = 1
    elif class_idx is not None:
        raise ValueError("this network is unconditional (c_dim=0): do not pass a class index")
    return c


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] images in ~[-1, 1] -> uint8 numpy [N, H, W, C]."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def _device_of(G: torch.nn.Module, device) -> torch.device:
    if device is not None:
        device = torch.device(device)
        G.to(device)
        return device
    p = next(G.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def synthesize_ws(G: torch.nn.Module, ws: torch.Tensor, noise_mode: str = "const",
                  precision: Optional[str] = "fp32") -> torch.Tensor:
    """G.synthesis(ws) without autograd under the given precision ('fp32', 'bf16', 'fp16' or None)."""
    with torch.no_grad(), _precision(precision):
        return G.synthesis(ws, noise_mode=noise_mode)


def iter_generate(G: torch.nn.Module, seeds: Iterable[int], truncation_psi: float = 1.0,
                  truncation_cutoff: Optional[int] = None, noise_mode: str = "const",
                  class_idx: Optional[int] = None, batch_size: int = 16, device=None,
                  precision: Optional[str] = "fp32") -> Iterator[Tuple[List[int], np.ndarray]]:
    """Yield ``(seeds, images)`` per batch, images uint8 [B, H, W, C]; memory stays one batch deep."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seeds = list(seeds)
    dev = _device_of(G, device)
    for i in range(0, len(seeds), batch_size):
        chunk = seeds[i:i + batch_size]
        z = torch.from_numpy(seeds_to_z(chunk, G.z_dim)).to(dev)
        c = class_labels(G, class_idx, len(chunk), dev)
        if not hasattr(G, "mapping"):  # e.g. DCGAN: no W space, no truncation or noise
            with torch.no_grad(), _precision(precision):
                yield chunk, to_uint8(G(z, c).to(torch.float32))
            continue
        with torch.no_grad():
            ws = G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        yield chunk, to_uint8(synthesize_ws(G, ws, noise_mode, precision))


def generate(G: torch.nn.Module, seeds: Iterable[int], truncation_psi: float = 1.0,
             truncation_cutoff: Optional[int] = None, noise_mode: str = "const", class_idx: Optional[int] = None,
             batch_size: int = 16, device=None, precision: Optional[str] = "fp32",
             progress: bool = False) -> np.ndarray:
    """Images for ``seeds`` as uint8 numpy [len(seeds), H, W, C].

    Args:
        G: a fastgan generator (e.g. from :func:`fastgan.load_network`).
        seeds: integer seeds; seed s uses the latent ``np.random.RandomState(s).randn(z_dim)``.
        truncation_psi, truncation_cutoff: truncation towards ``w_avg`` (cutoff: only the first ws).
        noise_mode: 'const' (the stored noise; deterministic), 'random' or 'none'.
        class_idx: class of a conditional generator.
        batch_size: images per forward pass.
        device: run there (moves ``G``); default: where G's parameters are.
        precision: 'fp32', 'bf16' (CPU or GPU) or 'fp16' (GPU); None keeps the network's own rule.
        progress: show a progress bar.
    """
    seeds = list(seeds)
    out = np.zeros([len(seeds), G.img_resolution, G.img_resolution, G.img_channels], dtype=np.uint8)
    with progress_bar(len(seeds), progress) as bar:
        i = 0
        for chunk, imgs in iter_generate(G, seeds, truncation_psi, truncation_cutoff, noise_mode, class_idx,
                                         batch_size, device, precision):
            out[i:i + len(chunk)] = imgs
            i += len(chunk)
            bar.update(len(chunk))
    return out


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress_bar(total: int, enabled: bool = True, desc: str = "images"):
    """A tqdm progress bar when enabled and tqdm is installed, else a silent stand-in."""
    if enabled:
        try:
            from tqdm import tqdm
            return tqdm(total=total, unit="img", desc=desc, dynamic_ncols=True)
        except ImportError:
            pass
    return _NoBar()


def grid_image(images: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Tile uint8 [N, H, W, C] images (N <= cols*rows, row-major) into one [rows*H, cols*W, C] image."""
    n, h, w, c = images.shape
    if n > cols * rows:
        raise ValueError(f"{n} images do not fit a {cols}x{rows} grid")
    canvas = np.zeros([rows * h, cols * w, c], dtype=np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = images[i]
    return canvas


def save_png(path: Union[str, Path], image: np.ndarray) -> None:
    """Write a uint8 [H, W, C] (C = 1, 3 or 4) image as PNG, atomically."""
    from PIL import Image

    if image.ndim != 3 or image.dtype != np.uint8 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"save_png: expected uint8 [H, W, 1|3|4], got {image.dtype} {list(image.shape)}")
    img = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def set_input_transform(G: torch.nn.Module, translate: Tuple[float, float] = (0.0, 0.0),
                        rotate: float = 0.0) -> None:
    """Rotate (degrees) and translate the output of a StyleGAN3 generator (its ``synthesis.input.transform``).

    The buffer holds the inverse of the user transform, as in NVlabs' ``gen_images.py``.
    """
    inp = getattr(getattr(G, "synthesis", None), "input", None)
    if inp is None or not hasattr(inp, "transform"):
        raise ValueError("translate/rotate needs a StyleGAN3 generator (synthesis.input.transform)")
    a = np.deg2rad(rotate)
    m = np.array([[np.cos(a), np.sin(a), translate[0]], [-np.sin(a), np.cos(a), translate[1]], [0, 0, 1]])
    inp.transform.copy_(torch.from_numpy(np.linalg.inv(m)).to(inp.transform))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of a and b [N, D] at fractions t [N]."""
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((an * bn).sum(1).clamp(-1, 1)).unsqueeze(1)
    so = torch.sin(omega)
    t = t.unsqueeze(1)
    small = so.abs() < 1e-6
    mix = torch.where(small, (1 - t) * a + t * b,
                      (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.where(small, 1.0, so))
    return mix
