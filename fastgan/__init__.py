"""fastgan: a kernel-accelerated GAN engine (StyleGAN2/3 ops, networks, training and metrics)."""
__version__ = "0.1.0"

from . import backends, ops  # noqa: E402

__all__ = ["backends", "ops", "__version__", "load_network", "load_snapshot", "save_network", "generate"]

_LAZY = {"load_network": "fastgan.serialize", "load_snapshot": "fastgan.serialize", "save_network": "fastgan.serialize",
         "generate": "fastgan.generation"}


def __getattr__(name):  # networks, (de)serialisation and generation load on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastgan' has no attribute {name!r}")
