"""fastgan's operator library: one device-neutral PyTorch operator per kernel primitive.

Every primitive is a schema in the ``fastgan`` namespace (``torch.ops.fastgan.<name>``) whose last
argument, ``str backend``, names the kernel backend that runs it: ``'cpu'`` (``fastgan._C``),
``'triton'`` or ``'cuda'`` (``fastgan._C_cuda``). The public ops in :mod:`fastgan.ops` resolve that
name once per call with :func:`fastgan.backends.resolve` and pass it down, so a backend chosen with
``impl=`` or :func:`fastgan.backends.use` reaches the kernel explicitly (no hidden state), and a
traced graph records it as a constant.

One mechanism, in the torchvision mould:

* :class:`Primitive` defines the schema and implements it for the ``CPU`` and ``CUDA`` dispatch keys
  with one router that calls the kernel the backend registered with :meth:`Primitive.kernel`;
* autograd is registered once per operator (:meth:`Primitive.register_autograd`, backed by
  ``torch.library.register_autograd``); backward formulas call operators again, so every order of
  derivative stays on the kernels;
* a fake (meta) kernel per operator (:meth:`Primitive.register_fake`) makes ``torch.compile`` and
  ``torch.export`` trace through without a graph break.

The ``ref`` backend is not an operator: it is the pure-PyTorch executable spec, and ops call its
composite directly (autograd then differentiates it to any order).

Backend kernel modules register their kernels on import (``fastgan.backends.cpu`` etc.); the router
imports a backend through :func:`fastgan.backends.get` the first time it is asked for it.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

from ._loader import BackendUnavailable, load_backend

__all__ = ["Primitive", "primitive", "PRIMITIVES", "KERNEL_BACKENDS", "LIB"]

KERNEL_BACKENDS = ("cpu", "triton", "cuda")

# FRAGMENT: the operators of one namespace may be defined from several modules.
LIB = torch.library.Library("fastgan", "FRAGMENT")

PRIMITIVES: Dict[str, "Primitive"] = {}


class Primitive:
    """A device-neutral operator ``fastgan::<name>`` with one kernel per backend.

    Args:
        name: operator name, e.g. ``'upfirdn2d'``.
        schema: its arguments and returns without the trailing backend argument, e.g.
            ``'(Tensor x, Tensor f, int[2] up) -> Tensor'``; ``str backend`` is appended.
        doc: one line for the contract table and ``fastgan info``.
    """

    def __init__(self, name: str, schema: str, doc: str = ""):
        if name in PRIMITIVES:
            raise ValueError(f"fastgan operator {name!r} is defined twice")
        args, sep, returns = schema.partition("->")
        args = args.strip()
        if not (sep and args.startswith("(") and args.endswith(")")):
            raise ValueError(f"{name}: schema must look like '(args) -> returns', got {schema!r}")
        inner = args[1:-1].strip()
        self.name = name
        self.qualname = f"fastgan::{name}"
        self.doc = doc
        self.schema = f"({inner + ', ' if inner else ''}str backend) -> {returns.strip()}"
        self._kernels: Dict[str, Callable] = {}
        LIB.define(name + self.schema)
        LIB.impl(name, self._route, "CPU")
        LIB.impl(name, self._route, "CUDA")
        PRIMITIVES[name] = self

    @property
    def op(self) -> torch._ops.OpOverloadPacket:
        """``torch.ops.fastgan.<name>``."""
        return getattr(torch.ops.fastgan, self.name)

    def __call__(self, *args, backend: str):
        """Run the operator (through the dispatcher: autograd, fake tensors, tracing) on ``backend``."""
        return self.op(*args, backend)

    def kernel(self, backend: str) -> Callable[[Callable], Callable]:
        """Decorator: register ``fn(*args)`` (the schema's arguments, no backend) as ``backend``'s kernel."""
        if backend not in KERNEL_BACKENDS:
            raise ValueError(f"{self.qualname}: backend must be one of {KERNEL_BACKENDS}, got {backend!r}")

        def register(fn: Callable) -> Callable:
            self._kernels[backend] = fn
            return fn
        return register

    def register_fake(self, fn: Callable) -> Callable:
        """Register the fake (meta) kernel ``fn(*args, backend)``: output shapes, dtypes and strides only."""
        torch.library.register_fake(self.qualname, fn, lib=LIB)
        return fn

    def register_autograd(self, backward: Callable, setup_context: Optional[Callable] = None) -> None:
        """Register the operator's derivative (``torch.library.register_autograd`` semantics)."""
        torch.library.register_autograd(self.qualname, backward, setup_context=setup_context, lib=LIB)

    def backends(self):
        """Names of the backends whose kernels are registered now (importing a backend registers more)."""
        return tuple(self._kernels)

    def _route(self, *args):
        backend = args[-1]
        fn = self._kernels.get(backend)
        if fn is None:
            if backend not in KERNEL_BACKENDS:
                raise ValueError(f"{self.qualname}: unknown backend {backend!r}; expected one of {KERNEL_BACKENDS}")
            load_backend(backend)  # importing the backend module registers its kernels
            fn = self._kernels.get(backend)
            if fn is None:
                raise BackendUnavailable(f"{self.qualname}: backend {backend!r} has no kernel for this operator")
        return fn(*args[:-1])


def primitive(name: str) -> Primitive:
    """The :class:`Primitive` registered as ``fastgan::<name>`` (KeyError naming the known ones otherwise)."""
    try:
        return PRIMITIVES[name]
    except KeyError:
        raise KeyError(f"no fastgan operator {name!r}; defined: {', '.join(sorted(PRIMITIVES))}") from None
