"""Every Triton kernel of fastgan runs with the tile sizes a GPU uses, matches ref, and compiles for a GPU.

A small workload (upfirdn2d 2-D and separable, bias_act and its two gradient kernels, filtered_lrelu with
its sign-reading backward, adain forward and backward; ``tests/kernel_cases.py``) runs through
``fastgan.ops`` under ``fastgan.backends.use('triton')`` with the kernel modules' GPU constants
(``_TILE``, ``_BLOCK``, ...) in force, on :data:`triton_host.DEVICE`: compiled kernels on CUDA tensors
where a GPU is present, the interpreter on CPU tensors elsewhere. Each result and its first and second
derivatives are compared with ref in float64 (float16 forwards with the float64 ref rounded). Every
kernel launch is recorded; the launched set must be every kernel the package defines. Without a GPU,
each recorded launch is then compiled for sm_90 (PTX and cubin, by triton's bundled ptxas) in a
subprocess that does not interpret.
"""
import json
import os
import subprocess
import sys

import pytest

from kernel_cases import cases, compare_with_ref
from prim_calls import RecordPrimitiveCalls, opcheck_samples
from triton_host import (DEVICE, INTERPRETED, kernel_modules, launched_kernels, production_constants,
                         recording_launches, require_triton, use_production_constants)

pytestmark = [pytest.mark.triton, pytest.mark.gpu]

T = "triton"
CASES = list(cases(DEVICE))


@pytest.fixture(scope="module", autouse=True)
def _triton():
    require_triton()


_RECORDED = {}


def _run_recorded(name):
    """Run case ``name`` with production constants, recording kernel launches and operator calls (once)."""
    if name not in _RECORDED:
        with pytest.MonkeyPatch.context() as mp, recording_launches() as launches, RecordPrimitiveCalls() as prims:
            use_production_constants(mp)
            compare_with_ref(name, T, DEVICE)
        _RECORDED[name] = (list(launches), dict(prims.samples))
    return _RECORDED[name]


@pytest.mark.parametrize("name", CASES)
def test_matches_ref_with_production_tiles(name):
    _run_recorded(name)


def test_gpu_constants_are_recognised():
    """Each module's interpreter-only constants are recognised (positive ints); a GPU process runs exactly those."""
    for mod in kernel_modules():
        for const, value in production_constants(mod).items():
            assert isinstance(value, int) and value >= 1, f"{mod.__name__}.{const} = {value!r}"
            if not INTERPRETED:
                assert getattr(mod, const) == value, f"{mod.__name__}.{const}: a GPU process runs {value}"


@pytest.fixture(scope="module")
def all_launches():
    launches, samples = [], {}
    for name in CASES:
        lz, prims = _run_recorded(name)
        launches += lz
        for k, v in prims.items():
            samples.setdefault(k, v)
    return launches, samples


def test_every_kernel_is_launched(all_launches):
    launched = {key for key, _ in all_launches[0]}
    defined = set(launched_kernels())
    assert defined, "no Triton kernels found in fastgan.backends.triton"
    missing = sorted(defined - launched)
    assert not missing, f"kernels never launched by the workload of {__name__}: {missing}; add a case"


def test_operators_pass_opcheck(all_launches):
    """Each ``torch.ops.fastgan.*`` operator the workload routed through, with backend='triton', on DEVICE."""
    samples = all_launches[1]
    if not samples:
        pytest.skip("no fastgan operator was called by the workload (the ops do not route through operators yet)")
    for name, (op, args) in samples.items():
        assert args[-1] == T, f"fastgan::{name} was called with backend {args[-1]!r}"
    assert opcheck_samples(samples) == {}


# Runs without TRITON_INTERPRET: compiles each recorded launch for sm_90 with the kernels' real signatures.
_COMPILE_SCRIPT = r"""
import importlib, json, sys
import torch
import triton, triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

PTR = {"float32": "fp32", "float64": "fp64", "float16": "fp16", "bfloat16": "bf16", "uint8": "u8", "int8": "i8",
       "int16": "i16", "int32": "i32", "int64": "i64", "bool": "i1"}

def value(v):
    return tl.dtype(v["tl"]) if isinstance(v, dict) and "tl" in v else v

def arg_type(p, v):
    if isinstance(v, dict) and "tensor" in v:
        return "*" + PTR[v["tensor"]]
    if p.annotation_type:
        return p.annotation_type
    if isinstance(v, bool):
        return "i1"
    if isinstance(v, int):
        return "i32" if -2**31 <= v < 2**31 else "i64"
    if isinstance(v, float):
        return "fp32"
    raise TypeError(f"{p.name}: cannot type {v!r}")

done = set()
for key, launch in json.load(sys.stdin):
    mod, name = key.rsplit(".", 1)
    fn = getattr(importlib.import_module(mod), name)
    assert isinstance(fn, triton.runtime.jit.JITFunction), (key, type(fn))
    sig, consts = {}, {}
    for p in fn.params:
        v = launch["args"][p.name]
        if p.is_constexpr:
            sig[p.name] = "constexpr"
            consts[p.name] = value(v)
        else:
            sig[p.name] = arg_type(p, v)
    ident = json.dumps([key, sig, {k: str(c) for k, c in consts.items()}, launch["options"]], sort_keys=True)
    if ident in done:
        continue
    done.add(ident)
    k = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options=launch["options"])
    assert k.asm["cubin"], key
print("compiled", len(done), "variants of", len({json.loads(i)[0] for i in done}), "kernels")
"""


def test_recorded_launches_compile_for_sm90(all_launches):
    if not INTERPRETED:
        pytest.skip("kernels ran compiled on this host's GPU (test_matches_ref_with_production_tiles)")
    try:
        from triton.backends.nvidia.compiler import CUDABackend  # noqa: F401
    except ImportError as e:
        pytest.skip(f"triton has no CUDA compiler backend here: {e}")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], input=json.dumps(all_launches[0]), env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    kernels = len({key for key, _ in all_launches[0]})
    assert f"variants of {kernels} kernels" in r.stdout, r.stdout
