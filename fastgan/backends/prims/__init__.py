"""Definitions of fastgan's device-neutral operators (schema, fake kernel, autograd), one module per op.

Importing this package defines every ``torch.ops.fastgan.*`` operator; the backend modules
(``fastgan.backends.cpu``, ``.triton``, ``.cuda``) register their kernels on them when imported.
"""
from . import adain, bias_act, filtered_lrelu, layout, modconv, stats, upfirdn2d  # noqa: F401
