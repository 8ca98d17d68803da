"""conv2d_resample, modulated convolutions, modconv_bias_act and fma: gradients, backends, errors."""
import sys
import textwrap

import pytest
import torch

import fastgan.compat
import fastgan.ops as ops
from fastgan import backends
from fastgan.backends.kernel_conv import conv_strategy
from fastgan.ops import modconv as modconv_mod

BACKENDS = [pytest.param("ref"), pytest.param("cpu", marks=pytest.mark.cpu_ext)]


def _need(backend):
    if not backends.available(backend):
        pytest.skip(f"backend {backend!r} unavailable here")


def _rand(*shape, dtype=torch.float64, seed=0, grad=True):
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=dtype)
    return t.requires_grad_(grad)


F1331 = ops.setup_filter([1, 3, 3, 1])
C2R_GEOMS = [  # (k, up, down, padding, groups, flip_weight)
    (3, 1, 1, 1, 1, True), (3, 2, 1, 1, 2, False), (3, 1, 2, [1, 0, 1, 2], 1, True), (1, 2, 1, 0, 1, True),
    (1, 1, 2, 0, 2, False), (3, 1, 1, [2, 0, -1, 1], 1, False), (4, 2, 2, 1, 1, True)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("geom", C2R_GEOMS, ids=[str(g) for g in C2R_GEOMS])
def test_conv2d_resample_gradgradcheck(geom, backend):
    _need(backend)
    k, up, down, padding, groups, flip_weight = geom
    x = _rand(1, 4, 5, 4, seed=1)
    w = _rand(2, 4 // groups, k, k, seed=2)
    f = F1331.double()

    def fn(x, w):
        return ops.conv2d_resample(x, w, f, up=up, down=down, padding=padding, groups=groups,
                                   flip_weight=flip_weight, impl=backend)
    assert torch.autograd.gradcheck(fn, (x, w), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)


@pytest.mark.cpu_ext
@pytest.mark.parametrize("wgrad_cl", [False, True], ids=["wgrad-nchw", "wgrad-cl"])
@pytest.mark.parametrize("dgrad_cl", [False, True], ids=["dgrad-nchw", "dgrad-cl"])
@pytest.mark.parametrize("geom", [C2R_GEOMS[1], C2R_GEOMS[2], C2R_GEOMS[6]], ids=["up2-groups", "down2", "up2down2"])
def test_conv2d_resample_third_order_matches_ref(geom, dgrad_cl, wgrad_cl, monkeypatch):
    """The cpu backend's hand-written double backward (_ConvGrad) is itself differentiable: third-order
    derivatives of a scalar function of x and w equal those of ref's autograd (float64), with the
    gradients computed in either layout (the policy picks one per CPU class)."""
    _need("cpu")
    from fastgan.backends import cpu_policy
    monkeypatch.setattr(cpu_policy, "DGRAD_CHANNELS_LAST", dgrad_cl)
    monkeypatch.setattr(cpu_policy, "WGRAD_CHANNELS_LAST", wgrad_cl)
    k, up, down, padding, groups, flip_weight = geom
    f = F1331.double()
    results = {}
    for backend in ("ref", "cpu"):
        x, w = _rand(1, 4, 5, 4, seed=1), _rand(2, 4 // groups, k, k, seed=2)
        y = ops.conv2d_resample(x, w, f, up=up, down=down, padding=padding, groups=groups,
                                flip_weight=flip_weight, impl=backend)
        (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)   # first order
        (gw,) = torch.autograd.grad(gx.square().sum(), w, create_graph=True)  # second order
        third = torch.autograd.grad(gw.sin().sum(), [x, w])                    # third order
        results[backend] = (gx, gw) + tuple(third)
    for r, c in zip(results["ref"], results["cpu"]):   # float64; values reach ~1e3, sums of ~100 terms
        torch.testing.assert_close(c, r, rtol=1e-8, atol=1e-11 * r.abs().max().item())


SG2_GEOMS = [(3, 1, 1, True, True), (3, 2, 1, True, False), (3, 1, 2, False, True), (1, 1, 1, True, False),
             (3, 2, 1, False, True)]   # (k, up, down, demodulate, fused)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("geom", SG2_GEOMS, ids=[str(g) for g in SG2_GEOMS])
def test_modulated_conv2d_gradgradcheck(geom, backend):
    _need(backend)
    k, up, down, demod, fused = geom
    x, weight, styles = _rand(2, 3, 4, 4, seed=1), _rand(2, 3, k, k, seed=2), _rand(2, 3, seed=3)
    oh = 4 * up // down
    noise = _rand(2, 1, oh, oh, seed=4)

    def fn(x, weight, styles, noise):
        return ops.modulated_conv2d(x, weight, styles, noise, up=up, down=down, padding=k // 2,
                                    resample_filter=F1331.double(), demodulate=demod, flip_weight=up == 1,
                                    fused_modconv=fused, impl=backend)
    args = (x, weight, styles, noise)
    assert torch.autograd.gradcheck(fn, args, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, args, fast_mode=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("demod", [True, False])
def test_modulated_conv2d_sg3_gradgradcheck(backend, demod):
    _need(backend)
    x, w, s, gain = _rand(2, 3, 5, 4, seed=1), _rand(2, 3, 3, 3, seed=2), _rand(2, 3, seed=3), _rand(2, 3, seed=4)

    def fn(x, w, s, gain):
        return ops.modulated_conv2d_sg3(x, w, s, demodulate=demod, padding=[1, 2], input_gain=gain, impl=backend)
    assert torch.autograd.gradcheck(fn, (x, w, s, gain), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w, s, gain), fast_mode=True)


@pytest.mark.parametrize("max_pixels", [0, 10 ** 6])          # channels_last route, NCHW route
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("demod", [True, False])
@pytest.mark.parametrize("grad", [False, True])
def test_modulated_conv2d_sg3_cpu_routes(max_pixels, dtype, demod, grad, monkeypatch):
    """The cpu backend convolves small NCHW images NCHW and large ones channels_last (between two
    relayouts): both equal ref, forward and gradients, and return NCHW."""
    _need("cpu")
    from fastgan.backends import cpu_policy
    monkeypatch.setattr(cpu_policy, "NCHW_CONV_MAX_PIXELS", max_pixels)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 6, 9, 7, generator=g, dtype=dtype)
    w, s = torch.randn(5, 6, 3, 3, generator=g, dtype=dtype), torch.randn(2, 6, generator=g, dtype=dtype)
    gain = torch.rand(6, generator=g, dtype=dtype) + 0.5
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-4)   # sums of 54
    outs = {}
    for impl in ("cpu", "ref"):
        leaves = [t.detach().requires_grad_(grad) for t in (x, w, s)]
        with torch.set_grad_enabled(grad):
            y = ops.modulated_conv2d_sg3(*leaves, demodulate=demod, padding=[1, 2], input_gain=gain, impl=impl)
        assert y.shape == (2, 5, 9, 9) and y.is_contiguous()
        outs[impl] = (y,) + (torch.autograd.grad(y.sin().sum(), leaves) if grad else ())
    for c, r in zip(outs["cpu"], outs["ref"]):
        torch.testing.assert_close(c, r, **tol)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ["lrelu", "linear", "swish"])
def test_modconv_bias_act_gradgradcheck(backend, act):
    _need(backend)
    x, weight, styles = _rand(2, 3, 4, 4, seed=1), _rand(2, 3, 3, 3, seed=2), _rand(2, 3, seed=3)
    bias, noise = _rand(2, seed=5), _rand(4, 4, seed=6)

    def fn(x, weight, styles, bias, noise):
        return ops.modconv_bias_act(x, weight, styles, bias, noise, act=act, gain=1.3, impl=backend)
    args = (x, weight, styles, bias, noise)
    assert torch.autograd.gradcheck(fn, args, fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, args, fast_mode=True)


def _synthesis_args(dtype, channels_last=False, noise_kind="n1hw", up=1, seed=0):
    n, i, o, h = 3, 8, 6, 7
    x = _rand(n, i, h, h, dtype=dtype, seed=seed, grad=False)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    oh = h * up
    noise = {"n1hw": lambda: _rand(n, 1, oh, oh, dtype=dtype, seed=seed + 4, grad=False),
             "hw": lambda: _rand(oh, oh, dtype=dtype, seed=seed + 4, grad=False),
             "nchw": lambda: _rand(n, o, oh, oh, dtype=dtype, seed=seed + 4, grad=False),
             "none": lambda: None}[noise_kind]()
    return dict(x=x, weight=_rand(o, i, 3, 3, seed=seed + 1, grad=False), styles=_rand(n, i, seed=seed + 2, grad=False),
                bias=_rand(o, seed=seed + 3, grad=False), noise=noise, up=up, resample_filter=F1331)


@pytest.mark.cpu_ext
@pytest.mark.parametrize("channels_last, noise_kind, up", [
    (False, "n1hw", 1), (True, "hw", 2), (True, "nchw", 1), (False, "none", 2), (True, "n1hw", 1)])
def test_cpu_synthesis_layer_matches_ref(channels_last, noise_kind, up):
    """Forward and all gradients of the cpu formulation (+ C++ epilogue) against ref, float32."""
    _need("cpu")
    a = _synthesis_args(torch.float32, channels_last, noise_kind, up)
    leaves = {k: v.requires_grad_(True) for k, v in a.items() if isinstance(v, torch.Tensor) and k != "resample_filter"}
    outs, grads = {}, {}
    for backend in ("ref", "cpu"):
        y = ops.modconv_bias_act(**a, act="lrelu", clamp=1.5, impl=backend)
        g = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        outs[backend] = y
        grads[backend] = torch.autograd.grad((y * g).sum(), list(leaves.values()))
    assert (outs["cpu"].abs() == 1.5).any(), "the clamp must be exercised"
    torch.testing.assert_close(outs["cpu"], outs["ref"], rtol=1e-5, atol=1e-5)
    for name, gc, gr in zip(leaves, grads["cpu"], grads["ref"]):
        torch.testing.assert_close(gc, gr, rtol=1e-4, atol=1e-4, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.cpu_ext
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_cpu_synthesis_layer_dtypes_and_inference(dtype):
    _need("cpu")
    a = _synthesis_args(dtype, channels_last=True)
    a["noise"] = a["noise"].to(dtype)
    ref = ops.modconv_bias_act(**{k: (v.double() if isinstance(v, torch.Tensor) and k != "resample_filter" else v)
                                  for k, v in a.items()}, act="lrelu", impl="ref")
    with torch.no_grad():   # the in-place epilogue
        y = ops.modconv_bias_act(**a, act="lrelu", impl="cpu")
    assert y.dtype == dtype
    tol = 1e-10 if dtype == torch.float64 else 5e-2
    torch.testing.assert_close(y.double(), ref.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_styles_with_demodulation_are_finite(backend):
    _need(backend)
    x, weight = _rand(2, 3, 5, 5, seed=1), _rand(4, 3, 3, 3, seed=2)
    styles = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    for fused in (True, False):
        y = ops.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused, impl=backend)
        gx, gw, gs = torch.autograd.grad(y.square().sum(), (x, weight, styles))
        assert torch.isfinite(y).all() and (y == 0).all()
        assert all(torch.isfinite(t).all() for t in (gx, gw, gs))


def test_fp16_prenormalisation_matches_fp32_up_to_rounding():
    x, weight, styles = (_rand(2, 4, 6, 6, dtype=torch.float32, seed=s, grad=False) for s in (1, 2, 3))
    weight, styles = weight.reshape(2, 4, 6, 6)[:, :, :3, :3].contiguous() * 1e3, styles[:, :, 0, 0].contiguous() * 1e3
    y32 = ops.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=False, impl="ref")
    y16 = ops.modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=False, impl="ref")
    assert torch.isfinite(y16).all()
    torch.testing.assert_close(y16.float(), y32, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("call, match", [
    (lambda: ops.modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(5, 4, 3, 3), torch.randn(2, 3)), "weight"),
    (lambda: ops.modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(5, 3, 3, 3), torch.randn(2, 4)), "styles"),
    (lambda: ops.modulated_conv2d(torch.randn(2, 3, 4, 4), torch.randn(5, 3, 3, 3), torch.randn(2, 3),
                                  noise=torch.randn(2, 1, 3, 3), padding=1), "noise"),
    (lambda: ops.modulated_conv2d(torch.randn(3, 4, 4), torch.randn(5, 3, 3, 3), torch.randn(2, 3)), "x"),
    (lambda: ops.modconv_bias_act(torch.randn(2, 3, 4, 4), torch.randn(5, 3, 3, 3), torch.randn(2, 3),
                                  torch.randn(4)), "bias"),
    (lambda: ops.modulated_conv2d_sg3(torch.randn(2, 3, 4, 4), torch.randn(5, 3, 1, 1), torch.randn(3, 3)), "s"),
    (lambda: ops.modulated_conv2d_sg3(torch.randn(2, 3, 4, 4), torch.randn(5, 3, 1, 1), torch.randn(2, 3),
                                      input_gain=torch.randn(3, 2)), "input_gain"),
    (lambda: ops.modulated_conv2d_sg3(torch.randn(2, 3, 4, 4), torch.randn(5, 3, 1, 1), torch.randn(2, 3),
                                      padding=[1, 2, 3]), "padding"),
    (lambda: ops.conv2d_resample(torch.randn(2, 4, 4, 4), torch.randn(6, 3, 3, 3), groups=2), "w"),
    (lambda: ops.conv2d_resample(torch.randn(2, 4, 4, 4), torch.randn(6, 4, 3, 3).double()), "w"),
    (lambda: ops.conv2d_resample(torch.randn(2, 4, 4, 4), torch.randn(6, 4, 3, 3), up=0), "up"),
    (lambda: ops.conv2d_resample(torch.randn(2, 4, 4, 4), torch.randn(6, 4, 9, 9)), "empty output"),
    (lambda: ops.fma(torch.randn(2, 3), torch.randn(4), torch.randn(1)), "a"),
])
def test_bad_arguments_name_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_fma_unbroadcasts_and_differentiates_twice(backend):
    _need(backend)
    a, b, c = _rand(3, 4, 5, seed=1), _rand(4, 1, seed=2), _rand(5, seed=3)
    fn = lambda a, b, c: ops.fma(a, b, c, impl=backend)   # noqa: E731
    torch.testing.assert_close(fn(a, b, c), a * b + c)
    assert torch.autograd.gradcheck(fn, (a, b, c), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (a, b, c), fast_mode=True)


def test_kernel_formulation_matches_grouped_conv():
    """The activation-modulated formulation (any backend but ref) equals NVlabs' fused grouped conv."""
    a = _synthesis_args(torch.float64, up=2)
    w, s, dc = modconv_mod._sg2_prepare(a["x"], a["weight"], a["styles"], True)
    y = conv_strategy("ref").modulated(a["x"], w, s, dc, a["noise"], 2, 1, (1, 1, 1, 1), F1331, False)
    ref = ops.modulated_conv2d(a["x"], a["weight"], a["styles"], a["noise"], up=2, padding=1, resample_filter=F1331,
                               flip_weight=False, fused_modconv=True, impl="ref")
    torch.testing.assert_close(y, ref, rtol=1e-10, atol=1e-10)


def test_patch_nvlabs_conv_ops(tmp_path, monkeypatch):
    pkg = "torch_utils_fake_conv"
    d = tmp_path / pkg / "ops"
    d.mkdir(parents=True)
    (tmp_path / pkg / "__init__.py").write_text("")
    (d / "__init__.py").write_text("")
    fail = "raise AssertionError('original called')"
    (d / "conv2d_resample.py").write_text(f"def conv2d_resample(x, w, **kw): {fail}\n")
    (d / "fma.py").write_text(f"def fma(a, b, c): {fail}\n")
    (d / "conv2d_gradfix.py").write_text(f"def no_weight_gradients(disable=True): {fail}\n")
    (tmp_path / "user_conv.py").write_text(textwrap.dedent(f"""
        from {pkg}.ops import conv2d_resample, conv2d_gradfix
        from {pkg}.ops.fma import fma
        def layer(x, w, f):
            with conv2d_gradfix.no_weight_gradients():
                y = conv2d_resample.conv2d_resample(x=x, w=w, f=f, up=2, padding=1, flip_weight=False)
            return fma(y, y, y)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import user_conv
        patched = fastgan.compat.patch_nvlabs(pkg)
        assert {f"{pkg}.ops.conv2d_resample.conv2d_resample", f"{pkg}.ops.fma.fma",
                f"{pkg}.ops.conv2d_gradfix.no_weight_gradients"} <= set(patched)
        x, w = torch.randn(2, 4, 5, 5), torch.randn(3, 4, 3, 3)
        got = user_conv.layer(x, w, F1331)
        y = ops.conv2d_resample(x, w, F1331, up=2, padding=1, flip_weight=False, impl="ref")
        torch.testing.assert_close(got, y * y + y, rtol=1e-4, atol=1e-4)
    finally:
        for m in [m for m in sys.modules if m.startswith(pkg) or m == "user_conv"]:
            del sys.modules[m]


def _case_params(dtype=torch.float32, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)   # noqa: E731
    return dict(w=r(6, 8, 3, 3), s=r(n, 8) + 1, b=r(6), noise=r(14, 14), w3=r(5, 8, 3, 3), f=F1331)


CASES = {   # name -> fn(x, params, impl); x is [N, 8, 7, 7]
    "c2r": lambda x, p, impl: ops.conv2d_resample(x, p["w"], padding=[1, 0, 2, 1], impl=impl),
    "c2r_up": lambda x, p, impl: ops.conv2d_resample(x, p["w"], p["f"], up=2, padding=1, flip_weight=False, impl=impl),
    "c2r_down": lambda x, p, impl: ops.conv2d_resample(x, p["w"], p["f"], down=2, padding=1, impl=impl),
    "modconv": lambda x, p, impl: ops.modulated_conv2d(x, p["w"], p["s"], padding=1, impl=impl),
    "modconv_bias_act_up": lambda x, p, impl: ops.modconv_bias_act(x, p["w"], p["s"], p["b"], p["noise"], up=2,
                                                                   resample_filter=p["f"], clamp=0.5, impl=impl),
    "sg3": lambda x, p, impl: ops.modulated_conv2d_sg3(x, p["w3"], p["s"], padding=1, impl=impl),
}


def _fmt(t):
    from fastgan.backends.prims.layout import memory_format_of
    return memory_format_of(t)


def _device(backend):
    """Triton runs on CUDA tensors where a GPU is present, else (conftest sets TRITON_INTERPRET=1) on CPU ones."""
    return "cuda" if backend == "triton" and torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("backend", BACKENDS + [pytest.param("triton", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
@pytest.mark.parametrize("n", [3, 0])
def test_output_keeps_memory_format_and_empty_batch(backend, case, layout, n):
    """Every conv op returns the memory format of its input (a strided input counts as NCHW), equals ref,
    and an empty batch gives an empty result whose backward gives zero weight gradients."""
    _need(backend)
    dev = _device(backend)
    p = {k: v.to(dev) for k, v in _case_params(n=n).items()}
    x = torch.randn(n, 8, 7, 7, generator=torch.Generator().manual_seed(1)).to(dev)
    x = {"nchw": x, "channels_last": x.contiguous(memory_format=torch.channels_last),
         "strided": torch.randn(n, 8, 7, 14, device=dev)[..., ::2].copy_(x)}[layout]
    want_fmt = torch.channels_last if layout == "channels_last" and n else torch.contiguous_format  # empty: both
    params = [t.requires_grad_(True) for k, t in p.items() if k != "f"]
    y = CASES[case](x, p, backend)
    assert _fmt(y) == want_fmt and y.is_contiguous(memory_format=want_fmt) and y.dtype == x.dtype
    if n == 0:
        one = CASES[case](torch.randn(1, 8, 7, 7), _case_params(n=1), "ref")
        assert y.numel() == 0 and y.shape[1:] == one.shape[1:]
    else:
        torch.testing.assert_close(y, CASES[case](x.contiguous(), p, "ref"), rtol=1e-4, atol=1e-4)
    grads = torch.autograd.grad(y.sum(), params, allow_unused=True, materialize_grads=True)
    if n == 0:
        assert all((gp == 0).all() for gp in grads)


@pytest.mark.cpu_ext
@pytest.mark.parametrize("case", ["modconv_bias_act_up", "sg3", "c2r_down"])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_cpu_bfloat16_keeps_dtype_and_memory_format(case, layout):
    _need("cpu")
    p = {k: v.to(torch.bfloat16) if k == "w" and case.startswith("c2r") else v for k, v in _case_params().items()}
    p_ref = {k: v if k == "f" else v.float() for k, v in p.items()}
    x = torch.randn(3, 8, 7, 7).to(torch.bfloat16).contiguous(memory_format=layout)
    with torch.no_grad():
        y = CASES[case](x, p, "cpu")
        want = CASES[case](x.float(), p_ref, "ref")
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=layout) and _fmt(y) == _fmt(x)
    torch.testing.assert_close(y.float(), want, rtol=5e-2, atol=5e-2 * want.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["c2r_up", "c2r_down", "modconv_bias_act_up", "sg3"])
def test_autocast_returns_its_dtype_like_ref(backend, case):
    """Under CPU autocast (bfloat16) the convolutions run in bfloat16 and the ops return bfloat16 on every
    backend, as ref's F.conv2d does; gradients reach the float32 parameters."""
    _need(backend)
    p = _case_params(n=2)
    params = [t.requires_grad_(True) for k, t in p.items() if k != "f"]
    x = torch.randn(2, 8, 7, 7, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = CASES[case](x, p, backend)
    want = CASES[case](x, p, "ref")
    assert y.dtype == torch.bfloat16 and y.is_contiguous()
    torch.testing.assert_close(y.float(), want, rtol=5e-2, atol=5e-2 * want.abs().max().item())
    grads = torch.autograd.grad(y.float().square().sum(), params, allow_unused=True, materialize_grads=True)
    assert all(gp.dtype == torch.float32 and torch.isfinite(gp).all() for gp in grads)


def test_preferred_memory_format():
    from fastgan.backends.layout import preferred_memory_format
    assert preferred_memory_format("ref") == torch.contiguous_format
    if backends.available("cpu"):
        assert preferred_memory_format("cpu") == torch.channels_last
    if backends.available("triton"):
        assert preferred_memory_format("triton") == torch.contiguous_format
    with pytest.raises(ValueError, match="backend_name"):
        preferred_memory_format("auto")


def _chain(x, p, w3, impl="cpu"):
    y = ops.modconv_bias_act(x, p["w"], p["s"], p["b"], p["noise"], up=2, resample_filter=F1331, clamp=0.5, impl=impl)
    y = ops.conv2d_resample(y, w3, F1331, down=2, padding=1, impl=impl)
    return ops.modulated_conv2d_sg3(y, p["w6"], p["s6"], padding=1, impl=impl)


@pytest.mark.cpu_ext
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("grad", [False, True])
def test_cpu_conv_ops_compile_without_graph_break(layout, grad):
    """torch.compile(fullgraph=True) traces modconv_bias_act, conv2d_resample and modulated_conv2d_sg3 on
    the cpu backend (operators with fake kernels; no graph break) and matches eager, forward and backward."""
    _need("cpu")
    g = torch.Generator().manual_seed(2)
    p = _case_params(n=2)
    p.update(w6=torch.randn(5, 6, 3, 3, generator=g), s6=torch.randn(2, 6, generator=g))
    w3 = torch.randn(6, 6, 3, 3, generator=g)
    x = torch.randn(2, 8, 7, 7, generator=g).contiguous(memory_format=layout)
    leaves = [x, p["w"], p["s"], p["b"], p["noise"], w3]
    for t in leaves:
        t.requires_grad_(grad)

    def fn(x, w, s, b, noise, w3):
        return _chain(x, dict(p, w=w, s=s, b=b, noise=noise), w3)
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")
    with torch.set_grad_enabled(grad):
        got, want = compiled(*leaves), fn(*leaves)
    assert got.is_contiguous(memory_format=layout)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if grad:
        dy = torch.randn(want.shape, generator=g)
        for a, b in zip(torch.autograd.grad(got, leaves, dy), torch.autograd.grad(want, leaves, dy)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.cpu_ext
def test_compiled_backward_computes_weight_gradients_inside_no_weight_gradients():
    """A traced backward cannot read the flag when it runs, so it computes weight gradients (documented)."""
    _need("cpu")
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    x = torch.randn(2, 3, 6, 6)

    def fn(x, w):
        return ops.conv2d_resample(x, w, padding=1, impl="cpu").square().sum()
    torch._dynamo.reset()
    y = torch.compile(fn, fullgraph=True, backend="aot_eager")(x, w)
    with ops.no_weight_gradients():
        (gw,) = torch.autograd.grad(y, w)
    torch.testing.assert_close(gw, torch.autograd.grad(fn(x, w), w)[0], rtol=1e-5, atol=1e-5)
