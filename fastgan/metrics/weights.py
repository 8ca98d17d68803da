"""Feature-detector weights: locate (argument, ``FASTGAN_INCEPTION_WEIGHTS``, cache, download) and load.

Two published formats are read:

* pytorch-fid's state dict ``pt_inception-2015-12-05-6726825d.pth`` (the TF 2015-12-05 Inception
  converted to PyTorch) -> :class:`~fastgan.metrics.inception.InceptionV3FID`;
* NVlabs' TorchScript detector ``inception-2015-12-05.pt`` (``torch.jit`` archive, called as
  ``det(uint8_images, return_features=True)``) -> :class:`TorchScriptDetector`.

Only the pytorch-fid file is downloaded automatically. Integrity: its file name carries the first 8 hex
digits of its SHA-256 (the torch.hub convention), and that prefix is what is checked; fastgan does not
ship a full SHA-256 for it because none could be verified offline. Set ``FASTGAN_INCEPTION_SHA256`` to a
full hash to check it instead. Downloads go to a temporary file beside the target and are renamed into
place only after the check passes.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
import warnings
import zipfile
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch
from torch import nn

from ..utils.io import atomic_open
from .inception import InceptionV3FID

__all__ = ["PYTORCH_FID_URL", "PYTORCH_FID_SHA256_PREFIX", "cache_dir", "download", "resolve_weights",
           "load_detector", "file_sha256", "TorchScriptDetector", "WeightsError"]

PYTORCH_FID_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
PYTORCH_FID_SHA256_PREFIX = "6726825d"
ENV_WEIGHTS = "FASTGAN_INCEPTION_WEIGHTS"
ENV_SHA256 = "FASTGAN_INCEPTION_SHA256"

PathLike = Union[str, "os.PathLike[str]"]


class WeightsError(RuntimeError):
    """A weights file is missing, fails its hash check, or is in an unknown format."""


def cache_dir() -> Path:
    """``$FASTGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/fastgan``, else ``~/.cache/fastgan``."""
    env = os.environ.get("FASTGAN_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastgan"


_HASHES: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: PathLike) -> str:
    """SHA-256 hex digest of a file (memoised on path, size and mtime)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def _check_hash(digest: str, sha256: Optional[str], prefix: Optional[str], what: str) -> None:
    if sha256 is not None and digest != sha256.lower():
        raise WeightsError(f"{what}: SHA-256 mismatch: expected {sha256}, got {digest}")
    if prefix is not None and not digest.startswith(prefix.lower()):
        raise WeightsError(f"{what}: SHA-256 mismatch: expected a digest starting with {prefix}, got {digest}")


def download(url: str, dest: PathLike, sha256: Optional[str] = None, sha256_prefix: Optional[str] = None,
             progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest``, verifying the SHA-256 (full or prefix) before the file appears there."""
    dest = Path(dest)
    h = hashlib.sha256()
    with urllib.request.urlopen(url) as resp:  # noqa: S310 - fixed https URL or a user-given one
        total = int(resp.headers.get("Content-Length") or 0)
        done = 0
        with atomic_open(dest, "wb") as fh:
            for block in iter(lambda: resp.read(1 << 20), b""):
                fh.write(block)
                h.update(block)
                done += len(block)
                if progress and total:
                    print(f"\rdownloading {dest.name}: {100 * done // total}%", end="", flush=True)
            if progress and total:
                print()
            _check_hash(h.hexdigest(), sha256, sha256_prefix, url)   # raising here discards the temp file
    return dest


def resolve_weights(path: Optional[PathLike] = None, allow_download: bool = True) -> Path:
    """The detector weights file to use: ``path``, else ``$FASTGAN_INCEPTION_WEIGHTS``, else the cached
    pytorch-fid file, else a fresh (verified) download of it when ``allow_download``."""
    explicit = path or os.environ.get(ENV_WEIGHTS)
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            src = "argument" if path else f"${ENV_WEIGHTS}"
            raise FileNotFoundError(f"detector weights file from {src} not found: {p}")
        return p
    cached = cache_dir() / "weights" / PYTORCH_FID_URL.rsplit("/", 1)[1]
    if cached.is_file():
        return cached
    if not allow_download:
        raise FileNotFoundError(
            f"no Inception weights: pass a path, set ${ENV_WEIGHTS}, or place {cached.name} at {cached}")
    full = os.environ.get(ENV_SHA256)
    return download(PYTORCH_FID_URL, cached, sha256=full, sha256_prefix=None if full else PYTORCH_FID_SHA256_PREFIX)


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(n.split("/", 1)[-1].startswith("code/") for n in zf.namelist())


class TorchScriptDetector(nn.Module):
    """Wraps an NVlabs-style TorchScript detector: ``det(uint8 NCHW, return_features=True)`` gives pool
    features; ``det(x, no_output_bias=True)`` gives class probabilities, returned as log-probabilities
    under ``'logits_unbiased'`` when ``with_logits`` (a second pass)."""

    feature_dim = 2048

    def __init__(self, module: torch.jit.ScriptModule, with_logits: bool = False):
        super().__init__()
        self.module = module
        self.with_logits = with_logits

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = images if images.dtype == torch.uint8 else images.round().clamp(0, 255).to(torch.uint8)
        out = {"pool": self.module(x, return_features=True).float()}
        if self.with_logits:
            probs = self.module(x, no_output_bias=True).double()
            out["logits_unbiased"] = probs.clamp_min(1e-30).log()
        return out


def _state_dict_from(obj) -> Dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError("not a state dict of tensors")
    return obj


def load_inception(path: PathLike, preprocess: str = "tf") -> InceptionV3FID:
    """An :class:`InceptionV3FID` with the weights of a pytorch-fid-format state dict file."""
    try:
        sd = _state_dict_from(torch.load(path, map_location="cpu", weights_only=True))
    except WeightsError as e:
        raise WeightsError(f"{path}: {e}") from None
    except Exception as e:  # torch raises a variety of errors for foreign files
        raise WeightsError(f"{path}: cannot read as a torch state dict: {e}") from e
    model = InceptionV3FID(preprocess=preprocess)
    expected = model.state_dict()
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise WeightsError(f"{path}: not a pytorch-fid Inception state dict: missing {missing[:3]}"
                           f"{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]}")
    for k, v in sd.items():
        if v.shape != expected[k].shape:
            raise WeightsError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    model.load_state_dict(sd, strict=False)
    return model


def load_detector(path: Optional[PathLike] = None, device: Union[str, torch.device] = "cpu",
                  preprocess: str = "tf", fuse: bool = True, allow_download: bool = True) -> nn.Module:
    """The FID feature detector, ready for inference on ``device``.

    ``path`` may be a pytorch-fid state dict or an NVlabs TorchScript detector (see module doc); it is
    resolved with :func:`resolve_weights`. The result has ``identity`` (a string naming the detector, its
    file hash and preprocessing, used as a cache key) and ``feature_dim``. ``fuse`` folds BatchNorm into
    the convolutions (faster, same values up to float rounding).
    """
    p = resolve_weights(path, allow_download=allow_download)
    digest = file_sha256(p)
    if _is_torchscript(p):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)     # torch.jit is deprecated, still the format
            det: nn.Module = TorchScriptDetector(torch.jit.load(str(p), map_location=device))
        det.identity = f"torchscript-inception:sha256={digest}"
    else:
        det = load_inception(p, preprocess=preprocess)
        if fuse:
            det.fuse_batchnorm()
        det.identity = f"inception-v3-fid:sha256={digest}:preprocess={preprocess}"
    return det.to(device).eval()

