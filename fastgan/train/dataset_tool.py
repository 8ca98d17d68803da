"""Convert an image folder or zip into a training dataset in the NVlabs layout (training-spec §5.4).

Output: ``%05d/img%08d.png`` (numbered by input index, 1000 per folder; uncompressed PNG, mode ``L`` or
``RGB``) plus ``dataset.json`` with ``{"labels": [[path, label], ...]}`` or ``{"labels": null}``, in a
``.zip`` (stored, not deflated) or a folder. Both are written to a temporary name and renamed into place.
Unreadable images are skipped and listed in the :class:`Report`, which is also written beside ``dest`` as
``<name>-report.txt``.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ..utils.io import atomic_write_text
from .data import LABELS_FILE, FileTree, is_image_name, read_label_map

__all__ = ["convert_dataset", "parse_resolution", "Report", "TRANSFORMS", "ZipWriter", "FolderWriter"]

TRANSFORMS = ("center-crop", "center-crop-wide")
PathLike = Union[str, "os.PathLike[str]"]
Size = Tuple[int, int]

# Pillow modes turned into L or RGB before writing; any other mode (alpha, 16-bit, float) is refused.
_MODE_TARGET = {"L": "L", "1": "L", "RGB": "RGB", "P": "RGB", "CMYK": "RGB", "YCbCr": "RGB"}


@dataclass
class Report:
    """What :func:`convert_dataset` did: written images, their geometry, labels and every file left out."""

    source: str
    dest: str
    images: int = 0
    width: Optional[int] = None
    height: Optional[int] = None
    channels: Optional[int] = None
    labels: str = "none"                      # 'dataset.json', 'sub-folders' or 'none'
    class_names: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)   # (file, why): unreadable or corrupt
    dropped: List[Tuple[str, str]] = field(default_factory=list)   # (file, why): too small for the transform
    notes: List[str] = field(default_factory=list)
    report_path: Optional[str] = None

    def text(self) -> str:
        """Human-readable summary, one fact per line."""
        lines = [f"source: {self.source}", f"dest: {self.dest}",
                 f"images written: {self.images} ({self.width}x{self.height}, {self.channels} channel(s))"]
        if self.labels == "sub-folders":
            lines.append(f"labels: {len(self.class_names)} classes from sub-folder names: "
                         + ", ".join(f"{i}={n}" for i, n in enumerate(self.class_names)))
        else:
            lines.append(f"labels: {'from ' + LABELS_FILE if self.labels == LABELS_FILE else 'none'}")
        for title, entries in (("skipped (unreadable)", self.skipped), ("dropped (too small)", self.dropped)):
            lines.append(f"{title}: {len(entries)}")
            lines.extend(f"  {name}: {why}" for name, why in entries)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines) + "\n"


def parse_resolution(value: Union[None, int, str, Sequence[int]]) -> Optional[Size]:
    """``None``, ``N``, ``(W, H)``, ``"WxH"``, ``"W,H"`` or ``"N"`` -> ``(W, H)`` or None."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"resolution must look like 256x256, 256,256 or 256, got {value!r}") from None
    elif isinstance(value, bool):
        raise TypeError("resolution must be an int, a (width, height) pair or a 'WxH' string, got a bool")
    elif isinstance(value, int):
        nums = [value]
    else:
        nums = list(value)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in nums):
            raise TypeError(f"resolution must be an int, a (width, height) pair or a 'WxH' string, got {value!r}")
    if len(nums) not in (1, 2) or min(nums) < 1:
        raise ValueError(f"resolution must be one or two positive sizes (width, height), got {value!r}")
    return (nums[0], nums[-1])


def _path_order(name: str) -> Tuple[str, ...]:
    return tuple(name.split("/"))


def _load(tree: FileTree, name: str):
    """Decoded Pillow image in mode L or RGB; raises ``_Unreadable`` for broken files."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(io.BytesIO(tree.read(name)))
        im.load()
    except UnidentifiedImageError:
        raise _Unreadable("not an image format Pillow can identify") from None
    except Exception as e:  # Pillow and zipfile raise many exception types for damaged files
        raise _Unreadable(f"{type(e).__name__}: {e}") from None
    if im.mode not in _MODE_TARGET:
        raise ValueError(f"{name}: pixel mode {im.mode} is not supported (only grayscale or RGB, no alpha)")
    return im if im.mode == _MODE_TARGET[im.mode] else im.convert(_MODE_TARGET[im.mode])


class _Unreadable(Exception):
    pass


def _reshape(im, transform: Optional[str], size: Optional[Size]):
    """Apply the transform; None means the image is too small for ``center-crop-wide`` and is dropped."""
    from PIL import Image

    w, h = im.size
    if transform is None:
        return im if size is None or size == (w, h) else im.resize(size, Image.LANCZOS)
    out_w, out_h = size
    if transform == "center-crop":
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w + side) // 2, (h + side) // 2)
        return im.crop(box).resize(size, Image.LANCZOS)
    band = round(out_w * h / w)
    if w < out_w or band < out_h:
        return None
    strip = im.crop((0, (h - band) // 2, w, (h + band) // 2)).resize(size, Image.LANCZOS)
    canvas = Image.new(im.mode, (out_w, out_w))
    canvas.paste(strip, (0, (out_w - out_h) // 2))
    return canvas


def _source_labels(tree: FileTree, names: List[str], report: Report) -> Optional[Dict[str, Any]]:
    """Label per image name from ``dataset.json``, else from first-level sub-folders (>= 2, sorted)."""
    table = read_label_map(tree)
    if table is not None:
        report.labels = LABELS_FILE
        return table
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(tops) < 2 or any("/" not in n for n in names):
        return None
    report.labels, report.class_names = "sub-folders", sorted(tops)
    index = {c: i for i, c in enumerate(report.class_names)}
    return {n: index[n.split("/", 1)[0]] for n in names}


class _Writer:
    """Context manager for the writers below (``add``, ``commit``, ``abort``): leaving the block by an exception
    discards everything written so far."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


class ZipWriter(_Writer):
    """Files into a stored (uncompressed) zip at a temporary name; ``commit`` fsyncs and renames it to dest."""

    def __init__(self, dest: Path):
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
        os.close(fd)
        self._dest = dest
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED)

    def add(self, name: str, data: bytes) -> None:
        self._zip.writestr(name, data)

    def commit(self) -> None:
        self._zip.close()
        with open(self._tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self._tmp, self._dest)

    def abort(self) -> None:
        self._zip.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


class FolderWriter(_Writer):
    """Files into a temporary folder beside dest; ``commit`` renames it to dest (which must be new or empty)."""

    def __init__(self, dest: Path):
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise ValueError(f"dest: {dest} must be a .zip path, a new folder or an empty folder")
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._dest = dest
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))

    def add(self, name: str, data: bytes) -> None:
        path = self._tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())

    def commit(self) -> None:
        os.replace(self._tmp, self._dest)    # replaces an empty folder at dest

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="png", compress_level=0, optimize=False)
    return buf.getvalue()


def _report_path(dest: Path) -> Path:
    stem = dest.stem if dest.suffix.lower() == ".zip" else dest.name
    return dest.with_name(f"{stem}-report.txt")


def convert_dataset(source: PathLike, dest: PathLike, resolution: Union[None, int, str, Sequence[int]] = None,
                    transform: Optional[str] = None, max_images: Optional[int] = None) -> Report:
    """Convert the images of ``source`` (folder, recursive, or .zip) into a dataset at ``dest``.

    Args:
        source: folder or ``.zip``. Labels come from its root ``dataset.json`` or, without one, from the
            first-level sub-folder names (sorted, index = class) when every image lies in one of >= 2 of them.
        dest: ``*.zip`` (written atomically) or a folder that is new or empty.
        resolution: output size ``(W, H)`` (also ``N``, ``"WxH"``, ``"W,H"``); images of another size are
            resized with Lanczos. Required by the transforms.
        transform: None, ``'center-crop'`` (square centre crop, then resize) or ``'center-crop-wide'`` (keep
            the full width and a centred band of ``round(W*h/w)`` rows, resize to W x H, letterbox into W x W;
            smaller images are dropped).
        max_images: read at most this many input images (dropped and skipped ones count).

    The first written image must be square with a power-of-two side and 1 or 3 channels; every other image
    must match it. Returns the :class:`Report`; it is also written to ``<dest name>-report.txt`` beside dest.
    """
    if transform is not None and transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)} or None, got {transform!r}")
    size = parse_resolution(resolution)
    if transform is not None and size is None:
        raise ValueError(f"transform={transform!r} needs resolution (--resolution WxH)")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise ValueError(f"max_images must be a positive int, got {max_images!r}")
    tree = FileTree(source)
    dest = Path(dest)
    report = Report(source=str(tree.path), dest=str(dest))
    names = sorted((n for n in tree.names() if is_image_name(n)), key=_path_order)
    if not names:
        raise ValueError(f"source: no image files in {tree.path}")
    label_of = _source_labels(tree, names, report)
    names = names[:max_images]

    with (ZipWriter(dest) if dest.suffix.lower() == ".zip" else FolderWriter(dest)) as out:
        pairs = _write_images(tree, names, out, report, label_of, transform, size)
        if label_of is not None and len(pairs) < report.images:
            report.notes.append(f"{report.images - len(pairs)} image(s) have no entry in {LABELS_FILE}: "
                                "labels dropped for all (labels are all-or-nothing)")
        labels = pairs if label_of is not None and len(pairs) == report.images else None
        if labels is None:
            report.labels, report.class_names = "none", []
        doc: Dict[str, Any] = {"labels": labels}
        if report.class_names:
            doc["class_names"] = report.class_names
        out.add(LABELS_FILE, json.dumps(doc).encode("utf-8"))
        out.commit()
    report.report_path = str(_report_path(dest))
    atomic_write_text(report.report_path, report.text())
    return report


def _write_images(tree: FileTree, names: List[str], out, report: Report, label_of: Optional[Dict[str, Any]],
                  transform: Optional[str], size: Optional[Size]) -> List[list]:
    """Write every readable image; returns the ``[archive_name, label]`` pairs of labelled ones."""
    hint = "pass --resolution WxH (resolution=) and, for non-square images, --transform"
    pairs: List[list] = []
    for idx, name in enumerate(names):
        try:
            im = _load(tree, name)
        except _Unreadable as e:
            report.skipped.append((name, str(e)))
            continue
        shaped = _reshape(im, transform, size)
        if shaped is None:
            why = f"{im.size[0]}x{im.size[1]} is smaller than {transform} {size[0]}x{size[1]} needs"
            report.dropped.append((name, why))
            continue
        w, h = shaped.size
        channels = len(shaped.getbands())
        if report.images == 0:
            if w != h or w & (w - 1):
                raise ValueError(f"images must be square with a power-of-two side, but {name} becomes {w}x{h}; "
                                 f"{hint}")
            report.width, report.height, report.channels = w, h, channels
        elif (w, h) != (report.width, report.height):
            raise ValueError(f"{name} becomes {w}x{h} but the first image is {report.width}x{report.height}: "
                             f"all images must have one size; {hint}")
        elif channels != report.channels:
            raise ValueError(f"{name} has {channels} channel(s) but the first image has {report.channels}: "
                             "all images must be grayscale or all RGB")
        archive = f"{idx // 1000:05d}/img{idx:08d}.png"
        out.add(archive, _png(shaped))
        report.images += 1
        if label_of is not None and name in label_of and label_of[name] is not None:
            pairs.append([archive, label_of[name]])
    if report.images == 0:
        raise ValueError(f"source: none of the {len(names)} image file(s) in {tree.path} could be converted "
                         f"({len(report.skipped)} unreadable, {len(report.dropped)} too small)")
    return pairs
