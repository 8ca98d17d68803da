"""Gradient penalties and no_weight_gradients against direct autograd formulas."""
import math

import pytest
import torch

import fastgan.ops as ops
from fastgan import backends
from fastgan.backends.kernel_conv import conv_strategy
from fastgan.ops.conv2d_resample import weight_gradients_disabled
from fastgan.ops.penalty import dragan, r1_penalty, r2_penalty, wgan_gp

BACKENDS = [pytest.param("ref"), pytest.param("cpu", marks=pytest.mark.cpu_ext)]
F1331 = ops.setup_filter([1, 3, 3, 1])


class TinyD(torch.nn.Module):
    """conv3x3 + lrelu, conv3x3 down2 + softplus, mean: a D-block-like chain of fastgan ops."""

    def __init__(self, backend, dtype=torch.float64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(6, 3, 3, 3, generator=g, dtype=dtype) / 5)
        self.b1 = torch.nn.Parameter(torch.randn(6, generator=g, dtype=dtype) / 10)
        self.w2 = torch.nn.Parameter(torch.randn(4, 6, 3, 3, generator=g, dtype=dtype) / 8)
        self.b2 = torch.nn.Parameter(torch.randn(4, generator=g, dtype=dtype) / 10)
        self.backend = backend

    def forward(self, x):
        b = self.backend
        h = ops.bias_act(ops.conv2d_resample(x, self.w1, padding=1, impl=b), self.b1, act="lrelu", impl=b)
        h = ops.conv2d_resample(h, self.w2, F1331.to(x.dtype), down=2, padding=1, impl=b)
        return ops.bias_act(h, self.b2, act="softplus", impl=b).mean(dim=[1, 2, 3])


def _images(seed=1, n=3, dtype=torch.float64):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _direct_sq_grad(D, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    return g.square().sum(dim=[1, 2, 3])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", [r1_penalty, r2_penalty])
def test_r1_r2_match_direct_formula_and_param_grads(backend, fn):
    if not backends.available(backend):
        pytest.skip(f"backend {backend!r} unavailable here")
    D = TinyD(backend)
    x = _images().requires_grad_(True)
    pen = fn(D(x), x)
    expect = _direct_sq_grad(D, x)
    assert pen.shape == (3,)
    torch.testing.assert_close(pen, expect, rtol=1e-10, atol=1e-12)
    got = torch.autograd.grad(pen.mean(), list(D.parameters()))
    want = torch.autograd.grad(expect.mean(), list(D.parameters()))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)   # the cpu strategy, and the generic one (named ref here)
def test_no_weight_gradients_keeps_final_gradients_exact(backend):
    """Kernel-backend convolutions: the inner pass skips dL/dW, the outer gradients are unchanged."""
    if not backends.available(backend):
        pytest.skip(f"backend {backend!r} unavailable here")
    kernel_conv = conv_strategy(backend).conv
    g = torch.Generator().manual_seed(3)
    w1 = torch.randn(5, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(2, 5, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def D(x):
        h = torch.nn.functional.softplus(kernel_conv(x, w1, 1, (1, 1), 1, False))
        return kernel_conv(h, w2, 2, (1, 1), 1, False).square().mean(dim=[1, 2, 3])

    results = []
    for disable in (False, True):
        x = _images(n=2).requires_grad_(True)
        with ops.no_weight_gradients(disable):
            (gx,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(gx.square().sum(), [w1, w2, x]))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Inside the block the weight gradient really is skipped.
    x = _images(n=2).requires_grad_(True)
    with ops.no_weight_gradients():
        gw = torch.autograd.grad(D(x).sum(), [w1], allow_unused=True, materialize_grads=True)[0]
    assert (gw == 0).all()
    assert not weight_gradients_disabled()


def test_wgan_gp_and_dragan_match_direct_formulas():
    D = TinyD("ref")
    real, fake = _images(1), _images(2)
    pen = wgan_gp(D, real, fake, generator=torch.Generator().manual_seed(7))
    eps = torch.rand(3, 1, 1, 1, generator=torch.Generator().manual_seed(7), dtype=real.dtype)
    expect = (_direct_sq_grad(D, eps * real + (1 - eps) * fake).sqrt() - 1).square()
    torch.testing.assert_close(pen, expect, rtol=1e-8, atol=1e-10)
    assert pen.requires_grad

    pen = dragan(D, real, center=0.5, generator=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    perturbed = real + 0.5 * real.std() * torch.rand(real.shape, generator=gen, dtype=real.dtype)
    eps = torch.rand(3, 1, 1, 1, generator=gen, dtype=real.dtype)
    expect = (_direct_sq_grad(D, eps * real + (1 - eps) * perturbed).sqrt() - 0.5).square()
    torch.testing.assert_close(pen, expect, rtol=1e-8, atol=1e-10)


def test_penalty_errors_name_the_problem():
    D = TinyD("ref")
    x = _images()
    with pytest.raises(ValueError, match="images must require grad"):
        r1_penalty(D(x), x)
    with pytest.raises(ValueError, match="same shape"):
        wgan_gp(D, x, x[:2])
    assert math.isfinite(float(r1_penalty(D(x.requires_grad_(True)), x).sum().detach()))
