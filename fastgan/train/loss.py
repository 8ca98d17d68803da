"""The StyleGAN2/3 training loss (``StyleGAN2Loss``) and a zoo of GAN objectives.

Every discriminator evaluation sees ``D(Aug(Blur(img)), c)``: the SG3 blur (while its sigma is
positive) then the augment pipe (when there is one). ``accumulate_gradients`` runs one round of one
phase (``Gmain``, ``Greg``, ``Gboth``, ``Dmain``, ``Dreg``, ``Dboth``): it computes the batch-mean loss,
multiplies it by ``gain`` and back-propagates into the parameters of the phase's network only.

Objectives (``loss=``), with ``l_r``/``l_f`` the logits of reals/fakes and ``sp`` = softplus:

=================  ====================================  ===============================
``loss``           D minimises (per sample)              G minimises (per sample)
=================  ====================================  ===============================
nonsaturating      sp(l_f) + sp(-l_r)                    sp(-l_f)
minimax            sp(l_f) + sp(-l_r)                    -sp(l_f)  (= log(1 - D(G(z))))
wgan               l_f - l_r  (clip D after each step)   -l_f
wgan-gp            l_f - l_r + gp_weight * GP            -l_f
lsgan              ((l_r - 1)^2 + l_f^2) / 2             (l_f - 1)^2 / 2
hinge              relu(1 - l_r) + relu(1 + l_f)         -l_f
dragan             sp(l_f) + sp(-l_r) + gp_weight * GP   sp(-l_f)
relativistic       sp(l_f - l_r)  (sample i paired)      sp(l_r - l_f)
=================  ====================================  ===============================

With ``label_smoothing = s`` the logistic real term becomes ``(1-s)*sp(-l_r) + s*sp(l_r)`` (target
``1-s``). GP is :func:`fastgan.ops.penalty.wgan_gp` / :func:`~fastgan.ops.penalty.dragan` on
``D(Aug(Blur(.)), c_real)``, part of the main D phase. The lazy regularisers of ``Dreg``/``Dboth`` are
R1 on reals (``r1_gamma``) and R2 on fakes (``r2_gamma``), each ``(gamma/2) * sum((dD/dx)^2)``;
``Greg``/``Gboth`` add path-length regularisation (``pl_weight``).

Running averages inside G (``w_avg``, SG3 ``magnitude_ema``) are updated by the fake pass of the main D
phase only (the SG3 behaviour, the default) or, with ``ema_every_pass=True``, by every training G forward:
Gmain, Greg and that fake pass, never the style-mixing second mapping pass (the stylegan2-ada behaviour,
which the ADA cfgs select).
"""
from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Tuple, Union

import torch
import torch.nn.functional as F

from ..ops import filter2d, no_weight_gradients
from ..ops.penalty import dragan, r1_penalty, r2_penalty, wgan_gp
from . import stats

__all__ = ["StyleGAN2Loss", "LOSSES", "PHASES", "discriminator_loss", "generator_loss", "blur_sigma",
           "blur_kernel"]

PHASES = ("Gmain", "Greg", "Gboth", "Dmain", "Dreg", "Dboth")
Tensor = torch.Tensor


def _logistic_real(l_r: Tensor, smoothing: float) -> Tensor:
    return F.softplus(-l_r).mul(1.0 - smoothing) + F.softplus(l_r).mul(smoothing)


@dataclass(frozen=True)
class _Objective:
    """Per-sample terms of one GAN objective. ``d_real is None`` marks a paired (relativistic) one."""
    g: Callable[..., Tensor]                          # (l_f) or, paired, (l_f, l_r)
    d_fake: Optional[Callable[[Tensor], Tensor]]      # separable objectives
    d_real: Optional[Callable[[Tensor, float], Tensor]]
    d_pair: Optional[Callable[[Tensor, Tensor], Tensor]] = None  # paired: (l_r, l_f)
    penalty: Optional[str] = None                     # "wgan_gp" or "dragan", in the main D phase

    @property
    def paired(self) -> bool:
        return self.d_real is None

    @property
    def logistic(self) -> bool:
        return self.d_real is _logistic_real


def _critic_real(l_r: Tensor, smoothing: float) -> Tensor:
    return -l_r


LOSSES: Dict[str, _Objective] = {
    "nonsaturating": _Objective(g=lambda l_f: F.softplus(-l_f), d_fake=F.softplus, d_real=_logistic_real),
    "minimax": _Objective(g=lambda l_f: -F.softplus(l_f), d_fake=F.softplus, d_real=_logistic_real),
    "wgan": _Objective(g=torch.neg, d_fake=lambda l_f: l_f, d_real=_critic_real),
    "wgan-gp": _Objective(g=torch.neg, d_fake=lambda l_f: l_f, d_real=_critic_real, penalty="wgan_gp"),
    "lsgan": _Objective(g=lambda l_f: (l_f - 1).square() / 2, d_fake=lambda l_f: l_f.square() / 2,
                        d_real=lambda l_r, s: (l_r - 1).square() / 2),
    "hinge": _Objective(g=torch.neg, d_fake=lambda l_f: F.relu(1 + l_f), d_real=lambda l_r, s: F.relu(1 - l_r)),
    "dragan": _Objective(g=lambda l_f: F.softplus(-l_f), d_fake=F.softplus, d_real=_logistic_real,
                         penalty="dragan"),
    "relativistic": _Objective(g=lambda l_f, l_r: F.softplus(l_r - l_f), d_fake=None, d_real=None,
                               d_pair=lambda l_r, l_f: F.softplus(l_f - l_r)),
}


def _objective(loss: str) -> _Objective:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    return LOSSES[loss]


def discriminator_loss(loss: str, real_logits: Tensor, fake_logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Per-sample D objective of ``loss`` (without gradient penalties) from logits [N], shape [N]."""
    obj = _objective(loss)
    if obj.paired:
        return obj.d_pair(real_logits, fake_logits)
    return obj.d_fake(fake_logits) + obj.d_real(real_logits, label_smoothing)


def generator_loss(loss: str, fake_logits: Tensor, real_logits: Optional[Tensor] = None) -> Tensor:
    """Per-sample G objective of ``loss`` from logits [N] (``real_logits`` only for 'relativistic'), [N]."""
    obj = _objective(loss)
    if obj.paired:
        if real_logits is None:
            raise ValueError(f"generator_loss: loss {loss!r} needs real_logits")
        return obj.g(fake_logits, real_logits)
    return obj.g(fake_logits)


def blur_sigma(cur_nimg: int, blur_init_sigma: float, blur_fade_kimg: float) -> float:
    """SG3 blur scale at ``cur_nimg``: fades linearly from ``blur_init_sigma`` to 0 over ``blur_fade_kimg``."""
    if blur_fade_kimg <= 0:
        return 0.0
    return blur_init_sigma * max(1.0 - cur_nimg / (blur_fade_kimg * 1e3), 0.0)


def blur_kernel(sigma: float, device: Union[str, torch.device] = "cpu") -> Optional[Tensor]:
    """Separable taps ``2**-((k/sigma)**2)`` for ``k`` in ``[-r, r]``, ``r = floor(3 sigma)``, summing to 1.

    float32 [2r + 1]; None when ``r <= 0`` (no blur).
    """
    radius = math.floor(3 * sigma)
    if radius <= 0:
        return None
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp2(-(offsets / sigma).square())
    return (taps / taps.sum()).to(device=device, dtype=torch.float32)


def _check_nonneg(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"StyleGAN2Loss: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _trainable(module: torch.nn.Module) -> list:
    return [p for p in module.parameters() if p.requires_grad]


def _as_logits(out: Tensor) -> Tensor:
    """D output [N] or [N, 1] -> [N]."""
    flat = out.reshape(out.shape[0], -1)
    if flat.shape[1] != 1:
        raise ValueError(f"the discriminator must return one logit per sample, got shape {list(out.shape)}")
    return flat[:, 0]


def _report_scores(kind: str, logits: Tensor) -> None:
    stats.report(f"Loss/scores/{kind}", logits)
    stats.report(f"Loss/signs/{kind}", logits.sign())


def _sum_terms(terms: list) -> Tensor:
    return functools.reduce(operator.add, terms)


class StyleGAN2Loss:
    """StyleGAN2-ADA / StyleGAN3 training loss with selectable objective and penalties.

    Args:
        device: device of the ``pl_mean`` buffer (that of the networks).
        G, D: generator (``mapping``/``synthesis``, ``num_ws``; or any ``G(z, c)`` without style mixing
            and path-length regularisation, e.g. DCGAN) and discriminator ``D(img, c) -> [N, 1]``.
        augment_pipe: differentiable ``images -> images`` module applied before D, or None.
        r1_gamma, r2_gamma: weights of the R1 (reals) and R2 (fakes) penalties, ``(gamma/2)*||dD/dx||^2``.
        style_mixing_prob: probability of mixing in a second latent from a random cutoff layer.
        pl_weight, pl_batch_shrink, pl_decay, pl_no_weight_grad: path-length regularisation on the first
            ``max(N // pl_batch_shrink, 1)`` latents of the round. ``pl_no_weight_grad`` is exact only
            when G's modulated convolutions run non-fused in training mode (e.g. StyleGAN2 with
            ``fused_modconv_default='inference_only'``); with per-sample fused weights it drops gradient paths.
        blur_init_sigma, blur_fade_kimg: SG3 blur of D's inputs, fading out over ``blur_fade_kimg``.
        loss: the objective, a key of :data:`LOSSES`.
        label_smoothing: one-sided smoothing of the logistic real target (``1 - label_smoothing``).
        gp_weight: weight of the WGAN-GP / DRAGAN penalty.
        clip: bound of D's parameters after each D step for ``loss='wgan'`` (:meth:`clip_weights`).
        ema_every_pass: update G's running averages in every training G forward (stylegan2-ada), not
            only in the Dmain fake pass (SG3; see the module docstring).

    State: ``pl_mean`` (float32 scalar), saved by :meth:`state_dict`.

    Statistics (``fastgan.train.stats``): the keys of the spec (``Loss/scores/{fake,real}``,
    ``Loss/signs/{fake,real}``, ``Loss/G/loss``, ``Loss/G/reg``, ``Loss/pl_penalty``, ``Loss/D/loss``,
    ``Loss/D/reg``, ``Loss/r1_penalty``) plus ``Loss/r2_penalty`` and ``Loss/gp_penalty`` (unweighted).
    Real scores/signs come from the D phases only (they drive ADA); the extra real pass that the
    relativistic G loss needs reports nothing. ``Loss/D/loss`` includes the weighted GP term.
    """

    def __init__(self, device: Union[str, torch.device], G: torch.nn.Module, D: torch.nn.Module,
                 augment_pipe: Optional[torch.nn.Module] = None, r1_gamma: float = 10, style_mixing_prob: float = 0,
                 pl_weight: float = 0, pl_batch_shrink: int = 2, pl_decay: float = 0.01,
                 pl_no_weight_grad: bool = False, blur_init_sigma: float = 0, blur_fade_kimg: float = 0,
                 loss: str = "nonsaturating", r2_gamma: float = 0, label_smoothing: float = 0,
                 gp_weight: float = 10, clip: float = 0.01, ema_every_pass: bool = False) -> None:
        self.objective = _objective(loss)
        self.loss = loss
        self.device = torch.device(device)
        self.G, self.D, self.augment_pipe = G, D, augment_pipe
        self.r1_gamma = _check_nonneg("r1_gamma", r1_gamma)
        self.r2_gamma = _check_nonneg("r2_gamma", r2_gamma)
        self.pl_weight = _check_nonneg("pl_weight", pl_weight)
        self.gp_weight = _check_nonneg("gp_weight", gp_weight)
        self.blur_init_sigma = _check_nonneg("blur_init_sigma", blur_init_sigma)
        self.blur_fade_kimg = _check_nonneg("blur_fade_kimg", blur_fade_kimg)
        self.style_mixing_prob = _check_nonneg("style_mixing_prob", style_mixing_prob)
        if self.style_mixing_prob > 1:
            raise ValueError(f"StyleGAN2Loss: style_mixing_prob must be in [0, 1], got {style_mixing_prob!r}")
        self.styled = hasattr(G, "mapping") and hasattr(G, "synthesis")
        if not self.styled and (self.style_mixing_prob > 0 or pl_weight > 0):
            raise ValueError("StyleGAN2Loss: style_mixing_prob and pl_weight need a G with mapping and synthesis "
                             f"networks; {type(G).__name__} has none (set both to 0)")
        if self.style_mixing_prob > 0 and getattr(G, "num_ws", 2) < 2:
            raise ValueError(f"StyleGAN2Loss: style_mixing_prob > 0 needs G.num_ws >= 2, got {G.num_ws}")
        self.pl_decay = _check_nonneg("pl_decay", pl_decay)
        if self.pl_decay > 1:
            raise ValueError(f"StyleGAN2Loss: pl_decay must be in [0, 1], got {pl_decay!r}")
        if isinstance(pl_batch_shrink, bool) or not isinstance(pl_batch_shrink, int) or pl_batch_shrink < 1:
            raise ValueError(f"StyleGAN2Loss: pl_batch_shrink must be an int >= 1, got {pl_batch_shrink!r}")
        self.pl_batch_shrink = pl_batch_shrink
        self.pl_no_weight_grad = bool(pl_no_weight_grad)
        self.label_smoothing = _check_nonneg("label_smoothing", label_smoothing)
        if self.label_smoothing >= 1:
            raise ValueError(f"StyleGAN2Loss: label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if self.label_smoothing > 0 and not self.objective.logistic:
            raise ValueError(f"StyleGAN2Loss: label_smoothing applies to the logistic losses "
                             f"(nonsaturating, minimax, dragan), not to loss={loss!r}")
        self.clip = _check_nonneg("clip", clip)
        if self.clip == 0:
            raise ValueError("StyleGAN2Loss: clip must be > 0")
        if not isinstance(ema_every_pass, bool):
            raise TypeError(f"StyleGAN2Loss: ema_every_pass must be a bool, got {ema_every_pass!r}")
        self.ema_every_pass = ema_every_pass
        self.pl_mean = torch.zeros([], dtype=torch.float32, device=self.device)

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> Dict[str, Tensor]:
        """``{'pl_mean': scalar}``: the loss state a checkpoint must keep for an exact resume."""
        return {"pl_mean": self.pl_mean.detach().clone()}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if not isinstance(state, Mapping) or set(state) != {"pl_mean"}:
            raise ValueError(f"load_state_dict: state must be a mapping with exactly the key 'pl_mean', "
                             f"got {sorted(state) if isinstance(state, Mapping) else type(state).__name__}")
        value = torch.as_tensor(state["pl_mean"])
        if value.numel() != 1:
            raise ValueError(f"load_state_dict: state['pl_mean'] must be a scalar, got shape {list(value.shape)}")
        self.pl_mean.copy_(value.reshape([]))

    def clip_weights(self, D: Optional[torch.nn.Module] = None) -> None:
        """For ``loss='wgan'``: clamp every parameter of ``D`` (default: the loss's D) to ``[-clip, clip]``.

        Call it after each D optimizer step; a no-op for the other objectives.
        """
        if self.loss != "wgan":
            return
        with torch.no_grad():
            for p in (self.D if D is None else D).parameters():
                p.clamp_(-self.clip, self.clip)

    # ------------------------------------------------------------------------------- network passes
    def _mix_styles(self, ws: Tensor, z: Tensor, c: Tensor) -> Tensor:
        """Style mixing: both draws happen on every call; past ``cutoff`` the ws come from a fresh z."""
        num_ws = ws.shape[1]
        cutoff = torch.randint(1, num_ws, [], device=ws.device)
        mix = torch.rand([], device=ws.device) < self.style_mixing_prob
        cutoff = torch.where(mix, cutoff, torch.full_like(cutoff, num_ws))
        other = self.G.mapping(torch.randn_like(z), c, update_emas=False)
        from_first = torch.arange(num_ws, device=ws.device) < cutoff
        return torch.where(from_first[None, :, None], ws, other)

    def _generate(self, z: Tensor, c: Tensor, update_emas: bool) -> Tuple[Tensor, Optional[Tensor]]:
        """(images, ws) of G for latents ``z`` and labels ``c``, style-mixed; ws is None for a G
        without a mapping network (``G(z, c)`` directly, e.g. DCGAN)."""
        if not self.styled:
            return self.G(z, c, update_emas=update_emas), None
        ws = self.G.mapping(z, c, update_emas=update_emas)
        if self.style_mixing_prob > 0:
            ws = self._mix_styles(ws, z, c)
        return self.G.synthesis(ws, update_emas=update_emas), ws

    def _generate_constant(self, z: Tensor, c: Tensor, update_emas: bool, track: bool) -> Tensor:
        """Fakes for a D phase: no graph into G; ``track`` makes them a leaf that requires grad."""
        with torch.no_grad():
            img = self._generate(z, c, update_emas)[0]
        return img.detach().requires_grad_(track)

    def _discriminate(self, img: Tensor, c: Tensor, sigma: float) -> Tensor:
        """Logits [N] of ``D(Aug(Blur_sigma(img)), c)``."""
        taps = blur_kernel(sigma, img.device)
        if taps is not None:
            img = filter2d(img, taps)
        if self.augment_pipe is not None:
            img = self.augment_pipe(img)
        return _as_logits(self.D(img, c))

    @staticmethod
    def _backward(per_sample: Tensor, gain: float, module: torch.nn.Module) -> None:
        """Back-propagate ``mean(per_sample) * gain`` into ``module``'s trainable parameters only."""
        params = _trainable(module)
        if not params:
            raise RuntimeError("accumulate_gradients: no parameter of the phase's network requires grad "
                               "(enable requires_grad on it for the phase)")
        torch.autograd.backward(per_sample.mean().mul(gain), inputs=params)

    # ------------------------------------------------------------------------------------- phases
    def accumulate_gradients(self, phase: str, real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor,
                             gain: float, cur_nimg: int) -> None:
        """Run one accumulation round of ``phase`` and add ``gain * d(mean loss)`` to the network's grads.

        Args:
            phase: one of :data:`PHASES`.
            real_img: reals [N, C, H, W], float in [-1, 1]; real_c: their labels [N, c_dim].
            gen_z: latents [N, z_dim]; gen_c: labels for the fakes [N, c_dim].
            gain: multiplier of the batch-mean loss (the phase interval).
            cur_nimg: images seen at the start of the step (drives the blur schedule).
        """
        if phase not in PHASES:
            raise ValueError(f"accumulate_gradients: phase must be one of {list(PHASES)}, got {phase!r}")
        self._check_batch(real_img, real_c, gen_z, gen_c)
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not math.isfinite(gain):
            raise TypeError(f"accumulate_gradients: gain must be a finite number, got {gain!r}")
        if isinstance(cur_nimg, bool) or not isinstance(cur_nimg, int) or cur_nimg < 0:
            raise ValueError(f"accumulate_gradients: cur_nimg must be an int >= 0, got {cur_nimg!r}")
        sigma = blur_sigma(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg)
        main, reg = phase.endswith(("main", "both")), phase.endswith(("reg", "both"))
        if phase.startswith("G"):
            if main:
                self._g_main(real_img, real_c, gen_z, gen_c, gain, sigma)
            if reg and self.pl_weight > 0:
                self._g_path_length(gen_z, gen_c, gain)
            return
        reg = reg and (self.r1_gamma > 0 or self.r2_gamma > 0)
        if main or reg:
            self._d_phase(real_img, real_c, gen_z, gen_c, gain, sigma, main=main, reg=reg)

    @staticmethod
    def _check_batch(real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor) -> None:
        for name, t, ndim in (("real_img", real_img, 4), ("real_c", real_c, 2), ("gen_z", gen_z, 2),
                              ("gen_c", gen_c, 2)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"accumulate_gradients: {name} must be a tensor, got {type(t).__name__}")
            if t.ndim != ndim:
                raise ValueError(f"accumulate_gradients: {name} must have {ndim} dims, got shape {list(t.shape)}")
        sizes = {real_img.shape[0], real_c.shape[0], gen_z.shape[0], gen_c.shape[0]}
        if len(sizes) != 1:
            raise ValueError(f"accumulate_gradients: real_img, real_c, gen_z and gen_c must have the same batch "
                             f"size, got {real_img.shape[0]}, {real_c.shape[0]}, {gen_z.shape[0]}, {gen_c.shape[0]}")

    def _g_main(self, real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor, gain: float,
                sigma: float) -> None:
        fake_logits = self._discriminate(self._generate(gen_z, gen_c, update_emas=self.ema_every_pass)[0], gen_c,
                                         sigma)
        _report_scores("fake", fake_logits)
        if self.objective.paired:
            with torch.no_grad():
                real_logits = self._discriminate(real_img.detach(), real_c, sigma)
            per_sample = self.objective.g(fake_logits, real_logits)
        else:
            per_sample = self.objective.g(fake_logits)
        stats.report("Loss/G/loss", per_sample)
        self._backward(per_sample, gain, self.G)

    def _g_path_length(self, gen_z: Tensor, gen_c: Tensor, gain: float) -> None:
        n = max(gen_z.shape[0] // self.pl_batch_shrink, 1)
        img, ws = self._generate(gen_z[:n], gen_c[:n], update_emas=self.ema_every_pass)
        h, w = img.shape[2], img.shape[3]
        probe = torch.randn_like(img).div(math.sqrt(h * w))
        with no_weight_gradients(self.pl_no_weight_grad):
            (jac,) = torch.autograd.grad(outputs=(img * probe).sum(), inputs=ws, create_graph=True)
        lengths = jac.square().sum(dim=2).mean(dim=1).sqrt()
        running = self.pl_mean + self.pl_decay * (lengths.mean() - self.pl_mean)  # not detached on purpose
        self.pl_mean.copy_(running.detach())
        penalty = (lengths - running).square()
        stats.report("Loss/pl_penalty", penalty)
        weighted = penalty * self.pl_weight
        stats.report("Loss/G/reg", weighted)
        self._backward(weighted, gain, self.G)

    def _d_phase(self, real_img: Tensor, real_c: Tensor, gen_z: Tensor, gen_c: Tensor, gain: float,
                 sigma: float, main: bool, reg: bool) -> None:
        """Main D objective (``main``) and/or the R1/R2 regularisers (``reg``) of one round.

        Separable objectives back-propagate the fake side and the real side separately; paired ones
        keep both graphs and back-propagate once. Regularisers share the logits of the main pass.
        """
        obj = self.objective
        use_r1 = reg and self.r1_gamma > 0
        use_r2 = reg and self.r2_gamma > 0
        loss_rows, reg_rows, deferred = [], [], []

        def side(logits: Tensor, img: Tensor, term: Optional[Tensor], gamma: float, penalty_fn, key: str) -> None:
            parts = []
            if term is not None:
                loss_rows.append(term.detach())
                parts.append(term)
            if gamma > 0:
                pen = penalty_fn(logits, img)
                stats.report(key, pen)
                weighted = pen * (gamma / 2)
                reg_rows.append(weighted.detach())
                parts.append(weighted)
            if not parts:
                return
            if obj.paired:
                deferred.extend(parts)
            else:
                self._backward(_sum_terms(parts), gain, self.D)

        fake_img = fake_logits = None
        if main or use_r2:
            fake_img = self._generate_constant(gen_z, gen_c, update_emas=main or self.ema_every_pass, track=use_r2)
            fake_logits = self._discriminate(fake_img, gen_c, sigma)
            if main:
                _report_scores("fake", fake_logits)
            term = obj.d_fake(fake_logits) if main and not obj.paired else None
            side(fake_logits, fake_img, term, self.r2_gamma if use_r2 else 0.0, r2_penalty, "Loss/r2_penalty")
        if main or use_r1:
            real_in = real_img.detach().requires_grad_(use_r1)
            real_logits = self._discriminate(real_in, real_c, sigma)
            _report_scores("real", real_logits)
            term = obj.d_real(real_logits, self.label_smoothing) if main and not obj.paired else None
            side(real_logits, real_in, term, self.r1_gamma if use_r1 else 0.0, r1_penalty, "Loss/r1_penalty")
        if main and obj.paired:
            pair = obj.d_pair(real_logits, fake_logits)
            loss_rows.append(pair.detach())
            deferred.append(pair)
        if deferred:
            self._backward(_sum_terms(deferred), gain, self.D)
        if main and obj.penalty is not None and self.gp_weight > 0:
            loss_rows.append(self._gradient_penalty(real_img, real_c, fake_img, gain, sigma))
        if loss_rows:
            stats.report("Loss/D/loss", _sum_terms(loss_rows))
        if reg_rows:
            stats.report("Loss/D/reg", _sum_terms(reg_rows))

    def _gradient_penalty(self, real_img: Tensor, real_c: Tensor, fake_img: Tensor, gain: float,
                          sigma: float) -> Tensor:
        """WGAN-GP / DRAGAN term of the main D phase; returns its weighted per-sample value (detached)."""
        critic = lambda x: self._discriminate(x, real_c, sigma)  # noqa: E731
        if self.objective.penalty == "wgan_gp":
            pen = wgan_gp(critic, real_img, fake_img)
        else:
            pen = dragan(critic, real_img)
        stats.report("Loss/gp_penalty", pen)
        weighted = pen * self.gp_weight
        self._backward(weighted, gain, self.D)
        return weighted.detach()
