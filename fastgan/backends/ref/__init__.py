"""The ``ref`` backend: pure-PyTorch ops, differentiable to any order by autograd.

These functions are the executable specification of every fastgan op. They take already
validated, normalised arguments (see ``fastgan.ops``) and follow the algorithm of the NVlabs
reference path, so their speed on CPU is what NVlabs code gets there.
"""
from .bias_act import bias_act
from .upfirdn2d import upfirdn2d

__all__ = ["bias_act", "upfirdn2d"]
