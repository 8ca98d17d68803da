"""pytest-benchmark timings of upfirdn2d/bias_act on every usable CPU backend (not part of ``make test``).

Run:  .venv/bin/python -m pytest benchmarks/test_bench_ops.py --benchmark-group-by=param:case
      (add ``-k cpu`` or ``-k "not ref"`` to skip the slow reference backend; FASTGAN_BENCH_QUICK=1 for
      small shapes). The cases are those of ``fastgan bench ops``; the cpu/ref ratio is what matters,
      absolute times need a quiet machine.
"""
import os

import pytest
import torch

from fastgan.bench import ops as bench_ops

pytest.importorskip("pytest_benchmark")

CASES = bench_ops.default_cases(quick=os.environ.get("FASTGAN_BENCH_QUICK", "") == "1")
BACKENDS = bench_ops.usable_backends(torch.device("cpu"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("passes", ["fwd", "fwd+bwd"])
@pytest.mark.parametrize("case", CASES, ids=[f"{c.op.replace(' ', '_')}-{'x'.join(map(str, c.shape))}" for c in CASES])
def test_op(benchmark, case, passes, backend):
    run = case.make(backend, passes == "fwd+bwd")
    run()  # warm-up (first-touch of buffers, lazy init)
    benchmark.extra_info.update(op=case.op, shape=list(case.shape), passes=passes, backend=backend,
                                bytes=case.bytes_fwdbwd if passes == "fwd+bwd" else case.bytes_fwd)
    benchmark.pedantic(run, rounds=3 if backend == "ref" else 5, iterations=1)
