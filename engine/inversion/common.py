"""Helpers shared by the inversion modules: cancellation, progress, image resizing, parameter snapshots.

Images are float tensors [N,3,H,W] in [-1,1]. Progress callbacks are called as ``progress(done, total)``
after each unit of work; cancel callbacks return True when the caller wants the work to stop, which the
loops turn into :class:`Cancelled` between iterations (never in the middle of one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Cancelled",
    "CancelFn",
    "ProgressFn",
    "check_cancel",
    "identity_transform",
    "resize_images",
    "snapshot_state",
]

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """Raised by inversion and tuning loops when their ``cancel()`` callback returned True.

    ``done`` and ``total`` say how far the loop got (iterations or steps completed).
    """

    def __init__(self, what: str = "operation", done: int = 0, total: int = 0) -> None:
        super().__init__(f"{what} cancelled after {done} of {total}")
        self.done = done
        self.total = total


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


def snapshot_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached clones of every state-dict entry (for bit-exact before/after comparisons)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}
