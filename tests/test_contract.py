"""The operator contract of docs/contract.md, as a test matrix generated from one table.

Each :class:`Row` of ``ROWS`` is one public op (or one configuration of it that reaches different
operators or saves different tensors) together with the ``fastgan::`` operators behind it. Every check
below runs for every row on every backend usable here: ``ref``, ``cpu``, ``triton`` (on CPU tensors
under ``TRITON_INTERPRET=1``, on CUDA tensors on a GPU host) and ``cuda`` (GPU hosts). The checks:
``torch.library.opcheck`` of each operator (NCHW, channels_last, empty batch), gradcheck and gradgradcheck in float64, the memory format
of outputs and input gradients, an empty batch, float16/bfloat16 against one float32 oracle (so every
backend rounds alike, bias included), and the dtype returned under autocast.

Adding an op to the matrix is one entry in ``ROWS``::

    Row("my_op", prims=("my_op", "my_op_grad"),
        make=lambda gen, n, dtype, device: dict(x=..., w=...),         # float inputs; x is [n, C, H, W]
        call=lambda t, impl: fastgan.ops.my_op(t["x"], t["w"], impl=impl),
        raw=lambda t, backend: [("my_op", (t["x"], t["w"], ..., backend)),    # operator calls for opcheck
                                ("my_op_grad", (...))],
        rounded=("x",),              # inputs the contract rounds to x's dtype before computing
        no_float64=("cuda",))        # backends without float64 kernels (their float64 checks skip)

``make`` returns the inputs in float64 or the requested low-precision dtype (tensors named in
``rounded`` in that dtype, the others as the op takes them, e.g. a float32 filter or bias); the
differentiable ones are those that are floating point and not listed in ``constant``. An op with
kernels on some backends only lists them in ``kernels`` (the others are checked to raise
``BackendUnavailable``); a check that does not apply to an op is opted out with a reason in ``skip``.
An operator without a public op gets a row whose ``call`` uses the operator and, for ``ref``, the
formula written with torch ops. :func:`test_every_primitive_has_a_row` fails while an operator of
``PRIMITIVES`` is not covered.

Interpreter runs are slow, so inputs are tiny; the whole module stays within about 90 s on 2 cores.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Tuple

import pytest
import torch

import fastgan.backends.prims as prims_pkg
from fastgan import backends, ops
from fastgan.backends.activations import ACTIVATIONS
from fastgan.backends.library import PRIMITIVES
from fastgan.backends.prims import adain as ada
from fastgan.backends.prims import bias_act as ba
from fastgan.backends.prims import filtered_lrelu as flr
from fastgan.backends.prims import layout as lay
from fastgan.backends.prims import modconv as mc
from fastgan.backends.prims import stats as st

for _mod in pkgutil.iter_modules(prims_pkg.__path__):  # every operator module registers its schemas on import
    importlib.import_module(f"{prims_pkg.__name__}.{_mod.name}")

Inputs = Dict[str, torch.Tensor]


@dataclass(frozen=True)
class Row:
    name: str
    prims: Tuple[str, ...]
    make: Callable[[torch.Generator, int, torch.dtype, torch.device], Inputs]
    call: Callable[[Inputs, str], torch.Tensor]
    raw: Callable[[Inputs, str], List[Tuple[str, tuple]]]
    rounded: Tuple[str, ...] = ("x",)
    constant: Tuple[str, ...] = ()
    no_float64: Tuple[str, ...] = ()
    known: Tuple[Tuple[str, str, str], ...] = ()  # (check, backend, reason): a recorded contract violation
    gradcheck_kw: Tuple[Tuple[str, float], ...] = ()  # extra gradcheck/gradgradcheck arguments (eps, atol)
    kernels: Tuple[str, ...] = ("cpu", "triton", "cuda")  # backends with kernels; the others must raise
    skip: Tuple[Tuple[str, str], ...] = ()  # (check, reason): a check that does not apply to this op


def _applies(row: Row, check: str, backend: str) -> None:
    """Skip a check the row opts out of, or a kernel backend the op has no kernel for (that backend is
    checked to raise ``BackendUnavailable`` by :func:`test_backend_without_kernel_raises`)."""
    for c, reason in row.skip:
        if c == check:
            pytest.skip(reason)
    if backend != "ref" and backend not in row.kernels:
        pytest.skip(f"{row.name} has no {backend} kernel (docs/contract.md)")


def _expect(request, row: Row, check: str, backend: str) -> None:
    """Mark a recorded violation as a strict xfail: the check still runs, and passing it fails the test
    (so the entry is removed with the fix)."""
    for c, b, reason in row.known:
        if (c, b) == (check, backend):
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def _randn(gen: torch.Generator, *shape, device) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device)


# ---------------------------------------------------------------------------------------------------- bias_act
def _bias_act_inputs(gen, n, dtype, device, channels=3):
    """x [n, 3, 2, 3] near -b, so that z = x + b is O(1) while b is O(60): rounding b to x's dtype (or
    not) changes the result by far more than the output's rounding. ``b`` stays float64/float32."""
    b = _randn(gen, channels, device=device) * 20 + 60
    low = dtype != torch.float64
    b_x = b.to(dtype) if low else b
    x = (_randn(gen, n, channels, 2, 3, device=device) - b_x.double().reshape(1, -1, 1, 1)).to(dtype)
    return dict(x=x, b=b.float() if low else b)


def _bias_act_row(act: str, clamp, gain=None) -> Row:
    spec = ACTIVATIONS[act]
    alpha, g = spec.def_alpha, spec.def_gain if gain is None else gain

    def raw(t, backend):
        x, b = t["x"], t["b"].to(t["x"].dtype)
        y = ops.bias_act(x, b, act=act, gain=g, clamp=clamp, impl="ref").detach()
        from_output = ba.from_output(act, alpha, g)
        saved = y if from_output else x
        gen = torch.Generator().manual_seed(8)
        dy = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        calls = [("bias_act", (x, b, 1, act, alpha, g, clamp, backend)),
                 ("bias_act_grad", (dy.requires_grad_(True), saved, b, 1, act, alpha, g, clamp, from_output,
                                    backend))]
        if spec.smooth:
            g2 = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
            calls.append(("bias_act_grad2", (g2, dy.detach(), x.detach(), b.detach(), 1, act, alpha, g, clamp,
                                             backend)))
        return calls

    label = f"bias_act[{act}{',clamp' if clamp is not None else ''}]"
    return Row(label, ("bias_act", "bias_act_grad") + (("bias_act_grad2",) if spec.smooth else ()),
               make=_bias_act_inputs,
               call=lambda t, impl: ops.bias_act(t["x"], t["b"], act=act, gain=g, clamp=clamp, impl=impl),
               raw=raw, rounded=("x", "b"))


# --------------------------------------------------------------------------------------------------- upfirdn2d
_UPF = dict(up=2, padding=[2, 1, 2, 1], gain=4.0)


def _upfirdn2d_inputs(gen, n, dtype, device):
    return dict(x=_randn(gen, n, 2, 3, 4, device=device).to(dtype),
                f=ops.setup_filter([1, 3, 3, 1], device=device))


# ---------------------------------------------------------------------------------------------- filtered_lrelu
# 3-tap filters and a tiny image: quick enough for the Triton interpreter at every derivative order.
_FLR = dict(up=2, down=2, padding=[2, 1, 2, 1], clamp=0.6, gain=1.4, slope=0.2)


def _taps(gen, n, ndim=1):
    f = torch.rand([n] * ndim, generator=gen) + 0.2
    return f / f.sum()


def _filtered_lrelu_inputs(gen, n, dtype, device):
    """x [n, 3, 5, 4], a bias (float32 with half x), float32 filters fu [3] and fd [3, 3]."""
    x, b = _randn(gen, n, 3, 5, 4, device=device), _randn(gen, 3, device=device)
    low = dtype != torch.float64
    return dict(x=x.to(dtype), b=b.float() if low else b,
                fu=_taps(gen, 3).to(device), fd=_taps(gen, 3, ndim=2).to(device))


def _filtered_lrelu_raw(t, backend):
    """Both operators with the arguments the public op builds (filters flipped to correlation order, the
    gain times up**2); the masked one on the transposed geometry, as the backward calls it."""
    x, b = t["x"].requires_grad_(True), t["b"].to(t["x"].dtype).requires_grad_(True)
    fu, fd = t["fu"].flip(0), t["fd"].flip([0, 1])
    args = (x, b, fu, fd, 2, 2, [2, 1, 2, 1], 1.4 * 4, 0.2, 0.6, True)
    y, signs = flr.FILTERED_LRELU(*args, backend=backend)
    geom = flr.transpose(x.shape[2:], y.shape[2:], fu, fd, 2, 2, [2, 1, 2, 1], [0, 0, 0, 0])
    dy = torch.randn(y.shape, generator=_gen(8), dtype=y.dtype).to(y.device).requires_grad_(True)
    return [("filtered_lrelu", args + (backend,)),
            ("filtered_lrelu_masked", (dy, signs, *geom, 1.4 * 4, 0.2, backend))]


# ------------------------------------------------------------------------------------------------------- adain
def _adain_inputs(gen, n, dtype, device):
    """x [n, 3, 4, 5] off-centre, per-sample scale and bias [n, 3] (float32 with half x)."""
    x = _randn(gen, n, 3, 4, 5, device=device) * 3 + 1.5
    s, b = _randn(gen, n, 3, device=device), _randn(gen, n, 3, device=device)
    low = dtype != torch.float64
    return dict(x=x.to(dtype), s=s.float() if low else s, b=b.float() if low else b)


def _adain_raw(t, backend):
    x, s, b = (t[k].to(t["x"].dtype).requires_grad_(True) for k in ("x", "s", "b"))
    y, mean, rstd = ada.ADAIN_FORWARD(x, s, b, 1e-3, backend=backend)
    dy = torch.randn(y.shape, generator=_gen(8), dtype=y.dtype).to(y.device).requires_grad_(True)
    return [("adain_forward", (x, s, b, 1e-3, backend)),
            ("adain_backward", (dy, x, s, mean, rstd, 1e-3, backend))]


# ------------------------------------------------------------------------------------------- modconv_epilogue
# No public op of its own (fastgan.ops.modconv_bias_act reaches it inside the cpu modconv): the row calls
# the operator, and its ``ref`` is the formula of fastgan/backends/prims/modconv.py written with torch ops.
_EPI = (0.2, 1.4, 2.5)  # slope, gain, clamp


def _epilogue_inputs(gen, n, dtype, device):
    """y [n, 3, 2, 3] (``x`` here), d [n, 3], noise [n, 2, 3], bias [3]: float32 with half y."""
    low = dtype != torch.float64
    other = torch.float32 if low else dtype
    return dict(x=_randn(gen, n, 3, 2, 3, device=device).to(dtype), d=_randn(gen, n, 3, device=device).to(other),
                noise=_randn(gen, n, 2, 3, device=device).to(other), bias=_randn(gen, 3, device=device).to(other))


def _epilogue_call(t, impl):
    if impl != "ref":
        return mc.EPILOGUE(t["x"], t["d"], t["noise"], t["bias"], *_EPI, backend=impl)
    y = t["x"]
    slope, gain, clamp = _EPI
    v = y * t["d"].to(y.dtype)[:, :, None, None] + t["noise"].to(y.dtype)[:, None] + t["bias"].to(y.dtype)[:, None, None]
    return (torch.where(v > 0, v, v * slope) * gain).clamp(-clamp, clamp)


def _epilogue_raw(t, backend):
    y, d, noise, bias = (t[k].to(t["x"].dtype) for k in ("x", "d", "noise", "bias"))
    out = mc.EPILOGUE(y, d, noise, bias, *_EPI, backend=backend)
    dout = torch.randn(y.shape, generator=_gen(8), dtype=y.dtype).to(y.device).requires_grad_(True)
    return [("modconv_epilogue", (y.requires_grad_(True), d.requires_grad_(True), noise.requires_grad_(True),
                                  bias.requires_grad_(True), *_EPI, backend)),
            ("modconv_epilogue_", (y.detach().clone(), d.detach(), noise.detach(), bias.detach(), *_EPI, backend)),
            ("modconv_epilogue_grad", (dout, out.detach(), *_EPI, backend))]


# ---------------------------------------------------------------------------------------------------- relayout
# No public op (fastgan.backends.cpu.relayout/as_layout call it): the row scales x per (sample, channel)
# into x's own memory format; ``raw`` also converts across formats, both ways. ``ref``: torch ops.
def _relayout_inputs(gen, n, dtype, device):
    return dict(x=_randn(gen, n, 3, 2, 3, device=device).to(dtype), scale=_randn(gen, n, 3, device=device).to(dtype))


def _relayout_call(t, impl):
    x, scale = t["x"], t["scale"]
    fmt = lay.memory_format_of(x)
    if impl != "ref":
        return lay.RELAYOUT(x, scale, fmt == torch.channels_last, backend=impl)
    return (x * scale.to(x.dtype)[:, :, None, None]).contiguous(memory_format=fmt)


def _relayout_raw(t, backend):
    x, scale = t["x"].requires_grad_(True), t["scale"].requires_grad_(True)
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    return [("relayout", (x, scale, True, backend)), ("relayout", (xc, None, False, backend)),
            ("relayout", (x, None, False, backend))]


# ------------------------------------------------------------------------------------------------ center_rows_
# Mutating and not differentiable (FeatureStats reads detached features): the row calls the operator
# into a fresh float64 ``dst`` and returns it; ``ref`` is x - shift in float64.
def _center_rows_inputs(gen, n, dtype, device):
    """x [n, 5] (float64 at float64, else float32: the kernel reads only these), shift [5] float64."""
    return dict(x=_randn(gen, n, 5, device=device).to(torch.float64 if dtype == torch.float64 else torch.float32),
                shift=_randn(gen, 5, device=device))


def _center_rows_call(t, impl):
    x, shift = t["x"].detach(), t["shift"]
    if impl == "ref":
        return x.double() - shift
    dst, sums = torch.empty(x.shape, dtype=torch.float64, device=x.device), torch.zeros_like(shift)
    st.CENTER_ROWS(dst, x, shift, sums, backend=impl)
    torch.testing.assert_close(sums, dst.sum(0))
    return dst


def _center_rows_raw(t, backend):
    x, shift = t["x"], t["shift"]
    return [("center_rows_", (torch.empty(x.shape, dtype=torch.float64, device=x.device), x, shift,
                              torch.ones_like(shift), backend))]


_NOT_DIFFERENTIABLE = "center_rows_ is not differentiable (docs/contract.md)"


ROWS: Sequence[Row] = (
    _bias_act_row("lrelu", 2.5),           # gradient from the saved output, clamped
    _bias_act_row("swish", 2.5, gain=1.3),  # smooth: saves x, second-order kernel
    _bias_act_row("linear", None, gain=0.7),  # saves nothing
    Row("upfirdn2d", ("upfirdn2d",), make=_upfirdn2d_inputs,
        call=lambda t, impl: ops.upfirdn2d(t["x"], t["f"], impl=impl, **_UPF),
        raw=lambda t, backend: [("upfirdn2d", (t["x"].requires_grad_(True), t["f"], [2, 2], [1, 1], [2, 1, 2, 1],
                                               False, 4.0, backend))],
        constant=("f",)),
    # lrelu and clamp are piecewise linear: a smaller finite-difference step keeps away from the kinks.
    Row("filtered_lrelu", ("filtered_lrelu", "filtered_lrelu_masked"), make=_filtered_lrelu_inputs,
        call=lambda t, impl: ops.filtered_lrelu(t["x"], fu=t["fu"], fd=t["fd"], b=t["b"], impl=impl, **_FLR),
        raw=_filtered_lrelu_raw, rounded=("x", "b"), constant=("fu", "fd"),
        gradcheck_kw=(("eps", 1e-7), ("atol", 1e-5))),
    Row("adain", ("adain_forward", "adain_backward"), make=_adain_inputs,
        call=lambda t, impl: ops.adain(t["x"], t["s"], t["b"], eps=1e-3, impl=impl),
        raw=_adain_raw, rounded=("x", "s", "b")),
    Row("modconv_epilogue", ("modconv_epilogue", "modconv_epilogue_", "modconv_epilogue_grad"),
        make=_epilogue_inputs, call=_epilogue_call, raw=_epilogue_raw, rounded=("x", "d", "noise", "bias"),
        gradcheck_kw=(("eps", 1e-7), ("atol", 1e-5)), kernels=("cpu",)),
    Row("relayout", ("relayout",), make=_relayout_inputs, call=_relayout_call, raw=_relayout_raw,
        kernels=("cpu",), skip=(("low_precision", "relayout has float32/float64 kernels only (docs/contract.md)"),)),
    Row("center_rows_", ("center_rows_",), make=_center_rows_inputs, call=_center_rows_call, raw=_center_rows_raw,
        constant=("x", "shift"), kernels=("cpu",),
        skip=(("gradcheck", _NOT_DIFFERENTIABLE), ("memory_format", "x is 2-D (N, D) and contiguous"),
              ("low_precision", "x is float32/float64, dst float64 (docs/contract.md)"),
              ("autocast", "returns float64 by definition"))),
)


# ----------------------------------------------------------------------------------------------------- backends
def _backend_params():
    gpu = torch.device("cuda") if torch.cuda.is_available() else None
    out = [pytest.param(("ref", torch.device("cpu")), id="ref")]
    for name, device in (("cpu", torch.device("cpu")), ("triton", gpu or torch.device("cpu")), ("cuda", gpu)):
        if device is None or not backends.available(name):
            reason = "no GPU" if device is None else f"backend {name!r} unavailable"
            out.append(pytest.param((name, device), id=name, marks=pytest.mark.skip(reason=reason)))
        else:
            out.append(pytest.param((name, device), id=name))
    return out


BACKENDS = _backend_params()
ROW_PARAMS = [pytest.param(r, id=r.name) for r in ROWS]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _diff(row: Row, t: Inputs) -> List[str]:
    return [k for k, v in t.items() if v.is_floating_point() and k not in row.constant]


def _requires_grad(row: Row, t: Inputs) -> Inputs:
    return {k: (v.detach().requires_grad_(True) if k in _diff(row, t) else v) for k, v in t.items()}


# ------------------------------------------------------------------------------------------------------- checks
def test_every_primitive_has_a_row():
    covered = {p for r in ROWS for p in r.prims}
    missing = sorted(set(PRIMITIVES) - covered)
    assert not missing, f"operators without a row in tests/test_contract.py ROWS: {missing}"


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "empty"])
@pytest.mark.parametrize("row", ROW_PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(row, backend, layout):
    name, device = backend
    if name == "ref":
        pytest.skip("ref is the PyTorch composite, not an operator")
    _applies(row, "opcheck", name)
    if layout == "channels_last":
        _applies(row, "memory_format", name)
    t = row.make(_gen(1), 0 if layout == "empty" else 2, torch.float32, device)
    if layout == "channels_last":
        t["x"] = t["x"].contiguous(memory_format=torch.channels_last)
    for prim, args in row.raw(t, name):
        torch.library.opcheck(PRIMITIVES[prim].op.default, args)


@pytest.mark.parametrize("row", ROW_PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(row, backend):
    name, device = backend
    _applies(row, "gradcheck", name)
    if name in row.no_float64:
        pytest.skip(f"{name} has no float64 kernel for {row.name} (docs/contract.md)")
    t = row.make(_gen(2), 1, torch.float64, device)
    keys = _diff(row, t)

    def fn(*diff):
        return row.call({**t, **dict(zip(keys, diff))}, name)
    leaves = tuple(t[k].detach().requires_grad_(True) for k in keys)
    # fast_mode checks random projections of the Jacobians (a few evaluations instead of one per element):
    # interpreted Triton kernels would otherwise take minutes.
    kw = dict(row.gradcheck_kw)
    assert torch.autograd.gradcheck(fn, leaves, fast_mode=True, **kw)
    assert torch.autograd.gradgradcheck(fn, leaves, fast_mode=True, **kw)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("row", ROW_PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_format(row, backend, fmt):
    """The output keeps the memory format of x; on the kernel backends the input gradient does too (on
    ref it is whatever PyTorch's autograd of the composite gives)."""
    name, device = backend
    _applies(row, "memory_format", name)
    t = row.make(_gen(3), 2, torch.float32, device)
    t["x"] = t["x"].contiguous(memory_format=fmt)
    t = _requires_grad(row, t)
    y = row.call(t, name)
    assert y.is_contiguous(memory_format=fmt), f"{name}: output strides {y.stride()}"
    (dx,) = torch.autograd.grad(y, t["x"], torch.ones_like(y).contiguous(memory_format=fmt))
    if name != "ref":
        assert dx.is_contiguous(memory_format=fmt), f"{name}: dx strides {dx.stride()}"


@pytest.mark.parametrize("row", ROW_PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(row, backend):
    name, device = backend
    _applies(row, "empty_batch", name)
    t = _requires_grad(row, row.make(_gen(4), 0, torch.float32, device))
    y = row.call(t, name)
    want = row.call({k: v.detach() for k, v in row.make(_gen(4), 0, torch.float32, torch.device("cpu")).items()},
                    "ref")
    assert y.shape == want.shape and y.numel() == 0 and y.dtype == want.dtype
    keys = _diff(row, t)
    if not keys:
        return
    grads = torch.autograd.grad(y, [t[k] for k in keys], torch.ones_like(y), allow_unused=True)
    for k, g in zip(keys, grads):
        assert g is None or (g.shape == t[k].shape and not g.abs().sum()), f"{k}: {g}"


_ULP = {torch.float16: 2.0 ** -10, torch.bfloat16: 2.0 ** -7}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("row", ROW_PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_low_precision_matches_one_oracle(row, backend, dtype):
    """Every backend returns x's dtype and stays within two ulps of one oracle: the float32 ref on the
    inputs rounded as the contract says (``row.rounded``), then rounded once to ``dtype``. The same for
    the input gradient. A float32 operand gives the bits of the same operand pre-rounded to ``dtype``,
    and its gradient comes back in float32."""
    name, device = backend
    _applies(row, "low_precision", name)
    t = _requires_grad(row, row.make(_gen(5), 2, dtype, device))
    y = row.call(t, name)
    assert y.dtype == dtype
    pre = {k: (v.detach().to(dtype) if k in row.rounded else v.detach()) for k, v in t.items()}
    assert torch.equal(y, row.call(pre, name)), f"{name}: operands not rounded to {dtype} first"
    dy = torch.randn(y.shape, generator=_gen(6)).to(device=device, dtype=dtype)
    keys = _diff(row, t)
    grads = dict(zip(keys, torch.autograd.grad(y, [t[k] for k in keys], dy)))
    assert {k: g.dtype for k, g in grads.items()} == {k: t[k].dtype for k in keys}
    dx = grads["x"]
    oracle_in = {k: (v.detach().to(dtype).float() if k in row.rounded else v.detach()).cpu()
                 for k, v in t.items()}
    oracle_in = _requires_grad(row, oracle_in)
    want = row.call(oracle_in, "ref")
    (want_dx,) = torch.autograd.grad(want, oracle_in["x"], dy.float().cpu())
    for got, exp, what in ((y, want, "y"), (dx, want_dx, "dx")):
        exp = exp.detach().to(dtype).double()
        tol = 2 * _ULP[dtype] * max(float(exp.abs().max()), 1e-3)
        torch.testing.assert_close(got.detach().double().cpu(), exp, rtol=2 * _ULP[dtype], atol=tol,
                                   msg=lambda m: f"{name} {what}: {m}")


@pytest.mark.parametrize("row", ROW_PARAMS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast_keeps_the_input_dtype(request, row, backend):
    """The ops are not on autocast's cast lists: under autocast they compute in (and return) x's dtype."""
    name, device = backend
    _applies(row, "autocast", name)
    _expect(request, row, "autocast", name)
    t = row.make(_gen(7), 2, torch.float32, device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        y = row.call(t, name)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, row.call(t, name), rtol=0, atol=0)


@pytest.mark.parametrize("row", [r for r in ROW_PARAMS if set(r.values[0].kernels) != {"cpu", "triton", "cuda"}])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backend_without_kernel_raises(row, backend):
    """An explicit backend without a kernel for the op raises BackendUnavailable (no silent fallback)."""
    name, device = backend
    if name == "ref" or name in row.kernels:
        pytest.skip(f"{row.name} has a {name} kernel")
    t = row.make(_gen(9), 2, torch.float32, device)
    with pytest.raises(backends.BackendUnavailable):
        row.call(t, name)
