"""filtered_lrelu: the alias-free nonlinearity of StyleGAN3.

``filtered_lrelu(x, fu, fd, b, up, down, padding, gain=sqrt(2), slope=0.2, clamp=None)``:
add the bias ``b`` [C]; upsample by ``up`` with the filter ``fu`` (gain up**2) after padding by
``padding`` (int, (x, y) or (x0, x1, y0, y1)); leaky ReLU with ``slope`` times ``gain``; clamp to
+-``clamp``; downsample by ``down`` with ``fd``. x: [N,C,H,W] float; fu: None or [taps]; fd: None,
[taps] or [taps,taps] (radial filters of R configs).

This module only dispatches: it checks and normalises the arguments, asks kernels._select which
implementation runs, and calls kernels._ref, kernels._fast (channel chunks and row bands through the
whole chain, bounded memory also when recording gradients) or the fused kernel in kernels.cuda_ext.
"""

from __future__ import annotations

import math

import torch

from kernels import _fast, _ref, _select, cuda_ext
from kernels._ref import FilteredLReluArgs, Padding, parse_padding

__all__ = ["filtered_lrelu"]


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
    flip_filter: bool = False,
    impl: str | None = None,
) -> torch.Tensor:
    """See the module docstring. Returns [N,C,H',W'] in x's dtype."""
    if x.ndim != 4:
        raise ValueError(f"filtered_lrelu expects [N,C,H,W], got shape {tuple(x.shape)}")
    args = FilteredLReluArgs(int(up), int(down), parse_padding(padding), gain, slope, clamp, flip_filter)
    which = _select.select("filtered_lrelu", impl, x)
    if which == "cuda":
        return cuda_ext.filtered_lrelu(x, fu, fd, b, args)
    if which == "ref":
        return _ref.filtered_lrelu(x, fu, fd, b, args)
    return _fast.filtered_lrelu(x, fu, fd, b, args)
