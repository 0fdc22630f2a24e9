"""Helpers shared by the inversion modules: cancellation, progress, image resizing, transforms and
renders, parameter snapshots.

Images are float tensors [N,3,H,W] in [-1,1]. Progress callbacks are called as ``progress(done, total)``
after each unit of work; cancel callbacks return True when the caller wants the work to stop, which the
loops turn into :class:`engine.jobs.Cancelled` between iterations (never in the middle of one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from engine.jobs import CancelFn, Cancelled, ProgressFn

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = [
    "Cancelled",
    "CancelFn",
    "ProgressFn",
    "batch_transform",
    "check_cancel",
    "identity_transform",
    "render_latents",
    "resize_images",
    "snapshot_state",
]


def check_cancel(cancel: CancelFn | None, what: str, done: int, total: int) -> None:
    """Raise :class:`Cancelled` when ``cancel`` is given and returns True."""
    if cancel is not None and cancel():
        raise Cancelled(what, done, total)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize images [N,C,H,W] to [N,C,size,size].

    Downscaling averages (area when the factor is an integer, which equals ReStyle's adaptive average
    pooling 1024 -> 256; antialiased bilinear otherwise); upscaling is bilinear.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [N,C,H,W], got {list(x.shape)}")
    h, w = x.shape[-2:]
    if h == size and w == size:
        return x
    if h >= size and w >= size:
        if h % size == 0 and w % size == 0:
            return F.interpolate(x, size=(size, size), mode="area")
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def identity_transform(
    n: int | None = None, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Identity input transform: [3,3], or [n,3,3] when ``n`` is given."""
    eye = torch.eye(3, device=device, dtype=dtype)
    return eye if n is None else eye.expand(n, 3, 3).contiguous()


def batch_transform(transform: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor | None:
    """``transform`` ([3,3] or [n,3,3]) as float32 on ``device``; None stays None.

    Raises ValueError for a batch of transforms that does not match the ``n`` images.
    """
    if transform is None:
        return None
    transform = transform.to(device, torch.float32)
    if transform.ndim == 3 and transform.shape[0] not in (1, n):
        raise ValueError(f"transform must be [3,3] or [{n},3,3], got {list(transform.shape)}")
    return transform


def render_latents(generator: Generator, latents: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
    """Render latents [N,num_ws,w_dim] -> [N,3,R,R] with the generator's synthesis network;
    ``transform`` ([3,3] or [N,3,3], stored convention) None means the identity."""
    if transform is None:
        transform = identity_transform(device=latents.device)
    return generator.synthesis(latents, transform=transform.to(latents.device, torch.float32))


def snapshot_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached clones of every state-dict entry (for bit-exact before/after comparisons)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
