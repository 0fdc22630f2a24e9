"""Discriminator of the demo generator's adversarial phase (sharpening after the regression phase).

Regression to the renderer (factory.training.generator) gives a latent space that carries the factors
almost linearly, but a small StyleGAN3 learns fine detail (glasses rims, teeth, brows) slowly that way
and its samples stay soft. A short phase that adds a non-saturating GAN loss (with lazy R1 on reals)
to the regression loss sharpens them while the regression keeps every latent on its own face
(pix2pix-style: paired targets plus an adversarial term).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DemoDiscriminator", "discriminator_loss", "generator_adv_loss"]


class DemoDiscriminator(nn.Module):
    """Plain CNN critic: images [N,3,S,S] in [-1,1] (S a power of two >= 8) -> logits [N]."""

    def __init__(self, size: int, width: int = 32, max_channels: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, res, i = 3, size, 0
        while res > 4:
            ch = min(width * 2**i, max_channels)
            layers += [nn.Conv2d(ch_in, ch, 3, 1, 1), nn.LeakyReLU(0.2), nn.Conv2d(ch, ch, 4, 2, 1), nn.LeakyReLU(0.2)]
            ch_in, res, i = ch, res // 2, i + 1
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(ch_in * res * res, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)


def discriminator_loss(
    D: nn.Module, real: torch.Tensor, fake: torch.Tensor, r1_gamma: float, r1_every: int, step: int
) -> torch.Tensor:
    """Non-saturating D loss on real / fake [N,3,S,S]; every ``r1_every`` steps adds the R1 penalty
    ``gamma / 2 * |grad D(real)|^2``, scaled by ``r1_every`` (lazy regularisation, as in StyleGAN2)."""
    lazy = r1_gamma > 0 and step % r1_every == 0
    real = real.detach().requires_grad_(lazy)
    real_logits = D(real)
    loss = F.softplus(-real_logits).mean() + F.softplus(D(fake.detach())).mean()
    if lazy:
        (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
        loss = loss + 0.5 * r1_gamma * r1_every * grad.square().sum(dim=(1, 2, 3)).mean()
    return loss


def generator_adv_loss(D: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating G loss: softplus(-D(fake)), mean over the batch."""
    return F.softplus(-D(fake)).mean()
