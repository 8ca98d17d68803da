"""The cpu kernel of ``fastgan::center_rows_`` (``torch.ops.fastgan_cpu.center_rows_``, C++,
csrc/cpu/center_rows.cpp). Imported by :mod:`fastgan.backends.cpu`.

The C++ kernel gives each thread a block of rows and adds the per-thread column sums at the end, so
``sums`` depends (in its last bits) on the thread count. Under ``torch.use_deterministic_algorithms(True)``
the column sums are taken again in a fixed order instead (``dst`` is elementwise, hence deterministic).
"""
from __future__ import annotations

import torch

import fastgan._C  # noqa: F401  (registers torch.ops.fastgan_cpu.*)

from .prims.bias_act import channel_sum
from .prims.stats import CENTER_ROWS


@CENTER_ROWS.kernel("cpu")
def _center_rows(dst: torch.Tensor, x: torch.Tensor, shift: torch.Tensor, sums: torch.Tensor) -> None:
    if not torch.are_deterministic_algorithms_enabled():
        torch.ops.fastgan_cpu.center_rows_(dst, x, shift, sums)
        return
    torch.ops.fastgan_cpu.center_rows_(dst, x, shift, torch.zeros_like(sums))
    sums += channel_sum(dst, 1, torch.float64)
