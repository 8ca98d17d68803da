"""Layers shared by the fastgan networks: equalised-learning-rate dense/conv layers, the mapping network.

Parameter and buffer names, shapes and registration order follow the NVlabs StyleGAN2-ADA/StyleGAN3
releases, so their state dicts load with ``strict=True``. Every op goes through :mod:`fastgan.ops`
without ``impl=``, so ``with fastgan.backends.use(name):`` switches the backend of a whole network.
"""
from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import inspect
from typing import Any, Dict, Iterator, Optional, Sequence

import numpy as np
import torch

from .. import backends, ops
from ..backends import host_cache
from ..backends.activations import ACTIVATIONS

__all__ = ["records_init", "cpu_host_cache", "normalize_2nd_moment", "precision", "layer_dtype", "FullyConnectedLayer",
           "Conv2dLayer", "MappingNetwork"]


def cpu_host_cache(forward):
    """Method decorator for a network's ``forward(self, x, ...)``: when ``x`` is a CPU tensor and the ops
    resolve to the cpu backend, run it inside :func:`fastgan.backends.host_cache.scope` (large
    temporaries reuse freed blocks instead of faulting in fresh pages). ``FASTGAN_HOST_CACHE=0`` opts out.
    """
    @functools.wraps(forward)
    def wrapper(self, x, *args, **kwargs):
        if isinstance(x, torch.Tensor) and x.device.type == "cpu" and host_cache.wanted():
            try:
                on_cpu = backends.resolve(None, x, type(self).__name__) == "cpu"
            except backends.BackendUnavailable:   # the ops will raise it with their own names
                on_cpu = False
            if on_cpu:
                with host_cache.scope():
                    return forward(self, x, *args, **kwargs)
        return forward(self, x, *args, **kwargs)
    return wrapper


def records_init(cls):
    """Class decorator: store the constructor keyword arguments as ``self.init_kwargs`` (a deep copy).

    Positional arguments are converted to keywords, so ``type(net)(**net.init_kwargs)`` rebuilds the
    architecture; this is what :func:`fastgan.save_network` writes beside the weights.
    """
    init = cls.__init__
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        rec: Dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            if sig.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                rec.update(value)
            else:
                rec[name] = value
        init(self, *args, **kwargs)
        self.init_kwargs = copy.deepcopy(rec)

    cls.__init__ = __init__
    return cls


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x / sqrt(mean(x**2, dim) + eps)``: project each row onto the sphere of radius sqrt(dim size)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


_compute_dtype: "contextvars.ContextVar[Optional[torch.dtype]]" = contextvars.ContextVar(
    "fastgan_compute_dtype", default=None)

_PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@contextlib.contextmanager
def precision(name: Optional[str]) -> Iterator[None]:
    """Run every synthesis/discriminator layer called inside the block in one compute dtype.

    ``'fp32'``, ``'bf16'`` or ``'fp16'`` (CUDA only); ``None`` restores the NVlabs rule (layers marked by
    ``num_fp16_res`` run in fp16 on CUDA, everything else and everything on CPU in fp32). Mapping
    networks, w and the output images stay fp32; ``conv_clamp`` keeps low-precision activations bounded.
    An explicit ``force_fp32=True`` still wins.
    """
    if name is not None and name not in _PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(_PRECISIONS)} or None, got {name!r}")
    token = _compute_dtype.set(None if name is None else _PRECISIONS[name])
    try:
        yield
    finally:
        _compute_dtype.reset(token)


def layer_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """Compute dtype of a layer: force_fp32, then the :func:`precision` scope, then the NVlabs rule."""
    if force_fp32:
        return torch.float32
    scoped = _compute_dtype.get()
    if scoped is not None:
        if scoped == torch.float16 and device.type != "cuda":
            raise ValueError("precision 'fp16' needs a CUDA device; use 'bf16' on CPU")
        return scoped
    return torch.float16 if use_fp16 and device.type == "cuda" else torch.float32


class FullyConnectedLayer(torch.nn.Module):
    """Dense layer with equalised learning rate: ``act(x @ (W * lr/sqrt(in)).T + b * lr)``.

    Args:
        in_features, out_features: sizes.
        bias: learn a bias.
        activation: any :func:`fastgan.ops.bias_act` activation.
        lr_multiplier: learning-rate multiplier (weights are stored divided by it).
        bias_init: initial bias (scalar or per-feature values).
        weight_init: scale of the initial N(0, 1) weights (0 gives zero weights, as SG3's input affine).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1, bias_init: Any = 0, weight_init: float = 1):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        binit = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(binit / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(torch.nn.Module):
    """Convolution with equalised learning rate, FIR up/downsampling, bias, activation and clamp.

    ``forward(x, gain=1)``: [N, in, H, W] -> [N, out, H*up/down, W*up/down] (``padding = k // 2``).
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
        self.register_buffer("resample_filter", ops.setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ACTIVATIONS[activation].def_gain
        mf = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=mf)
        b = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(b) if b is not None else None
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", b)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = ops.conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                                padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

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
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            self.add_module(f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                            lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            _check_2d(z, "z", self.z_dim)
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            _check_2d(c, "c", self.c_dim)
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_emas and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.w_avg_beta is None or self.num_ws is None:
                raise ValueError("MappingNetwork: truncation needs w_avg tracking (w_avg_beta) and num_ws")
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                x[:, :truncation_cutoff] = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


def _check_2d(t: Optional[torch.Tensor], name: str, dim: int) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"MappingNetwork: {name} must be a tensor [N, {dim}], got {type(t).__name__}")
    if t.ndim != 2 or t.shape[1] != dim:
        raise ValueError(f"MappingNetwork: {name} must have shape [N, {dim}], got {list(t.shape)}")
