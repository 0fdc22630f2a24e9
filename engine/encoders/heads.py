"""Map-to-style heads: a feature map [N,C,S,S] reduced to one style vector [N,w_dim].

``StyleHead`` halves the resolution with log2(S) strided 3x3 convs (each followed by LeakyReLU 0.01)
until the map is 1x1, then applies an equalized linear layer. Names match the released checkpoints:
``convs.<2k>.weight/bias`` for the convs (odd indices are the parameter-free activations) and
``linear.weight/bias`` for the equalized linear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EqualLinear", "StyleHead"]


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate.

    The stored weight is scaled at run time by ``lr_mul / sqrt(in_features)`` and the bias by
    ``lr_mul``, so stored parameters stay of order 1 whatever the fan-in.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        weight = torch.randn(out_features, in_features, device=device, dtype=dtype)
        # No arithmetic when lr_mul is 1: on the meta device (shells for loading) any op imports torch._dynamo
        # (seconds, and it holds Python's lock while the window is drawing).
        self.weight = nn.Parameter(weight / lr_mul if lr_mul != 1 else weight)
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init), device=device, dtype=dtype))
        self.lr_mul = float(lr_mul)
        self.scale = self.lr_mul / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, lr_mul={self.lr_mul}"


class StyleHead(nn.Module):
    """Strided conv pyramid down to 1x1, then an equalized linear.

    Args:
        in_channels: channels of the input feature map.
        channels: width of the convs (512 in the released models).
        spatial: side of the input feature map; must be a power of two.
        out_features: size of the style vector (the generator's w_dim; defaults to ``channels``).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        spatial: int,
        out_features: int | None = None,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n_convs = int(round(math.log2(spatial)))
        if spatial < 2 or 2**n_convs != spatial:
            raise ValueError(f"StyleHead needs a power-of-two spatial size >= 2, got {spatial}")
        layers: list[nn.Module] = []
        for k in range(n_convs):
            layers += [
                nn.Conv2d(in_channels if k == 0 else channels, channels, 3, 2, 1, device=device, dtype=dtype),
                nn.LeakyReLU(0.01),
            ]
        self.convs = nn.Sequential(*layers)
        self.spatial = spatial
        self.channels = channels
        self.linear = EqualLinear(channels, out_features or channels, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,in_channels,spatial,spatial] -> style [N,out_features]."""
        if x.shape[-1] != self.spatial or x.shape[-2] != self.spatial:
            raise ValueError(f"StyleHead expects {self.spatial}x{self.spatial} features, got {tuple(x.shape[-2:])}")
        x = self.convs(x)
        return self.linear(x.reshape(x.shape[0], self.channels))
