"""Training data (training-spec §1.2, §1.11, §1.12, §5).

* :class:`FileTree` - read-only view of a folder (recursive) or a ``.zip``; zip handles open lazily per process.
* :class:`ImageFolderDataset` - the NVlabs-layout image dataset: uint8 CHW images, optional ``dataset.json``
  labels, ``max_size`` subset, x-flip doubling.
* :class:`InfiniteSampler` - the continuously re-shuffled index stream shared by all ranks, with
  ``state_dict()``/``load_state_dict()`` for exact resume.
* :func:`make_loader` - batches ``(uint8 [b, C, H, W], float32 [b, label_dim])`` that remember the sampler state
  of the last batch handed out.
* :func:`grid_indices` - which dataset items fill the ``gw x gh`` image grid.
"""
from __future__ import annotations

import collections
import functools
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch

__all__ = ["FileTree", "ImageFolderDataset", "InfiniteSampler", "BatchStream", "make_loader", "grid_indices",
           "image_extensions", "is_image_name", "read_label_map", "decode_image"]

PathLike = Union[str, "os.PathLike[str]"]
LABELS_FILE = "dataset.json"


@functools.lru_cache(maxsize=None)
def image_extensions() -> frozenset:
    """Lower-case extensions (with the dot) that Pillow registers for an image format."""
    from PIL import Image

    return frozenset(ext.lower() for ext in Image.registered_extensions())


def is_image_name(name: str) -> bool:
    """True when ``name`` has an image file extension (compared case-insensitively)."""
    return os.path.splitext(name)[1].lower() in image_extensions()


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


class FileTree:
    """Files under a folder (walked recursively) or inside a ``.zip``, named by '/'-separated relative paths.

    The zip is opened on first use in each process, so a tree (and a dataset holding one) can be handed to
    DataLoader worker processes, forked or spawned.
    """

    def __init__(self, path: PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            self.is_zip = False
        elif self.path.is_file() and self.path.suffix.lower() == ".zip":
            self.is_zip = True
        elif not self.path.exists():
            raise FileNotFoundError(f"path: {self.path} does not exist (expected a folder or a .zip file)")
        else:
            raise ValueError(f"path: expected a folder or a .zip file, got {self.path}")
        self._handle: Optional[zipfile.ZipFile] = None
        self._handle_pid = -1

    def _zip(self) -> zipfile.ZipFile:
        if self._handle is None or self._handle_pid != os.getpid():
            # A handle inherited through fork shares its file offset with the parent: never reuse it.
            self._handle = zipfile.ZipFile(self.path)
            self._handle_pid = os.getpid()
        return self._handle

    def names(self) -> List[str]:
        """Relative names of all files (not folders), unsorted."""
        if self.is_zip:
            return [n for n in self._zip().namelist() if not n.endswith("/")]
        found = []
        for folder, _, files in os.walk(self.path):
            rel = os.path.relpath(folder, self.path)
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            found.extend(prefix + f for f in files)
        return found

    def read(self, name: str) -> bytes:
        """Bytes of the file ``name``."""
        if self.is_zip:
            return self._zip().read(name)
        return (self.path / name).read_bytes()

    def read_optional(self, name: str) -> Optional[bytes]:
        """Bytes of ``name``, or None when the tree has no such file."""
        if self.is_zip:
            return self._zip().read(name) if name in self._zip().NameToInfo else None
        p = self.path / name
        return p.read_bytes() if p.is_file() else None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_handle"], state["_handle_pid"] = None, -1
        return state


def read_label_map(tree: FileTree) -> Optional[Dict[str, Any]]:
    """``dataset.json`` at the root of ``tree`` as ``{relative/path: label}``; None without the file or labels.

    Accepts ``{"labels": [[path, label], ...]}`` and ``{"labels": {path: label}}``; backslashes in paths
    become '/'.
    """
    raw = tree.read_optional(LABELS_FILE)
    if raw is None:
        return None
    where = f"{tree.path}:{LABELS_FILE}"
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{where} is not valid JSON: {e}") from None
    labels = doc.get("labels") if isinstance(doc, dict) else None
    if labels is None:
        return None
    if isinstance(labels, dict):
        pairs = list(labels.items())
    elif isinstance(labels, list) and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in labels):
        pairs = [tuple(p) for p in labels]
    else:
        raise ValueError(f"{where}: 'labels' must be a list of [path, label] pairs, an object or null")
    return {str(k).replace("\\", "/"): v for k, v in pairs}


def decode_image(data: bytes) -> np.ndarray:
    """Decode image bytes with Pillow, without mode conversion, to a uint8 array ``[C, H, W]``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        arr = np.array(im)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected 8-bit pixels, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, np.newaxis]
    return arr.transpose(2, 0, 1)


def _label_array(values: List[Any], where: str) -> np.ndarray:
    """Scalars -> int64 class indices ``[N]``; equal-length vectors -> float32 ``[N, D]``."""
    try:
        arr = np.asarray(values)
    except ValueError:
        raise ValueError(f"{where}: labels must be all scalars or all vectors of one length") from None
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{where}: labels must be numbers, got {arr.dtype}")
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.ndim != 1:
        raise ValueError(f"{where}: labels must be all scalars or all vectors of one length")
    if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(arr < 0):
        raise ValueError(f"{where}: scalar labels are class indices and must be integers >= 0")
    return arr.astype(np.int64)


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images in a folder (recursive) or a ``.zip`` (NVlabs layout), in sorted relative-path order.

    Args:
        path: folder or ``.zip`` file. resolution: if given, the images must be ``resolution`` squared (a power
        of two). use_labels: read labels from ``dataset.json`` (error when there are none). max_size: keep a
        random subset of this many images (``RandomState(random_seed)``, then sorted). xflip: double the
        dataset; item ``i + N`` is item ``i`` mirrored along the width.

    Items are ``(uint8 ndarray [C, H, W], float32 ndarray [label_dim])``. Integer labels become one-hot
    vectors of ``max + 1`` classes (max over the whole source); vector labels are returned as stored.
    """

    def __init__(self, path: PathLike, resolution: Optional[int] = None, use_labels: bool = False,
                 max_size: Optional[int] = None, xflip: bool = False, random_seed: int = 0):
        self._tree = FileTree(path)
        self._files = sorted(n for n in self._tree.names() if is_image_name(n))
        if not self._files:
            raise ValueError(f"path: no image files in {self._tree.path}")
        self._name = os.path.splitext(self._tree.path.name)[0]
        self._shape = list(self._decode(0).shape)
        channels, height, width = self._shape
        if channels not in (1, 3):
            raise ValueError(f"{self._where(0)}: images must have 1 or 3 channels, got {channels}")
        if resolution is not None:
            resolution = _check_int(resolution, "resolution", 1)
            if resolution & (resolution - 1):
                raise ValueError(f"resolution must be a power of two, got {resolution}")
            if (height, width) != (resolution, resolution):
                raise ValueError(f"resolution={resolution} but {self._where(0)} is {width}x{height}")
        self._raw_labels = self._load_labels() if use_labels else None

        keep = np.arange(len(self._files), dtype=np.int64)
        if max_size is not None and _check_int(max_size, "max_size", 1) < keep.size:
            np.random.RandomState(random_seed).shuffle(keep)
            keep = np.sort(keep[:max_size])
        self._keep = keep
        self._xflip = bool(xflip)

    def _where(self, raw: int) -> str:
        return f"{self._tree.path}:{self._files[raw]}" if self._tree.is_zip else str(self._tree.path / self._files[raw])

    def _decode(self, raw: int) -> np.ndarray:
        try:
            return decode_image(self._tree.read(self._files[raw]))
        except (OSError, ValueError, SyntaxError, zipfile.BadZipFile) as e:
            raise ValueError(f"cannot read image {self._where(raw)}: {e}") from None

    def _load_labels(self) -> np.ndarray:
        where = f"{self._tree.path}:{LABELS_FILE}"
        table = read_label_map(self._tree)
        if table is None:
            raise ValueError(f"use_labels=True but {self._tree.path} has no labels "
                             f"({LABELS_FILE} is missing or its 'labels' is null)")
        missing = [f for f in self._files if f not in table]
        if missing:
            raise ValueError(f"{where}: no label for {len(missing)} image(s), e.g. {missing[0]!r}")
        return _label_array([table[f] for f in self._files], where)

    def _locate(self, idx: int) -> Tuple[int, bool]:
        n = self._keep.size
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for a dataset of {len(self)} items")
        return int(self._keep[idx % n]), idx >= n

    def __len__(self) -> int:
        return self._keep.size * (2 if self._xflip else 1)

    def __getitem__(self, idx: int) -> Tuple[np.ndarray, np.ndarray]:
        raw, flipped = self._locate(int(idx))
        image = self._decode(raw)
        if list(image.shape) != self._shape:
            raise ValueError(f"{self._where(raw)} has shape {list(image.shape)} but the dataset's first image "
                             f"has {self._shape}: all images must have one size and channel count")
        if flipped:
            image = image[:, :, ::-1]
        return np.ascontiguousarray(image), self.get_label(idx)

    def get_label(self, idx: int) -> np.ndarray:
        """Label of item ``idx`` as float32 ``[label_dim]`` (one-hot for class labels)."""
        raw, _ = self._locate(int(idx))
        if self._raw_labels is None:
            return np.zeros(0, dtype=np.float32)
        if self.has_onehot_labels:
            onehot = np.zeros(self.label_dim, dtype=np.float32)
            onehot[self._raw_labels[raw]] = 1
            return onehot
        return self._raw_labels[raw].copy()

    def close(self) -> None:
        """Close an open zip handle (it reopens on the next read)."""
        self._tree.close()

    @property
    def name(self) -> str:
        """Base name of the folder or zip, without extension."""
        return self._name

    @property
    def image_shape(self) -> List[int]:
        """``[C, H, W]``, from the first image."""
        return list(self._shape)

    @property
    def num_channels(self) -> int:
        return self._shape[0]

    @property
    def resolution(self) -> int:
        """Side length of the (square) images."""
        if self._shape[1] != self._shape[2]:
            raise ValueError(f"images are {self._shape[2]}x{self._shape[1]}, not square")
        return self._shape[1]

    @property
    def raw_labels(self) -> np.ndarray:
        """Stored labels of the items in index order: int64 class indices ``[len]``, float32 ``[len, D]``, or
        float32 ``[len, 0]`` without labels."""
        order = np.concatenate([self._keep, self._keep]) if self._xflip else self._keep
        if self._raw_labels is None:
            return np.zeros((order.size, 0), dtype=np.float32)
        return self._raw_labels[order].copy()

    @property
    def label_shape(self) -> List[int]:
        if self._raw_labels is None:
            return [0]
        if self.has_onehot_labels:
            return [int(self._raw_labels.max()) + 1]
        return list(self._raw_labels.shape[1:])

    @property
    def label_dim(self) -> int:
        return self.label_shape[0]

    @property
    def has_labels(self) -> bool:
        return self.label_dim > 0

    @property
    def has_onehot_labels(self) -> bool:
        return self._raw_labels is not None and self._raw_labels.dtype == np.int64


# Sampler position: (next stream step, order, RandomState state or None).
_Snapshot = Tuple[int, np.ndarray, Optional[tuple]]


def open_training_set(cfg) -> "ImageFolderDataset":
    """The training set of ``cfg`` (a ``TrainConfig``): its ``data`` folder or zip, with labels when ``cond``.

    Raises ValueError naming ``data`` (missing, unreadable, not square) or ``cond`` (no labels).
    """
    if not Path(cfg.data).exists():
        raise ValueError(f"data: no such dataset {cfg.data!r}")
    kwargs = dict(max_size=cfg.subset, xflip=cfg.mirror, random_seed=cfg.seed)

    def open_(use_labels: bool) -> ImageFolderDataset:
        ds = ImageFolderDataset(cfg.data, use_labels=use_labels, **kwargs)
        ds.resolution                                     # raises for non-square images
        return ds

    try:
        ds = open_(cfg.cond)                              # one open in the common case
    except (OSError, KeyError, ValueError) as e:
        if not cfg.cond:
            raise ValueError(f"data: cannot use dataset {cfg.data!r}: {e}") from e
        try:                                              # which option is at fault: the data or --cond?
            open_(False)
        except (OSError, KeyError, ValueError) as plain:
            raise ValueError(f"data: cannot use dataset {cfg.data!r}: {plain}") from plain
        raise ValueError(f"cond: conditional training needs dataset.json labels in {cfg.data!r}: {e}") from e
    if cfg.cond and not ds.has_labels:
        raise ValueError(f"cond: conditional training needs labels, but {cfg.data!r} has an empty label dimension")
    return ds


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless index stream shared by all ranks and strided by ``rank`` (training-spec §1.12).

    ``order`` starts as a ``numpy.random.RandomState(seed)`` permutation. Stream step ``t`` visits position
    ``i = t mod N``: rank ``t mod num_replicas`` receives ``order[i]``; then, when the window
    ``round(window_size * N)`` is at least 2, ``order[i]`` is swapped with ``order[(i - randint(window)) mod N]``
    (same RandomState). ``shuffle=False`` gives ``0, 1, ..., N-1`` repeated.

    Iterating continues the sampler's one stream. Each item is handed out after its whole round of
    ``num_replicas`` steps is done, so after ``k`` items every rank holds the same state: ``state_dict()`` of
    rank 0 resumes every rank.
    """

    def __init__(self, dataset, rank: int = 0, num_replicas: int = 1, shuffle: bool = True, seed: int = 0,
                 window_size: float = 0.5):
        self._size = _check_int(len(dataset), "len(dataset)", 1)
        self.num_replicas = _check_int(num_replicas, "num_replicas", 1)
        self.rank = _check_int(rank, "rank", 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must be < num_replicas={num_replicas}, got {rank}")
        if not 0 <= window_size <= 1:
            raise ValueError(f"window_size must be in [0, 1], got {window_size}")
        self.shuffle, self.seed = bool(shuffle), int(seed)
        self._order = np.arange(self._size, dtype=np.int64)
        self._rng: Optional[np.random.RandomState] = None
        self._window = 0
        if self.shuffle:
            self._rng = np.random.RandomState(self.seed)
            self._rng.shuffle(self._order)
            self._window = int(np.rint(self._size * window_size))
        self._step = 0

    def _visit(self) -> int:
        """Run one stream step; returns the item at the visited position (before its swap)."""
        pos = self._step % self._size
        item = int(self._order[pos])
        if self._window >= 2:
            other = (pos - self._rng.randint(self._window)) % self._size
            self._order[pos], self._order[other] = self._order[other], self._order[pos]
        self._step += 1
        return item

    def _next_item(self) -> int:
        mine = None
        while True:
            mine_now = self._step % self.num_replicas == self.rank
            item = self._visit()
            if mine_now:
                mine = item
            if mine is not None and self._step % self.num_replicas == 0:
                return mine

    def __iter__(self) -> Iterator[int]:
        while True:
            yield self._next_item()

    def _snapshot(self) -> _Snapshot:
        return self._step, self._order.copy(), None if self._rng is None else self._rng.get_state()

    def _restore(self, snap: _Snapshot) -> None:
        self._step, order, rng_state = snap
        self._order = order.copy()
        if rng_state is not None:
            self._rng.set_state(rng_state)

    def _pack(self, snap: _Snapshot) -> Dict[str, Any]:
        step, order, rng_state = snap
        state: Dict[str, Any] = {"num_items": self._size, "shuffle": self.shuffle, "seed": self.seed,
                                 "window": self._window, "step": step, "order": torch.from_numpy(order.copy())}
        if rng_state is not None:
            _, key, pos, has_gauss, gauss = rng_state
            state.update(rng_key=torch.from_numpy(key.astype(np.int64)), rng_pos=int(pos),
                         rng_has_gauss=int(has_gauss), rng_gauss=float(gauss))
        return state

    def state_dict(self) -> Dict[str, Any]:
        """Stream position, current order and RandomState state (tensors and Python scalars only)."""
        return self._pack(self._snapshot())

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue exactly where the sampler that produced ``state`` stopped."""
        for key, mine in (("num_items", self._size), ("shuffle", self.shuffle), ("window", self._window)):
            if state.get(key) != mine:
                raise ValueError(f"state: sampler state has {key}={state.get(key)!r}, this sampler has {mine!r}")
        order = torch.as_tensor(state["order"]).numpy().astype(np.int64)
        if order.shape != (self._size,) or not np.array_equal(np.sort(order), np.arange(self._size)):
            raise ValueError(f"state: 'order' must be a permutation of {self._size} items")
        rng_state = None
        if self.shuffle:
            key = torch.as_tensor(state["rng_key"]).numpy().astype(np.uint32)
            rng_state = ("MT19937", key, int(state["rng_pos"]), int(state["rng_has_gauss"]),
                         float(state["rng_gauss"]))
        self._restore((_check_int(state["step"], "state['step']", 0), order, rng_state))


def _collate(items: List[Tuple[np.ndarray, np.ndarray]]) -> Tuple[torch.Tensor, torch.Tensor]:
    images = torch.from_numpy(np.stack([img for img, _ in items]))
    labels = torch.from_numpy(np.stack([lab for _, lab in items]).astype(np.float32, copy=False))
    return images, labels


class _IndexBatches:
    """DataLoader batch sampler: lists of ``batch_size`` sampler indices; queues the sampler state after each."""

    def __init__(self, sampler: InfiniteSampler, batch_size: int, after: Deque[_Snapshot]):
        self.sampler, self.batch_size, self.after = sampler, batch_size, after

    def __iter__(self) -> Iterator[List[int]]:
        stream = iter(self.sampler)
        while True:
            batch = [next(stream) for _ in range(self.batch_size)]
            self.after.append(self.sampler._snapshot())
            yield batch


class BatchStream:
    """Endless iterator of ``(uint8 images [b, C, H, W], float32 labels [b, label_dim])``.

    Worker processes read ahead, so the sampler itself may be several batches past what was consumed;
    :meth:`state_dict` gives the sampler state right after the last batch returned by ``next()``. Load it into
    a new sampler (``InfiniteSampler.load_state_dict``) to resume with the next unseen batch.
    """

    def __init__(self, dataset, sampler: InfiniteSampler, batch_size: int, num_workers: int,
                 pin_memory: bool, prefetch_factor: int):
        self._sampler = sampler
        self._consumed = sampler._snapshot()
        self._pending: Deque[_Snapshot] = collections.deque()
        extra = {"prefetch_factor": prefetch_factor} if num_workers > 0 else {}
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=_IndexBatches(sampler, batch_size, self._pending),
                                             num_workers=num_workers, collate_fn=_collate, pin_memory=pin_memory,
                                             **extra)
        self._batches = iter(loader)

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> Tuple[torch.Tensor, torch.Tensor]:
        batch = next(self._batches)
        self._consumed = self._pending.popleft()
        return batch

    def state_dict(self) -> Dict[str, Any]:
        """Sampler state after the last consumed batch (see :meth:`InfiniteSampler.state_dict`)."""
        return self._sampler._pack(self._consumed)


def make_loader(dataset, sampler: InfiniteSampler, batch_size: int, num_workers: int = 0,
                pin_memory: Optional[bool] = None, prefetch_factor: int = 2) -> BatchStream:
    """Endless batches of ``dataset`` items in ``sampler`` order (see :class:`BatchStream`).

    ``num_workers=0`` reads in the calling process and is deterministic; with workers the batches are the
    same, read in parallel. ``pin_memory`` defaults to ``torch.cuda.is_available()``.
    """
    if not isinstance(sampler, InfiniteSampler):
        raise TypeError(f"sampler must be an InfiniteSampler, got {type(sampler).__name__}")
    batch_size = _check_int(batch_size, "batch_size", 1)
    num_workers = _check_int(num_workers, "num_workers", 0)
    prefetch_factor = _check_int(prefetch_factor, "prefetch_factor", 1)
    pin = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
    return BatchStream(dataset, sampler, batch_size, num_workers, pin, prefetch_factor)


def grid_indices(dataset, gw: int, gh: int) -> List[int]:
    """Dataset indices for a ``gw x gh`` image grid, row-major (training-spec §1.11; always seed 0).

    Unlabelled: the first ``gw*gh`` of a shuffled index list (cycled). Labelled: row ``y`` shows the label
    ``keys[y mod #labels]`` (keys = label values read last to first, sorted); each label's shuffled index list
    is consumed ``gw`` at a time, cycling.
    """
    gw, gh = _check_int(gw, "gw", 1), _check_int(gh, "gh", 1)
    rng = np.random.RandomState(0)
    count = len(dataset)
    if not dataset.has_labels:
        everything = list(range(count))
        rng.shuffle(everything)
        return [everything[k % count] for k in range(gw * gh)]
    groups: Dict[tuple, List[int]] = {}
    for idx in range(count):
        key = tuple(np.asarray(dataset.get_label(idx)).ravel()[::-1].tolist())
        groups.setdefault(key, []).append(idx)
    keys = sorted(groups)
    for key in keys:
        rng.shuffle(groups[key])
    chosen: List[int] = []
    for row in range(gh):
        key = keys[row % len(keys)]
        members = groups[key]
        chosen.extend(members[col % len(members)] for col in range(gw))
        cut = gw % len(members)
        groups[key] = members[cut:] + members[:cut]
    return chosen
