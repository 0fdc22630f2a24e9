"""upfirdn2d: upsample (zero insertion), pad, FIR-filter and downsample a batch of images.

``upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1)``
x: [N,C,H,W]; f: None (identity), [taps] (separable: applied horizontally, then vertically) or
[th,tw]; up/down: int or (x, y); padding: int, (x, y) or (x0, x1, y0, y1), negative values crop.
The filter is flipped (true convolution) unless ``flip_filter``; ``gain`` scales the whole result
(split evenly between the two passes of a separable filter).

This module only dispatches: it checks and normalises the arguments, asks kernels._select which
implementation runs, and calls kernels._ref or kernels._fast (the CUDA extension does not fuse this
op; on CUDA tensors the reference math runs).
"""

from __future__ import annotations

import torch

from kernels import _fast, _ref, _select
from kernels._ref import Padding, Scaling, UpfirdnArgs, parse_padding, parse_scaling

__all__ = ["parse_padding", "parse_scaling", "upfirdn2d"]


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: Scaling = 1,
    down: Scaling = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1,
    impl: str | None = None,
) -> torch.Tensor:
    """See the module docstring. Returns [N,C,H',W'] in x's dtype."""
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects [N,C,H,W], got shape {tuple(x.shape)}")
    if f is not None and f.ndim not in (1, 2):
        raise ValueError(f"filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    args = UpfirdnArgs(parse_scaling(up), parse_scaling(down), parse_padding(padding), flip_filter, gain)
    if _select.select("upfirdn2d", impl, x) == "ref":
        return _ref.upfirdn2d(x, f, args)
    return _fast.upfirdn2d(x, f, args)
