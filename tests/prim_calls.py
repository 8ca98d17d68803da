"""Record the ``torch.ops.fastgan.*`` operator calls that public ops make, and opcheck them.

Tests run :mod:`fastgan.ops` on a backend inside :class:`RecordPrimitiveCalls`; the first call of
each operator (its arguments cloned, ``requires_grad`` kept) becomes a sample for
``torch.library.opcheck``. This covers whatever primitives the ops route through, without a
hand-written sample per operator.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch.overrides import TorchFunctionMode


def _clone(a):
    if isinstance(a, torch.Tensor):
        return a.detach().clone().requires_grad_(a.requires_grad)
    if isinstance(a, (list, tuple)):
        return type(a)(_clone(v) for v in a)
    return a


class RecordPrimitiveCalls(TorchFunctionMode):
    """Inside the block, ``self.samples[name]`` holds ``(overload, args)`` of the first ``fastgan::name`` call."""

    def __init__(self):
        super().__init__()
        self.samples: Dict[str, Tuple[torch._ops.OpOverload, tuple]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func.overloadpacket if isinstance(func, torch._ops.OpOverload) else func
        if isinstance(packet, torch._ops.OpOverloadPacket) and packet._qualified_op_name.startswith("fastgan::"):
            name = packet._qualified_op_name.split("::", 1)[1]
            if name not in self.samples and not kwargs:
                overload = func if isinstance(func, torch._ops.OpOverload) else packet.default
                self.samples[name] = (overload, _clone(tuple(args)))
        return func(*args, **kwargs)


def opcheck_samples(samples: Dict[str, Tuple[torch._ops.OpOverload, tuple]]) -> Dict[str, Dict[str, str]]:
    """``torch.library.opcheck`` of every sample; returns the failed checks per operator (empty: all passed)."""
    failed = {}
    for name, (op, args) in sorted(samples.items()):
        result = torch.library.opcheck(op, _clone(args), raise_exception=False)
        bad = {k: str(v) for k, v in result.items() if v != "SUCCESS"}
        if bad:
            failed[name] = bad
    return failed
