"""Run NVlabs-lineage code (stylegan2-ada-pytorch, stylegan3 and projects vendoring their
``torch_utils``) on fastgan kernels.

    import fastgan.compat
    fastgan.compat.patch_nvlabs()      # after the codebase's torch_utils is importable

Existing call sites keep their arguments; ``impl='cuda'`` (their default) means "fastest available"
and ``impl='ref'`` selects fastgan's ref backend.
"""
from __future__ import annotations

import importlib
import sys
from typing import Dict, List

from . import ops

# module suffix (under the ``torch_utils`` package) -> {attribute: fastgan replacement}
PATCHES: Dict[str, Dict[str, object]] = {
    "ops.upfirdn2d": {"setup_filter": ops.setup_filter, "upfirdn2d": ops.upfirdn2d, "filter2d": ops.filter2d,
                      "upsample2d": ops.upsample2d, "downsample2d": ops.downsample2d},
    "ops.bias_act": {"bias_act": ops.bias_act},
    "ops.conv2d_resample": {"conv2d_resample": ops.conv2d_resample},
    "ops.fma": {"fma": ops.fma},
    "ops.conv2d_gradfix": {"no_weight_gradients": ops.no_weight_gradients},
    "ops.filtered_lrelu": {"filtered_lrelu": ops.filtered_lrelu},
}


def patch_nvlabs(package: str = "torch_utils") -> List[str]:
    """Replace the ops of an imported (or importable) NVlabs ``torch_utils`` package with fastgan's.

    Also rebinds names that other already-imported modules took with ``from ... import``.
    Returns the patched ``module.attribute`` names. Raises ModuleNotFoundError if ``package``
    cannot be imported.
    """
    importlib.import_module(package)
    patched = []
    replaced = {}
    for suffix, attrs in PATCHES.items():
        name = f"{package}.{suffix}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        for attr, new in attrs.items():
            if hasattr(mod, attr):
                replaced[id(getattr(mod, attr))] = new
                setattr(mod, attr, new)
                patched.append(f"{name}.{attr}")
    for mod in list(sys.modules.values()):  # `from torch_utils.ops.upfirdn2d import upfirdn2d` copies
        d = getattr(mod, "__dict__", None)
        if not d or getattr(mod, "__name__", "").startswith("fastgan"):
            continue
        for k, v in list(d.items()):
            if callable(v) and id(v) in replaced:
                d[k] = replaced[id(v)]
    return patched
