"""fastgan: a kernel-accelerated GAN engine (StyleGAN2/3 ops, networks, training and metrics)."""
__version__ = "0.1.0"

from . import backends, ops  # noqa: E402

__all__ = ["backends", "ops", "__version__"]
