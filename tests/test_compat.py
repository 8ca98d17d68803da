"""patch_nvlabs() against a fake NVlabs-style torch_utils package written by the test."""
import sys
import textwrap

import torch

import fastgan.compat
import fastgan.ops as ops


def _write_fake(root, pkg):
    d = root / pkg / "ops"
    d.mkdir(parents=True)
    (root / pkg / "__init__.py").write_text("")
    (d / "__init__.py").write_text("")
    (d / "upfirdn2d.py").write_text(textwrap.dedent("""
        def setup_filter(f, **kw): raise AssertionError('original called')
        def upfirdn2d(x, f, **kw): raise AssertionError('original called')
        def filter2d(x, f, **kw): raise AssertionError('original called')
        def upsample2d(x, f, **kw): raise AssertionError('original called')
        def downsample2d(x, f, **kw): raise AssertionError('original called')
    """))
    (d / "bias_act.py").write_text("def bias_act(x, **kw): raise AssertionError('original called')\n")
    (root / "user_net.py").write_text(textwrap.dedent(f"""
        from {pkg}.ops import upfirdn2d
        from {pkg}.ops.bias_act import bias_act
        def block(x, f):
            return bias_act(upfirdn2d.upsample2d(x, f), act='lrelu', impl='cuda')
    """))


def test_patch_nvlabs_replaces_ops(tmp_path, monkeypatch):
    pkg = "torch_utils_fake_compat"
    _write_fake(tmp_path, pkg)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import user_net
        patched = fastgan.compat.patch_nvlabs(pkg)
        assert f"{pkg}.ops.upfirdn2d.upsample2d" in patched and f"{pkg}.ops.bias_act.bias_act" in patched
        f = ops.setup_filter([1, 3, 3, 1])
        x = torch.randn(2, 3, 8, 8)
        y = user_net.block(x, f)     # user code now runs fastgan (impl='cuda' on CPU = fastest available)
        expected = ops.bias_act(ops.upsample2d(x, f, impl="ref"), act="lrelu", impl="ref")
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    finally:
        for m in [m for m in sys.modules if m.startswith(pkg) or m == "user_net"]:
            del sys.modules[m]


def test_patch_nvlabs_missing_package():
    import pytest
    with pytest.raises(ModuleNotFoundError):
        fastgan.compat.patch_nvlabs("no_such_torch_utils_pkg")


def test_patch_nvlabs_network_modconv(tmp_path, monkeypatch):
    pkg, train = "torch_utils_fake_net", "training_fake_net"
    _write_fake(tmp_path, pkg)
    (tmp_path / train).mkdir()
    (tmp_path / train / "__init__.py").write_text("")
    (tmp_path / train / "networks_stylegan2.py").write_text(
        "def modulated_conv2d(x, weight, styles, **kw): raise AssertionError('original called')\n"
        "def layer(x, w, s): return modulated_conv2d(x, w, s, padding=1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import importlib
        net = importlib.import_module(f"{train}.networks_stylegan2")
        patched = fastgan.compat.patch_nvlabs(pkg, training_package=train)
        assert f"{train}.networks_stylegan2.modulated_conv2d" in patched
        x, w, s = torch.randn(2, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(2, 4)
        torch.testing.assert_close(net.layer(x, w, s), ops.modulated_conv2d(x, w, s, padding=1, impl="ref"),
                                   rtol=1e-4, atol=1e-4)
    finally:
        for m in [m for m in sys.modules if m.startswith((pkg, train)) or m == "user_net"]:
            del sys.modules[m]


# ---------------------------------------------------------------------------------------------------------------
# NVlabs' own training step (its four loss phases) on fakes of its ops, unpatched against patched.
#
# The fake ``ops`` follow the signatures and gradient conventions of nvlabs-notes.md section 1 on a CPU (the
# reference paths: plain PyTorch ops, so torch autograd decides which parameters receive a gradient at all),
# and the tiny networks follow the StyleGAN2 structure of network-spec.md (equalised FC layers, modulated
# convolutions with noise, skip output, a discriminator with minibatch-std and an FC epilogue).

_FAKE_BIAS_ACT = '''
import math
import torch
import torch.nn.functional as F

# name -> (function of (x, alpha), def_alpha, def_gain)
ACTS = {
    "linear": (lambda x, a: x, 0.0, 1.0),
    "relu": (lambda x, a: F.relu(x), 0.0, math.sqrt(2)),
    "lrelu": (lambda x, a: F.leaky_relu(x, a), 0.2, math.sqrt(2)),
    "tanh": (lambda x, a: torch.tanh(x), 0.0, 1.0),
    "sigmoid": (lambda x, a: torch.sigmoid(x), 0.0, 1.0),
    "elu": (lambda x, a: F.elu(x), 0.0, 1.0),
    "selu": (lambda x, a: F.selu(x), 0.0, 1.0),
    "softplus": (lambda x, a: F.softplus(x), 0.0, 1.0),
    "swish": (lambda x, a: torch.sigmoid(x) * x, 0.0, math.sqrt(2)),
}

def bias_act(x, b=None, dim=1, act="linear", alpha=None, gain=None, clamp=None, impl="cuda"):
    fn, def_alpha, def_gain = ACTS[act]
    if b is not None:
        view = [1] * x.ndim
        view[dim] = x.shape[dim]
        x = x + b.to(x.dtype).reshape(view)
    x = fn(x, def_alpha if alpha is None else float(alpha))
    g = def_gain if gain is None else float(gain)
    if g != 1:
        x = x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
'''

_FAKE_UPFIRDN2D = '''
import torch
import torch.nn.functional as F

def _two(v):
    return (v, v) if isinstance(v, int) else tuple(v)

def _four(p):
    if isinstance(p, int):
        return (p, p, p, p)
    return (p[0], p[0], p[1], p[1]) if len(p) == 2 else tuple(p)

def setup_filter(f, device=torch.device("cpu"), normalize=True, flip_filter=False, gain=1, separable=None):
    taps = torch.as_tensor(f, dtype=torch.float32)
    if separable is None:
        separable = taps.ndim == 1 and taps.numel() >= 8
    if taps.ndim == 1 and not separable:
        taps = taps[:, None] * taps[None, :]
    if normalize:
        taps = taps / taps.sum()
    if flip_filter:
        taps = taps.flip(list(range(taps.ndim)))
    return (taps * gain ** (taps.ndim / 2)).to(device)

def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1, impl="cuda"):
    assert f.ndim == 2, "this fake only implements 2-D filters"
    (ux, uy), (dx, dy), (x0, x1, y0, y1) = _two(up), _two(down), _four(padding)
    n, c, h, w = x.shape
    stuffed = x.new_zeros(n, c, h * uy, w * ux)
    stuffed[:, :, ::uy, ::ux] = x
    padded = F.pad(stuffed, [x0, x1, y0, y1])  # negative values crop
    taps = (f * gain).to(x.dtype)
    if not flip_filter:
        taps = taps.flip([0, 1])
    out = F.conv2d(padded, taps.expand(c, 1, *taps.shape), groups=c)
    return out[:, :, ::dy, ::dx]

def upsample2d(x, f, up=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    (ux, uy), (x0, x1, y0, y1) = _two(up), _four(padding)
    fh, fw = f.shape
    pad = [x0 + (fw + ux - 1) // 2, x1 + (fw - ux) // 2, y0 + (fh + uy - 1) // 2, y1 + (fh - uy) // 2]
    return upfirdn2d(x, f, up=(ux, uy), padding=pad, flip_filter=flip_filter, gain=gain * ux * uy)

def downsample2d(x, f, down=2, padding=0, flip_filter=False, gain=1, impl="cuda"):
    (dx, dy), (x0, x1, y0, y1) = _two(down), _four(padding)
    fh, fw = f.shape
    pad = [x0 + (fw - dx + 1) // 2, x1 + (fw - dx) // 2, y0 + (fh - dy + 1) // 2, y1 + (fh - dy) // 2]
    return upfirdn2d(x, f, down=(dx, dy), padding=pad, flip_filter=flip_filter, gain=gain)
'''


def _write_nvlabs_like(root, pkg):
    d = root / pkg / "ops"
    d.mkdir(parents=True)
    (root / pkg / "__init__.py").write_text("")
    (d / "__init__.py").write_text("")
    (d / "bias_act.py").write_text(_FAKE_BIAS_ACT)
    (d / "upfirdn2d.py").write_text(_FAKE_UPFIRDN2D)


class _Nets:
    """A tiny StyleGAN2 G and D calling the fake ops through their modules (so a patch takes effect)."""

    def __init__(self, pkg: str, dtype=torch.float64):
        import importlib
        self.ba = importlib.import_module(f"{pkg}.ops.bias_act")
        self.ud = importlib.import_module(f"{pkg}.ops.upfirdn2d")
        g = torch.Generator().manual_seed(0)

        def params(shapes):  # biases and noise strengths start small
            return torch.nn.ParameterDict({
                k: torch.nn.Parameter(torch.randn(v, generator=g, dtype=dtype) * (0.1 if small(k) else 1.0))
                for k, v in shapes.items()})

        def small(name):
            return name.endswith(("_b", "_noise"))
        z, w, c, rgb = 4, 4, 4, 3
        g_shapes = {"map0_w": (w, z), "map0_b": (w,), "map1_w": (w, w), "map1_b": (w,), "const": (c, 4, 4),
                    "rgb_aff_w": (c, w), "rgb_aff_b": (c,), "rgb_w": (rgb, c, 1, 1), "rgb_b": (rgb,)}
        for layer in ("conv4", "conv8"):
            g_shapes.update({f"{layer}_aff_w": (c, w), f"{layer}_aff_b": (c,), f"{layer}_w": (c, c, 3, 3),
                             f"{layer}_b": (c,), f"{layer}_noise": ()})
        self.G = params(g_shapes)
        self.D = params({"fromrgb_w": (c, rgb, 1, 1), "fromrgb_b": (c,), "conv_w": (c, c, 3, 3), "conv_b": (c,),
                         "epi_conv_w": (c, c + 1, 3, 3), "epi_conv_b": (c,), "fc_w": (c, c * 16), "fc_b": (c,),
                         "out_w": (1, c), "out_b": (1,)})
        self.noise = {4: torch.randn(4, 4, generator=g, dtype=dtype), 8: torch.randn(8, 8, generator=g, dtype=dtype)}
        self.f = self.ud.setup_filter([1, 3, 3, 1]).to(dtype)

    def _fc(self, x, w, b, act):
        if act == "linear":
            return torch.addmm(b.unsqueeze(0), x, (w / w.shape[1] ** 0.5).t())
        return self.ba.bias_act(x.matmul((w / w.shape[1] ** 0.5).t()), b, act=act)

    def _modconv(self, x, ws, name, res=None, demodulate=True, clamp=256.0, act="lrelu"):
        G = self.G
        s = self._fc(ws, G[f"{name}_aff_w"], G[f"{name}_aff_b"], "linear")
        w = G[f"{name}_w"]
        x = torch.nn.functional.conv2d(x * s[:, :, None, None], w, padding=w.shape[-1] // 2)
        if demodulate:
            d = ((w[None] * s[:, None, :, None, None]).square().sum([2, 3, 4]) + 1e-8).rsqrt()
            x = x * d[:, :, None, None] + self.noise[res] * G[f"{name}_noise"]
        return self.ba.bias_act(x, G[f"{name}_b"], act=act, clamp=clamp)

    def mapping(self, z):
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for i in range(2):
            x = self._fc(x, self.G[f"map{i}_w"], self.G[f"map{i}_b"], "lrelu")
        return x.unsqueeze(1).repeat(1, 3, 1)

    def synthesis(self, ws):
        x = self.G["const"].unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
        x = self._modconv(x, ws[:, 0], "conv4", 4)
        x = self._modconv(self.ud.upsample2d(x, self.f), ws[:, 1], "conv8", 8)
        return self._modconv(x, ws[:, 2], "rgb", demodulate=False, act="linear")

    def discriminator(self, img):
        D, conv = self.D, torch.nn.functional.conv2d
        x = self.ba.bias_act(conv(img, D["fromrgb_w"]), D["fromrgb_b"], act="lrelu", clamp=256.0)
        x = self.ba.bias_act(conv(x, D["conv_w"], padding=1), D["conv_b"], act="lrelu", clamp=256.0)
        x = self.ud.downsample2d(x, self.f)
        groups = x.reshape(2, -1, *x.shape[1:])  # minibatch-std over groups of 2
        std = (groups - groups.mean(0)).square().mean(0).add(1e-8).sqrt().mean([1, 2, 3])
        x = torch.cat([x, std.reshape(-1, 1, 1, 1).repeat(2, 1, 4, 4)], 1)
        x = self.ba.bias_act(conv(x, D["epi_conv_w"], padding=1), D["epi_conv_b"], act="lrelu", clamp=256.0)
        x = self._fc(x.flatten(1), D["fc_w"], D["fc_b"], "lrelu")
        return self._fc(x, D["out_w"], D["out_b"], "linear")


def _training_step(nets: "_Nets", data) -> dict:
    """Gradients of StyleGAN2Loss's phases Gmain, Greg, Dmain and Dreg (training-spec.md section 2), per phase."""
    softplus = torch.nn.functional.softplus
    z, real, pl_noise = data
    grads = {}

    def phase(name, module, loss_fn):  # the phase's network trains; the other one is frozen
        nets.G.requires_grad_(module is nets.G)
        nets.D.requires_grad_(module is nets.D)
        for q in module.values():
            q.grad = None
        loss_fn()
        grads[name] = {k: (None if q.grad is None else q.grad.clone()) for k, q in module.items()}

    def g_main():
        softplus(-nets.discriminator(nets.synthesis(nets.mapping(z)))).mean().backward()

    def g_reg():
        ws = nets.mapping(z[:2])
        img = nets.synthesis(ws)
        (pl_grads,) = torch.autograd.grad((img * pl_noise).sum(), ws, create_graph=True)
        lengths = pl_grads.square().sum(2).mean(1).sqrt()
        pl_mean = 0.01 * lengths.mean()  # pl_mean starts at 0
        ((lengths - pl_mean).square().mean() * 2 * 4).backward()

    def d_main():
        with torch.no_grad():
            fake = nets.synthesis(nets.mapping(z))
        softplus(nets.discriminator(fake)).mean().backward()
        softplus(-nets.discriminator(real)).mean().backward()

    def d_reg():
        x = real.detach().requires_grad_(True)
        (r1,) = torch.autograd.grad(nets.discriminator(x).sum(), x, create_graph=True)
        (r1.square().sum([1, 2, 3]) * (1.0 / 2)).mean().mul(16).backward()

    phase("Gmain", nets.G, g_main)
    phase("Greg", nets.G, g_reg)
    phase("Dmain", nets.D, d_main)
    phase("Dreg", nets.D, d_reg)
    return grads


def test_patch_nvlabs_training_step_gradients(tmp_path, monkeypatch):
    """Patched, every phase gives every parameter the same gradient as NVlabs, down to None vs zero.

    In Dreg the epilogue ``fc`` bias (lrelu) only meets R1 through the activation's second derivative:
    torch autograd of the reference gives it a zero tensor (so Adam still applies its momentum), and
    the patched op must too.
    """
    pkg = "torch_utils_fake_step"
    _write_nvlabs_like(tmp_path, pkg)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        nets = _Nets(pkg)
        g = torch.Generator().manual_seed(1)
        data = (torch.randn(4, 4, generator=g, dtype=torch.float64),
                torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64),
                torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) / 8)
        want = _training_step(nets, data)
        assert torch.equal(want["Dreg"]["fc_b"], torch.zeros_like(nets.D["fc_b"]))
        assert fastgan.compat.patch_nvlabs(pkg)
        assert nets.ba.bias_act is ops.bias_act and nets.ud.upsample2d is ops.upsample2d
        got = _training_step(nets, data)
        for phase, grads in want.items():
            for name, expected in grads.items():
                actual = got[phase][name]
                assert (actual is None) == (expected is None), f"{phase} {name}: {actual} vs NVlabs {expected}"
                if expected is not None:
                    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-10,
                                               msg=lambda m: f"{phase} {name}: {m}")
    finally:
        for m in [m for m in sys.modules if m.startswith(pkg)]:
            del sys.modules[m]
