"""bias_act: add a per-channel bias, apply an activation, scale by a gain and clamp.

``bias_act(x, b, dim=1, act='lrelu', alpha=0.2, gain=sqrt(2), clamp=256)``
x: any shape; b: [x.shape[dim]] or None. Activations: linear, relu, lrelu, tanh, sigmoid.
Default gains follow the StyleGAN convention (sqrt(2) for relu/lrelu, 1 otherwise).
"""

from __future__ import annotations

import math

import torch

from kernels._select import gpu_friendly, resolve_impl

ACTIVATIONS = {
    # name: (default alpha, default gain)
    "linear": (0.0, 1.0),
    "relu": (0.0, math.sqrt(2)),
    "lrelu": (0.2, math.sqrt(2)),
    "tanh": (0.0, 1.0),
    "sigmoid": (0.0, 1.0),
}


def _activate(x: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return x
    if act == "relu":
        return torch.relu(x)
    if act == "lrelu":
        return torch.nn.functional.leaky_relu(x, alpha)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")


def _bias_act_ref(x, b, dim, act, alpha, gain, clamp):
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = _activate(x, act, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _bias_act_fast(x, b, dim, act, alpha, gain, clamp):
    # Same math with fewer temporaries: the bias add allocates, the rest works in place when no
    # gradient is needed.
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)))
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    elif inplace:
        x = x.clone()
    if not inplace:
        return _bias_act_ref(x, None, dim, act, alpha, gain, clamp)
    if act == "lrelu":
        torch.nn.functional.leaky_relu_(x, alpha)
    elif act == "relu":
        x.relu_()
    elif act != "linear":
        x = _activate(x, act, alpha)
    if gain != 1:
        x.mul_(gain)
    if clamp is not None and clamp >= 0:
        x.clamp_(-clamp, clamp)
    return x


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
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    d_alpha, d_gain = ACTIVATIONS[act]
    alpha = d_alpha if alpha is None else float(alpha)
    gain = d_gain if gain is None else float(gain)
    # The CUDA extension fuses filtered_lrelu only; bias_act on CUDA runs the reference math.
    which = gpu_friendly(resolve_impl(impl, x), x)
    if which == "ref":
        return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_fast(x, b, dim, act, alpha, gain, clamp)
