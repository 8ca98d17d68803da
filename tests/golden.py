"""Access to the NVlabs golden data (``$FASTGAN_GOLDEN`` or ``../shared/golden`` beside the checkout)."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import pytest
import torch

_REPO = Path(__file__).resolve().parents[1]


def golden_dir() -> Optional[Path]:
    env = os.environ.get("FASTGAN_GOLDEN")
    cands = [Path(env)] if env else []
    cands.append(_REPO.parent / "shared" / "golden")
    for c in cands:
        if (c / "manifest.json").is_file():
            return c
    return None


def require_golden() -> Path:
    root = golden_dir()
    if root is None:
        pytest.skip("golden data not found: set FASTGAN_GOLDEN or place it in ../shared/golden beside the checkout")
    return root


@functools.lru_cache(maxsize=None)
def manifest() -> dict:
    root = golden_dir()
    return json.loads((root / "manifest.json").read_text()) if root else {"ops": {}, "networks": {}}


def golden_network(name: str) -> dict:
    """The manifest record of golden network ``name``; skips the test when the golden data is absent."""
    require_golden()
    return manifest()["networks"][name]


@functools.lru_cache(maxsize=None)
def npz(name: str) -> Dict[str, np.ndarray]:
    with np.load(require_golden() / name) as z:
        return {k: z[k] for k in z.files}


def op_cases(family: str) -> list:
    """Manifest cases of one op family (empty when the golden data is absent; tests then skip)."""
    fam = manifest()["ops"].get(family)
    return fam["cases"] if fam else []


def case_ids(cases: list) -> list:
    return [c["id"] for c in cases]


def case_tensors(family: str, case: dict, dtype=torch.float64) -> Dict[str, Optional[torch.Tensor]]:
    z = npz(manifest()["ops"][family]["file"])
    out = {}
    for k, spec in case["inputs"].items():
        if spec is None:
            out[k] = None
            continue
        t = torch.from_numpy(z[spec["key"]])
        if spec.get("differentiable"):
            t = t.to(dtype).requires_grad_(True)
        out[k] = t
    return out


def assert_close(actual: torch.Tensor, expected: np.ndarray, what: str, rtol: float, atol: float) -> None:
    exp = torch.from_numpy(np.asarray(expected)).to(torch.float64)
    act = actual.detach().to(torch.float64)
    assert act.shape == exp.shape, f"{what}: shape {list(act.shape)} != golden {list(exp.shape)}"
    scale = max(float(exp.abs().max()), 1e-30)
    torch.testing.assert_close(act, exp, rtol=rtol, atol=atol * scale, msg=lambda m: f"{what}: {m}")


def check_case(family: str, case: dict, call: Callable[..., torch.Tensor], dtype=torch.float32,
               rtol: float = 1e-4, atol: float = 1e-5, second_order: bool = True) -> None:
    """Run ``call(**inputs)`` and compare forward, gradients and (optionally) R1 data with the golden case.

    ``atol`` is relative to the largest golden magnitude of each compared array.
    """
    z = npz(manifest()["ops"][family]["file"])
    ins = case_tensors(family, case, dtype)
    diff = {k: v for k, v in ins.items() if v is not None and v.requires_grad}
    out = call(**ins)
    assert_close(out, z[case["outputs"]["out"]["key"]], f"{case['id']} out", rtol, atol)
    g = torch.from_numpy(z[case["upstream_grad"]["key"]]).to(out.dtype)
    so = case.get("second_order") if second_order else None
    if so is not None:
        g.requires_grad_(True)
    names = list(diff)
    grads = torch.autograd.grad((out * g).sum(), [diff[n] for n in names], create_graph=so is not None,
                                allow_unused=True)
    for n, gr in zip(names, grads):
        if n in case["grads"]:
            gr = torch.zeros_like(diff[n]) if gr is None else gr
            assert_close(gr, z[case["grads"][n]["key"]], f"{case['id']} grad_{n}", rtol, atol)
    if so is None:
        return
    gx = grads[names.index("x")]
    r = (gx ** 2).sum()
    assert_close(r.reshape(()), z[so["R_key"]].reshape(()), f"{case['id']} R", rtol, atol)
    wrt = {**diff, "g": g}
    rn = [n for n in so["grads"] if n in wrt]
    rg = torch.autograd.grad(r, [wrt[n] for n in rn], allow_unused=True)
    for n, gr in zip(rn, rg):
        gr = torch.zeros_like(wrt[n]) if gr is None else gr
        assert_close(gr, z[so["grads"][n]["key"]], f"{case['id']} r1_grad_{n}", rtol, atol)
