"""Where and how the Triton tests run, and what they can learn about the kernels of fastgan.backends.triton.

On a host with a GPU the tests launch compiled kernels on CUDA tensors; elsewhere ``tests/conftest.py``
sets ``TRITON_INTERPRET=1`` and Triton's interpreter runs the same kernels on CPU tensors. The kernel
modules pick larger tiles under the interpreter (it pays per program); :func:`production_constants`
recovers the values a GPU uses so a test can run the interpreter with them.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import os
import pkgutil
import re
from typing import Dict, Iterator, List, Tuple

import pytest
import torch

INTERPRETED = os.environ.get("TRITON_INTERPRET", "") == "1"
#: The device of the tensors the Triton tests use: the interpreter reads CPU tensors, compiled kernels CUDA ones.
DEVICE = torch.device("cpu" if INTERPRETED or not torch.cuda.is_available() else "cuda")
PACKAGE = "fastgan.backends.triton"


def require_triton() -> None:
    """Skip (saying why) unless the triton backend can run on :data:`DEVICE` in this session."""
    pytest.importorskip("triton", reason="triton is not installed (pip install 'fastgan[triton]')")
    from fastgan import backends
    from fastgan.backends import _loader
    _loader._errors.pop("triton", None)  # forget a failure cached by a test that ran with TRITON_INTERPRET unset
    if not backends.available("triton"):
        pytest.skip(f"triton backend unavailable: {backends.info()}")
    from fastgan.backends.triton import _util
    if DEVICE.type == "cpu" and not _util.INTERPRET:
        pytest.skip("fastgan.backends.triton was imported before TRITON_INTERPRET=1 was set")


def kernel_modules() -> List[object]:
    """The modules of the triton backend package that define kernels (all but its private helpers)."""
    pkg = importlib.import_module(PACKAGE)
    return [importlib.import_module(f"{PACKAGE}.{m.name}") for m in pkgutil.iter_modules(pkg.__path__)
            if m.name != "_util"]


def production_constants(module) -> Dict[str, object]:
    """The module-level constants written ``A if INTERPRET else B``, mapped to ``B`` (what a GPU runs).

    Raises AssertionError if the module reads ``INTERPRET`` any other way: then the interpreter would
    take a code path the GPU never does, and this helper needs teaching the new form.
    """
    tree = ast.parse(inspect.getsource(module))
    found: Dict[str, object] = {}
    recognised = set()
    for node in tree.body:
        value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
        if (isinstance(value, ast.IfExp) and isinstance(value.test, ast.Name) and value.test.id == "INTERPRET"):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                found[t.id] = ast.literal_eval(value.orelse)
            recognised.add(id(value.test))
    other = [n.lineno for n in ast.walk(tree)
             if isinstance(n, ast.Name) and n.id == "INTERPRET" and id(n) not in recognised]
    assert not other, (f"{module.__name__} reads INTERPRET on line(s) {other} in a form other than "
                       f"'NAME = A if INTERPRET else B'; tests/triton_host.py cannot force its GPU configuration")
    return found


def use_production_constants(monkeypatch) -> Dict[str, Dict[str, object]]:
    """Set every kernel module's interpreter-specific constants to their GPU values; returns what was set."""
    patched = {}
    for mod in kernel_modules():
        consts = production_constants(mod)
        for name, value in consts.items():
            monkeypatch.setattr(mod, name, value)
        patched[mod.__name__] = consts
    return patched


def _jit_functions() -> Dict[str, object]:
    """Every jit function defined in the package, by ``module.name`` of its Python function."""
    from triton.runtime.jit import KernelInterface
    out = {}
    for mod in kernel_modules():
        for obj in vars(mod).values():
            if isinstance(obj, KernelInterface) and hasattr(obj, "fn"):
                out[kernel_key(obj)] = obj
    return out


def kernel_key(kernel) -> str:
    """``module.name`` of a jit function (interpreted or compiled)."""
    return f"{kernel.fn.__module__}.{kernel.fn.__qualname__}"


def launched_kernels() -> Dict[str, object]:
    """The jit functions that host code launches: those that no other jit function of the package calls."""
    fns = _jit_functions()
    sources = {k: inspect.getsource(f.fn) for k, f in fns.items()}
    called = set()
    for k, f in fns.items():
        name = f.fn.__name__
        pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\s*\(")
        if any(pattern.search(src) for other, src in sources.items() if other != k):
            called.add(k)
    return {k: f for k, f in fns.items() if k not in called}


def _describe(value):
    """A JSON-able description of one launch argument (tensors by dtype, Triton dtypes by name, others by repr)."""
    import triton.language as tl
    if isinstance(value, torch.Tensor):
        return {"tensor": str(value.dtype).removeprefix("torch.")}
    if isinstance(value, tl.dtype):
        return {"tl": str(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return {"repr": repr(value)}  # not compilable ahead of time: the compile test then names it


@contextlib.contextmanager
def recording_launches() -> Iterator[List[Tuple[str, dict]]]:
    """Record every kernel launch inside the block as ``(kernel key, {"args": {...}, "options": {...}})``.

    Arguments are described by :func:`_describe`; options are launch options such as ``num_warps``.
    Works for interpreted and compiled kernels alike (it wraps the ``run`` of their class).
    """
    from triton.runtime.jit import JITFunction
    classes = {JITFunction}
    if INTERPRETED:
        from triton.runtime.interpreter import InterpretedFunction
        classes.add(InterpretedFunction)
    launches: List[Tuple[str, dict]] = []
    saved = {cls: cls.run for cls in classes}

    def wrap(original):
        def run(self, *args, grid, warmup, **kwargs):
            if not warmup:
                names = self.arg_names
                bound = dict(zip(names, args))
                bound.update({k: v for k, v in kwargs.items() if k in names})
                launches.append((kernel_key(self), {
                    "args": {k: _describe(v) for k, v in bound.items()},
                    "options": {k: v for k, v in kwargs.items() if k not in names}}))
            return original(self, *args, grid=grid, warmup=warmup, **kwargs)
        return run
    try:
        for cls, original in saved.items():
            cls.run = wrap(original)
        yield launches
    finally:
        for cls, original in saved.items():
            cls.run = original
