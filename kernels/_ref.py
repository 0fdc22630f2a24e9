"""Reference math of the three ops, ``bias_act``, ``upfirdn2d`` and ``filtered_lrelu``, in plain
PyTorch, computed the way the StyleGAN3 release computes them, plus the argument parsing and the
argument tuples they share.

This is the bottom of the package: it imports nothing from ``kernels``. The fast CPU path
(kernels._fast) is checked against it, the CUDA extension (kernels.cuda_ext) falls back to it and
differentiates through it, and the dispatching functions run it for ``impl='ref'`` and for ops
without a fused kernel on CUDA tensors.

The functions here take normalised arguments (the dispatchers parse them): ``alpha``/``gain`` are
floats, and ``upfirdn2d`` and ``filtered_lrelu`` take their non-tensor arguments as one named tuple
each, ``UpfirdnArgs`` and ``FilteredLReluArgs``, which every implementation of the op takes alike:
``up``/``down`` are (x, y) pairs for upfirdn2d and ints for filtered_lrelu, ``padding`` is
(x0, x1, y0, y1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

# What the public functions accept for a resampling factor and for padding (see kernels.upfirdn2d).
Scaling = int | Sequence[int]
Padding = int | Sequence[int]


class UpfirdnArgs(NamedTuple):
    """The normalised arguments of ``upfirdn2d`` after ``x`` and ``f``."""

    up: tuple[int, int]  # (x, y)
    down: tuple[int, int]  # (x, y)
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1)
    flip_filter: bool
    gain: float


class FilteredLReluArgs(NamedTuple):
    """The normalised arguments of ``filtered_lrelu`` after the tensors ``x``, ``fu``, ``fd``, ``b``."""

    up: int
    down: int
    padding: tuple[int, int, int, int]  # (x0, x1, y0, y1)
    gain: float
    slope: float
    clamp: float | None
    flip_filter: bool


ACTIVATIONS = {
    # name: (default alpha, default gain)
    "linear": (0.0, 1.0),
    "relu": (0.0, math.sqrt(2)),
    "lrelu": (0.2, math.sqrt(2)),
    "tanh": (0.0, 1.0),
    "sigmoid": (0.0, 1.0),
}


def parse_scaling(s: Scaling) -> tuple[int, int]:
    """An int or an (x, y) pair -> (x, y)."""
    if isinstance(s, int):
        return s, s
    sx, sy = s
    return int(sx), int(sy)


def parse_padding(p: Padding) -> tuple[int, int, int, int]:
    """An int, (x, y) or (x0, x1, y0, y1) -> (x0, x1, y0, y1)."""
    if isinstance(p, int):
        return p, p, p, p
    if len(p) == 2:
        px, py = p
        return px, px, py, py
    x0, x1, y0, y1 = p
    return int(x0), int(x1), int(y0), int(y1)


def activation_params(act: str, alpha: float | None, gain: float | None) -> tuple[float, float]:
    """Check ``act`` and fill in its default alpha and gain."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    d_alpha, d_gain = ACTIVATIONS[act]
    return (d_alpha if alpha is None else float(alpha)), (d_gain if gain is None else float(gain))


def activate(x: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    if act == "linear":
        return x
    if act == "relu":
        return torch.relu(x)
    if act == "lrelu":
        return F.leaky_relu(x, alpha)
    if act == "tanh":
        return torch.tanh(x)
    if act == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")


def broadcast_bias(b: torch.Tensor, dim: int, ndim: int) -> torch.Tensor:
    """``b`` [C] shaped to broadcast along axis ``dim`` of an ``ndim``-D tensor."""
    return b.reshape([-1 if i == dim else 1 for i in range(ndim)])


def bias_act(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, alpha: float, gain: float, clamp: float | None
) -> torch.Tensor:
    """Add the bias, activate, scale by ``gain``, clamp to +-``clamp`` (None or negative: no clamp)."""
    if b is not None:
        x = x + broadcast_bias(b, dim, x.ndim)
    x = activate(x, act, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def prepare_filter(f: torch.Tensor | None, gain: float, flip_filter: bool, x: torch.Tensor) -> torch.Tensor:
    """The filter as correlation taps in x's dtype: None becomes a single unit tap, the gain is split
    over the passes (``gain ** (ndim / 2)``), and it is flipped unless ``flip_filter``."""
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    f = f * (gain ** (f.ndim / 2))
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    return f.to(x.dtype)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, args: UpfirdnArgs) -> torch.Tensor:
    """Zero insertion, pad (negative values crop), depthwise convolution(s), then stride."""
    n, c, h, w = x.shape
    (upx, upy), (downx, downy), (px0, px1, py0, py1), flip_filter, gain = args
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
    x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = prepare_filter(f, gain, flip_filter, x)
    fw = f[None, None].repeat([c, 1] + [1] * f.ndim)
    if f.ndim == 2:
        x = F.conv2d(x, fw, groups=c)
    else:
        x = F.conv2d(x, fw.unsqueeze(2), groups=c)
        x = F.conv2d(x, fw.unsqueeze(3), groups=c)
    return x[:, :, ::downy, ::downx]


def filtered_lrelu(
    x: torch.Tensor, fu: torch.Tensor | None, fd: torch.Tensor | None, b: torch.Tensor | None, args: FilteredLReluArgs
) -> torch.Tensor:
    """Bias, upsample with ``fu`` (gain up**2), leaky ReLU times ``gain``, clamp, downsample with ``fd``:
    the chain of the other two reference ops, every intermediate at full resolution."""
    up, down, padding, gain, slope, clamp, flip_filter = args
    x = bias_act(x, b, 1, "linear", 0.0, 1.0, None)
    x = upfirdn2d(x, fu, UpfirdnArgs((up, up), (1, 1), padding, flip_filter, up**2))
    x = bias_act(x, None, 1, "lrelu", float(slope), float(gain), clamp)
    return upfirdn2d(x, fd, UpfirdnArgs((1, 1), (down, down), (0, 0, 0, 0), flip_filter, 1))
