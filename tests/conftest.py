import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("FASTGAN_STRICT", "0")
# Where the Triton tests run: on a host with a GPU they launch compiled kernels on CUDA tensors; without
# one, Triton's interpreter runs them on CPU tensors. TRITON_INTERPRET=1 must be set before triton is
# imported (triton.jit reads it when a kernel is defined), so it is decided here for the whole session.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
else:
    # Tests compare float32 results with ref and golden data: keep cuDNN/cuBLAS in true float32 (TF32
    # would make the ref oracle itself off by ~1e-3).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: runs on CUDA tensors when a GPU is present "
                                       "(benchmarks/gpu_check.sh selects these with -m gpu); added "
                                       "automatically to tests parametrized with a CUDA device")


def _has_cuda_device(value) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, (tuple, list)) and any(_has_cuda_device(v) for v in value)


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(_has_cuda_device(v) for v in callspec.params.values()):
            item.add_marker(pytest.mark.gpu)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny training runs: on 2 shared cores, oversubscribed threads
    make tiny networks very slow (use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
