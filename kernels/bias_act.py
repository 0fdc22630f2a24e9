"""bias_act: add a per-channel bias, apply an activation, scale by a gain and clamp.

``bias_act(x, b, dim=1, act='lrelu', alpha=0.2, gain=sqrt(2), clamp=256)``
x: any shape; b: [x.shape[dim]] or None. Activations: linear, relu, lrelu, tanh, sigmoid.
Default gains follow the StyleGAN convention (sqrt(2) for relu/lrelu, 1 otherwise).

This module only dispatches: it checks the arguments, asks kernels._select which implementation
runs, and calls kernels._ref or kernels._fast (the CUDA extension does not fuse this op; on CUDA
tensors the reference math runs).
"""

from __future__ import annotations

import torch

from kernels import _fast, _ref, _select
from kernels._ref import ACTIVATIONS

__all__ = ["ACTIVATIONS", "bias_act"]


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Fused bias + activation + gain + clamp (see the module docstring)."""
    alpha_, gain_ = _ref.activation_params(act, alpha, gain)
    if _select.select("bias_act", impl, x) == "ref":
        return _ref.bias_act(x, b, dim, act, alpha_, gain_, clamp)
    return _fast.bias_act(x, b, dim, act, alpha_, gain_, clamp)
