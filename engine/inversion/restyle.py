"""Encoder inversion: ReStyle (iterative residual refinement) and single-pass pSp / e4e.

An :class:`Inverter` pairs an image encoder (``engine.encoders``) with the generator it was trained
for and that generator's average latent. ``Inverter.invert(images)`` turns aligned faces
[N,3,H,W] in [-1,1] into W+ codes [N,num_ws,w_dim] (the call of
:class:`engine.inversion.protocol.InverterProtocol`):

- ReStyle (``kind`` ``'restyle_psp'`` / ``'restyle_e4e'``, 6 input channels): the images are resized
  to ``input_size``; the first pass sees them next to the *average image* (the render of
  ``latent_avg`` under the identity transform, computed once and cached) and sets
  ``codes = E(.) + latent_avg``; each further pass sees them next to the resized previous render and
  sets ``codes = E(.) + codes``.
- pSp / e4e (``kind`` ``'psp'`` / ``'e4e'``, 3 input channels): one pass, ``codes = E(x) + latent_avg``.

Renders use the identity transform (encoders are trained on aligned faces); given a ``transform``
(e.g. ``engine.align.AlignedFace.transform``) the final codes are also rendered unaligned.

Reading and writing inverters: :mod:`engine.inversion.inverter_files`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from engine.generator_config import GeneratorSizes, mapping_w_avg
from engine.inversion.common import (
    CancelFn,
    ProgressFn,
    batch_transform,
    check_cancel,
    render_latents,
    resize_images,
)
from engine.inversion.protocol import InversionResult

if TYPE_CHECKING:
    from engine.encoders import EncoderBase
    from engine.networks.stylegan3 import Generator

__all__ = [
    "ENCODER_TYPES",
    "RECURRENT_KINDS",
    "EncoderConfig",
    "InversionResult",
    "Inverter",
]

# opts['encoder_type'] of pSp / e4e / ReStyle checkpoints -> our encoder kinds.
ENCODER_TYPES: dict[str, str] = {
    "BackboneEncoder": "restyle_psp",
    "ProgressiveBackboneEncoder": "restyle_e4e",
    "GradualStyleEncoder": "psp",
    "Encoder4Editing": "e4e",
}
RECURRENT_KINDS = ("restyle_psp", "restyle_e4e")


# --------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class EncoderConfig:
    """Everything needed to build an encoder with :func:`engine.encoders.build_encoder`.

    backbone: a name from ``engine.encoders.BACKBONES`` or a ``BackboneSpec``.
    """

    kind: str
    input_nc: int
    n_styles: int
    backbone: Any
    input_size: int
    w_dim: int

    def build(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> EncoderBase:
        from engine.encoders import build_encoder

        return build_encoder(
            self.kind,
            input_nc=self.input_nc,
            n_styles=self.n_styles,
            backbone=self.backbone,
            input_size=self.input_size,
            w_dim=self.w_dim,
            device=device,
            dtype=dtype,
        )

    def to_json(self) -> dict[str, Any]:
        backbone = self.backbone if isinstance(self.backbone, str) else dataclasses.asdict(self.backbone)
        return {
            "kind": self.kind,
            "input_nc": self.input_nc,
            "n_styles": self.n_styles,
            "backbone": backbone,
            "input_size": self.input_size,
            "w_dim": self.w_dim,
        }

    @staticmethod
    def from_json(d: dict[str, Any]) -> EncoderConfig:
        from engine.encoders import BackboneSpec

        backbone = d["backbone"]
        if isinstance(backbone, dict):
            fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in backbone.items()}
            backbone = BackboneSpec(**fields)
        return EncoderConfig(
            str(d["kind"]), int(d["input_nc"]), int(d["n_styles"]), backbone, int(d["input_size"]), int(d["w_dim"])
        )

    @staticmethod
    def of(encoder: EncoderBase, kind: str) -> EncoderConfig:
        """Read the configuration off a built encoder."""
        from engine.encoders import BACKBONES

        spec = encoder.spec
        name = next((n for n, s in BACKBONES.items() if s == spec), None)
        return EncoderConfig(
            kind,
            int(encoder.input_nc),
            int(encoder.n_styles),
            name or spec,
            int(encoder.input_size),
            int(encoder.w_dim),
        )


# --------------------------------------------------------------------------------------------------
# The inverter


def _kind_of(encoder: nn.Module) -> str:
    from engine.encoders import BackboneEncoder, Encoder4Editing, GradualStyleEncoder, ProgressiveBackboneEncoder

    for cls, kind in (
        (ProgressiveBackboneEncoder, "restyle_e4e"),
        (BackboneEncoder, "restyle_psp"),
        (Encoder4Editing, "e4e"),
        (GradualStyleEncoder, "psp"),
    ):
        if isinstance(encoder, cls):
            return kind
    raise ValueError(f"cannot tell the kind of encoder {type(encoder).__name__}; pass kind=")


class Inverter(GeneratorSizes, nn.Module):
    """An encoder, its generator and the average latent, with ReStyle / pSp / e4e inference.

    Args:
        encoder: a module from ``engine.encoders.build_encoder`` (``input_nc`` 6 for ReStyle, 3 for
            pSp / e4e; ``n_styles`` must equal the generator's ``num_ws``).
        generator: an ``engine.Generator``.
        latent_avg: [num_ws,w_dim], [1,w_dim] or [w_dim]; defaults to ``generator.mapping.w_avg``
            repeated over the rows.
        kind: ``'restyle_psp'``, ``'restyle_e4e'``, ``'psp'`` or ``'e4e'``; read off the encoder's class
            when omitted.
        input_size: side of the encoder's input (256 for the released encoders); defaults to
            ``encoder.input_size``.

    Everything runs in float32 on the device of ``latent_avg`` (move the whole inverter with
    ``.to(device)``). ``latent_avg`` is a buffer; the average image is cached and recomputed when
    ``latent_avg`` or the generator's synthesis weights change in place. ``resolution``, ``w_dim``
    and ``num_ws`` are the generator's.
    """

    latent_avg: torch.Tensor

    def __init__(
        self,
        encoder: EncoderBase,
        generator: Generator,
        latent_avg: torch.Tensor | None = None,
        kind: str | None = None,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.generator = generator
        self.kind = kind or _kind_of(encoder)
        if self.kind not in ENCODER_TYPES.values():
            raise ValueError(f"unknown inverter kind {self.kind!r}; choose one of {sorted(ENCODER_TYPES.values())}")
        self.input_size = int(input_size or encoder.input_size)
        num_ws, w_dim = int(generator.num_ws), int(generator.w_dim)
        n_styles = int(getattr(encoder, "n_styles", num_ws))
        if n_styles != num_ws:
            raise ValueError(f"the encoder predicts {n_styles} style rows but the generator takes {num_ws}")
        input_nc = int(getattr(encoder, "input_nc", 6 if self.recurrent else 3))
        if input_nc != (6 if self.recurrent else 3):
            raise ValueError(
                f"a {self.kind} encoder needs {6 if self.recurrent else 3} input channels, this one takes {input_nc}"
            )
        if latent_avg is None:
            latent_avg = mapping_w_avg(generator)
        latent_avg = latent_avg.detach().to(torch.float32)
        if latent_avg.ndim == 1:
            latent_avg = latent_avg.unsqueeze(0)
        if latent_avg.ndim != 2 or latent_avg.shape[-1] != w_dim or latent_avg.shape[0] not in (1, num_ws):
            raise ValueError(
                f"latent_avg must be [{num_ws},{w_dim}], [1,{w_dim}] or [{w_dim}], got {list(latent_avg.shape)}"
            )
        self.register_buffer("latent_avg", latent_avg.expand(num_ws, w_dim).clone())
        self._avg_cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def recurrent(self) -> bool:
        """True for ReStyle kinds (several refinement passes), False for single-pass pSp / e4e."""
        return self.kind in RECURRENT_KINDS

    @property
    def config(self) -> EncoderConfig:
        return EncoderConfig.of(self.encoder, self.kind)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, input_size={self.input_size}, num_ws={self.num_ws}"

    # -- rendering ------------------------------------------------------------------------------------

    def render(self, latents: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        """Render latents [N,num_ws,w_dim] -> [N,3,R,R]; ``transform`` None means the identity."""
        return render_latents(self.generator, latents, transform)

    def _cache_key(self) -> tuple:
        versions = sum(p._version for p in self.generator.synthesis.parameters())
        versions += sum(b._version for b in self.generator.synthesis.buffers())
        return (self.latent_avg.device, self.latent_avg._version, self.latent_avg.data_ptr(), versions)

    @torch.no_grad()
    def average_image(self) -> torch.Tensor:
        """Render of ``latent_avg`` (identity transform), resized to ``input_size``: [1,3,S,S], cached."""
        key = self._cache_key()
        if self._avg_cache is None or self._avg_cache[0] != key:
            img = self.render(self.latent_avg.unsqueeze(0))
            self._avg_cache = (key, resize_images(img, self.input_size))
        return self._avg_cache[1]

    def clear_cache(self) -> None:
        self._avg_cache = None

    # -- inference ------------------------------------------------------------------------------------

    def _encode(self, x_small: torch.Tensor, y_small: torch.Tensor | None) -> torch.Tensor:
        inp = x_small if y_small is None else torch.cat([x_small, y_small.to(x_small.dtype)], dim=1)
        return self.encoder(inp).to(torch.float32)

    @torch.no_grad()
    def invert(
        self,
        images: torch.Tensor,
        n_iters: int = 3,
        transform: torch.Tensor | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        *,
        batch_size: int | None = None,
        keep_images: bool = True,
        init: torch.Tensor | None = None,
    ) -> InversionResult:
        """Invert aligned faces.

        Args:
            images: [N,3,H,W] float in [-1,1], FFHQ-aligned; any size (resized to ``input_size`` with
                area / antialiased resampling).
            n_iters: ReStyle passes (>= 1); single-pass kinds always make one.
            transform: [3,3] or [N,3,3] input transform (stored inverse convention, e.g.
                ``AlignedFace.transform``) for the extra unaligned render of the final latents.
            progress: called as ``progress(done, total)`` after every pass of every batch.
            cancel: polled before every pass; when it returns True, :class:`Cancelled` is raised.
            batch_size: images per forward pass (all at once by default).
            keep_images: return every iteration's aligned render (all but the last are needed for the
                next pass anyway; without them the last render is skipped).
            init: starting latents [N,num_ws,w_dim] or [1,num_ws,w_dim] instead of the average latent
                (a warm start, e.g. from the previous video frame: the first pass then sees the render
                of ``init``, which costs one render per image).

        Returns:
            :class:`InversionResult` with latents per iteration [N,num_ws,w_dim] on the inverter's
            device.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images [N,3,H,W], got {list(images.shape)}")
        if n_iters < 1:
            raise ValueError("n_iters must be at least 1")
        n_iters = n_iters if self.recurrent else 1
        device = self.latent_avg.device
        n = images.shape[0]
        bs = n if not batch_size else max(1, int(batch_size))
        starts = list(range(0, n, bs))
        total = n_iters * len(starts)
        transform = batch_transform(transform, n, device)

        latents: list[list[torch.Tensor]] = [[] for _ in range(n_iters)]
        renders: list[list[torch.Tensor]] = [[] for _ in range(n_iters)]
        unaligned: list[torch.Tensor] = []
        done = 0
        for s in starts:
            x = resize_images(images[s : s + bs].to(device, torch.float32), self.input_size)
            if init is None:
                codes = self.latent_avg.unsqueeze(0).expand(x.shape[0], -1, -1)
                y_small = self.average_image().expand(x.shape[0], -1, -1, -1) if self.recurrent else None
            else:
                start = init.to(device, torch.float32)
                start = start if start.shape[0] == 1 else start[s : s + bs]
                codes = start.expand(x.shape[0], -1, -1)
                # one shared starting latent: one render, seen by every image of the batch
                y_small = (
                    resize_images(self.render(start), self.input_size).expand(x.shape[0], -1, -1, -1)
                    if self.recurrent
                    else None
                )
            for it in range(n_iters):
                check_cancel(cancel, "inversion", done, total)
                codes = self._encode(x, y_small) + codes
                latents[it].append(codes)
                more = self.recurrent and it + 1 < n_iters
                if keep_images or more:
                    y = self.render(codes)
                    if keep_images:
                        renders[it].append(y)
                    if more:
                        y_small = resize_images(y, self.input_size)
                done += 1
                if progress is not None:
                    progress(done, total)
            if transform is not None:
                t = transform if transform.ndim == 2 or transform.shape[0] == 1 else transform[s : s + bs]
                unaligned.append(self.render(codes, t))

        return InversionResult(
            latents=[torch.cat(chunks) for chunks in latents],
            images=[torch.cat(chunks) for chunks in renders] if keep_images else [],
            unaligned=torch.cat(unaligned) if unaligned else None,
            transform=transform,
        )

    def forward(self, images: torch.Tensor, n_iters: int = 3) -> torch.Tensor:
        """Final latents [N,num_ws,w_dim] of :meth:`invert` (no renders returned)."""
        return self.invert(images, n_iters, keep_images=False).latent
