"""The networks' activation memory format: chosen once at the input (the backend's preferred format) and
kept by every layer; images come out contiguous NCHW float32."""
import pytest
import torch

from fastgan import backends
from fastgan.backends.layout import preferred_memory_format
from fastgan.nets import stylegan2
from fastgan.nets.layers import Conv2dLayer, input_format

SMALL = dict(img_resolution=16, img_channels=3, channel_base=256, channel_max=32, num_fp16_res=0)


def _layer_inputs(nets, kinds) -> list:
    """Collect the first input of every module of the given kinds inside ``nets`` during a forward."""
    seen = []

    def hook(module, args):
        seen.append((type(module).__name__, args[0]))
    for m in (m for net in nets for m in net.modules()):
        if isinstance(m, kinds):
            m.register_forward_pre_hook(hook)
    return seen


def _is_format(t: torch.Tensor, fmt: torch.memory_format) -> bool:
    return t.is_contiguous(memory_format=fmt)


@pytest.mark.parametrize("name", ["ref", "cpu"])
@pytest.mark.parametrize("architecture", ["skip", "resnet"])
def test_activations_keep_the_backends_format(name, architecture):
    if not backends.available(name):
        pytest.skip(f"backend {name} is not usable here")
    fmt = preferred_memory_format(name)
    torch.manual_seed(0)
    G = stylegan2.Generator(z_dim=16, c_dim=0, w_dim=16, architecture=architecture,
                            mapping_kwargs={"num_layers": 1}, **SMALL)
    D = stylegan2.Discriminator(c_dim=0, architecture=architecture, **SMALL)
    g_inputs = _layer_inputs([G.synthesis], (stylegan2.SynthesisLayer, stylegan2.ToRGBLayer, Conv2dLayer))
    # the epilogue (b4) concatenates the minibatch std at 4x4, which may change the format there
    d_inputs = _layer_inputs([getattr(D, f"b{res}") for res in D.block_resolutions], (Conv2dLayer,))
    with torch.no_grad(), backends.use(name):
        assert input_format(torch.zeros(1)) == fmt
        img = G(torch.randn(2, 16), None, noise_mode="const")
        D(img, None)
    assert img.dtype == torch.float32 and img.is_contiguous()
    for inputs in (g_inputs, d_inputs):
        assert inputs and all(_is_format(x, fmt) for _, x in inputs), [n for n, x in inputs if not _is_format(x, fmt)]


def test_preferred_format_of_the_cpu_backend_is_channels_last():
    if not backends.available("cpu"):
        pytest.skip("the cpu backend (fastgan._C) is not built")
    assert preferred_memory_format("cpu") == torch.channels_last
    assert preferred_memory_format("ref") == torch.contiguous_format
