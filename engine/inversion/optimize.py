"""Optimization inversion: fit a latent code to an image by gradient descent, in W or W+.

``optimize_latent(G, target)`` runs Adam on the latent (initialised from ``G.mapping.w_avg`` or a
given latent, e.g. an encoder's answer) to minimise ``l2_weight * MSE + lpips_weight * LPIPS``
between ``G.synthesis(latent, transform)`` and the target. It is the classic baseline and a source of
pivots for PTI. StyleGAN3 has no per-pixel noise inputs, so the fit is noise-free, and unlike
StyleGAN2's projector no noise is injected into the latent either: the result is deterministic.

- ``space='w+'``: one free row per synthesis layer, latent [N,num_ws,w_dim].
- ``space='w'``: one w per image shared by all rows (optimised as [N,1,w_dim], returned repeated).

The generator is never modified: gradients are taken with respect to the latent only.

:class:`OptimizationInverter` wraps ``optimize_latent`` (W+, pixel L2 only) in the call every
inverter offers (:class:`engine.inversion.protocol.InverterProtocol`), for model bundles that ship no
encoder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from engine.generator_config import GeneratorSizes, mapping_w_avg
from engine.inversion.common import (
    CancelFn,
    ProgressFn,
    batch_transform,
    check_cancel,
    identity_transform,
    render_latents,
    resize_images,
)
from engine.inversion.protocol import InversionResult

if TYPE_CHECKING:
    from engine.losses import PerceptualLoss
    from engine.networks.stylegan3 import Generator

__all__ = ["OptimizationInverter", "OptimizationResult", "optimize_latent"]


@dataclass
class OptimizationResult:
    """latent: [N,num_ws,w_dim] float32 (detached). losses: batch-mean total loss at every step, before
    that step's update. image: render of ``latent`` with the transform used [N,3,R,R]. steps: updates made.
    """

    latent: torch.Tensor
    losses: list[float] = field(default_factory=list)
    image: torch.Tensor | None = None
    steps: int = 0


def _initial_latent(generator: Generator, init: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    num_ws, w_dim = int(generator.num_ws), int(generator.w_dim)
    if init is None:
        init = mapping_w_avg(generator)
    init = init.detach().to(device, torch.float32)
    if init.ndim == 1:
        init = init.view(1, 1, w_dim)
    elif init.ndim == 2:
        init = init.unsqueeze(0)
    if init.ndim != 3 or init.shape[-1] != w_dim or init.shape[1] not in (1, num_ws) or init.shape[0] not in (1, n):
        raise ValueError(
            f"init must be [{w_dim}], [{num_ws},{w_dim}] or [{n},{num_ws},{w_dim}], got {list(init.shape)}"
        )
    return init.expand(n, num_ws, w_dim).clone()


def optimize_latent(
    generator: Generator,
    target: torch.Tensor,
    *,
    space: str = "w+",
    init: torch.Tensor | None = None,
    steps: int = 300,
    lr: float = 0.01,
    transform: torch.Tensor | None = None,
    l2_weight: float = 1.0,
    lpips_weight: float = 1.0,
    perceptual: PerceptualLoss | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> OptimizationResult:
    """Fit latents to target images.

    Args:
        generator: an ``engine.Generator`` (left untouched; it may live on any device).
        target: [N,3,H,W] in [-1,1]; resized to the generator's resolution.
        space: ``'w+'`` or ``'w'``.
        init: starting latent ([w_dim], [num_ws,w_dim] or [N,num_ws,w_dim]); default ``mapping.w_avg``.
            In W space the rows of ``init`` are averaged.
        steps, lr: Adam iterations and learning rate.
        transform: input transform ([3,3] or [N,3,3], stored inverse convention) under which the
            target is seen; None is the identity (aligned targets).
        l2_weight, lpips_weight: loss weights.
        perceptual: an ``engine.losses.PerceptualLoss`` to reuse; by default one (AlexNet, 256 px) is
            built, which falls back to L2 with a warning when LPIPS weights are missing.
        progress: ``progress(done, steps)`` after every step.
        cancel: polled before every step; True raises :class:`engine.inversion.Cancelled`.
    """
    from engine.losses import PerceptualLoss, reconstruction_loss

    if space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {space!r}")
    if target.ndim != 4 or target.shape[1] != 3:
        raise ValueError(f"expected target [N,3,H,W], got {list(target.shape)}")
    device = mapping_w_avg(generator).device
    n = target.shape[0]
    target = resize_images(target.detach().to(device, torch.float32), int(generator.img_resolution))
    transform = identity_transform(device=device) if transform is None else transform.to(device, torch.float32)
    if perceptual is None and lpips_weight:
        perceptual = PerceptualLoss("alex", device=device, resize=256)

    start = _initial_latent(generator, init, n, device)
    if space == "w":
        start = start.mean(dim=1, keepdim=True)
    latent = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=lr, betas=(0.9, 0.999))
    num_ws = int(generator.num_ws)

    def full(lat: torch.Tensor) -> torch.Tensor:
        return lat.expand(-1, num_ws, -1) if space == "w" else lat

    losses: list[float] = []
    for step in range(steps):
        check_cancel(cancel, "latent optimization", step, steps)
        with torch.enable_grad():
            img = generator.synthesis(full(latent), transform=transform)
            loss = reconstruction_loss(img, target, perceptual, l2_weight=l2_weight, lpips_weight=lpips_weight)
            # Gradient for the latent only: the generator's parameters get no .grad, whatever their flags.
            (grad,) = torch.autograd.grad(loss, [latent])
        latent.grad = grad
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps)

    final = full(latent.detach()).contiguous().clone()
    with torch.no_grad():
        image = generator.synthesis(final, transform=transform)
    return OptimizationResult(latent=final, losses=losses, image=image, steps=steps)


class OptimizationInverter(GeneratorSizes):
    """Inversion by latent optimisation (:func:`optimize_latent` in W+, pixel L2 only), for bundles that
    ship no encoder. Same call and result layout as the encoder :class:`engine.inversion.Inverter`;
    ``latents`` and ``images`` hold one entry, the final latent and its aligned render.
    ``resolution``, ``w_dim`` and ``num_ws`` are the generator's.
    """

    kind = "optimization"

    def __init__(self, generator: Generator, lr: float = 0.05):
        self.generator = generator
        self.lr = lr

    def invert(
        self,
        images: torch.Tensor,
        n_iters: int = 30,
        transform: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        *,
        init: torch.Tensor | None = None,
    ) -> InversionResult:
        """images: float32 [N,3,H,W] in [-1,1], aligned. n_iters: optimisation steps. ``transform``
        ([3,3] or [N,3,3], stored convention) renders the result unaligned, as the encoder inverter does.
        init: starting latents [N,num_ws,w_dim] (a warm start, e.g. the previous video frame's); default
        the average latent. Raises :class:`engine.inversion.Cancelled` when cancel() returns True."""
        transform = batch_transform(transform, images.shape[0], mapping_w_avg(self.generator).device)
        res = optimize_latent(
            self.generator,
            images,
            init=init,
            steps=int(n_iters),
            lr=self.lr,
            lpips_weight=0.0,
            progress=progress,
            cancel=cancel,
        )
        unaligned = None
        if transform is not None:
            with torch.no_grad():
                unaligned = render_latents(self.generator, res.latent, transform)
        return InversionResult(
            latents=[res.latent],
            images=[res.image] if res.image is not None else [],
            unaligned=unaligned,
            transform=transform,
        )
