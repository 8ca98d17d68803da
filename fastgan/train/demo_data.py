"""The scikit-learn digits (1797 grayscale 8x8 images, classes 0-9; shipped inside scikit-learn, no download)
as an image folder for demos.

The default output size is 32x32: the smallest size of the NVlabs ``cifar`` configuration, deep enough for a
generator/discriminator with several resolution blocks, while 16x16 would leave only two blocks above 4x4.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Tuple, Union

import numpy as np

from .dataset_tool import FolderWriter

__all__ = ["write_digits_folder", "digits_images"]

PathLike = Union[str, "os.PathLike[str]"]


def digits_images(resolution: int = 32) -> Tuple[np.ndarray, np.ndarray]:
    """``(uint8 images [1797, resolution, resolution], int64 classes [1797])`` of the scikit-learn digits.

    The 0..16 intensities become 0..255 (``round(v * 255 / 16)``), then each image is resized with Lanczos.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, int):
        raise TypeError(f"resolution must be an int, got {type(resolution).__name__}")
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("the digits demo data needs scikit-learn: pip install scikit-learn") from None
    from PIL import Image

    digits = load_digits()
    small = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((resolution, resolution), Image.LANCZOS))
                    for im in small])
    return big, digits.target.astype(np.int64)


def write_digits_folder(dest: PathLike, resolution: int = 32) -> Path:
    """Write the digits as ``dest/<class>/img<index:05d>.png`` (mode L) plus ``dest/dataset.json`` labels.

    ``dest`` must be new or empty; the folder appears complete or not at all. It works as an
    ``ImageFolderDataset`` source (with labels) and as a ``convert_dataset`` source (labels from
    ``dataset.json``, equal to the sub-folder classes).
    """
    from PIL import Image

    dest = Path(dest)
    labels = []
    with FolderWriter(dest) as out:
        images, classes = digits_images(resolution)
        for idx, (im, cls) in enumerate(zip(images, classes)):
            name = f"{int(cls)}/img{idx:05d}.png"
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="png")
            out.add(name, buf.getvalue())
            labels.append([name, int(cls)])
        out.add("dataset.json", json.dumps({"labels": labels}).encode("utf-8"))
        out.commit()
    return dest
