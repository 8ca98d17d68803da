"""The ``triton`` backend: Triton kernels for CUDA tensors (or CPU tensors under ``TRITON_INTERPRET=1``).

Importing a kernel module registers its functions as the ``triton`` kernels of the
``torch.ops.fastgan`` operators (autograd lives with the schemas in :mod:`fastgan.backends.prims`);
arguments arrive validated and normalised. Set ``TRITON_INTERPRET=1`` before this module is first imported to run the
kernels on CPU tensors with Triton's interpreter (slow; meant for tests).
"""
try:
    import triton  # noqa: F401
    import triton.language  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only where triton is absent
    raise ImportError("fastgan backend 'triton' needs the triton package: pip install 'fastgan[triton]' "
                      f"(or pip install triton); import failed with: {e}") from e

from .bias_act import bias_act, bias_act_grad, bias_act_grad2
from .upfirdn2d import upfirdn2d
from ..prims.upfirdn2d import UPFIRDN2D

UPFIRDN2D.kernel("triton")(upfirdn2d)

__all__ = ["upfirdn2d", "bias_act", "bias_act_grad", "bias_act_grad2"]

# --- kernel modules of the other primitives: each registers its triton kernels when imported (one line each) ---
from . import adain as _adain, filtered_lrelu as _filtered_lrelu  # noqa: E402,F401
