"""The GPU backends (triton, cuda) on CUDA tensors against ref, and their operators under opcheck.

Runs only where torch sees a CUDA device (``benchmarks/gpu_check.sh`` selects it with ``-m gpu``). Each
workload of ``tests/kernel_cases.py`` runs under ``fastgan.backends.use(backend)``: an explicit choice, so
an op without a kernel on that backend raises ``BackendUnavailable`` and the case is skipped saying so.
"""
import pytest
import torch

from fastgan import backends
from kernel_cases import cases, compare_with_ref
from prim_calls import RecordPrimitiveCalls, opcheck_samples

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none visible to torch)")]

CUDA = torch.device("cuda")
BACKENDS = ["triton", "cuda"]
CASES = list(cases(CUDA))


def _need(backend):
    try:
        backends.get(backend)
    except backends.BackendUnavailable as e:
        pytest.skip(f"backend {backend!r} unavailable: {e}")


def _run(name, backend):
    """compare_with_ref, skipping when the backend has no kernel for the case's op."""
    try:
        compare_with_ref(name, backend, CUDA)
    except backends.BackendUnavailable as e:
        pytest.skip(f"{name}: backend {backend!r} has no kernel: {e}")


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_ref_on_cuda_tensors(backend, name):
    _need(backend)
    _run(name, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_operators_pass_opcheck_on_cuda(backend):
    """Every ``torch.ops.fastgan.*`` operator the workloads route through, with this backend, on CUDA tensors."""
    _need(backend)
    with RecordPrimitiveCalls() as rec:
        for name in CASES:
            try:
                compare_with_ref(name, backend, CUDA)
            except backends.BackendUnavailable:
                continue
    samples = {k: v for k, v in rec.samples.items() if v[1][-1] == backend}
    if not samples:
        pytest.skip(f"no fastgan operator ran on backend {backend!r} (the ops do not route through operators yet)")
    assert opcheck_samples(samples) == {}
