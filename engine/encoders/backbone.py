"""IR / IR-SE residual backbones (the ArcFace-style trunk used by pSp, e4e and ReStyle).

A backbone is an input layer (3x3 conv, BatchNorm, PReLU) followed by a flat ``nn.Sequential`` body of
bottleneck units arranged in four stages. The first unit of every stage halves the resolution, so a
256x256 input yields a 16x16 feature map with ``spec.channels[-1]`` channels.

Module names follow the released pSp/e4e/ReStyle checkpoints so their ``state_dict`` loads unchanged:
``input_layer.{0,1,2}``, ``body.<i>.shortcut_layer.{0,1}``, ``body.<i>.res_layer.{0..5}`` with the
squeeze-excitation gate as ``res_layer.5.fc1`` / ``res_layer.5.fc2``.

Available specs (``BACKBONES``):

- ``ir_se50`` / ``ir50``: units 3/4/14/3 at 64/128/256/512 channels, the released configuration.
- ``ir_se100`` / ``ir100``: units 3/13/30/3; ``ir_se152`` / ``ir152``: units 3/8/36/3.
- ``ir_se_small``: units 1/1/2/1 at 16/32/64/128 channels (SE reduction 8) with 64-channel style
  heads: 3.9M parameters against 186M for IR-SE50 ReStyle, and about 5% of its CPU time. It is
  meant for the small embedded demo encoder and has no released weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "BottleneckIR",
    "SqueezeExcite",
    "get_backbone_spec",
    "make_body",
    "make_input_layer",
    "stage_end_indices",
]


class _Factory(TypedDict):
    """Where a layer's parameters are created (the ``device`` / ``dtype`` keywords of torch layers)."""

    device: torch.device | None
    dtype: torch.dtype | None


@dataclass(frozen=True)
class BackboneSpec:
    """Shape of an IR / IR-SE backbone.

    Attributes:
        stem_channels: channels produced by the input layer.
        channels: output channels of the four stages.
        units: number of bottleneck units in each stage.
        use_se: whether each unit ends with a squeeze-excitation gate.
        se_reduction: channel reduction inside the gate.
        head_channels: width of the style-head convs paired with this backbone; None means the last
            stage's width (512 for the released models).
    """

    stem_channels: int
    channels: tuple[int, ...]
    units: tuple[int, ...]
    use_se: bool
    se_reduction: int = 16
    head_channels: int | None = None

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    @property
    def style_channels(self) -> int:
        return self.head_channels or self.channels[-1]

    @property
    def downsample(self) -> int:
        """Total stride of the body (every stage halves the resolution)."""
        return 2 ** len(self.channels)


_WIDE = (64, 128, 256, 512)
_DEPTHS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}

BACKBONES: dict[str, BackboneSpec] = {}
for _n, _units in _DEPTHS.items():
    BACKBONES[f"ir_se{_n}"] = BackboneSpec(64, _WIDE, _units, use_se=True)
    BACKBONES[f"ir{_n}"] = BackboneSpec(64, _WIDE, _units, use_se=False)
BACKBONES["ir_se_small"] = BackboneSpec(
    16, (16, 32, 64, 128), (1, 1, 2, 1), use_se=True, se_reduction=8, head_channels=64
)


def get_backbone_spec(backbone: str | BackboneSpec) -> BackboneSpec:
    """Resolve a backbone name (see ``BACKBONES``) or pass a spec through."""
    if isinstance(backbone, BackboneSpec):
        return backbone
    try:
        return BACKBONES[backbone]
    except KeyError:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}") from None


class SqueezeExcite(nn.Module):
    """Channel gate: x * sigmoid(fc2(relu(fc1(mean_hw(x))))), both fcs as bias-free 1x1 convs."""

    def __init__(
        self, channels: int, reduction: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # adaptive_avg_pool2d rather than mean(): same reduction kernel as the released model, which
        # matters for bitwise-close parity of the chaotic golden case.
        gate = F.adaptive_avg_pool2d(x, 1)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(gate))))
        return x * gate


class BottleneckIR(nn.Module):
    """Pre-activation residual unit: BN, conv3x3, PReLU, conv3x3 (strided), BN [, SE] plus a shortcut.

    The shortcut is a strided identity when the channel count is unchanged (a 1x1 max-pool with
    stride, which holds no parameters), else a strided 1x1 conv followed by BatchNorm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        use_se: bool,
        se_reduction: int = 16,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        fk: _Factory = {"device": device, "dtype": dtype}
        if in_channels == out_channels:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False, **fk),
                nn.BatchNorm2d(out_channels, **fk),
            )
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channels, **fk),
            nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False, **fk),
            nn.PReLU(out_channels, **fk),
            nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False, **fk),
            nn.BatchNorm2d(out_channels, **fk),
        ]
        if use_se:
            layers.append(SqueezeExcite(out_channels, se_reduction, **fk))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def make_input_layer(
    input_nc: int, spec: BackboneSpec, *, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> nn.Sequential:
    """Stem: conv3x3 (no bias) -> BatchNorm -> PReLU, keeping the resolution."""
    fk: _Factory = {"device": device, "dtype": dtype}
    c = spec.stem_channels
    return nn.Sequential(nn.Conv2d(input_nc, c, 3, 1, 1, bias=False, **fk), nn.BatchNorm2d(c, **fk), nn.PReLU(c, **fk))


def make_body(
    spec: BackboneSpec, *, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> nn.Sequential:
    """All bottleneck units of the four stages in one flat Sequential (released naming ``body.<i>``)."""
    units: list[nn.Module] = []
    in_c = spec.stem_channels
    for out_c, count in zip(spec.channels, spec.units):
        for k in range(count):
            units.append(
                BottleneckIR(
                    in_c,
                    out_c,
                    2 if k == 0 else 1,
                    use_se=spec.use_se,
                    se_reduction=spec.se_reduction,
                    device=device,
                    dtype=dtype,
                )
            )
            in_c = out_c
    return nn.Sequential(*units)


def stage_end_indices(spec: BackboneSpec) -> list[int]:
    """Index in ``body`` of the last unit of every stage (for IR-SE50: 2, 6, 20, 23)."""
    ends, total = [], 0
    for count in spec.units:
        total += count
        ends.append(total - 1)
    return ends
