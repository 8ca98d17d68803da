"""Parity of conv2d_resample and the SG2/SG3 modulated convolutions with the NVlabs golden data."""
import pytest
import torch

import fastgan.ops as ops
from fastgan import backends
from golden import case_ids, check_case, op_cases, require_golden

CPU_BACKENDS = [pytest.param("ref"), pytest.param("cpu", marks=pytest.mark.cpu_ext)]

C2R = [c for c in op_cases("conv2d_resample") if c["fn"] != "composite"]
CHAIN = [c for c in op_cases("conv2d_resample") if c["fn"] == "composite"]
SG2 = [c for c in op_cases("modconv") if c["id"].startswith("sg2_")]
SG3 = [c for c in op_cases("modconv") if c["id"].startswith("sg3_")]

# fp32, values O(10-100): NVlabs' own 1- vs 2-thread runs differ by up to 1.2e-4 in second-order data.
FWD = dict(rtol=1e-4, atol=1e-5)
GRAD2 = dict(rtol=1e-3, atol=1e-4)


def _need(backend):
    require_golden()
    if not backends.available(backend):
        pytest.skip(f"backend {backend!r} unavailable here")


def _kw(case):
    return {k: v for k, v in case["kwargs"].items() if k != "impl"}


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", C2R, ids=case_ids(C2R))
def test_conv2d_resample_golden(case, backend):
    _need(backend)
    kw = _kw(case)
    check_case("conv2d_resample", case, lambda x, w, f: ops.conv2d_resample(x, w, f, impl=backend, **kw), **GRAD2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CHAIN, ids=case_ids(CHAIN))
def test_conv2d_resample_chain_golden(case, backend):
    _need(backend)

    def chain(x, w1, b1, w2, b2, f):
        h = ops.conv2d_resample(x, w1, None, padding=1, impl=backend)
        h = ops.bias_act(h, b1, act="lrelu", gain=2 ** 0.5, clamp=256, impl=backend)
        h = ops.conv2d_resample(h, w2, f, down=2, padding=1, impl=backend)
        return ops.bias_act(h, b2, act="softplus", impl=backend)
    check_case("conv2d_resample", case, chain, **GRAD2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SG2, ids=case_ids(SG2))
def test_modulated_conv2d_golden(case, backend):
    _need(backend)
    kw = _kw(case)

    def call(x, weight, styles, noise, resample_filter):
        return ops.modulated_conv2d(x, weight, styles, noise=noise, resample_filter=resample_filter,
                                    impl=backend, **kw)
    check_case("modconv", case, call, **GRAD2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", SG3, ids=case_ids(SG3))
def test_modulated_conv2d_sg3_golden(case, backend):
    _need(backend)
    kw = _kw(case)
    check_case("modconv", case, lambda x, w, s, input_gain: ops.modulated_conv2d_sg3(
        x, w, s, input_gain=input_gain, impl=backend, **kw), **GRAD2)


@pytest.mark.parametrize("case", SG2[::5], ids=case_ids(SG2[::5]))
def test_modconv_bias_act_matches_composition(case):
    """The fused synthesis layer equals modulated_conv2d followed by bias_act (golden inputs)."""
    require_golden()
    from golden import case_tensors
    t = case_tensors("modconv", case, torch.float64)
    kw = _kw(case)
    bias = torch.linspace(-0.5, 0.5, t["weight"].shape[0], dtype=torch.float64)
    args = dict(noise=t["noise"], up=kw["up"], down=kw["down"], padding=kw["padding"],
                resample_filter=t["resample_filter"], demodulate=kw["demodulate"], flip_weight=kw["flip_weight"],
                fused_modconv=kw["fused_modconv"])
    expect = ops.bias_act(ops.modulated_conv2d(t["x"], t["weight"], t["styles"], impl="ref", **args), bias,
                          act="lrelu", clamp=0.5, impl="ref")
    for backend in ("ref", "cpu"):
        if not backends.available(backend):
            continue
        got = ops.modconv_bias_act(t["x"], t["weight"], t["styles"], bias, act="lrelu", clamp=0.5, impl=backend,
                                   **args)
        torch.testing.assert_close(got, expect, rtol=1e-9, atol=1e-9)
