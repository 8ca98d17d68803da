"""Parity of upfirdn2d and bias_act with the NVlabs golden data on every CPU-runnable backend."""
import numpy as np
import pytest
import torch

import fastgan.ops as ops
from fastgan import backends
from golden import assert_close, case_ids, check_case, manifest, npz, op_cases, require_golden

CPU_BACKENDS = [pytest.param("ref"), pytest.param("cpu", marks=pytest.mark.cpu_ext)]

UPF = op_cases("upfirdn2d")
BA = op_cases("bias_act")
_FNS = {"upfirdn2d": ops.upfirdn2d, "upsample2d": ops.upsample2d,
        "downsample2d": ops.downsample2d, "filter2d": ops.filter2d}


def _need(backend):
    require_golden()
    if not backends.available(backend):
        pytest.skip(f"backend {backend!r} unavailable here")


def _upf_call(case, backend):
    fn = _FNS[case["fn"].rsplit(".", 1)[1]]
    kw = {k: v for k, v in case["kwargs"].items() if k != "impl"}
    return lambda x, f: fn(x, f, impl=backend, **kw)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", UPF, ids=case_ids(UPF))
def test_upfirdn2d_golden(case, backend):
    _need(backend)
    check_case("upfirdn2d", case, _upf_call(case, backend), dtype=torch.float32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", UPF[::4], ids=case_ids(UPF[::4]))
def test_upfirdn2d_golden_float64(case, backend):
    _need(backend)
    check_case("upfirdn2d", case, _upf_call(case, backend), dtype=torch.float64, rtol=1e-5, atol=1e-6)


def test_setup_filter_golden():
    require_golden()
    z = npz(manifest()["ops"]["upfirdn2d"]["file"])
    cases = manifest()["ops"]["upfirdn2d"]["setup_filter_cases"]
    assert cases
    for case in cases:
        f_in = z[case["inputs"]["f"]["key"]]
        out = ops.setup_filter(f_in, **case["kwargs"])
        assert out.dtype == torch.float32
        assert_close(out, z[case["outputs"]["out"]["key"]], case["id"], rtol=1e-6, atol=1e-7)


def _ba_call(case, backend):
    kw = {k: v for k, v in case["kwargs"].items() if k != "impl"}
    return lambda x, b=None: ops.bias_act(x, b, impl=backend, **kw)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", BA, ids=[f"{c['id']}-{c['kwargs']['act']}" for c in BA])
def test_bias_act_golden(case, backend):
    _need(backend)
    check_case("bias_act", case, _ba_call(case, backend), dtype=torch.float32, rtol=1e-5, atol=1e-5)
