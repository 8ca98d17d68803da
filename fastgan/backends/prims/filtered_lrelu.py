"""``fastgan::filtered_lrelu`` and ``fastgan::filtered_lrelu_masked``: StyleGAN3's fused activation.

Arguments arrive validated and normalised by :func:`fastgan.ops.filtered_lrelu`: the filters are
float32 taps in correlation order (kernels never flip), 1-D separable [ft] or 2-D [fh, fw]; ``pad``
is (x0, x1, y0, y1) on the upsampled grid; ``gain`` is the total activation gain (the op's ``gain``
times ``up**2``); ``b`` has the dtype of ``x``.

With the intermediate image ``u = FIR_f1(up(x + b))`` (the mid grid) and the activation codes ``m``
(2 bits per value, four values per byte: bit 0 where ``u <= 0``, bit 1 where the activation was
clamped), the forward is ``y = down(FIR_f2(act(u)))`` and writes ``m`` when asked to. The masked op
is the same pipeline with ``act`` replaced by multiplication with ``gain`` / ``gain * slope`` / 0 as
the stored code says: a linear map, whose transpose is the masked op again with the filters flipped,
``up``/``down`` swapped and the padding transposed. So

    dx = masked^T(dy),   db = sum(dx),   d(dx)/d(dy) = masked,   d(masked)/d(t) = masked^T,

and every order of derivative runs on the kernel backend; the derivative of ``dx`` with respect to
``x`` and ``b`` is zero almost everywhere (the codes are piecewise constant).

Kernel backends register one ``fused`` function with :func:`register_fused`; it serves both operators.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..library import Primitive
from ._common import Layout, empty_like_format, finish

__all__ = ["FILTERED_LRELU", "FILTERED_LRELU_MASKED", "sizes", "transpose", "register_fused"]

FILTERED_LRELU = Primitive(
    "filtered_lrelu",
    "(Tensor x, Tensor? b, Tensor fu, Tensor fd, int up, int down, int[4] pad, float gain, float slope, "
    "float? clamp, bool write_signs) -> (Tensor, Tensor)",
    doc="bias, upsample + FIR, leaky ReLU with gain and clamp, FIR + downsample; writes 2-bit signs for backward")

FILTERED_LRELU_MASKED = Primitive(
    "filtered_lrelu_masked",
    "(Tensor t, Tensor signs, Tensor f1, Tensor f2, int up, int down, int[4] pad1, int[4] pad2, float gain, "
    "float slope) -> Tensor",
    doc="filtered_lrelu linearised at stored signs: the backward of filtered_lrelu, and of itself")

_NO_PAD = (0, 0, 0, 0)


def _extent(f: torch.Tensor) -> Tuple[int, int]:
    return (f.shape[0], f.shape[0]) if f.ndim == 1 else (f.shape[1], f.shape[0])


def sizes(h, w, f1: torch.Tensor, f2: torch.Tensor, up: int, down: int, pad1: Sequence[int],
          pad2: Sequence[int] = _NO_PAD):
    """((mid_h, mid_w), (out_h, out_w)) of the fused pipeline on an h x w input."""
    (f1w, f1h), (f2w, f2h) = _extent(f1), _extent(f2)
    mid_w = w * up + pad1[0] + pad1[1] - f1w + 1
    mid_h = h * up + pad1[2] + pad1[3] - f1h + 1
    return (mid_h, mid_w), ((mid_h + pad2[2] + pad2[3] - f2h + down) // down,
                            (mid_w + pad2[0] + pad2[1] - f2w + down) // down)


def transpose(in_hw: Sequence[int], out_hw: Sequence[int], f1: torch.Tensor, f2: torch.Tensor, up: int, down: int,
              pad1: Sequence[int], pad2: Sequence[int]):
    """Geometry ``(f1, f2, up, down, pad1, pad2)`` of the adjoint of the masked map ``in_hw -> out_hw``.

    It maps ``out_hw`` back onto ``in_hw`` through the same mid grid, so the stored signs still apply.
    """
    (h, w), (out_h, out_w) = in_hw, out_hw
    (mid_h, mid_w), _ = sizes(h, w, f1, f2, up, down, pad1, pad2)
    (f1w, f1h), (f2w, f2h) = _extent(f1), _extent(f2)
    pad1_t = [f2w - 1 - pad2[0], mid_w - out_w * down + pad2[0], f2h - 1 - pad2[2], mid_h - out_h * down + pad2[2]]
    pad2_t = [f1w - 1 - pad1[0], w * up - mid_w + pad1[0] - up + 1,
              f1h - 1 - pad1[2], h * up - mid_h + pad1[2] - up + 1]
    return _flip(f2), _flip(f1), down, up, pad1_t, pad2_t


def _flip(f: torch.Tensor) -> torch.Tensor:
    return f.flip(list(range(f.ndim)))


def _signs_shape(x: torch.Tensor, mid_h, mid_w, write: bool) -> List:
    return [x.shape[0], x.shape[1], mid_h, (mid_w + 3) // 4] if write else [0]


# ------------------------------------------------------------------------------------------- fake kernels

@FILTERED_LRELU.register_fake
def _fake(x, b, fu, fd, up, down, pad, gain, slope, clamp, write_signs, backend):
    (mid_h, mid_w), (out_h, out_w) = sizes(x.shape[2], x.shape[3], fu, fd, up, down, pad)
    y = empty_like_format(x, (x.shape[0], x.shape[1], out_h, out_w))
    return y, x.new_empty(_signs_shape(x, mid_h, mid_w, write_signs), dtype=torch.uint8)


@FILTERED_LRELU_MASKED.register_fake
def _fake_masked(t, signs, f1, f2, up, down, pad1, pad2, gain, slope, backend):
    _, (out_h, out_w) = sizes(t.shape[2], t.shape[3], f1, f2, up, down, pad1, pad2)
    return empty_like_format(t, (t.shape[0], t.shape[1], out_h, out_w))


# ------------------------------------------------------------------------------------------- autograd

def _setup(ctx, inputs, output):
    x, b, fu, fd, up, down, pad, gain, slope, clamp, write_signs, backend = inputs
    ctx.save_for_backward(output[1], fu, fd)
    ctx.args = (tuple(x.shape[2:]), up, down, tuple(pad), gain, slope, backend, bool(write_signs),
                None if b is None else b.dtype)


def _backward(ctx, dy, _dsigns):
    signs, fu, fd = ctx.saved_tensors
    in_hw, up, down, pad, gain, slope, backend, wrote, b_dtype = ctx.args
    if not wrote:
        raise RuntimeError("fastgan::filtered_lrelu: backward needs the signs, but the forward ran with "
                           "write_signs=False (fastgan.ops.filtered_lrelu sets it when x or b requires grad)")
    f1, f2, up_t, down_t, pad1, pad2 = transpose(in_hw, dy.shape[2:], fu, fd, up, down, pad, _NO_PAD)
    dx = FILTERED_LRELU_MASKED(dy, signs, f1, f2, up_t, down_t, pad1, pad2, gain, slope, backend=backend)
    db = dx.sum(dim=(0, 2, 3)).to(b_dtype) if ctx.needs_input_grad[1] else None
    return dx, db, None, None, None, None, None, None, None, None, None, None


def _setup_masked(ctx, inputs, output):
    t, signs, f1, f2, up, down, pad1, pad2, gain, slope, backend = inputs
    ctx.save_for_backward(signs, f1, f2)
    ctx.args = (tuple(t.shape[2:]), up, down, tuple(pad1), tuple(pad2), gain, slope, backend)


def _backward_masked(ctx, g):
    signs, f1, f2 = ctx.saved_tensors
    in_hw, up, down, pad1, pad2, gain, slope, backend = ctx.args
    geom = transpose(in_hw, g.shape[2:], f1, f2, up, down, pad1, pad2)
    dt = FILTERED_LRELU_MASKED(g, signs, *geom, gain, slope, backend=backend)
    return dt, None, None, None, None, None, None, None, None, None, None


FILTERED_LRELU.register_autograd(_backward, setup_context=_setup)
FILTERED_LRELU_MASKED.register_autograd(_backward_masked, setup_context=_setup_masked)


# ------------------------------------------------------------------------------------------- kernel registration

Fused = Callable[..., Tuple[torch.Tensor, torch.Tensor]]


def register_fused(backend: str, fused: Fused, layout: Optional[Layout] = None) -> None:
    """Register ``fused`` as ``backend``'s kernel of both operators.

    ``fused(x, b, f1, f2, up, down, pad1, pad2, gain, slope, clamp, signs, write_signs) -> (y, signs)``
    computes ``y = down(FIR_f2(pad2(act(FIR_f1(pad1(up(x + b)))))))`` with ``act`` the leaky ReLU with
    gain and clamp (``clamp`` None: no clamp), or, given ``signs``, the stored codes; it writes the codes
    when ``write_signs`` (else returns any uint8 tensor). It is only called with non-empty tensors and may
    return ``y`` in the compute dtype (float32 for half types) and in any memory format: the kernels
    registered here give it the input's memory format (with ``layout(t, channels_last)`` when given) and
    dtype, and return empty or zero results for empty inputs, so every backend meets the same contract.
    """
    def forward(x, b, fu, fd, up, down, pad, gain, slope, clamp, write_signs):
        (mid_h, mid_w), (out_h, out_w) = sizes(x.shape[2], x.shape[3], fu, fd, up, down, pad)
        if x.numel() == 0:  # u = 0 everywhere, so y = 0; the codes only ever meet empty tensors
            y = empty_like_format(x, (x.shape[0], x.shape[1], out_h, out_w), zero=True)
            return y, x.new_zeros(_signs_shape(x, mid_h, mid_w, write_signs), dtype=torch.uint8)
        y, signs = fused(x, b, fu, fd, up, down, pad, _NO_PAD, gain, slope, clamp, None, write_signs)
        return finish(y, x, layout), signs if write_signs else x.new_empty([0], dtype=torch.uint8)

    def masked(t, signs, f1, f2, up, down, pad1, pad2, gain, slope):
        _, (out_h, out_w) = sizes(t.shape[2], t.shape[3], f1, f2, up, down, pad1, pad2)
        if t.numel() == 0 or out_h * out_w == 0:  # a linear map from or onto nothing
            return empty_like_format(t, (t.shape[0], t.shape[1], out_h, out_w), zero=True)
        y, _ = fused(t, None, f1, f2, up, down, pad1, pad2, gain, slope, None, signs, False)
        return finish(y, t, layout)

    FILTERED_LRELU.kernel(backend)(forward)
    FILTERED_LRELU_MASKED.kernel(backend)(masked)
