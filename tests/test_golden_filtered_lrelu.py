"""Parity of filtered_lrelu with the NVlabs golden data (forward, gradients, R1 second order)."""
import os

import pytest
import torch

import fastgan.ops as ops
from fastgan import backends
from golden import case_ids, check_case, op_cases, require_golden

CASES = op_cases("filtered_lrelu")
CPU_BACKENDS = [pytest.param("ref"), pytest.param("cpu", marks=pytest.mark.cpu_ext)]
# CI-sized subset for the Triton interpreter: synthetic geometry corners (three with R1 data), an SG3 up-4 layer.
TRITON_IDS = {"c000", "c005", "c006", "c007", "c012", "c013", "c020"}
TRITON_CASES = [c for c in CASES if c["id"] in TRITON_IDS]


def _call(case, backend):
    kw = {k: v for k, v in case["kwargs"].items() if k != "impl"}
    return lambda x, fu=None, fd=None, b=None: ops.filtered_lrelu(x, fu, fd, b, impl=backend, **kw)


def _need(backend):
    require_golden()
    if not backends.available(backend):
        pytest.skip(f"backend {backend!r} unavailable here")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_filtered_lrelu_golden(case, backend):
    _need(backend)
    check_case("filtered_lrelu", case, _call(case, backend), dtype=torch.float32, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("case", CASES[::7], ids=case_ids(CASES[::7]))
def test_filtered_lrelu_golden_float64(case, backend):
    _need(backend)
    check_case("filtered_lrelu", case, _call(case, backend), dtype=torch.float64, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("case", TRITON_CASES, ids=case_ids(TRITON_CASES))
def test_filtered_lrelu_golden_triton(case):
    if os.environ.get("TRITON_INTERPRET", "") != "1" and not torch.cuda.is_available():
        pytest.skip("triton needs CUDA or TRITON_INTERPRET=1")
    _need("triton")
    check_case("filtered_lrelu", case, _call(case, "triton"), dtype=torch.float32, rtol=1e-4, atol=2e-5)
