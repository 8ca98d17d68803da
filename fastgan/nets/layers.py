"""Layers shared by the fastgan networks: equalised-learning-rate dense/conv layers, the mapping network.

Parameter and buffer names, shapes and registration order follow the NVlabs StyleGAN2-ADA/StyleGAN3
releases, so their state dicts load with ``strict=True``. Every op goes through :mod:`fastgan.ops`
without ``impl=``, so ``with fastgan.backends.use(name):`` switches the backend of a whole network.
The compute-dtype/memory-format policy lives in :mod:`fastgan.nets._policy` and is re-exported here.
"""
from __future__ import annotations

import copy
import functools
import inspect
import math
from typing import Any, Optional, Sequence

import torch

from .. import ops
from ..backends.activations import ACTIVATIONS
from ._policy import activation_format, input_format, layer_dtype, precision

__all__ = ["records_init", "normalize_2nd_moment", "precision", "layer_dtype",
           "activation_format", "input_format", "activation_gain", "scaled_clamp", "fir_filter",
           "FullyConnectedLayer", "Conv2dLayer", "MappingNetwork"]


def records_init(cls: type) -> type:
    """Class decorator: store the constructor keyword arguments as ``self.init_kwargs`` (a deep copy).

    Positional arguments are converted to keywords, so ``type(net)(**net.init_kwargs)`` rebuilds the
    architecture; this is what :func:`fastgan.save_network` writes beside the weights.
    """
    build = cls.__init__
    params = list(inspect.signature(build).parameters.values())[1:]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        raise TypeError(f"records_init: {cls.__name__}.__init__ must not take *args")
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]

    @functools.wraps(build)
    def init(self, *args, **kwargs):
        build(self, *args, **kwargs)
        # a decorated subclass runs after its decorated base, so the outermost class's call is kept
        self.init_kwargs = copy.deepcopy({**dict(zip(positional, args)), **kwargs})

    cls.__init__ = init
    return cls


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x**2, dim) + eps)``: project each row onto the sphere of radius sqrt(dim size)."""
    return x * x.square().mean(dim=dim, keepdim=True).add(eps).rsqrt()


def activation_gain(activation: str) -> float:
    """The default gain of a :func:`fastgan.ops.bias_act` activation (sqrt(2) for lrelu, 1 for linear)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    return ACTIVATIONS[activation].def_gain


def scaled_clamp(conv_clamp: Optional[float], gain: float) -> Optional[float]:
    """The clamp limit of a layer called with ``gain`` (None: no clamping)."""
    return None if conv_clamp is None else conv_clamp * gain


def fir_filter(taps: Sequence[float]) -> torch.Tensor:
    """``taps`` prepared by :func:`fastgan.ops.setup_filter` on the default device, so networks also build
    under a ``torch.device`` context (e.g. ``'meta'``)."""
    return ops.setup_filter(taps, device=torch.get_default_device())


def _register(module: torch.nn.Module, name: str, value: Optional[torch.Tensor], trainable: bool) -> None:
    """Register ``value`` as a parameter (trainable) or a buffer (frozen); None registers nothing visible."""
    if not trainable:
        module.register_buffer(name, value)
    elif value is None:
        module.register_parameter(name, None)
    else:
        module.register_parameter(name, torch.nn.Parameter(value))


def _check_2d(t: Optional[torch.Tensor], name: str, dim: int) -> None:
    """``t`` must be a [N, dim] tensor; anything (also None) is accepted when ``dim`` is 0."""
    if dim == 0:
        return
    if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[1] != dim:
        got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must have shape [N, {dim}], got {got}")


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalised learning rate: ``act(x @ (W * lr/sqrt(in)).T + b * lr)``.

    Args:
        in_features, out_features: sizes.
        bias: learn a bias.
        activation: any :func:`fastgan.ops.bias_act` activation.
        lr_multiplier: learning-rate multiplier (weights are stored divided by it).
        bias_init: initial bias (scalar or per-feature values), stored as given: the effective initial
            bias is ``bias_init * lr_multiplier`` (StyleGAN3 layers pass ``bias_init / lr_multiplier``).
        weight_init: scale of the initial N(0, 1) weights (0 gives zero weights, as SG3's input affine).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1, bias_init: Any = 0, weight_init: float = 1):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"FullyConnectedLayer: in_features and out_features must be >= 1, got "
                             f"{in_features} and {out_features}")
        activation_gain(activation)
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * weight_init / lr_multiplier)
        initial = torch.as_tensor(bias_init, dtype=torch.float32).broadcast_to([out_features]).clone()
        _register(self, "bias", initial if bias else None, trainable=True)
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias
        if b is not None:
            b = (b * self.bias_gain if self.bias_gain != 1 else b).to(x.dtype)
            if self.activation == "linear":
                return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(torch.nn.Module):
    """Convolution with equalised learning rate, FIR up/downsampling, bias, activation and clamp.

    ``forward(x, gain=1)``: [N, in, H, W] -> [N, out, H*up/down, W*up/down] (``padding = k // 2``).
    ``trainable=False`` (frozen discriminator layers) stores ``weight`` and ``bias`` as buffers.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = (1, 3, 3, 1), conv_clamp: Optional[float] = None,
                 channels_last: bool = False, trainable: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = activation_gain(activation)
        self.register_buffer("resample_filter", fir_filter(resample_filter))
        layout = torch.channels_last if channels_last else torch.contiguous_format
        kernel = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=layout)
        _register(self, "weight", kernel, trainable)
        _register(self, "bias", torch.zeros([out_channels]) if bias else None, trainable)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        kernel = (self.weight * self.weight_gain).to(x.dtype)
        y = ops.conv2d_resample(x, kernel, self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                                flip_weight=self.up == 1)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return ops.bias_act(y, b, act=self.activation, gain=self.act_gain * gain,
                            clamp=scaled_clamp(self.conv_clamp, gain))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, "
                f"up={self.up}, down={self.down}")


class MappingNetwork(torch.nn.Module):
    """z (+ embedded class label c) -> w, broadcast to ``num_ws`` copies, with truncation.

    Args:
        z_dim: latent size (0: no latent, the D label mapping).
        c_dim: conditioning label size (0: unconditional).
        w_dim: intermediate latent size.
        num_ws: number of w copies to output; None returns [N, w_dim].
        num_layers: dense layers.
        embed_features: label embedding size (default w_dim).
        layer_features: hidden size (default w_dim).
        activation: hidden activation.
        lr_multiplier: learning-rate multiplier of the dense layers.
        w_avg_beta: decay of the tracked mean ``w_avg`` (None: no tracking, no truncation).

    ``forward(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False)`` -> [N, num_ws, w_dim];
    truncation moves the first ``truncation_cutoff`` ws (all when None) towards ``w_avg``.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.998):
        super().__init__()
        if z_dim == 0 and c_dim == 0:
            raise ValueError("MappingNetwork: needs a latent or a label (z_dim > 0 or c_dim > 0)")
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        label_width = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        hidden = w_dim if layer_features is None else layer_features
        widths = [z_dim + label_width] + [hidden] * (num_layers - 1) + [w_dim]
        self.embed = FullyConnectedLayer(c_dim, label_width) if c_dim > 0 else None
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(widths[i], widths[i + 1], activation=activation,
                                                        lr_multiplier=lr_multiplier))
        tracked = num_ws is not None and w_avg_beta is not None
        self.register_buffer("w_avg", torch.zeros([w_dim]) if tracked else None)

    def _embed_inputs(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    @torch.no_grad()
    def _track_w_avg(self, w: torch.Tensor) -> None:
        """w_avg <- beta * w_avg + (1 - beta) * batch mean of w."""
        self.w_avg.lerp_(w.mean(dim=0), 1 - self.w_avg_beta)

    def _truncate(self, x: torch.Tensor, psi: float, cutoff: Optional[int]) -> torch.Tensor:
        if self.w_avg is None:
            raise ValueError("MappingNetwork: truncation_psi != 1 needs w_avg (num_ws and w_avg_beta not None)")
        if self.num_ws is None or cutoff is None:
            return self.w_avg.lerp(x, psi)
        return torch.cat([self.w_avg.lerp(x[:, :cutoff], psi), x[:, cutoff:]], dim=1)

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        _check_2d(z, "z", self.z_dim)
        _check_2d(c, "c", self.c_dim)
        if self.z_dim > 0 and self.c_dim > 0 and z.shape[0] != c.shape[0]:
            raise ValueError(f"MappingNetwork: z and c must have the same batch size, got {z.shape[0]} and "
                             f"{c.shape[0]}")
        x = self._embed_inputs(z, c)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_emas and self.w_avg is not None:
            self._track_w_avg(x.detach())
        if self.num_ws is not None:
            x = x.unsqueeze(1).expand(-1, self.num_ws, -1).contiguous()
        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
