"""Checks of the CUDA backend that run without a GPU.

* every csrc/cuda/*.cu compiles with nvcc for sm_80 and sm_90 (the flags of setup.py), without warnings;
* the kernel sources stay free of torch headers (the CPU torch wheel has no CUDA headers);
* the upfirdn2d index helpers pass the host-side harness tests/cuda_index_test.cpp;
* the activation codes of the kernels match fastgan/backends/activations.py;
* without fastgan._C_cuda, the backend module fails with an ImportError saying how to build it.
"""
from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastgan.backends import BackendUnavailable, _loader
from fastgan.backends.activations import ACTIVATIONS

ROOT = Path(__file__).resolve().parents[1]
CUDA_DIR = ROOT / "csrc" / "cuda"
CU_FILES = sorted(CUDA_DIR.glob("*.cu"))
# setup.py's nvcc flags plus the ones torch's CUDAExtension adds (no implicit half conversions).
NVCC_FLAGS = ["-c", "-std=c++17", "-O3", "--use_fast_math", "-lineinfo", "--expt-relaxed-constexpr",
              "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
              "-D__CUDA_NO_HALF2_OPERATORS__",
              "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]


def _nvcc() -> str:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH: the CUDA sources cannot be compile-tested here")
    return nvcc


def test_cuda_sources_exist():
    assert CU_FILES, f"no .cu files in {CUDA_DIR}"


@pytest.mark.parametrize("src", CU_FILES, ids=[p.name for p in CU_FILES])
def test_cu_compiles_for_sm80_sm90(src: Path, tmp_path: Path):
    nvcc = _nvcc()
    proc = subprocess.run([nvcc, *NVCC_FLAGS, "-I", str(CUDA_DIR), str(src), "-o", str(tmp_path / "out.o")],
                          capture_output=True, text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"nvcc failed on {src.name}:\n{log[-4000:]}"
    ours = [line for line in log.splitlines() if "warning" in line.lower() and "csrc/cuda" in line]
    assert not ours, f"nvcc warnings in {src.name}:\n" + "\n".join(ours)
    assert (tmp_path / "out.o").stat().st_size > 0


def test_kernel_sources_include_no_torch():
    """The .cu files and the headers they include must build with nvcc alone."""
    kernel_side = CU_FILES + sorted(CUDA_DIR.glob("*.cuh")) + [CUDA_DIR / "fastgan_cuda.h",
                                                               CUDA_DIR / "upfirdn2d_index.h"]
    pattern = re.compile(r'#\s*include\s*[<"](torch|ATen|c10|pybind11)/')
    offenders = [p.name for p in kernel_side if pattern.search(p.read_text())]
    assert not offenders, f"torch headers included by kernel-side files: {offenders}"


def test_index_helpers_host_harness(tmp_path: Path):
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no host C++ compiler found to build tests/cuda_index_test.cpp")
    exe = tmp_path / "cuda_index_test"
    build = subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", "-I", str(CUDA_DIR),
                            str(ROOT / "tests" / "cuda_index_test.cpp"), "-o", str(exe)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:]
    cases = int(re.fullmatch(r"ok (\d+)\s*", run.stdout).group(1))
    assert cases > 100_000  # the harness enumerates every small configuration with a nonempty output


def test_activation_codes_match_kernels():
    header = (CUDA_DIR / "fastgan_cuda.h").read_text()
    enum = re.search(r"enum ActCode : int \{(.*?)\};", header, re.S).group(1)
    codes = {name.lower(): int(v) for name, v in re.findall(r"k(\w+) = (\d+)", enum)}
    assert codes.pop("numacts") == len(ACTIVATIONS)
    assert codes == {name: spec.code for name, spec in ACTIVATIONS.items()}


@pytest.fixture
def no_cuda_extension(monkeypatch):
    """Hide fastgan._C_cuda (None in sys.modules makes its import fail) and forget the backend module."""
    monkeypatch.setitem(sys.modules, "fastgan._C_cuda", None)
    for mod in _BACKEND_MODULES:
        monkeypatch.delitem(sys.modules, mod, raising=False)
    yield
    for mod in _BACKEND_MODULES:
        sys.modules.pop(mod, None)


_BACKEND_MODULES = ("fastgan.backends.cuda", "fastgan.backends.cuda_filtered_lrelu")


@pytest.mark.parametrize("module", _BACKEND_MODULES)
def test_missing_extension_raises_clear_import_error(no_cuda_extension, module):
    with pytest.raises(ImportError, match=r"fastgan\._C_cuda is not built .*FASTGAN_BUILD_CUDA=1 pip install"):
        importlib.import_module(module)


def test_loader_reports_missing_extension(no_cuda_extension, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # get past the device check
    monkeypatch.setattr(_loader, "_modules", {})
    monkeypatch.setattr(_loader, "_errors", {})
    with pytest.raises(BackendUnavailable, match=r"ImportError: fastgan\._C_cuda is not built"):
        _loader.load_backend("cuda")
