"""Construct the training objects from a ``ResolvedConfig``: networks, augmentation, loss and phases."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from .config import DIFFAUG_CLASS, ResolvedConfig

__all__ = ["Phase", "build_networks", "build_augment_pipe", "build_loss", "build_phases", "DiffAugmentModule"]


def _construct(kwargs: Dict[str, Any], **common: Any) -> torch.nn.Module:
    from ..nets import network_class

    rest = {k: copy.deepcopy(v) for k, v in kwargs.items() if k != "class_name"}
    return network_class(kwargs["class_name"])(**rest, **common)


def build_networks(rc: ResolvedConfig, device: torch.device) -> Tuple[torch.nn.Module, torch.nn.Module,
                                                                       torch.nn.Module]:
    """``(G, D, G_ema)``: G and D in train mode, G_ema a copy of G in eval mode; nothing requires grad."""
    common = dict(c_dim=rc.label_dim, img_resolution=rc.resolution, img_channels=rc.num_channels)
    G = _construct(rc.G_kwargs, **common).train().requires_grad_(False).to(device)
    D = _construct(rc.D_kwargs, **common).train().requires_grad_(False).to(device)
    G_ema = copy.deepcopy(G).eval()
    return G, D, G_ema


class DiffAugmentModule(torch.nn.Module):
    """``--aug=diffaug``: DiffAugment (Zhao et al. 2020) with a fixed policy, as an augment-pipe module."""

    def __init__(self, policy: str):
        super().__init__()
        self.policy = policy

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from .augment import diff_augment

        return diff_augment(images, policy=self.policy)


def build_augment_pipe(rc: ResolvedConfig, device: torch.device) -> Optional[torch.nn.Module]:
    """The augment pipe (``p`` set to ``augment_p``), a DiffAugment module, or None."""
    if rc.augment_kwargs is None:
        return None
    kwargs = dict(rc.augment_kwargs)
    if kwargs.pop("class_name") == DIFFAUG_CLASS:
        return DiffAugmentModule(kwargs["policy"]).to(device)
    from .augment import AugmentPipe

    pipe = AugmentPipe(**kwargs).train().requires_grad_(False).to(device)
    with torch.no_grad():
        pipe.p.copy_(torch.as_tensor(rc.augment_p))
    return pipe


def build_loss(rc: ResolvedConfig, device: torch.device, G, D, augment_pipe):
    from .loss import StyleGAN2Loss

    kwargs = {k: v for k, v in rc.loss_kwargs.items() if k != "class_name"}
    return StyleGAN2Loss(device, G, D, augment_pipe=augment_pipe, **kwargs)


@dataclass
class Phase:
    """One training phase: the network it trains, its optimizer (shared by main and reg) and interval."""
    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int
    last_ms: Optional[float] = None
    events: List[Any] = field(default_factory=list)


def build_phases(rc: ResolvedConfig, G: torch.nn.Module, D: torch.nn.Module) -> List[Phase]:
    """G phases then D phases (training-spec §1.3). A regularisation interval I gives ``<X>main`` (every
    step) and ``<X>reg`` (every I steps) sharing one Adam with ``lr * c`` and ``betas ** c``, c = I/(I+1);
    no interval gives one ``<X>both`` phase with the base settings."""
    phases: List[Phase] = []
    for prefix, module, opt_kwargs, reg in (("G", G, rc.G_opt_kwargs, rc.G_reg_interval),
                                            ("D", D, rc.D_opt_kwargs, rc.D_reg_interval)):
        lr, betas, eps = opt_kwargs["lr"], tuple(opt_kwargs["betas"]), opt_kwargs["eps"]
        params = list(module.parameters())
        if reg is None:
            opt = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)
            phases.append(Phase(f"{prefix}both", module, opt, 1))
            continue
        ratio = reg / (reg + 1)
        opt = torch.optim.Adam(params, lr=lr * ratio, betas=tuple(b ** ratio for b in betas), eps=eps)
        phases += [Phase(f"{prefix}main", module, opt, 1), Phase(f"{prefix}reg", module, opt, reg)]
    return phases
