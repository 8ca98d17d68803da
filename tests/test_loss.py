"""fastgan.train.loss: every phase against formulas recomputed here from the same D outputs and RNG draws.

Exact checks use float64 stand-in networks built from fastgan ops (``TinyG``/``TinyD``, the latter with a
minibatch-std cross-sample term and projection conditioning); the StyleGAN2 networks are used in float32
for interface-level checks (style mixing, w_avg, all objectives on all phases).
"""
import math

import pytest
import torch
import torch.nn.functional as F

import fastgan.ops as ops
from fastgan.nets.stylegan2 import Discriminator, Generator
from fastgan.train import stats
from fastgan.train.loss import LOSSES, PHASES, StyleGAN2Loss, blur_kernel, blur_sigma, discriminator_loss, \
    generator_loss

F64 = torch.float64
F1331 = ops.setup_filter([1, 3, 3, 1])


# ----------------------------------------------------------------------------------------- stand-ins
class TinyMapping(torch.nn.Module):
    def __init__(self, z_dim, c_dim, w_dim, num_ws, g):
        super().__init__()
        self.num_ws = num_ws
        self.a = torch.nn.Parameter(torch.randn(z_dim + c_dim, w_dim, generator=g, dtype=F64) / 2)
        self.register_buffer("w_avg", torch.zeros(w_dim, dtype=F64))
        self.calls = []

    def forward(self, z, c, update_emas=False):
        self.calls.append(update_emas)
        w = F.leaky_relu(torch.cat([z, c], dim=1) @ self.a, 0.2)
        if update_emas:
            self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, 0.5))
        return w[:, None].repeat(1, self.num_ws, 1)


class TinySynthesis(torch.nn.Module):
    """Styles from ws[:, 0..2] modulate activations (non-fused), random noise, conv through fastgan ops."""

    def __init__(self, w_dim, channels, res, g):
        super().__init__()
        self.const = torch.nn.Parameter(torch.randn(3, res, res, generator=g, dtype=F64))
        self.aff = torch.nn.Parameter(torch.randn(3, w_dim, 3, generator=g, dtype=F64) / 2)
        self.conv = torch.nn.Parameter(torch.randn(3, 3, 3, 3, generator=g, dtype=F64) / 3)
        self.rgb = torch.nn.Parameter(torch.randn(channels, 3, 1, 1, generator=g, dtype=F64) / 2)
        self.calls = []

    def forward(self, ws, update_emas=False):
        self.calls.append(update_emas)
        s = torch.einsum("nkw,kwc->nkc", ws, self.aff) + 1
        x = self.const[None] * s[:, 0, :, None, None]
        x = x + 0.1 * torch.randn_like(x)
        x = ops.conv2d_resample(x * s[:, 1, :, None, None], self.conv, padding=1)
        x = ops.bias_act(x, act="lrelu")
        return torch.tanh(ops.conv2d_resample(x * s[:, 2, :, None, None], self.rgb))


class TinyG(torch.nn.Module):
    def __init__(self, z_dim=4, c_dim=3, w_dim=4, channels=2, res=8):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, 3
        self.img_resolution, self.img_channels = res, channels
        self.mapping = TinyMapping(z_dim, c_dim, w_dim, 3, g)
        self.synthesis = TinySynthesis(w_dim, channels, res, g)


class TinyD(torch.nn.Module):
    """conv + lrelu, minibatch-std over pairs, strided conv, fc, projection onto the label. Returns [N, 1]."""

    def __init__(self, c_dim=3, channels=2, res=8):
        super().__init__()
        g = torch.Generator().manual_seed(4)
        self.w1 = torch.nn.Parameter(torch.randn(4, channels, 3, 3, generator=g, dtype=F64) / 3)
        self.b1 = torch.nn.Parameter(torch.randn(4, generator=g, dtype=F64) / 10)
        self.w2 = torch.nn.Parameter(torch.randn(3, 5, 3, 3, generator=g, dtype=F64) / 5)
        self.fc = torch.nn.Parameter(torch.randn(3 * (res // 2) ** 2, 2, generator=g, dtype=F64) / 6)
        self.emb = torch.nn.Parameter(torch.randn(c_dim, 2, generator=g, dtype=F64))

    def forward(self, img, c, update_emas=False):
        h = ops.bias_act(ops.conv2d_resample(img, self.w1, padding=1), self.b1, act="lrelu")
        grouped = h.reshape(-1, 2, *h.shape[1:])
        std = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])
        std = std.repeat_interleave(2)[:, None, None, None].expand(-1, 1, *h.shape[2:])
        h = torch.cat([h, std], dim=1)
        h = ops.conv2d_resample(h, self.w2, F1331.to(h.dtype), down=2, padding=1)
        out = torch.tanh(h).flatten(1) @ self.fc
        return ((out * (c @ self.emb)).sum(dim=1) / math.sqrt(2))[:, None]


class FixedAug(torch.nn.Module):
    """A deterministic, differentiable stand-in for the augment pipe; records its inputs."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return x.flip(3) * 0.9 + 0.05 * x.roll(1, dims=2)


def direct_blur(x, sigma):
    """Separable zero-padded blur with the taps of spec 2.8 (rounded to float32), with plain F.conv2d."""
    r = math.floor(3 * sigma)
    k = torch.arange(-r, r + 1, dtype=F64)
    f = 2.0 ** (-(k / sigma) ** 2)
    f = (f / f.sum()).float().to(x.dtype)  # the engine's FIR taps are float32
    ch = x.shape[1]
    x = F.conv2d(F.pad(x, [r, r, 0, 0]), f.view(1, 1, 1, -1).repeat(ch, 1, 1, 1), groups=ch)
    return F.conv2d(F.pad(x, [0, 0, r, r]), f.view(1, 1, -1, 1).repeat(ch, 1, 1, 1), groups=ch)


# --------------------------------------------------------------------------------------------- helpers
N = 4


def _batch(seed=0, c_dim=3, channels=2, res=8, z_dim=4, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(N, channels, res, res, generator=g, dtype=dtype) * 2 - 1
    real_c = F.one_hot(torch.tensor([0, 2, 1, 2]), c_dim).to(dtype)[:, :c_dim]
    gen_z = torch.randn(N, z_dim, generator=g, dtype=dtype)
    gen_c = F.one_hot(torch.tensor([1, 1, 0, 2]), c_dim).to(dtype)[:, :c_dim]
    return real, real_c, gen_z, gen_c


def _run(loss, phase, batch, gain=1.0, cur_nimg=0, seed=123):
    """Like the trainer: only the phase's network requires grad; grads start absent."""
    own, other = (loss.G, loss.D) if phase.startswith("G") else (loss.D, loss.G)
    for p in list(own.parameters()) + list(other.parameters()):
        p.grad = None
    own.requires_grad_(True)
    other.requires_grad_(False)
    torch.manual_seed(seed)
    loss.accumulate_gradients(phase, *batch, gain=gain, cur_nimg=cur_nimg)
    own.requires_grad_(False)
    return [p.grad for p in own.parameters()]


def _grads(value, module):
    """Gradients of ``value`` w.r.t. ``module``'s parameters; switches their requires_grad off again."""
    out = torch.autograd.grad(value, list(module.parameters()), allow_unused=True)
    module.requires_grad_(False)
    return out


def _assert_grads(got, want, rtol=1e-10, atol=1e-12):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        if b is None:
            assert a is None or torch.count_nonzero(a) == 0
        else:
            assert a is not None
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def _critic(D, aug, sigma):
    def run(x, c):
        if sigma > 0:
            x = direct_blur(x, sigma)
        if aug is not None:
            x = aug(x)
        return D(x, c)[:, 0]
    return run


def _record_logits(D):
    """The list every later D forward appends its logits [N] to."""
    seen = []
    D.register_forward_hook(lambda m, args, out: seen.append(out.detach()[:, 0].clone()))
    return seen


@pytest.fixture
def reports(monkeypatch):
    """Every stats.report call of the loss: name -> list of per-sample tensors."""
    log = {}

    def record(name, values):
        log.setdefault(name, []).append(torch.as_tensor(values).detach().clone())
        return values

    monkeypatch.setattr(stats, "report", record)
    return log


def _tiny_loss(**kw):
    kw.setdefault("augment_pipe", FixedAug())
    return StyleGAN2Loss("cpu", TinyG(), TinyD(), **kw)


# ------------------------------------------------------------------------------------------ G phases
def test_gmain_matches_direct_nonsaturating_loss(reports):
    loss = _tiny_loss(blur_init_sigma=1.0, blur_fade_kimg=2)
    batch = _batch()
    real, real_c, z, c = batch
    got = _run(loss, "Gmain", batch, gain=3.0, cur_nimg=500)          # sigma = 0.75, r = 2
    G, D = loss.G, loss.D
    G.requires_grad_(True)
    torch.manual_seed(123)
    logits = _critic(D, FixedAug(), 0.75)(G.synthesis(G.mapping(z, c)), c)
    _assert_grads(got, _grads(F.softplus(-logits).mean() * 3.0, G))
    assert all(p.grad is None for p in D.parameters())
    torch.testing.assert_close(reports["Loss/scores/fake"][0], logits.detach())
    torch.testing.assert_close(reports["Loss/signs/fake"][0], logits.detach().sign())
    torch.testing.assert_close(reports["Loss/G/loss"][0], F.softplus(-logits.detach()))
    assert list(reports) == ["Loss/scores/fake", "Loss/signs/fake", "Loss/G/loss"]


def test_gmain_grads_only_on_G_even_if_D_requires_grad():
    loss = _tiny_loss()
    loss.G.requires_grad_(True)
    loss.D.requires_grad_(True)
    loss.accumulate_gradients("Gmain", *_batch(), gain=1.0, cur_nimg=0)
    assert all(p.grad is None for p in loss.D.parameters())
    assert all(p.grad is not None for p in loss.G.parameters())


def _direct_pl(G, z, c, pl_mean, weight, gain, detach_mean=False):
    ws = G.mapping(z, c)
    img = G.synthesis(ws)
    probe = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
    (jac,) = torch.autograd.grad((img * probe).sum(), ws, create_graph=True)
    lengths = jac.square().sum(2).mean(1).sqrt()
    a_new = pl_mean + 0.01 * (lengths.mean() - pl_mean)
    pen = (lengths - (a_new.detach() if detach_mean else a_new)).square()
    return pen, a_new.detach(), (pen * weight).mean() * gain


def test_path_length_penalty_and_pl_mean_update(reports):
    loss = _tiny_loss(pl_weight=2.0, pl_no_weight_grad=True)
    loss.load_state_dict({"pl_mean": torch.tensor(0.3)})
    batch = _batch(1)
    _, _, z, c = batch
    got = _run(loss, "Greg", batch, gain=4.0)
    G = loss.G
    G.requires_grad_(True)
    torch.manual_seed(123)
    a0 = torch.tensor(0.3).double()                                       # the float32 buffer's value
    pen, a_new, value = _direct_pl(G, z[:2], c[:2], a0, 2.0, 4.0)        # n = 4 // pl_batch_shrink
    want = torch.autograd.grad(value, list(G.parameters()))
    torch.manual_seed(123)
    detached = torch.autograd.grad(_direct_pl(G, z[:2], c[:2], a0, 2.0, 4.0, True)[2], list(G.parameters()))
    G.requires_grad_(False)
    _assert_grads(got, want)
    assert not all(torch.allclose(a, b, rtol=1e-7, atol=0) for a, b in zip(want, detached))  # the check can fail
    assert loss.pl_mean.dtype == torch.float32
    torch.testing.assert_close(loss.pl_mean, a_new.float())
    torch.testing.assert_close(loss.state_dict()["pl_mean"], a_new.float())
    assert reports["Loss/pl_penalty"][0].shape == (2,)
    torch.testing.assert_close(reports["Loss/pl_penalty"][0], pen.detach())
    torch.testing.assert_close(reports["Loss/G/reg"][0], 2.0 * pen.detach())
    assert list(reports) == ["Loss/pl_penalty", "Loss/G/reg"]


def test_pl_mean_state_roundtrip_and_errors():
    loss = _tiny_loss()
    assert float(loss.pl_mean) == 0.0
    loss.load_state_dict({"pl_mean": torch.tensor([1.25])})
    assert loss.state_dict() == {"pl_mean": torch.tensor(1.25)}
    with pytest.raises(ValueError, match="pl_mean"):
        loss.load_state_dict({"pl_mean": torch.zeros(2)})
    with pytest.raises(ValueError, match="pl_mean"):
        loss.load_state_dict({"pl_mean": 1.0, "other": 2})


def _sg2(c_dim=3, res=8, channels=3, seed=0):
    torch.manual_seed(seed)
    G = Generator(z_dim=8, w_dim=8, c_dim=c_dim, img_resolution=res, img_channels=channels, channel_base=64,
                  channel_max=16, mapping_kwargs={"num_layers": 2}, fused_modconv_default="inference_only")
    D = Discriminator(c_dim=c_dim, img_resolution=res, img_channels=channels, channel_base=64, channel_max=16,
                      epilogue_kwargs={"mbstd_group_size": 2})
    return G, D


def test_pl_no_weight_grad_is_exact_on_stylegan2():
    G, D = _sg2()
    batch = _batch(2, channels=3, z_dim=8, dtype=torch.float32)
    grads = [_run(StyleGAN2Loss("cpu", G, D, pl_weight=2.0, pl_no_weight_grad=flag), "Greg", batch, gain=4.0)
             for flag in (False, True)]
    assert any(torch.count_nonzero(g) > 0 for g in grads[0])
    _assert_grads(grads[1], grads[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_style_mixing_replaces_tail_of_ws(seed):
    G, D = _sg2()
    seen = []
    G.synthesis.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=1.0)
    batch = _batch(3, channels=3, z_dim=8, dtype=torch.float32)
    _, _, z, c = batch
    _run(loss, "Gmain", batch, seed=seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        ws = G.mapping(z, c)
        cutoff = int(torch.randint(1, G.num_ws, []))
        torch.rand([])
        w2 = G.mapping(torch.randn_like(z), c)
    assert 1 <= cutoff < G.num_ws
    torch.testing.assert_close(seen[0], torch.cat([ws[:, :cutoff], w2[:, cutoff:]], dim=1), rtol=0, atol=0)


def test_style_mixing_draws_are_consumed_without_mixing():
    G, D = _sg2()
    seen = []
    G.synthesis.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    batch = _batch(3, channels=3, z_dim=8, dtype=torch.float32)
    _, _, z, c = batch
    for prob in (1e-12, 0.0):  # u >= prob: no mixing, but the draws happen; prob 0: no draws at all
        seen.clear()
        torch.manual_seed(9)
        loss = StyleGAN2Loss("cpu", G, D, style_mixing_prob=prob)
        G.requires_grad_(True)
        loss._generate(z, c, update_emas=False)
        after = torch.randn(3)
        torch.manual_seed(9)
        with torch.no_grad():
            ws = G.mapping(z, c)
            if prob > 0:
                torch.randint(1, G.num_ws, [])
                torch.rand([])
                torch.randn_like(z)
        torch.testing.assert_close(seen[0], ws, rtol=0, atol=0)
        G.synthesis(ws)  # the same noise draws as inside the loss
        torch.testing.assert_close(after, torch.randn(3), rtol=0, atol=0)


@pytest.mark.parametrize("every_pass", [False, True])
def test_update_emas_passes(every_pass):
    """SG3 rule (default): only the Dmain fake pass updates G's running averages. stylegan2-ada rule
    (``ema_every_pass``): Gmain, Greg and the Dmain fake pass do. Never the style-mixing second mapping
    pass, never Dreg (no G forward)."""
    loss = _tiny_loss(style_mixing_prob=1.0, pl_weight=1.0, r1_gamma=1.0, ema_every_pass=every_pass)
    mapping, synthesis = loss.G.mapping, loss.G.synthesis
    g = every_pass
    expected = {"Gmain": ([g, False], [g]), "Greg": ([g, False], [g]),
                "Dmain": ([True, False], [True]), "Dreg": ([], [])}
    for phase, (m_calls, s_calls) in expected.items():
        mapping.calls.clear()
        synthesis.calls.clear()
        before = mapping.w_avg.clone()
        _run(loss, phase, _batch())
        assert (mapping.calls, synthesis.calls) == (m_calls, s_calls), phase
        moved = phase == "Dmain" or (every_pass and phase != "Dreg")
        assert torch.equal(mapping.w_avg, before) != moved, phase


def test_ema_every_pass_must_be_a_bool():
    with pytest.raises(TypeError, match="ema_every_pass must be a bool"):
        _tiny_loss(ema_every_pass=1)


def test_w_avg_moves_only_in_dmain_on_stylegan2():
    G, D = _sg2()
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=1.0, pl_weight=2.0, style_mixing_prob=0.9)
    batch = _batch(4, channels=3, z_dim=8, dtype=torch.float32)
    for phase in ("Gmain", "Greg", "Dreg"):
        before = G.mapping.w_avg.clone()
        _run(loss, phase, batch)
        assert torch.equal(G.mapping.w_avg, before), phase
    before = G.mapping.w_avg.clone()
    _run(loss, "Dmain", batch)
    with torch.no_grad():
        w_mean = G.mapping(batch[2], batch[3])[:, 0].mean(0)
    torch.testing.assert_close(G.mapping.w_avg, before.lerp(w_mean, 1 - G.mapping.w_avg_beta), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------ D phases
def test_dmain_matches_direct_logistic_loss(reports):
    loss = _tiny_loss(blur_init_sigma=1.0, blur_fade_kimg=1)
    batch = _batch(5)
    real, real_c, z, c = batch
    got = _run(loss, "Dmain", batch, gain=2.0, cur_nimg=0)
    G, D = loss.G, loss.D
    D.requires_grad_(True)
    crit = _critic(D, FixedAug(), 1.0)
    torch.manual_seed(123)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z, c))
    l_f, l_r = crit(fake, c), crit(real, real_c)
    _assert_grads(got, _grads((F.softplus(l_f).mean() + F.softplus(-l_r).mean()) * 2.0, D))
    assert all(p.grad is None for p in G.parameters())
    torch.testing.assert_close(reports["Loss/scores/real"][0], l_r.detach())
    torch.testing.assert_close(reports["Loss/signs/real"][0], l_r.detach().sign())
    torch.testing.assert_close(reports["Loss/D/loss"][0], (F.softplus(l_f) + F.softplus(-l_r)).detach())
    assert list(reports) == ["Loss/scores/fake", "Loss/signs/fake", "Loss/scores/real", "Loss/signs/real",
                             "Loss/D/loss"]


def test_blur_then_augment_with_zero_padding():
    aug = FixedAug()
    loss = _tiny_loss(augment_pipe=aug, blur_init_sigma=2.0, blur_fade_kimg=10)
    batch = _batch(6)
    _run(loss, "Dmain", batch, cur_nimg=5000)                           # sigma = 1.0
    assert len(aug.inputs) == 2                                          # fakes, then reals
    torch.testing.assert_close(aug.inputs[1], direct_blur(batch[0], 1.0), rtol=1e-6, atol=1e-7)
    border = direct_blur(torch.ones(1, 1, 8, 8, dtype=F64), 1.0)         # zero padding darkens borders
    assert border[0, 0, 0, 0] < 0.8 and border[0, 0, 4, 4] == pytest.approx(1.0, abs=1e-6)
    aug.inputs.clear()
    _run(loss, "Dmain", batch, cur_nimg=10000)                          # faded out: no blur
    torch.testing.assert_close(aug.inputs[1], batch[0], rtol=0, atol=0)


@pytest.mark.parametrize("sigma", [0.2, 1 / 3 - 1e-9, 1 / 3, 0.9, 2.5, 10.0])
def test_blur_kernel_taps(sigma):
    f = blur_kernel(sigma)
    r = math.floor(3 * sigma)
    if r <= 0:
        assert f is None
        return
    assert f.dtype == torch.float32 and f.shape == (2 * r + 1,)
    k = torch.arange(-r, r + 1, dtype=F64)
    want = 2.0 ** (-(k / sigma) ** 2)
    torch.testing.assert_close(f.double(), want / want.sum(), rtol=1e-6, atol=1e-9)
    if sigma == 10.0:
        assert f.numel() == 61


def test_blur_schedule():
    assert blur_sigma(0, 10, 200) == 10
    assert blur_sigma(100_000, 10, 200) == pytest.approx(5.0)
    assert blur_sigma(200_000, 10, 200) == 0 and blur_sigma(900_000, 10, 200) == 0
    assert blur_sigma(0, 10, 0) == 0


def test_r1_penalty_float64_and_no_weight_gradients_exact(reports):
    loss = _tiny_loss(r1_gamma=3.0, blur_init_sigma=1.0, blur_fade_kimg=1)
    batch = _batch(7)
    real, real_c, _, _ = batch
    got = _run(loss, "Dreg", batch, gain=16.0)
    D = loss.D
    D.requires_grad_(True)
    x = real.clone().requires_grad_(True)
    logits = _critic(D, FixedAug(), 1.0)(x, real_c)
    (gx,) = torch.autograd.grad(logits.sum(), x, create_graph=True)   # plain autograd: weight grads included
    r1 = gx.square().sum(dim=[1, 2, 3])
    want = torch.autograd.grad((1.5 * r1).mean() * 16.0, list(D.parameters()))
    D.requires_grad_(False)
    _assert_grads(got, want)
    torch.testing.assert_close(reports["Loss/r1_penalty"][0], r1.detach())
    torch.testing.assert_close(reports["Loss/D/reg"][0], 1.5 * r1.detach())
    torch.testing.assert_close(reports["Loss/signs/real"][0], logits.detach().sign())
    assert "Loss/D/loss" not in reports and "Loss/scores/fake" not in reports


def test_r1_on_stylegan2_matches_plain_autograd():
    G, D = _sg2()
    loss = StyleGAN2Loss("cpu", G, D, r1_gamma=2.0)
    batch = _batch(8, channels=3, z_dim=8, dtype=torch.float32)
    got = _run(loss, "Dreg", batch, gain=16.0)
    D.requires_grad_(True)
    x = batch[0].clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(D(x, batch[1]).sum(), x, create_graph=True)
    want = torch.autograd.grad(gx.square().sum(dim=[1, 2, 3]).mean() * 16.0, list(D.parameters()),
                               allow_unused=True)
    D.requires_grad_(False)
    _assert_grads(got, want, rtol=1e-4, atol=1e-6)


def test_dboth_sums_logistic_and_r1_on_the_same_logits(reports):
    loss = _tiny_loss(r1_gamma=0.5)
    batch = _batch(9)
    real, real_c, z, c = batch
    evaluations = _record_logits(loss.D)
    got = _run(loss, "Dboth", batch, gain=1.0)
    assert len(evaluations) == 2                                        # one fake and one real forward
    G, D = loss.G, loss.D
    crit = _critic(D, FixedAug(), 0.0)
    D.requires_grad_(True)
    torch.manual_seed(123)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z, c))
    l_f = crit(fake, c)
    x = real.clone().requires_grad_(True)
    l_r = crit(x, real_c)
    (gx,) = torch.autograd.grad(l_r.sum(), x, create_graph=True)
    r1 = gx.square().sum(dim=[1, 2, 3])
    total = F.softplus(l_f).mean() + (F.softplus(-l_r) + 0.25 * r1).mean()
    want = torch.autograd.grad(total, list(D.parameters()))
    D.requires_grad_(False)
    _assert_grads(got, want)
    torch.testing.assert_close(reports["Loss/D/reg"][0], 0.25 * r1.detach())


def test_r2_penalty_on_fakes(reports):
    loss = _tiny_loss(r1_gamma=0.0, r2_gamma=4.0)
    batch = _batch(10)
    _, _, z, c = batch
    got = _run(loss, "Dreg", batch, gain=16.0)
    G, D = loss.G, loss.D
    D.requires_grad_(True)
    torch.manual_seed(123)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z, c))
    x = fake.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(_critic(D, FixedAug(), 0.0)(x, c).sum(), x, create_graph=True)
    r2 = gx.square().sum(dim=[1, 2, 3])
    want = torch.autograd.grad((2.0 * r2).mean() * 16.0, list(D.parameters()))
    D.requires_grad_(False)
    _assert_grads(got, want)
    torch.testing.assert_close(reports["Loss/r2_penalty"][0], r2.detach())
    torch.testing.assert_close(reports["Loss/D/reg"][0], 2.0 * r2.detach())
    assert "Loss/r1_penalty" not in reports and "Loss/signs/real" not in reports


# ----------------------------------------------------------------------------------------- loss zoo
LOGITS_R = torch.tensor([-2.5, -0.3, 0.0, 0.7, 3.1], dtype=F64)
LOGITS_F = torch.tensor([1.2, -1.7, 0.4, -0.05, 2.2], dtype=F64)


def _paper(loss, l_r, l_f, s=0.0):
    """(D objective, G objective) per sample, written from the papers with D(x) = sigmoid(logit)."""
    d_r, d_f = torch.sigmoid(l_r), torch.sigmoid(l_f)
    logistic_d = -((1 - s) * torch.log(d_r) + s * torch.log(1 - d_r)) - torch.log(1 - d_f)
    return {
        "nonsaturating": (logistic_d, -torch.log(d_f)),                       # Goodfellow 2014, -log D trick
        "minimax": (logistic_d, torch.log(1 - d_f)),                          # min_G log(1 - D(G(z)))
        "wgan": (l_f - l_r, -l_f),                                            # Arjovsky 2017
        "wgan-gp": (l_f - l_r, -l_f),                                         # + lambda GP (tested apart)
        "lsgan": (0.5 * (l_r - 1) ** 2 + 0.5 * (l_f - 0) ** 2, 0.5 * (l_f - 1) ** 2),   # Mao: a=0, b=1, c=1
        "hinge": (torch.clamp(1 - l_r, min=0) + torch.clamp(1 + l_f, min=0), -l_f),
        "dragan": (logistic_d, -torch.log(d_f)),
        "relativistic": (-torch.log(torch.sigmoid(l_r - l_f)), -torch.log(torch.sigmoid(l_f - l_r))),
    }[loss]


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zoo_objectives_match_paper_formulas(name):
    d_want, g_want = _paper(name, LOGITS_R, LOGITS_F)
    torch.testing.assert_close(discriminator_loss(name, LOGITS_R, LOGITS_F), d_want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(generator_loss(name, LOGITS_F, LOGITS_R), g_want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["nonsaturating", "minimax", "dragan"])
def test_one_sided_label_smoothing(name):
    d_want, _ = _paper(name, LOGITS_R, LOGITS_F, s=0.1)
    torch.testing.assert_close(discriminator_loss(name, LOGITS_R, LOGITS_F, label_smoothing=0.1), d_want,
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zoo_phases_use_the_objective_on_the_d_outputs(name, reports):
    smoothing = 0.1 if LOSSES[name].logistic else 0.0
    loss = _tiny_loss(loss=name, label_smoothing=smoothing, gp_weight=10.0)
    logits = _record_logits(loss.D)
    _run(loss, "Dmain", _batch(11))
    l_f, l_r = logits[0], logits[1]
    d_want, _ = _paper(name, l_r, l_f, s=smoothing)
    if LOSSES[name].penalty is not None:
        assert len(logits) == 3                                              # the GP's own D evaluation
        gp = reports["Loss/gp_penalty"][0]
        assert gp.shape == (N,) and bool((gp >= 0).all())
        d_want = d_want + 10.0 * gp
    else:
        assert len(logits) == 2 and "Loss/gp_penalty" not in reports
    torch.testing.assert_close(reports["Loss/D/loss"][0], d_want, rtol=1e-10, atol=1e-12)
    logits.clear()
    _run(loss, "Gmain", _batch(12))
    g_want = _paper(name, logits[1] if name == "relativistic" else LOGITS_R[:N], logits[0])[1]
    torch.testing.assert_close(reports["Loss/G/loss"][0], g_want, rtol=1e-10, atol=1e-12)
    assert len(reports["Loss/signs/real"]) == 1                             # G phases report no real signs


def test_relativistic_dmain_gradient_couples_pairs():
    loss = _tiny_loss(loss="relativistic")
    batch = _batch(13)
    real, real_c, z, c = batch
    got = _run(loss, "Dmain", batch, gain=2.0)
    G, D = loss.G, loss.D
    crit = _critic(D, FixedAug(), 0.0)
    torch.manual_seed(123)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z, c))
    D.requires_grad_(True)
    value = F.softplus(crit(fake, c) - crit(real, real_c)).mean() * 2.0
    _assert_grads(got, _grads(value, D))


def test_wgan_gp_gradient_matches_direct_penalty():
    loss = _tiny_loss(loss="wgan-gp", gp_weight=10.0)
    batch = _batch(14)
    real, real_c, z, c = batch
    got = _run(loss, "Dmain", batch)
    G, D = loss.G, loss.D
    crit = _critic(D, FixedAug(), 0.0)
    D.requires_grad_(True)
    torch.manual_seed(123)
    with torch.no_grad():
        fake = G.synthesis(G.mapping(z, c))
    main = crit(fake, c).mean() - crit(real, real_c).mean()
    eps = torch.rand(N, 1, 1, 1, dtype=F64)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (gx,) = torch.autograd.grad(crit(x_hat, real_c).sum(), x_hat, create_graph=True)
    gp = (gx.square().sum(dim=[1, 2, 3]).add(1e-12).sqrt() - 1).square()
    want = torch.autograd.grad(main + 10.0 * gp.mean(), list(D.parameters()))
    D.requires_grad_(False)
    _assert_grads(got, want)


def test_wgan_weight_clipping():
    loss = _tiny_loss(loss="wgan", clip=0.05)
    with torch.no_grad():
        for p in loss.D.parameters():
            p.copy_(torch.linspace(-1, 1, p.numel(), dtype=F64).reshape(p.shape))
    before = [p.clone() for p in loss.D.parameters()]
    loss.clip_weights()
    for p, b in zip(loss.D.parameters(), before):
        torch.testing.assert_close(p, b.clamp(-0.05, 0.05), rtol=0, atol=0)
    other = TinyD()
    other_before = [p.clone() for p in other.parameters()]
    _tiny_loss(loss="hinge").clip_weights(other)                           # not wgan: no-op
    assert all(torch.equal(p, b) for p, b in zip(other.parameters(), other_before))
    loss.clip_weights(other)
    assert all(float(p.detach().abs().max()) <= 0.05 for p in other.parameters())


# ------------------------------------------------------------------------------------ degeneration
def test_zero_weight_reg_phases_are_noops(reports):
    loss = _tiny_loss(r1_gamma=0.0, pl_weight=0.0)
    batch = _batch(15)
    torch.manual_seed(0)
    fresh = torch.randn(2)
    for phase in ("Greg", "Dreg"):
        grads = _run(loss, phase, batch, seed=0)
        assert all(g is None for g in grads)
        assert torch.equal(torch.randn(2), fresh)                          # no RNG consumed
    assert reports == {} and float(loss.pl_mean) == 0.0
    for both, main in (("Gboth", "Gmain"), ("Dboth", "Dmain")):
        reports.clear()
        _assert_grads(_run(loss, both, batch), _run(loss, main, batch), rtol=0, atol=0)
        assert not any(k in reports for k in ("Loss/pl_penalty", "Loss/G/reg", "Loss/r1_penalty", "Loss/D/reg"))


def test_zero_gp_weight_skips_the_penalty(reports):
    loss = _tiny_loss(loss="wgan-gp", gp_weight=0.0)
    logits = _record_logits(loss.D)
    _run(loss, "Dmain", _batch(16))
    assert len(logits) == 2 and "Loss/gp_penalty" not in reports


def test_gboth_is_gmain_then_greg():
    batch = _batch(17)
    loss = _tiny_loss(pl_weight=1.5)
    both = _run(loss, "Gboth", batch, gain=2.0)
    pl_after_both = loss.pl_mean.clone()
    loss.load_state_dict({"pl_mean": torch.tensor(0.0)})
    main = _run(loss, "Gmain", batch, gain=2.0)
    G = loss.G
    # Greg's draws follow Gmain's in the RNG stream: replay Gmain's draws, then run the PL pass.
    for p in G.parameters():
        p.grad = None
    G.requires_grad_(True)
    torch.manual_seed(123)
    G.synthesis(G.mapping(batch[2], batch[3]))
    loss.accumulate_gradients("Greg", *batch, gain=2.0, cur_nimg=0)
    reg = [p.grad for p in G.parameters()]
    G.requires_grad_(False)
    _assert_grads(both, [a + b for a, b in zip(main, reg)])
    assert torch.equal(loss.pl_mean, pl_after_both)


# ------------------------------------------------------------------------- all objectives on StyleGAN2
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_phase_runs_on_stylegan2(name):
    G, D = _sg2(seed=1)
    loss = StyleGAN2Loss("cpu", G, D, loss=name, r1_gamma=1.0, r2_gamma=0.5, pl_weight=2.0, style_mixing_prob=0.9,
                         blur_init_sigma=1.0, blur_fade_kimg=1, pl_no_weight_grad=True)
    batch = _batch(18, channels=3, z_dim=8, dtype=torch.float32)
    collector = stats.Collector(regex="Loss/.*")
    for phase in PHASES:
        own, other = (G, D) if phase.startswith("G") else (D, G)
        grads = _run(loss, phase, batch, gain=4.0, cur_nimg=100)
        assert all(p.grad is None for p in other.parameters()), phase
        assert any(g is not None and torch.count_nonzero(g) > 0 for g in grads), phase
        assert all(g is None or bool(torch.isfinite(g).all()) for g in grads), phase
    collector.update()
    d = collector.as_dict()
    assert d["Loss/G/loss"]["num"] == 2 * N and d["Loss/pl_penalty"]["num"] == 2 * (N // 2)
    assert d["Loss/signs/real"]["num"] == 3 * N and d["Loss/D/loss"]["num"] == 2 * N
    assert d["Loss/r1_penalty"]["num"] == 2 * N and d["Loss/r2_penalty"]["num"] == 2 * N
    assert all(math.isfinite(v["mean"]) for v in d.values())


# ------------------------------------------------------------------------------------------- errors
def test_bad_arguments():
    G, D = TinyG(), TinyD()
    with pytest.raises(ValueError, match="loss must be one of"):
        StyleGAN2Loss("cpu", G, D, loss="vanilla")
    with pytest.raises(ValueError, match="label_smoothing"):
        StyleGAN2Loss("cpu", G, D, loss="hinge", label_smoothing=0.1)
    with pytest.raises(ValueError, match="r1_gamma"):
        StyleGAN2Loss("cpu", G, D, r1_gamma=-1)
    with pytest.raises(ValueError, match="style_mixing_prob"):
        StyleGAN2Loss("cpu", G, D, style_mixing_prob=1.5)
    with pytest.raises(ValueError, match="pl_batch_shrink"):
        StyleGAN2Loss("cpu", G, D, pl_batch_shrink=0)
    loss = StyleGAN2Loss("cpu", G, D)
    real, real_c, z, c = _batch()
    with pytest.raises(ValueError, match="phase"):
        loss.accumulate_gradients("Gfoo", real, real_c, z, c, 1, 0)
    with pytest.raises(ValueError, match="same batch size"):
        loss.accumulate_gradients("Dmain", real, real_c, z[:2], c[:2], 1, 0)
    with pytest.raises(ValueError, match="real_img"):
        loss.accumulate_gradients("Dmain", real[0], real_c, z, c, 1, 0)
    with pytest.raises(ValueError, match="cur_nimg"):
        loss.accumulate_gradients("Dmain", real, real_c, z, c, 1, -5)
    with pytest.raises(TypeError, match="gain"):
        loss.accumulate_gradients("Dmain", real, real_c, z, c, "1", 0)
    with pytest.raises(ValueError, match="real_logits"):
        generator_loss("relativistic", LOGITS_F)
