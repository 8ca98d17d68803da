"""Bad input gives a ValueError/TypeError naming the argument, from every usable backend."""
import os

import pytest
import torch

from fastgan import backends, ops

BACKENDS = [b for b in ("ref", "cpu") if backends.available(b)]
F4 = ops.setup_filter([1, 3, 3, 1])


@pytest.fixture(params=BACKENDS)
def impl(request):
    return request.param


@pytest.mark.parametrize("x, f, kw, exc, match", [
    (torch.zeros(3, 8, 8), F4, {}, ValueError, "x must have 4 dimensions"),
    (torch.zeros(1, 1, 8, 8, dtype=torch.int32), F4, {}, TypeError, "x must be float"),
    ([[1.0]], F4, {}, TypeError, "x must be a torch.Tensor"),
    (torch.zeros(1, 1, 8, 8), torch.zeros(2, 2, 2), {}, ValueError, "f must have 1 or 2 dimensions"),
    (torch.zeros(1, 1, 8, 8), torch.ones(4, 4, requires_grad=True), {}, ValueError, "f must not require grad"),
    (torch.zeros(1, 1, 8, 8), torch.ones(0), {}, ValueError, "at least one tap"),
    (torch.zeros(1, 1, 8, 8), F4, {"up": 0}, ValueError, "up must be >= 1"),
    (torch.zeros(1, 1, 8, 8), F4, {"down": [1, -2]}, ValueError, "down must be >= 1"),
    (torch.zeros(1, 1, 8, 8), F4, {"padding": [1, 2, 3]}, ValueError, "padding"),
    (torch.zeros(1, 1, 8, 8), F4, {"padding": 1.5}, TypeError, "padding"),
    (torch.zeros(1, 1, 2, 2), F4, {}, ValueError, "empty output"),
    (torch.zeros(1, 1, 8, 8), F4, {"padding": -4}, ValueError, "empty output"),
])
def test_upfirdn2d_bad_input(impl, x, f, kw, exc, match):
    with pytest.raises(exc, match=match):
        ops.upfirdn2d(x, f, impl=impl, **kw)


def test_upfirdn2d_filter_on_other_device(impl):
    if not torch.cuda.is_available():
        f = torch.ones(2, 2, device="meta")
        with pytest.raises(ValueError, match="f is on meta"):
            ops.upfirdn2d(torch.zeros(1, 1, 8, 8), f, impl=impl)


@pytest.mark.parametrize("x, b, kw, exc, match", [
    (torch.zeros(2, 3, 4), torch.zeros(4), {}, ValueError, "b must have x.shape\\[1\\] = 3"),
    (torch.zeros(2, 3, 4), torch.zeros(3, 1), {}, ValueError, "b must have 1 dimensions"),
    (torch.zeros(2, 3, 4), torch.zeros(3, dtype=torch.int64), {}, TypeError, "b must be float"),
    (torch.zeros(2, 3, 4), None, {"act": "gelu"}, ValueError, "act must be one of"),
    (torch.zeros(2, 3, 4), None, {"dim": 3, "act": "relu"}, ValueError, "dim must be"),
    (torch.zeros(2, 3, dtype=torch.int32), None, {"act": "relu"}, TypeError, "x must be float"),
    (torch.zeros(2, 3), None, {"act": "relu", "gain": "2"}, TypeError, "gain must be a number"),
])
def test_bias_act_bad_input(impl, x, b, kw, exc, match):
    with pytest.raises(exc, match=match):
        ops.bias_act(x, b, impl=impl, **kw)


def test_setup_filter_bad_input():
    with pytest.raises(ValueError, match="scalar, 1-D or 2-D"):
        ops.setup_filter(torch.ones(2, 2, 2))
    with pytest.raises(ValueError, match="at least one tap"):
        ops.setup_filter([])
    with pytest.raises(ValueError, match="separable=True"):
        ops.setup_filter(torch.ones(3, 3), separable=True)
