"""Gradient penalties for GAN discriminators: R1, R2, WGAN-GP and DRAGAN.

Each returns the per-sample penalty [N] (reduce it and weight it yourself, e.g.
``(gamma / 2) * r1_penalty(logits, images).mean()``), built with ``create_graph=True`` so that
``backward()`` reaches the discriminator's parameters. The inner gradient w.r.t. the images runs
under :func:`no_weight_gradients`, which skips convolution weight gradients there; the final
parameter gradients are exact.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .conv2d_resample import no_weight_gradients

__all__ = ["r1_penalty", "r2_penalty", "wgan_gp", "dragan", "no_weight_gradients", "input_gradients"]


def input_gradients(logits: torch.Tensor, images: torch.Tensor, op: str = "input_gradients") -> torch.Tensor:
    """``d logits.sum() / d images`` with ``create_graph=True`` (weight gradients skipped inside)."""
    if not isinstance(logits, torch.Tensor) or not isinstance(images, torch.Tensor):
        raise TypeError(f"{op}: logits and images must be tensors")
    if not images.requires_grad:
        raise ValueError(f"{op}: the images must require grad and be the input the logits were computed from "
                         f"(call images.requires_grad_(True) before the discriminator)")
    if not logits.requires_grad:
        raise ValueError(f"{op}: the logits do not depend on anything that requires grad")
    if logits.shape[:1] != images.shape[:1]:
        raise ValueError(f"{op}: logits {list(logits.shape)} and images {list(images.shape)} must have the same "
                         f"batch size")
    with no_weight_gradients():
        (g,) = torch.autograd.grad(logits.sum(), images, create_graph=True, only_inputs=True)
    return g


def _sq_norm(g: torch.Tensor) -> torch.Tensor:
    return g.square().sum(dim=list(range(1, g.ndim)))


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """Zero-centred penalty on reals: ``sum((d D(x)/d x)**2)`` over all but the batch dim, shape [N]."""
    return _sq_norm(input_gradients(real_logits, real_images, "r1_penalty"))


def r2_penalty(fake_logits: torch.Tensor, fake_images: torch.Tensor) -> torch.Tensor:
    """Zero-centred penalty on fakes: like :func:`r1_penalty` with generated images, shape [N]."""
    return _sq_norm(input_gradients(fake_logits, fake_images, "r2_penalty"))


def _centred(D: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, center: float, op: str) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    g = input_gradients(D(x), x, op)
    return (_sq_norm(g).add(1e-12).sqrt() - center).square()


def _uniform(shape, like: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.rand(shape, dtype=like.dtype, device=like.device, generator=generator)


def wgan_gp(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
            center: float = 1.0, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """WGAN-GP: ``(||d D(x_hat)/d x_hat|| - center)**2`` at ``x_hat = eps*real + (1-eps)*fake``, [N].

    ``eps ~ U[0, 1)`` per sample (drawn from ``generator``); ``D`` maps images to logits (wrap
    conditioning in a lambda). The norm is the L2 norm over all but the batch dimension.
    """
    if real.shape != fake.shape:
        raise ValueError(f"wgan_gp: real {list(real.shape)} and fake {list(fake.shape)} must have the same shape")
    eps = _uniform((real.shape[0],) + (1,) * (real.ndim - 1), real, generator)
    return _centred(D, torch.lerp(fake.detach(), real.detach(), eps), center, "wgan_gp")


def dragan(D: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, center: float = 1.0, scale: float = 0.5,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DRAGAN: the WGAN-GP penalty around the reals, [N].

    ``x_p = real + scale * std(real) * U[0, 1)`` elementwise, ``x_hat = eps*real + (1-eps)*x_p`` with
    ``eps ~ U[0, 1)`` per sample, penalty ``(||d D(x_hat)/d x_hat|| - center)**2``.
    """
    real = real.detach()
    perturbed = real + scale * real.std() * _uniform(real.shape, real, generator)
    eps = _uniform((real.shape[0],) + (1,) * (real.ndim - 1), real, generator)
    return _centred(D, torch.lerp(perturbed, real, eps), center, "dragan")
