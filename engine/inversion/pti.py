"""Pivotal tuning (PTI): fine-tune a copy of the generator so that a fixed pivot latent renders the photo.

``tune_generator(G, target, pivot)`` deep-copies ``G`` and trains, with Adam (lr 3e-4 by default),
every parameter of ``G.synthesis`` except the Fourier input layer's (``synthesis.input.*``: its
frequencies' mixing matrix and the affine that turns w into rotation/translation stay fixed, which keeps
the transform behaviour of the generator intact). The mapping network is not trained (the pivot is
already a W+ code). The loss is ``l2_weight * MSE + lpips_weight * LPIPS(alex)`` between
``G'.synthesis(pivot, transform)`` and the target; tuning stops early once LPIPS falls below
``lpips_threshold`` (0.06, as in the reference release). The original generator is never written to.

The tuned generator can be kept whole, or stored as a :func:`weight_delta` against the original and
re-applied with :func:`apply_weight_delta` (float32 rounding: a + (b - a) may differ from b by one
ulp).

Targets are [N,3,H,W] in [-1,1]; several images with their own pivots tune one shared generator (the
video workflow's batch), one image is the usual case.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from engine.inversion.common import CancelFn, ProgressFn, check_cancel, identity_transform, resize_images

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = ["PTIResult", "apply_weight_delta", "tunable_parameter_names", "tune_generator", "weight_delta"]

FROZEN_PREFIX = "synthesis.input."


@dataclass
class PTIResult:
    """generator: the tuned copy (eval mode, requires_grad off).
    losses / l2 / lpips: per step, measured before that step's update (``lpips`` holds the perceptual
    term: LPIPS, or MSE in the L2 fallback). steps: optimizer updates made. stopped_early: the LPIPS
    threshold was reached. image: the last render [N,3,R,R] (after the final update when all steps ran).
    """

    generator: Generator
    losses: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)
    lpips: list[float] = field(default_factory=list)
    steps: int = 0
    stopped_early: bool = False
    image: torch.Tensor | None = None

    def weight_delta(self, original: nn.Module) -> dict[str, torch.Tensor]:
        """``tuned - original`` for the parameters PTI trains (see :func:`weight_delta`)."""
        return weight_delta(original, self.generator)


def tunable_parameter_names(generator: nn.Module) -> list[str]:
    """Names (``generator.named_parameters()``) of the parameters PTI trains: synthesis minus input layer."""
    return [
        name
        for name, _ in generator.named_parameters()
        if name.startswith("synthesis.") and not name.startswith(FROZEN_PREFIX)
    ]


def weight_delta(original: nn.Module, tuned: nn.Module) -> dict[str, torch.Tensor]:
    """Per-parameter difference ``tuned - original`` (float32, on the tuned generator's device) for
    every parameter PTI trains; all other parameters and buffers are equal by construction."""
    orig = dict(original.named_parameters())
    out: dict[str, torch.Tensor] = {}
    for name, p in tuned.named_parameters():
        if name in orig and name.startswith("synthesis.") and not name.startswith(FROZEN_PREFIX):
            out[name] = p.detach().to(torch.float32) - orig[name].detach().to(p.device, torch.float32)
    return out


def apply_weight_delta(generator: Generator, delta: dict[str, torch.Tensor]) -> Generator:
    """A copy of ``generator`` with ``delta`` (from :func:`weight_delta`) added; the input is untouched."""
    out = copy.deepcopy(generator)
    params = dict(out.named_parameters())
    unknown = sorted(set(delta) - set(params))
    if unknown:
        raise KeyError(f"weight delta names parameters the generator lacks, e.g. {unknown[0]!r}")
    with torch.no_grad():
        for name, d in delta.items():
            p = params[name]
            if tuple(d.shape) != tuple(p.shape):
                raise ValueError(f"delta for {name!r} is {list(d.shape)}, the parameter is {list(p.shape)}")
            p.add_(d.to(p.device, p.dtype))
    return out.eval().requires_grad_(False)


def tune_generator(
    generator: Generator,
    target: torch.Tensor,
    pivot: torch.Tensor,
    *,
    transform: torch.Tensor | None = None,
    steps: int = 350,
    lr: float = 3e-4,
    l2_weight: float = 1.0,
    lpips_weight: float = 1.0,
    lpips_threshold: float | None = 0.06,
    perceptual: nn.Module | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    checkpoint_layers: bool | None = None,
) -> PTIResult:
    """Pivotal tuning of a copy of ``generator``.

    Args:
        generator: an ``engine.Generator``; never modified (weights, flags and gradients stay as they were).
        target: [N,3,H,W] in [-1,1] (resized to the generator's resolution).
        pivot: fixed latents [N,num_ws,w_dim] (or [num_ws,w_dim] for one image), e.g. ReStyle's answer.
        transform: [3,3] or [N,3,3] input transform under which the target is seen (the crop's transform
            for unaligned targets); None is the identity (aligned targets).
        steps, lr: maximum Adam updates and learning rate (paper: 350 default, lr 3e-4).
        l2_weight, lpips_weight: loss weights (equal in the paper).
        lpips_threshold: stop once the batch-mean LPIPS is below it; None disables. Ignored in the L2
            fallback (no LPIPS weights), where an MSE value would not be comparable.
        perceptual: an ``engine.losses.PerceptualLoss`` to reuse; by default AlexNet LPIPS at 256 px.
        progress: ``progress(done, steps)`` after every update.
        cancel: polled before every update; True raises :class:`engine.inversion.Cancelled` (the
            original generator is untouched either way).
        checkpoint_layers: gradient checkpointing through the synthesis layers (same result, much less
            memory, ~1.3x the time); None turns it on from 512 px up.
    """
    from engine.losses import PerceptualLoss, mse_per_sample

    if target.ndim != 4 or target.shape[1] != 3:
        raise ValueError(f"expected target [N,3,H,W], got {list(target.shape)}")
    n = target.shape[0]
    num_ws, w_dim = int(generator.num_ws), int(generator.w_dim)
    if pivot.ndim == 2:
        pivot = pivot.unsqueeze(0)
    if pivot.ndim != 3 or pivot.shape[1:] != (num_ws, w_dim) or pivot.shape[0] not in (1, n):
        raise ValueError(f"pivot must be [{n},{num_ws},{w_dim}] or [{num_ws},{w_dim}], got {list(pivot.shape)}")

    tuned = copy.deepcopy(generator)
    tuned.eval()
    trainable = set(tunable_parameter_names(tuned))
    params = []
    for name, p in tuned.named_parameters():
        p.grad = None
        p.requires_grad_(name in trainable)
        if name in trainable:
            params.append(p)
    device = params[0].device if params else torch.device("cpu")

    target = resize_images(target.detach().to(device, torch.float32), int(generator.img_resolution))
    pivot = pivot.detach().to(device, torch.float32).expand(n, num_ws, w_dim)
    transform = identity_transform(device=device) if transform is None else transform.to(device, torch.float32)
    if perceptual is None and lpips_weight:
        perceptual = PerceptualLoss("alex", device=device, resize=256)
    # Early stopping needs a real LPIPS (not its L2 fallback).
    threshold = lpips_threshold if perceptual is not None and getattr(perceptual, "is_lpips", True) else None

    if checkpoint_layers is None:
        checkpoint_layers = int(generator.img_resolution) >= 512
    opt = torch.optim.Adam(params, lr=lr)
    result = PTIResult(generator=tuned)
    img = None
    for step in range(steps):
        check_cancel(cancel, "pivotal tuning", step, steps)
        with torch.enable_grad():
            img = tuned.synthesis(pivot, transform=transform, checkpoint_layers=checkpoint_layers)
            l2 = mse_per_sample(img, target).mean()
            if perceptual is not None and lpips_weight:
                perc = perceptual(img, target).mean()
            else:
                perc = l2.detach()
            loss = l2_weight * l2 + (lpips_weight * perc if lpips_weight else 0.0)
        result.losses.append(float(loss.detach()))
        result.l2.append(float(l2.detach()))
        result.lpips.append(float(perc.detach()))
        if threshold is not None and result.lpips[-1] < threshold:
            result.stopped_early = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        result.steps += 1
        if progress is not None:
            progress(step + 1, steps)

    tuned.eval().requires_grad_(False)
    for p in tuned.parameters():
        p.grad = None
    if not result.stopped_early:
        with torch.no_grad():
            img = tuned.synthesis(pivot, transform=transform)
    result.image = None if img is None else img.detach()
    return result
