"""The bias_act activation table shared by every backend (a leaf module: imports nothing of fastgan)."""
from __future__ import annotations

import math
from typing import Dict, NamedTuple


class Activation(NamedTuple):
    code: int            # enum value used by the C++, CUDA and Triton kernels
    def_alpha: float     # default alpha (only lrelu uses it)
    def_gain: float      # default gain applied after the activation
    smooth: bool         # nonzero second derivative (needs the second-order kernel)


ACTIVATIONS: Dict[str, Activation] = {
    "linear":   Activation(0, 0.0, 1.0, False),
    "relu":     Activation(1, 0.0, math.sqrt(2), False),
    "lrelu":    Activation(2, 0.2, math.sqrt(2), False),
    "tanh":     Activation(3, 0.0, 1.0, True),
    "sigmoid":  Activation(4, 0.0, 1.0, True),
    "elu":      Activation(5, 0.0, 1.0, True),
    "selu":     Activation(6, 0.0, 1.0, True),
    "softplus": Activation(7, 0.0, 1.0, True),
    "swish":    Activation(8, 0.0, math.sqrt(2), True),
}
