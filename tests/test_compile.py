"""torch.compile(fullgraph=True) and torch.export of the networks, against eager.

Compiling is slow on small CPUs, so graph capture and autograd are checked with the ``aot_eager``
backend (dynamo's full-graph capture plus AOTAutograd over fastgan's operators, fake kernels and
registered derivatives, run eagerly); one network runs through inductor, the default backend, end to end.

R1 double backward: AOTAutograd's compiled backward is not itself differentiable (PyTorch raises
"torch.compile with aot_autograd does not currently support double backward", from
``torch/_functorch/_aot_autograd/runtime_wrappers.py``), so the R1 penalty's second backward is tested on
the ``eager`` dynamo backend (full-graph capture, plain autograd; on the ref backend, see that test), and
a strict xfail pins the limitation (it fails as soon as a PyTorch release lifts it). StyleGAN3 uses the
StyleGAN2 discriminator, so its compile tests cover the two generator configs (T, R).
"""
import pytest
import torch

from fastgan import backends
from fastgan.nets import precision, stylegan2, stylegan3
from fastgan.nets.layers import layer_dtype

pytestmark = pytest.mark.slow

DEVICES = [pytest.param(torch.device("cpu"), id="cpu"),
           pytest.param(torch.device("cuda"), id="cuda",
                        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"))]
SMALL = dict(img_resolution=16, img_channels=3, channel_base=256, channel_max=32, num_fp16_res=0)


def _backend(device: torch.device) -> str:
    """The kernel backend the networks run on: the C++ extension on CPU, auto (Triton/CUDA) on GPUs."""
    if device.type == "cpu":
        if not backends.available("cpu"):
            pytest.skip("the cpu backend (fastgan._C) is not built")
        return "cpu"
    return "auto"


def _generator(architecture: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return stylegan2.Generator(z_dim=32, c_dim=0, w_dim=32, architecture=architecture,
                               mapping_kwargs={"num_layers": 2}, **SMALL).to(device)


def _discriminator(device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    return stylegan2.Discriminator(c_dim=0, architecture="resnet", **SMALL).to(device)


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-4) -> None:
    """float32 agreement relative to the tensor's scale (compiled code may reassociate sums)."""
    got, want = got.detach(), want.detach()
    torch.testing.assert_close(got, want, rtol=0, atol=rtol * float(want.abs().max()) + 1e-7)


def _forward_backward(net, args, kwargs, inputs):
    out = net(*args, **kwargs)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    return out.detach(), grads


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_generator_compiles_fullgraph_forward_backward(architecture, device):
    G = _generator(architecture, device)
    z = torch.randn(2, G.z_dim, device=device)
    params = list(G.parameters())
    with backends.use(_backend(device)):
        want = _forward_backward(G, (z, None), {"noise_mode": "const"}, params)
        got = _forward_backward(torch.compile(G, fullgraph=True, backend="aot_eager"), (z, None),
                                {"noise_mode": "const"}, params)
    _close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        _close(g, w)


def _sg3_generator(config: str, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    extra = dict(conv_kernel=1, use_radial_filters=True) if config == "R" else {}
    return stylegan3.Generator(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3, channel_base=256,
                               channel_max=16, num_fp16_res=0, mapping_kwargs={"num_layers": 2}, **extra).to(device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", ["T", "R"])
def test_stylegan3_generator_compiles_fullgraph_forward_backward(config, device):
    G = _sg3_generator(config, device)
    z = torch.randn(2, G.z_dim, device=device)
    params = [p for p in G.parameters()]
    with backends.use(_backend(device)):
        want = _forward_backward(G, (z, None), {}, params)
        got = _forward_backward(torch.compile(G, fullgraph=True, backend="aot_eager"), (z, None), {}, params)
    _close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        _close(g, w)


def test_stylegan3_magnitude_ema_update_under_compile():
    """``update_emas=True`` mutates the layers' magnitude_ema buffers; the compiled call must do the same."""
    G = _sg3_generator("T", torch.device("cpu"))
    twin = _sg3_generator("T", torch.device("cpu"))
    z = torch.randn(2, G.z_dim)
    with torch.no_grad(), backends.use(_backend(torch.device("cpu"))):
        want = G(z, None, update_emas=True)
        got = torch.compile(twin, fullgraph=True, backend="aot_eager")(z, None, update_emas=True)
    _close(got, want)
    for (name, a), (_, b) in zip(G.named_buffers(), twin.named_buffers()):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=0, msg=name)
    assert float(getattr(G.synthesis, G.synthesis.layer_names[0]).magnitude_ema) != 1.0   # the update ran


@pytest.fixture(scope="module")
def compiled_d():
    """(D, aot_eager-compiled D, the backend) on CPU; compiled once for the tests that share it."""
    D = _discriminator(torch.device("cpu"))
    return D, torch.compile(D, fullgraph=True, backend="aot_eager"), _backend(torch.device("cpu"))


def test_discriminator_compiles_fullgraph_forward_backward(compiled_d):
    D, cD, name = compiled_d
    img = torch.randn(2, 3, 16, 16, requires_grad=True)
    inputs = [img] + list(D.parameters())
    with backends.use(name):
        want = _forward_backward(D, (img, None), {}, inputs)
        got = _forward_backward(cD, (img, None), {}, inputs)
    _close(got[0], want[0])
    for g, w in zip(got[1], want[1]):
        _close(g, w)


def _r1_then_backward(D, img):
    """The R1 phase: grad of D's logits w.r.t. the images with create_graph, then backward of the penalty."""
    (g,) = torch.autograd.grad(D(img, None).sum(), img, create_graph=True)
    g.square().sum().backward()
    return [None if p.grad is None else p.grad.clone() for p in D.parameters()]


@pytest.mark.parametrize("device", DEVICES)
def test_discriminator_r1_double_backward_under_fullgraph_capture(device):
    # ref backend: the kernel backends' convolution is a torch.autograd.Function (backends/kernel_conv.py),
    # whose backward dynamo traces as once-differentiable ("element 0 of tensors does not require grad")
    D = _discriminator(device)
    img = torch.randn(2, 3, 16, 16, device=device, requires_grad=True)
    with backends.use("ref"):
        want = _r1_then_backward(D, img)
        D.zero_grad(set_to_none=True)
        got = _r1_then_backward(torch.compile(D, fullgraph=True, backend="eager"), img)
    assert [g is None for g in got] == [w is None for w in want]
    for g, w in zip(got, want):
        if w is not None:
            _close(g, w)


@pytest.mark.xfail(strict=True, raises=RuntimeError,
                   reason="PyTorch: torch.compile with aot_autograd does not currently support double backward")
def test_discriminator_r1_double_backward_through_aot_autograd(compiled_d):
    D, cD, name = compiled_d
    img = torch.randn(2, 3, 16, 16, requires_grad=True)
    with backends.use(name):
        _r1_then_backward(cD, img)


def test_generator_compiles_with_inductor():
    G = _generator("skip", torch.device("cpu")).eval().requires_grad_(False)
    ws = G.mapping(torch.randn(2, G.z_dim), None)
    with torch.no_grad(), backends.use(_backend(torch.device("cpu"))):
        want = G.synthesis(ws, noise_mode="const")
        got = torch.compile(G.synthesis, fullgraph=True)(ws, noise_mode="const")
    _close(got, want)
    assert got.is_contiguous() and got.dtype == torch.float32


@pytest.mark.parametrize("config", ["T", "R"])
def test_export_stylegan3_synthesis(config):
    G = _sg3_generator(config, torch.device("cpu")).eval()
    with torch.no_grad(), backends.use(_backend(torch.device("cpu"))):
        ws = G.mapping(torch.randn(2, G.z_dim), None)
        synthesis = torch.export.export(G.synthesis, (ws,)).module()
        _close(synthesis(ws), G.synthesis(ws))


def test_export_generator():
    G = _generator("skip", torch.device("cpu")).eval()
    z = torch.randn(2, G.z_dim)
    with backends.use(_backend(torch.device("cpu"))):
        ws = G.mapping(z, None)
        synthesis = torch.export.export(G.synthesis, (ws,), kwargs={"noise_mode": "const"}).module()
        _close(synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const"))
        full = torch.export.export(G, (z, None), kwargs={"noise_mode": "const"}).module()
        _close(full(z, None, noise_mode="const"), G(z, None, noise_mode="const"))


def test_precision_scope_is_a_trace_time_constant():
    @torch.compile(fullgraph=True, backend="eager")
    def zeros(x):
        return torch.zeros_like(x, dtype=layer_dtype(False, False, x.device))

    x = torch.ones(3)
    with precision("bf16"):
        assert zeros(x).dtype == torch.bfloat16
    # no guard on the scope: the compiled graph keeps the dtype it was traced with (documented)
    assert zeros(x).dtype == torch.bfloat16
    torch._dynamo.reset()
    assert zeros(x).dtype == torch.float32
