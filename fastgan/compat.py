"""Run NVlabs-lineage code (stylegan2-ada-pytorch, stylegan3 and projects vendoring their
``torch_utils``) on fastgan kernels.

    import fastgan.compat
    fastgan.compat.patch_nvlabs()      # after the codebase's torch_utils is importable

Existing call sites keep their arguments; ``impl='cuda'`` (their default) means "fastest available"
and ``impl='ref'`` selects fastgan's ref backend.

The patched ops give NVlabs' own training step the gradients of its reference ops, including which
parameters get one at all: in R1, relu/lrelu layers whose bias only meets the penalty through the
activation's (zero) second derivative give that bias a zero tensor, as torch autograd of the reference
does, so Adam updates it the same way (``tests/test_compat.py`` runs the four loss phases on fakes).
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

# Network modules (under the codebase's ``training`` package) that expose a module-level
# ``modulated_conv2d``; patched only when already imported, so no unrelated package is imported.
NETWORK_PATCHES: Dict[str, Dict[str, object]] = {
    "networks": {"modulated_conv2d": ops.modulated_conv2d},             # stylegan2-ada-pytorch
    "networks_stylegan2": {"modulated_conv2d": ops.modulated_conv2d},   # stylegan3 repo, SG2 nets
    "networks_stylegan3": {"modulated_conv2d": ops.modulated_conv2d_sg3},
}


def _patch_module(mod, attrs: Dict[str, object], replaced: Dict[int, object], patched: List[str]) -> None:
    for attr, new in attrs.items():
        if hasattr(mod, attr):
            replaced[id(getattr(mod, attr))] = new
            setattr(mod, attr, new)
            patched.append(f"{mod.__name__}.{attr}")


def patch_nvlabs(package: str = "torch_utils", training_package: str = "training") -> List[str]:
    """Replace the ops of an imported (or importable) NVlabs ``torch_utils`` package with fastgan's.

    ``modulated_conv2d`` of already-imported ``<training_package>.networks*`` modules is replaced too.
    Names that other imported modules took with ``from ... import`` are rebound. Returns the patched
    ``module.attribute`` names. Raises ModuleNotFoundError if ``package`` cannot be imported.
    """
    importlib.import_module(package)
    patched: List[str] = []
    replaced: Dict[int, object] = {}
    for suffix, attrs in PATCHES.items():
        try:
            mod = importlib.import_module(f"{package}.{suffix}")
        except ModuleNotFoundError:
            continue
        _patch_module(mod, attrs, replaced, patched)
    for suffix, attrs in NETWORK_PATCHES.items():
        mod = sys.modules.get(f"{training_package}.{suffix}")
        if mod is not None:
            _patch_module(mod, attrs, replaced, patched)
    for mod in list(sys.modules.values()):  # `from torch_utils.ops.upfirdn2d import upfirdn2d` copies
        d = getattr(mod, "__dict__", None)
        if not d or getattr(mod, "__name__", "").startswith("fastgan"):
            continue
        for k, v in list(d.items()):
            if callable(v) and id(v) in replaced:
                d[k] = replaced[id(v)]
    return patched
