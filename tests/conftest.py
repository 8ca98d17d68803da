import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("FASTGAN_STRICT", "0")
# Without a GPU, Triton kernels are executed by the interpreter on CPU tensors. This must be set
# before triton is imported, so it is done here for the whole session rather than per test module.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
