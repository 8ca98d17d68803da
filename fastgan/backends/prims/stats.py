"""``fastgan::center_rows_``: the centring step of streaming feature statistics, in one pass.

``center_rows_(dst, x, shift, sums)`` writes ``dst = x - shift`` in float64 and adds ``dst.sum(0)`` to
``sums``. ``x`` is (N, D) float32 or float64 and contiguous; ``dst`` (N, D), ``shift`` (D,) and
``sums`` (D,) are contiguous float64, and none of them overlap. It mutates ``dst`` and ``sums`` and
returns nothing; it is not differentiable (statistics are read from detached features). Only the cpu
backend has a kernel. Used by :class:`fastgan.metrics.stats.FeatureStats`.
"""
from __future__ import annotations

from ..library import Primitive

__all__ = ["CENTER_ROWS"]

CENTER_ROWS = Primitive("center_rows_", "(Tensor(a!) dst, Tensor x, Tensor shift, Tensor(b!) sums) -> ()",
                        doc="dst = x - shift (float64) and sums += dst.sum(0), in place")


@CENTER_ROWS.register_fake
def _fake(dst, x, shift, sums, backend):
    return None
