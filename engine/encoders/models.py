"""Encoders that map an image (optionally stacked with the current reconstruction) to W+ codes.

Four heads over the same IR / IR-SE backbone (see ``engine.encoders.backbone``):

- ``BackboneEncoder`` (ReStyle-pSp): every style row comes from its own head on the last 16x16 map.
- ``ProgressiveBackboneEncoder`` (ReStyle-e4e): row 0 is a base code w0, rows i >= 1 are
  w0 + delta_i. ``progressive_stage`` limits how many deltas are active (all of them by default).
- ``GradualStyleEncoder`` (pSp): a small feature pyramid. Coarse rows (0..2) read the last stage,
  middle rows (3..6) read it upsampled and added to a 1x1 projection of stage 3, fine rows (7..) read
  that upsampled again and added to a projection of stage 2 (bilinear, align_corners=True).
- ``Encoder4Editing`` (e4e): the same pyramid with the w0 + delta_i structure.

All forwards take x [N,input_nc,H,W] (H = W = ``input_size``, 256 for the released models; images in
[-1,1]) and return raw codes [N,n_styles,w_dim] in the backbone's dtype, before ``latent_avg`` or the
previous iteration's codes are added. ``state_dict`` names, shapes and order match the ``encoder.*``
entries of the released pSp / e4e / ReStyle checkpoints (prefix removed), for the IR-SE50 backbone.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from engine.encoders.backbone import BackboneSpec, get_backbone_spec, make_body, make_input_layer, stage_end_indices
from engine.encoders.heads import StyleHead

__all__ = [
    "BackboneEncoder",
    "ENCODER_KINDS",
    "Encoder4Editing",
    "EncoderBase",
    "GradualStyleEncoder",
    "ProgressiveBackboneEncoder",
    "build_encoder",
    "encoder_state_from_checkpoint",
]

ENCODER_KINDS = ("restyle_psp", "restyle_e4e", "psp", "e4e")

# Row boundaries of the pyramid encoders: rows [0, COARSE) read the coarsest level, [COARSE, MIDDLE)
# the middle level and the rest the finest level (released pSp/e4e values).
_COARSE_END = 3
_MIDDLE_END = 7


class EncoderBase(nn.Module):
    """What the four encoders share: the backbone (``input_layer`` and ``body``, registered first so
    the key order matches the released checkpoints) and the input checks.

    Subclasses add their style heads in :meth:`_add_heads` and set the default ``input_nc`` and
    ``n_styles`` of their released configuration.
    """

    default_input_nc = 6
    default_n_styles = 16

    def __init__(
        self,
        input_nc: int | None = None,
        n_styles: int | None = None,
        backbone: str | BackboneSpec = "ir_se50",
        *,
        input_size: int = 256,
        w_dim: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        spec = get_backbone_spec(backbone)
        if input_size % spec.downsample:
            raise ValueError(f"input_size {input_size} is not a multiple of the backbone stride {spec.downsample}")
        self.spec = spec
        self.input_nc = self.default_input_nc if input_nc is None else input_nc
        self.n_styles = self.default_n_styles if n_styles is None else n_styles
        self.input_size = input_size
        self.w_dim = w_dim or spec.style_channels
        self.input_layer = make_input_layer(self.input_nc, spec, device=device, dtype=dtype)
        self.body = make_body(spec, device=device, dtype=dtype)
        self._add_heads(spec.out_channels, input_size // spec.downsample, device, dtype)

    def _add_heads(self, channels: int, side: int, device: torch.device | None, dtype: torch.dtype | None) -> None:
        """Register the style heads; ``channels`` and ``side`` describe the last backbone feature map."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone output: x [N,input_nc,S,S] -> [N,C_last,S/16,S/16]."""
        self._check_input(x)
        return self.body(self.input_layer(x))

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs of stages 2, 3 and 4: ([N,C1,S/4,S/4], [N,C2,S/8,S/8], [N,C3,S/16,S/16])."""
        self._check_input(x)
        ends = stage_end_indices(self.spec)
        taps = {ends[1]: 0, ends[2]: 1, ends[3]: 2}
        out: list[torch.Tensor] = [x, x, x]
        x = self.input_layer(x)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in taps:
                out[taps[i]] = x
        return out[0], out[1], out[2]

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.input_nc or x.shape[2] != self.input_size or x.shape[3] != self.input_size:
            raise ValueError(
                f"expected input [N,{self.input_nc},{self.input_size},{self.input_size}], got {list(x.shape)}"
            )


def _upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class BackboneEncoder(EncoderBase):
    """ReStyle-pSp encoder: ``n_styles`` independent heads on the last feature map (defaults: 6 input
    channels, 16 styles)."""

    def _add_heads(self, channels: int, side: int, device: torch.device | None, dtype: torch.dtype | None) -> None:
        self.styles = nn.ModuleList(
            StyleHead(channels, self.spec.style_channels, side, self.w_dim, device=device, dtype=dtype)
            for _ in range(self.n_styles)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,input_nc,S,S] in [-1,1] -> raw codes [N,n_styles,w_dim]."""
        f = self.features(x)
        return torch.stack([head(f) for head in self.styles], dim=1)


class ProgressiveBackboneEncoder(BackboneEncoder):
    """ReStyle-e4e encoder: w0 from ``styles[0]``, row i = w0 + ``styles[i]`` output.

    ``progressive_stage`` is the number of active deltas (rows 1..stage receive one); the default,
    ``n_styles``, is the inference setting where all of them are active.
    """

    def _add_heads(self, channels: int, side: int, device: torch.device | None, dtype: torch.dtype | None) -> None:
        super()._add_heads(channels, side, device, dtype)
        self.progressive_stage = self.n_styles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,input_nc,S,S] in [-1,1] -> raw codes [N,n_styles,w_dim]."""
        f = self.features(x)
        w0 = self.styles[0](f)
        rows = [w0]
        for i in range(1, self.n_styles):
            rows.append(w0 + self.styles[i](f) if i <= self.progressive_stage else w0)
        return torch.stack(rows, dim=1)


class GradualStyleEncoder(EncoderBase):
    """pSp encoder: style heads on three pyramid levels (coarse 16x16, middle 32x32, fine 64x64 for 256
    input; defaults: 3 input channels, 18 styles)."""

    default_input_nc = 3
    default_n_styles = 18

    def _add_heads(self, channels: int, side: int, device: torch.device | None, dtype: torch.dtype | None) -> None:
        spec = self.spec
        self.styles = nn.ModuleList()
        for i in range(self.n_styles):
            level_side = side if i < _COARSE_END else (2 * side if i < _MIDDLE_END else 4 * side)
            self.styles.append(
                StyleHead(channels, spec.style_channels, level_side, self.w_dim, device=device, dtype=dtype)
            )
        self.latlayer1 = nn.Conv2d(spec.channels[2], channels, 1, 1, 0, device=device, dtype=dtype)
        self.latlayer2 = nn.Conv2d(spec.channels[1], channels, 1, 1, 0, device=device, dtype=dtype)

    def _level(self, i: int) -> int:
        return 0 if i < _COARSE_END else (1 if i < _MIDDLE_END else 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,input_nc,S,S] in [-1,1] -> raw codes [N,n_styles,w_dim]."""
        c1, c2, c3 = self.pyramid(x)
        levels = [c3]
        if self.n_styles > _COARSE_END:
            levels.append(_upsample_add(c3, self.latlayer1(c2)))
        if self.n_styles > _MIDDLE_END:
            levels.append(_upsample_add(levels[1], self.latlayer2(c1)))
        return torch.stack([head(levels[self._level(i)]) for i, head in enumerate(self.styles)], dim=1)


class Encoder4Editing(GradualStyleEncoder):
    """e4e encoder: pyramid heads with row 0 = w0 and rows i >= 1 = w0 + delta_i.

    ``progressive_stage`` is the number of active deltas; the default ``n_styles`` activates all.
    """

    def _add_heads(self, channels: int, side: int, device: torch.device | None, dtype: torch.dtype | None) -> None:
        super()._add_heads(channels, side, device, dtype)
        self.progressive_stage = self.n_styles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,input_nc,S,S] in [-1,1] -> raw codes [N,n_styles,w_dim]."""
        c1, c2, c3 = self.pyramid(x)
        active = min(self.progressive_stage, self.n_styles - 1)
        levels = [c3]
        # Finer levels are only computed when an active delta needs them.
        if active >= _COARSE_END:
            levels.append(_upsample_add(c3, self.latlayer1(c2)))
        if active >= _MIDDLE_END:
            levels.append(_upsample_add(levels[1], self.latlayer2(c1)))
        w0 = self.styles[0](c3)
        rows = [w0]
        for i in range(1, self.n_styles):
            rows.append(w0 + self.styles[i](levels[self._level(i)]) if i <= active else w0)
        return torch.stack(rows, dim=1)


_CLASSES: dict[str, type[EncoderBase]] = {
    "restyle_psp": BackboneEncoder,
    "restyle_e4e": ProgressiveBackboneEncoder,
    "psp": GradualStyleEncoder,
    "e4e": Encoder4Editing,
}


def build_encoder(
    kind: str,
    input_nc: int = 6,
    n_styles: int = 16,
    backbone: str | BackboneSpec = "ir_se50",
    *,
    input_size: int = 256,
    w_dim: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> EncoderBase:
    """Build an encoder in eval mode.

    Args:
        kind: ``'restyle_psp'``, ``'restyle_e4e'``, ``'psp'`` or ``'e4e'``.
        input_nc: input channels (6 for ReStyle: image + current reconstruction; 3 for plain pSp/e4e).
        n_styles: number of W+ rows produced (16 for StyleGAN3 at 1024 px).
        backbone: a name from ``engine.encoders.BACKBONES`` (``'ir_se50'`` for released weights,
            ``'ir_se_small'`` for the demo model) or a ``BackboneSpec``.
        input_size: side of the square input (256 for released weights).
        w_dim: code width; defaults to the style-head width (512 for IR-SE50). Set it to the
            generator's w_dim for small backbones.
        device, dtype: where to create parameters. ``device='meta'`` builds a shell without allocating;
            fill it with ``load_state_dict(sd, assign=True)``.

    Returns:
        A module whose ``load_state_dict`` accepts a released encoder state dict (``encoder.*`` entries
        with the prefix removed) and whose forward maps x [N,input_nc,input_size,input_size] in [-1,1]
        to raw codes [N,n_styles,w_dim].
    """
    try:
        cls = _CLASSES[kind]
    except KeyError:
        raise ValueError(f"unknown encoder kind {kind!r}; choose one of {ENCODER_KINDS}") from None
    dev = torch.device(device) if device is not None else None
    enc = cls(input_nc, n_styles, backbone, input_size=input_size, w_dim=w_dim, device=dev, dtype=dtype)
    return enc.eval()


def encoder_state_from_checkpoint(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "encoder."
) -> dict[str, torch.Tensor]:
    """Select the ``encoder.*`` entries of a released pSp/e4e/ReStyle ``state_dict`` and strip the prefix."""
    out = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if not out:
        raise KeyError(f"no entries starting with {prefix!r} in the state dict")
    return out
