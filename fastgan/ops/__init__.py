"""fastgan ops: drop-in replacements for the NVlabs StyleGAN ops, dispatched over four backends."""
from .bias_act import bias_act
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["bias_act", "upfirdn2d", "setup_filter", "filter2d", "upsample2d", "downsample2d"]
