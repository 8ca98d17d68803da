"""fastgan ops: drop-in replacements for the NVlabs StyleGAN ops, dispatched over four backends."""
from .adain import adain
from .bias_act import bias_act
from .conv2d_resample import conv2d_resample, no_weight_gradients
from .filtered_lrelu import filtered_lrelu
from .fma import fma
from .modconv import modconv_bias_act, modulated_conv2d, modulated_conv2d_sg3
from .penalty import dragan, r1_penalty, r2_penalty, wgan_gp
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ["bias_act", "upfirdn2d", "setup_filter", "filter2d", "upsample2d", "downsample2d", "filtered_lrelu", "adain",
           "conv2d_resample", "no_weight_gradients", "fma", "modulated_conv2d", "modulated_conv2d_sg3",
           "modconv_bias_act", "r1_penalty", "r2_penalty", "wgan_gp", "dragan"]
