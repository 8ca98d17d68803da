"""Inception-v3 as used for FID: the 2015-12-05 TensorFlow graph, in PyTorch.

Module and parameter names follow pytorch-fid's state dict (``pt_inception-2015-12-05-*.pth``), so that
file loads directly. The graph differs from torchvision's Inception-v3 in its blocks: the average pools
of the A, C and first E blocks exclude padding from the mean, and the last E block (``Mixed_7c``) uses a
3x3 max pool in its pooling branch. The classifier has 1008 outputs.

Input: images ``(N, 3, H, W)`` with values in [0, 255] (uint8 or float). Preprocessing, chosen by
``preprocess``:

``'tf'`` (default)  the TF graph: bilinear resize to 299x299 with TF1 ``ResizeBilinear`` semantics
                    (``align_corners=False``, no half-pixel centres: source = dest * in/out), then
                    ``(x - 128) / 128``. This is what TTUR's and NVlabs' FID numbers use.
``'pytorch-fid'``   pytorch-fid: ``x / 255``, ``F.interpolate(bilinear, align_corners=False)`` (half-pixel
                    centres), then ``2x - 1``. Reproduces pytorch-fid's numbers.

Outputs (``forward`` returns a dict): ``'pool'`` ``(N, 2048)`` features for FID/KID, ``'logits'``
``(N, 1008)`` and ``'logits_unbiased'`` (the same without the output bias, as the reference Inception
Score uses).
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InceptionV3FID", "resize_bilinear_tf1", "PREPROCESS_MODES"]

PREPROCESS_MODES = ("tf", "pytorch-fid")
Size = Union[int, Tuple[int, int]]


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm(eps=1e-3) + ReLU; :meth:`fuse` folds the BN into the conv."""

    def __init__(self, cin: int, cout: int, kernel_size: Size, stride: int = 1, padding: Size = 0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self) -> None:
        if isinstance(self.bn, nn.Identity):
            return
        bn, conv = self.bn, self.conv
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                          padding=conv.padding, bias=True).to(conv.weight.device, conv.weight.dtype)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()


def _branches(x: torch.Tensor, paths: Sequence[Sequence[nn.Module]]) -> List[torch.Tensor]:
    out = []
    for path in paths:
        y = x
        for layer in path:
            y = layer(y)
        out.append(y)
    return out


def _avg_pool(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _Pool(nn.Module):
    """A pooling step inside a branch (kept as a module so branches are plain layer lists)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return _avg_pool(x)
        if self.kind == "max1":
            return F.max_pool2d(x, 3, stride=1, padding=1)
        return F.max_pool2d(x, 3, stride=2)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)
        self._avg = _Pool("avg")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(_branches(x, [
            [self.branch1x1],
            [self.branch5x5_1, self.branch5x5_2],
            [self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3],
            [self._avg, self.branch_pool]]), 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)
        self._max = _Pool("max2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(_branches(x, [
            [self.branch3x3],
            [self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3],
            [self._max]]), 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)
        self._avg = _Pool("avg")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(_branches(x, [
            [self.branch1x1],
            [self.branch7x7_1, self.branch7x7_2, self.branch7x7_3],
            [self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
             self.branch7x7dbl_5],
            [self._avg, self.branch_pool]]), 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)
        self._max = _Pool("max2")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(_branches(x, [
            [self.branch3x3_1, self.branch3x3_2],
            [self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4],
            [self._max]]), 1)


class InceptionE(nn.Module):
    """The E block; ``pool`` is ``'avg'`` (padding excluded) for Mixed_7b and ``'max1'`` for Mixed_7c."""

    def __init__(self, cin: int, pool: str):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)
        self._pool = _Pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(a), self.branch3x3_2b(a),
            self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b),
            self.branch_pool(self._pool(x))], 1)


def _tf1_axis(n_in: int, n_out: int, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.arange(n_out, dtype=torch.float64, device=device) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, (src - lo).float()


def resize_bilinear_tf1(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` with TF1 ``ResizeBilinear(align_corners=False)`` semantics.

    Output pixel (i, j) samples the input at (i * H/H_out, j * W/W_out) (no half-pixel offset), with
    neighbours clamped at the last row/column.
    """
    h_out, w_out = size
    x = x.float()
    if x.shape[-2:] == (h_out, w_out):
        return x
    y0, y1, wy = _tf1_axis(x.shape[-2], h_out, x.device)
    x0, x1, wx = _tf1_axis(x.shape[-1], w_out, x.device)
    rows = torch.lerp(x[..., y0, :], x[..., y1, :], wy[:, None])
    return torch.lerp(rows[..., x0], rows[..., x1], wx)


class InceptionV3FID(nn.Module):
    """The FID Inception-v3 (see the module docstring). Random init; load weights with ``load_state_dict``
    or :func:`fastgan.metrics.weights.load_inception`.

    Args:
        preprocess: ``'tf'`` or ``'pytorch-fid'`` (input resize and scaling).
    """

    feature_dim = 2048

    def __init__(self, preprocess: str = "tf"):
        super().__init__()
        if preprocess not in PREPROCESS_MODES:
            raise ValueError(f"InceptionV3FID: preprocess must be one of {PREPROCESS_MODES}, got {preprocess!r}")
        self.preprocess = preprocess
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "avg")
        self.Mixed_7c = InceptionE(2048, "max1")
        self.fc = nn.Linear(2048, 1008)
        self.eval()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 255] images ``(N, 3, H, W)`` -> the network input ``(N, 3, 299, 299)`` in [-1, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"InceptionV3FID: expected images (N, 3, H, W), got shape {tuple(x.shape)}")
        if self.preprocess == "tf":
            return (resize_bilinear_tf1(x, (299, 299)) - 128.0) / 128.0
        x = x.float() / 255.0
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return 2.0 * x - 1.0

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Network input ``(N, 3, 299, 299)`` -> pool features ``(N, 2048)``."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = self.normalize(images)
        if self._channels_last():
            x = x.contiguous(memory_format=torch.channels_last)
        pool = self.trunk(x).float()
        with torch.autocast(pool.device.type, enabled=False):    # the classifier head stays in float32
            logits_unbiased = pool @ self.fc.weight.float().mT
        return {"pool": pool, "logits_unbiased": logits_unbiased, "logits": logits_unbiased + self.fc.bias.float()}

    def _channels_last(self) -> bool:
        return self.Conv2d_1a_3x3.conv.weight.is_contiguous(memory_format=torch.channels_last)

    def fuse_batchnorm(self) -> "InceptionV3FID":
        """Fold every BatchNorm into its convolution (inference only; same outputs up to rounding)."""
        for m in self.modules():
            if isinstance(m, BasicConv2d):
                m.fuse()
        return self

    def train(self, mode: bool = True) -> "InceptionV3FID":
        # A fixed feature extractor: BatchNorm always uses its running statistics.
        return super().train(False)
