"""How a kernel backend computes convolutions: the convolution primitive (whose backward honours
:func:`no_weight_gradients`), ``conv2d_resample`` on it, and the modulated convolutions.

Each backend has one :class:`ConvStrategy`, looked up with :func:`conv_strategy`. The generic one
runs the ``ref`` decomposition of ``conv2d_resample`` on PyTorch's convolutions and the backend's
``upfirdn2d``, and the activation-modulated formulation of the modulated convolutions (modulate the
input, one shared-weight convolution for the whole batch, then demodulation, noise, bias and
activation as an epilogue). A backend module may register a subclass that tunes this for its
hardware when it is imported (the cpu backend does: :mod:`fastgan.backends.cpu_modconv`); the public
ops in :mod:`fastgan.ops` only ever call the strategy, never a backend by name.

:meth:`ConvStrategy.conv2d_resample` and :meth:`ConvStrategy.modulated` return the memory format of
their input ``x``; the primitives keep the layout they are given.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

import torch

from ..ops.bias_act import bias_act
from ..ops.fma import fma
from ..ops.upfirdn2d import upfirdn2d
from .prims.layout import as_layout, memory_format_of
from .ref.conv2d_resample import conv2d_resample as _ref_conv2d_resample
from .ref.conv2d_resample import torch_conv

__all__ = ["ConvStrategy", "Epilogue", "conv_strategy", "register_conv_strategy", "no_weight_gradients",
           "weight_gradients_disabled"]

# A process-wide depth counter, not a thread-local: autograd runs CUDA backward passes on its own
# device threads, which must see the flag set by the thread that called autograd.grad.
_wgrad_depth = 0
_wgrad_lock = threading.Lock()


def weight_gradients_disabled() -> bool:
    """True while any :func:`no_weight_gradients` block is active."""
    return _wgrad_depth > 0


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """Skip convolution weight gradients in backward passes run inside the block.

    Meant for the inner ``torch.autograd.grad(..., inputs=images, create_graph=True)`` of a gradient
    penalty: that pass needs only input gradients, and the weight gradients it would compute are
    thrown away. Gradients taken later (outside the block) through the graph it created are exact.
    Do not differentiate w.r.t. convolution weights inside the block: they would be missing.
    Affects fastgan's kernel backends (the ref backend's plain convolutions skip them by themselves).
    The flag is process-wide (like NVlabs' ``conv2d_gradfix``): do not differentiate w.r.t. weights in
    other threads meanwhile. A backward traced by ``torch.compile`` always computes weight gradients
    (the flag is read when the backward runs eagerly, and a traced graph cannot read it then).
    """
    global _wgrad_depth
    if not disable:
        yield
        return
    with _wgrad_lock:
        _wgrad_depth += 1
    try:
        yield
    finally:
        with _wgrad_lock:
            _wgrad_depth -= 1


def _autocast_dtype(t: torch.Tensor) -> Optional[torch.dtype]:
    """The dtype autocast gives a convolution of ``t`` (None: autocast is off on its device, or ``t`` is
    float64, which autocast leaves alone)."""
    device = t.device.type
    if t.dtype == torch.float64 or not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


def _skip_weight_gradient() -> bool:
    return weight_gradients_disabled() and not torch.compiler.is_compiling()


class Epilogue(NamedTuple):
    """What follows the modulated convolution: ``clamp(act(v + bias) * gain)`` (defaults: nothing)."""
    bias: Optional[torch.Tensor] = None
    act: str = "linear"
    alpha: float = 0.0
    gain: float = 1.0
    clamp: Optional[float] = None

    def is_identity(self) -> bool:
        return self.bias is None and self.act == "linear" and self.gain == 1.0 and self.clamp is None


ConvArgs = Tuple[int, Tuple[int, int], int, bool]   # stride, (ph, pw), groups, transpose


class _Conv(torch.autograd.Function):
    """``F.conv2d`` / ``F.conv_transpose2d`` whose backward honours :func:`no_weight_gradients`.

    The backward is :class:`_ConvGrad`, whose own backward is written with the same two kernels
    (convolution and ``aten.convolution_backward``), so every order of gradient stays on them.
    """

    @staticmethod
    def forward(ctx, x, w, stride, padding, groups, transpose, backend):
        ctx.save_for_backward(x, w)
        ctx.args = (stride, tuple(padding), groups, transpose)
        ctx.backend = backend
        return torch_conv(x, w, stride, padding, groups, transpose)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        need_w = ctx.needs_input_grad[1] and not _skip_weight_gradient()
        if not (need_x or need_w):
            return None, None, None, None, None, None, None
        dx, dw = _ConvGrad.apply(dy, x, w, ctx.args, need_x, need_w, ctx.backend)
        return dx, dw, None, None, None, None, None


def _conv_grads(dy, x, w, args: ConvArgs, need_x: bool, need_w: bool, backend: str):
    """``(dx, dw)`` of the convolution (None where not needed), in the layouts the backend's strategy
    asks for (:meth:`ConvStrategy.grad_layouts`)."""
    stride, padding, groups, transpose = args

    def grads(dy_, x_, mask):
        return torch.ops.aten.convolution_backward(
            dy_, x_, w, None, [stride, stride], list(padding), [1, 1], transpose, [0, 0], groups, mask + [False])

    layouts = conv_strategy(backend).grad_layouts(w, padding, transpose)
    if layouts is None:
        dx, dw, _ = grads(dy, x, [need_x, need_w])
        return (dx if need_x else None), (dw if need_w else None)
    data_cl, weight_cl = layouts
    dx = dw = None
    if need_x:
        dx = grads(as_layout(dy, data_cl, backend), as_layout(x, data_cl, backend), [True, False])[0]
    if need_w:
        dw = grads(as_layout(dy, weight_cl, backend), as_layout(x, weight_cl, backend), [False, True])[1]
    return dx, dw


class _ConvGrad(torch.autograd.Function):
    """``(dx, dw)`` of a convolution ``y = C(x, w)`` given ``dy`` (either may be skipped).

    Both are linear in ``dy``, and ``C`` is bilinear, so for incoming ``(gx, gw)``:
    ``d dy = C(gx, w) + C(x, gw)``, ``d w = dw(dy; input=gx)``, ``d x = dx(dy; weight=gw)``.
    ATen's generic double backward computes the last two as convolutions over the batch axis with
    image-sized kernels, which oneDNN runs at a fraction of its speed; here they are ordinary
    weight and data gradients.
    """

    @staticmethod
    def forward(ctx, dy, x, w, args, need_x, need_w, backend):
        ctx.save_for_backward(dy, x, w)
        ctx.args = args
        ctx.backend = backend
        return _conv_grads(dy, x, w, args, need_x, need_w, backend)

    @staticmethod
    def backward(ctx, gx, gw):
        dy, x, w = ctx.saved_tensors
        args, backend = ctx.args, ctx.backend
        need_dy, need_x, need_w = ctx.needs_input_grad[:3]
        d_dy = d_x = d_w = None
        if need_dy:
            if gx is not None:
                d_dy = _Conv.apply(gx, w, *args, backend)
            if gw is not None:
                term = _Conv.apply(x, gw, *args, backend)
                d_dy = term if d_dy is None else d_dy + term
        if need_w and gx is not None:
            d_w = _ConvGrad.apply(dy, gx, w, args, False, True, backend)[1]
        if need_x and gw is not None:
            d_x = _ConvGrad.apply(dy, x, gw, args, True, False, backend)[0]
        return d_dy, d_x, d_w, None, None, None, None


class ConvStrategy:
    """The generic convolution strategy of kernel backend ``backend`` (see the module docstring).

    Subclasses override the hooks below; ``memory_format`` is the activation layout the backend's
    convolutions run fastest in.
    """

    memory_format: torch.memory_format = torch.contiguous_format

    def __init__(self, backend: str):
        self.backend = backend

    def grad_layouts(self, w: torch.Tensor, padding: Sequence[int],
                     transpose: bool) -> Optional[Tuple[bool, bool]]:
        """(data-gradient, weight-gradient) layouts of a convolution with weight ``w`` and ``padding``
        (ph, pw) as channels_last flags; None: the gradients take the layouts their inputs come in."""
        return None

    # -- primitives -------------------------------------------------------------------------------
    def conv(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: Sequence[int], groups: int,
             transpose: bool) -> torch.Tensor:
        """``F.conv2d`` (or ``F.conv_transpose2d``) of ``x`` and ``w``; differentiable to any order.

        Under autocast the result has autocast's dtype, like ``F.conv2d``'s (the inputs are cast
        before the convolution, so its backward sees the dtypes its forward used); it is computed in
        :meth:`compute_dtype` of that dtype.
        """
        cast = _autocast_dtype(x)
        out_dtype = x.dtype if cast is None else cast
        cdt = self.compute_dtype(out_dtype)
        x, w = x.to(cdt), w.to(cdt)
        if cast is None:
            y = self.convolve(x, w, stride, tuple(padding), groups, transpose)
        else:
            with torch.autocast(x.device.type, enabled=False):
                y = self.convolve(x, w, stride, tuple(padding), groups, transpose)
        return y.to(out_dtype)

    def compute_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The dtype to convolve in for a ``dtype`` result (generic: ``dtype`` itself)."""
        return dtype

    def convolve(self, x: torch.Tensor, w: torch.Tensor, stride: int, padding: Tuple[int, int], groups: int,
                 transpose: bool) -> torch.Tensor:
        """The convolution itself (``x`` and ``w`` of one dtype, autocast off)."""
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
            return _Conv.apply(x, w, stride, padding, groups, transpose, self.backend)
        return torch_conv(x, w, stride, padding, groups, transpose)

    def fir(self, x: torch.Tensor, f: torch.Tensor, up: Sequence[int], down: Sequence[int], pad: Sequence[int],
            flip_filter: bool, gain: float) -> torch.Tensor:
        """``upfirdn2d`` on this backend."""
        return upfirdn2d(x, f, up=list(up), down=list(down), padding=list(pad), flip_filter=flip_filter, gain=gain,
                         impl=self.backend)

    def resample(self, x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int, down: int,
                 pad: Tuple[int, int, int, int], groups: int, flip_weight: bool, flip_filter: bool) -> torch.Tensor:
        """The ``ref`` decomposition of ``conv2d_resample`` on :meth:`conv` and :meth:`fir`, in the
        layout ``x`` comes in (the primitives keep it)."""
        return _ref_conv2d_resample(x, w, f, up, down, pad, groups, flip_weight, flip_filter, conv=self.conv,
                                    fir=self.fir)

    def work_layout(self, x: torch.Tensor, up: int, down: int) -> torch.memory_format:
        """The memory format to convolve ``x`` in (generic: the one it has)."""
        return memory_format_of(x)

    def to_layout(self, t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
        """``t`` in memory format ``fmt`` (``t`` itself when it already is)."""
        return t.contiguous(memory_format=fmt)

    # -- ops ----------------------------------------------------------------------------------------
    def conv2d_resample(self, x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, up: int, down: int,
                        pad: Tuple[int, int, int, int], groups: int, flip_weight: bool,
                        flip_filter: bool) -> torch.Tensor:
        """:func:`fastgan.ops.conv2d_resample` with validated, normalised arguments."""
        fmt = memory_format_of(x)
        xw = self.to_layout(x, self.work_layout(x, up, down))
        return self.to_layout(self.resample(xw, w, f, up, down, pad, groups, flip_weight, flip_filter), fmt)

    def modulate(self, x: torch.Tensor, styles: torch.Tensor, up: int, down: int) -> torch.Tensor:
        """``x * styles[n, i]`` per input channel, in the layout and dtype to convolve in."""
        return x * styles.to(x.dtype).reshape(x.shape[0], x.shape[1], 1, 1)

    def modulated(self, x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, dcoefs: Optional[torch.Tensor],
                  noise: Optional[torch.Tensor], up: int, down: int, pad: Tuple[int, int, int, int], f: torch.Tensor,
                  flip_weight: bool, epilogue: Epilogue = Epilogue()) -> torch.Tensor:
        """The activation-modulated convolution followed by ``epilogue``.

        ``epilogue(conv2d_resample(x * styles, weight) * dcoefs + noise)``: ``x`` [N, I, H, W],
        ``weight`` [O, I, kh, kw], ``styles`` [N, I], ``dcoefs`` [N, O] or None, ``noise``
        broadcastable to the output. Returns the dtype and memory format of ``x``.
        """
        fmt = memory_format_of(x)
        xs = self.modulate(x, styles, up, down)
        y = self.resample(xs, weight.to(xs.dtype), f, up, down, pad, 1, flip_weight, False)
        if xs.dtype != x.dtype:   # modulate() widened the input: round back (autocast's dtype stays)
            y = y.to(x.dtype)
        return self.epilogue(y, dcoefs, noise, epilogue, fmt)

    def epilogue(self, y: torch.Tensor, dcoefs: Optional[torch.Tensor], noise: Optional[torch.Tensor],
                 epilogue: Epilogue, fmt: torch.memory_format) -> torch.Tensor:
        """``clamp(act(y * dcoefs + noise + bias) * gain)`` in memory format ``fmt``, composed of ``fma``
        and ``bias_act``; every operand is rounded to ``y.dtype`` first. ``y`` is the fresh output of
        the convolution: a strategy may overwrite it."""
        n, o = y.shape[0], y.shape[1]
        if dcoefs is not None and noise is not None:
            y = fma(y, dcoefs.to(y.dtype).reshape(n, o, 1, 1), noise.to(y.dtype), impl=self.backend)
        elif dcoefs is not None:
            y = y * dcoefs.to(y.dtype).reshape(n, o, 1, 1)
        elif noise is not None:
            y = y + noise.to(y.dtype)
        if epilogue.is_identity():
            return self.to_layout(y, fmt)
        bias = None if epilogue.bias is None else epilogue.bias.to(y.dtype)
        return self.to_layout(bias_act(y, bias, act=epilogue.act, alpha=epilogue.alpha, gain=epilogue.gain,
                                       clamp=epilogue.clamp, impl=self.backend), fmt)


_STRATEGIES: Dict[str, ConvStrategy] = {name: ConvStrategy(name) for name in ("ref", "cpu", "triton", "cuda")}


def register_conv_strategy(strategy: ConvStrategy) -> ConvStrategy:
    """Make ``strategy`` the one of its backend (a backend module calls this when it is imported)."""
    if strategy.backend not in _STRATEGIES:
        raise ValueError(f"register_conv_strategy: unknown backend {strategy.backend!r}; "
                         f"expected one of {sorted(_STRATEGIES)}")
    _STRATEGIES[strategy.backend] = strategy
    return strategy


def conv_strategy(backend: str) -> ConvStrategy:
    """The :class:`ConvStrategy` of ``backend`` (a name :func:`fastgan.backends.resolve` returned, which
    has imported the backend module, so its own strategy is registered)."""
    return _STRATEGIES[backend]
