"""Small workloads of every kernel-backed op, compared with ref: value, first and second derivatives, float16.

Shared by ``test_triton_kernels.py`` (triton on the interpreter or a GPU) and ``test_gpu_backends.py``
(triton and cuda on CUDA tensors). Each case runs one op of :mod:`fastgan.ops` on the backend chosen with
``fastgan.backends.use`` (an explicit choice: a backend without a kernel raises ``BackendUnavailable``).
Sizes span several GPU tiles per plane: interior tiles without masks and edge tiles with them.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Tuple

import torch

import fastgan.ops as ops
from fastgan import backends

F64 = dict(rtol=1e-9, atol=1e-9)
F16 = dict(rtol=1e-2, atol=1e-2)

# A case: (fn(*tensors) -> tensor, float64 inputs, derivative order compared: 1 or 2).
Case = Tuple[Callable[..., torch.Tensor], List[torch.Tensor], int]


def _randn(device, *shape, seed=0, channels_last=False):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64).to(device)
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t


def _rand(device, *shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)).to(device) + 0.1


def cases(device: torch.device) -> Dict[str, Callable[[], Case]]:
    """The workloads on ``device``, by name (each built on demand)."""
    def taps(values):
        return ops.setup_filter(values, device=device)

    def upfirdn2d_2d():
        f = _rand(device, 4, 4, seed=1)
        return (lambda x: ops.upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1], gain=4.0), [_randn(device, 1, 1, 20, 140)], 2)

    def upfirdn2d_separable_channels_last():
        f = taps([1, 3, 3, 1])
        return (lambda x: ops.downsample2d(x, f), [_randn(device, 1, 64, 12, 10, channels_last=True)], 1)

    def bias_act_swish():
        return (lambda x, b: ops.bias_act(x, b, act="swish", clamp=2.0),
                [_randn(device, 2, 24, 9, 40), _randn(device, 24, seed=1)], 2)

    def bias_act_lrelu_channels_last():
        return (lambda x, b: ops.bias_act(x, b, act="lrelu", clamp=1.5),
                [_randn(device, 2, 40, 12, 10, channels_last=True), _randn(device, 40, seed=1)], 1)

    def filtered_lrelu_separable():
        fu, fd = taps([1, 3, 3, 1]), taps([1, 2, 2, 1])
        return (lambda x, b: ops.filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=[3, 2, 3, 2], clamp=1.0),
                [_randn(device, 1, 2, 16, 21), _randn(device, 2, seed=1)], 2)

    def filtered_lrelu_2d():
        fu, fd = _rand(device, 4, 4, seed=3), _rand(device, 3, 3, seed=4)
        return (lambda x: ops.filtered_lrelu(x, fu, fd, None, up=2, down=1, padding=2),
                [_randn(device, 2, 2, 11, 13)], 1)

    def adain():
        return (lambda x, s, b: ops.adain(x, s, b),
                [_randn(device, 2, 3, 40, 40) * 2 + 1, _randn(device, 2, 3, seed=1), _randn(device, 2, 3, seed=2)], 2)

    return {f.__name__: f for f in (upfirdn2d_2d, upfirdn2d_separable_channels_last, bias_act_swish,
                                    bias_act_lrelu_channels_last, filtered_lrelu_separable, filtered_lrelu_2d, adain)}


def derivatives(fn, inputs: List[torch.Tensor], order: int) -> List[torch.Tensor]:
    """fn's output, its gradients w.r.t. ``inputs`` for a fixed upstream gradient g, and (order 2) the
    gradients of the summed squared first gradients w.r.t. ``inputs`` and g (zeros where there is no dependence)."""
    leaves = [t.detach().requires_grad_(True) for t in inputs]
    y = fn(*leaves)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(7), dtype=y.dtype).to(y.device)
    g.requires_grad_(order == 2)
    first = torch.autograd.grad((y * g).sum(), leaves, create_graph=order == 2)
    out = [y] + list(first)
    if order == 2:
        r = sum((d ** 2).sum() for d in first)
        second = torch.autograd.grad(r, leaves + [g], allow_unused=True)
        out += [torch.zeros_like(t) if s is None else s for s, t in zip(second, leaves + [g])]
    return out


def compare_with_ref(name: str, backend: str, device: torch.device) -> None:
    """Run case ``name`` on ``backend`` and on ref; assert equal results, derivatives and memory format, and a
    float16 forward equal to the float64 ref rounded to float16."""
    fn, inputs, order = cases(device)[name]()
    with backends.use(backend):
        got = derivatives(fn, inputs, order)
    with backends.use("ref"):
        want = derivatives(fn, inputs, order)
    for k, (a, e) in enumerate(zip(got, want)):
        assert (a.shape, a.dtype) == (e.shape, e.dtype), f"{name} on {backend}, output {k}"
        torch.testing.assert_close(a, e, **F64, msg=lambda m: f"{name} on {backend}, output {k}: {m}")
    cl = inputs[0].is_contiguous(memory_format=torch.channels_last)
    assert got[0].is_contiguous(memory_format=torch.channels_last) == cl, f"{name}: memory format of x not kept"
    half = [t.to(torch.float16) for t in inputs]
    with torch.no_grad():
        with backends.use(backend):
            y16 = fn(*half)
        with backends.use("ref"):
            ref16 = fn(*[t.double() for t in half]).to(torch.float16)
    assert y16.dtype == torch.float16
    torch.testing.assert_close(y16, ref16, **F16, msg=lambda m: f"{name} float16 on {backend}: {m}")
