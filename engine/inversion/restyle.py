"""Encoder inversion: ReStyle (iterative residual refinement) and single-pass pSp / e4e.

An :class:`Inverter` pairs an image encoder (``engine.encoders``) with the generator it was trained
for and that generator's average latent. ``Inverter.invert(images)`` turns aligned faces
[N,3,H,W] in [-1,1] into W+ codes [N,num_ws,w_dim]:

- ReStyle (``kind`` ``'restyle_psp'`` / ``'restyle_e4e'``, 6 input channels): the images are resized
  to ``input_size``; the first pass sees them next to the *average image* (the render of
  ``latent_avg`` under the identity transform, computed once and cached) and sets
  ``codes = E(.) + latent_avg``; each further pass sees them next to the resized previous render and
  sets ``codes = E(.) + codes``.
- pSp / e4e (``kind`` ``'psp'`` / ``'e4e'``, 3 input channels): one pass, ``codes = E(x) + latent_avg``.

Renders use the identity transform (encoders are trained on aligned faces); given a ``transform``
(e.g. ``engine.align.AlignedFace.transform``) the final codes are also rendered unaligned.

Files (:func:`load_inverter`, :func:`save_inverter`):

- a released stylegan3-editing encoder checkpoint (``restyle_pSp_ffhq.pt``, ``restyle_e4e_ffhq.pt``),
  read through :func:`engine.checkpoints.load_encoder_checkpoint` (``weights_only`` loading). The head
  comes from ``opts['encoder_type']`` when present, else from the key names (a ``latlayer1`` means a
  pSp/e4e pyramid) and hints of e4e training in ``opts`` or the file name; the backbone, number of
  styles, code width and input size come from the tensor shapes.
- Charm Studio's own format: ONE safetensors file holding ``encoder.*``, ``decoder.*`` (the
  generator's full state dict) and ``latent_avg`` [num_ws,w_dim], with string metadata
  ``format`` = ``"charm-studio/inverter"``, ``format_version`` = ``"1"``, ``kind`` = ``"inverter"``,
  ``encoder`` = JSON ``{kind, input_nc, n_styles, backbone, input_size, w_dim}`` (``backbone`` is a
  name from ``engine.encoders.BACKBONES`` or a ``BackboneSpec`` as a JSON object),
  ``decoder_init_kwargs`` = JSON of ``Generator(**init_kwargs)``, and free-form ``source``. The
  generator part follows the tensor naming of ``engine.checkpoints``'s generator format, so
  ``engine.checkpoints.load_generator`` also reads the decoder out of such a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.errors import CheckpointError
from engine.imageio import atomic_write
from engine.inversion.common import CancelFn, ProgressFn, check_cancel, identity_transform, resize_images

__all__ = [
    "ENCODER_TYPES",
    "INVERTER_FORMAT",
    "INVERTER_FORMAT_VERSION",
    "EncoderConfig",
    "InversionResult",
    "Inverter",
    "infer_encoder_config",
    "load_inverter",
    "save_inverter",
]

INVERTER_FORMAT = "charm-studio/inverter"
INVERTER_FORMAT_VERSION = 1

# opts['encoder_type'] of pSp / e4e / ReStyle checkpoints -> our encoder kinds.
ENCODER_TYPES: dict[str, str] = {
    "BackboneEncoder": "restyle_psp",
    "ProgressiveBackboneEncoder": "restyle_e4e",
    "GradualStyleEncoder": "psp",
    "Encoder4Editing": "e4e",
}
_RECURRENT_KINDS = ("restyle_psp", "restyle_e4e")


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class InversionResult:
    """What :meth:`Inverter.invert` produced.

    latents: one [N,num_ws,w_dim] float32 tensor per iteration (the last is the answer).
    images: the aligned render (identity transform) of each iteration's latents, [N,3,R,R] in about
        [-1,1]; empty when rendering was switched off.
    unaligned: render of the final latents with the given ``transform`` [N,3,R,R], or None.
    transform: the transform used for ``unaligned`` ([3,3] or [N,3,3]), or None.
    """

    latents: list[torch.Tensor] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)
    unaligned: torch.Tensor | None = None
    transform: torch.Tensor | None = None

    @property
    def latent(self) -> torch.Tensor:
        """Final latents [N,num_ws,w_dim]."""
        if not self.latents:
            raise ValueError("the inversion produced no latents")
        return self.latents[-1]

    @property
    def image(self) -> torch.Tensor | None:
        """Final aligned render [N,3,R,R], or None when renders were not kept."""
        return self.images[-1] if self.images else None


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

    def build(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> nn.Module:
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
            backbone = BackboneSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in backbone.items()})
        return EncoderConfig(
            str(d["kind"]), int(d["input_nc"]), int(d["n_styles"]), backbone, int(d["input_size"]), int(d["w_dim"])
        )

    @staticmethod
    def of(encoder: nn.Module, kind: str) -> EncoderConfig:
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


class Inverter(nn.Module):
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
    ``latent_avg`` or the generator's synthesis weights change in place.
    """

    def __init__(
        self,
        encoder: nn.Module,
        generator: nn.Module,
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
            latent_avg = generator.mapping.w_avg
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
        return self.kind in _RECURRENT_KINDS

    @property
    def num_ws(self) -> int:
        return int(self.generator.num_ws)

    @property
    def resolution(self) -> int:
        return int(self.generator.img_resolution)

    @property
    def config(self) -> EncoderConfig:
        return EncoderConfig.of(self.encoder, self.kind)

    def extra_repr(self) -> str:
        return f"kind={self.kind}, input_size={self.input_size}, num_ws={self.num_ws}"

    # -- rendering ------------------------------------------------------------------------------------

    def render(self, latents: torch.Tensor, transform: torch.Tensor | None = None) -> torch.Tensor:
        """Render latents [N,num_ws,w_dim] -> [N,3,R,R]; ``transform`` None means the identity."""
        if transform is None:
            transform = identity_transform(device=latents.device)
        return self.generator.synthesis(latents, transform=transform.to(latents.device, torch.float32))

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
        if transform is not None:
            transform = transform.to(device, torch.float32)
            if transform.ndim == 3 and transform.shape[0] not in (1, n):
                raise ValueError(f"transform must be [3,3] or [{n},3,3], got {list(transform.shape)}")

        latents: list[list[torch.Tensor]] = [[] for _ in range(n_iters)]
        renders: list[list[torch.Tensor]] = [[] for _ in range(n_iters)]
        unaligned: list[torch.Tensor] = []
        done = 0
        for s in starts:
            x = resize_images(images[s : s + bs].to(device, torch.float32), self.input_size)
            codes = self.latent_avg.unsqueeze(0).expand(x.shape[0], -1, -1)
            y_small = self.average_image().expand(x.shape[0], -1, -1, -1) if self.recurrent else None
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


# --------------------------------------------------------------------------------------------------
# Configuration from a state dict


def _checkpoint_error(path: os.PathLike | str, what: str, todo: str) -> CheckpointError:
    return CheckpointError(re.sub(r"\s+", " ", f"Cannot load '{path}' as an encoder: {what}. {todo}").strip())


def _style_indices(sd: dict[str, torch.Tensor]) -> list[int]:
    return sorted({int(m.group(1)) for m in (re.match(r"^styles\.(\d+)\.", k) for k in sd) if m})


def _infer_backbone(sd: dict[str, torch.Tensor], head_channels: int) -> Any:
    from engine.encoders import BACKBONES, BackboneSpec

    stem = int(sd["input_layer.0.weight"].shape[0])
    units = sorted({int(m.group(1)) for m in (re.match(r"^body\.(\d+)\.", k) for k in sd) if m})
    if not units or units != list(range(len(units))):
        raise ValueError("backbone units body.0.. are missing or not numbered consecutively")
    widths = [int(sd[f"body.{i}.res_layer.1.weight"].shape[0]) for i in units]
    use_se = "body.0.res_layer.5.fc1.weight" in sd
    for name, spec in BACKBONES.items():
        expanded = [c for c, u in zip(spec.channels, spec.units) for _ in range(u)]
        if (spec.stem_channels, expanded, spec.use_se, spec.style_channels) == (stem, widths, use_se, head_channels):
            if not use_se or int(sd["body.0.res_layer.5.fc1.weight"].shape[0]) == max(
                1, widths[0] // spec.se_reduction
            ):
                return name
    # Not a named backbone: a new stage starts where the width changes.
    channels, counts = [], []
    for w in widths:
        if channels and channels[-1] == w:
            counts[-1] += 1
        else:
            channels.append(w)
            counts.append(1)
    if len(channels) != 4:
        raise ValueError(f"cannot split the backbone's {len(widths)} units into 4 stages (widths {widths})")
    se_reduction = 16
    if use_se:
        se_reduction = max(1, widths[0] // int(sd["body.0.res_layer.5.fc1.weight"].shape[0]))
    return BackboneSpec(
        stem,
        tuple(channels),
        tuple(counts),
        use_se,
        se_reduction,
        None if head_channels == channels[-1] else head_channels,
    )


def infer_encoder_config(
    state_dict: dict[str, torch.Tensor], opts: dict[str, Any] | None = None, name: str = ""
) -> EncoderConfig:
    """Encoder configuration from a released-layout encoder state dict (``encoder.`` prefix removed).

    The head type comes from ``opts['encoder_type']`` when present; otherwise a ``latlayer1`` entry
    means a pSp / e4e pyramid, and e4e is chosen over pSp when ``opts`` holds e4e training options
    (``progressive_*``, ``w_discriminator_*``) or ``name`` (the file name) mentions e4e. Shapes give
    the backbone, number of styles, code width and input size. Tensors may live on the meta device.
    Raises ValueError when the entries do not describe a supported encoder.
    """
    sd = state_dict
    opts = dict(opts or {})
    if "input_layer.0.weight" not in sd or "styles.0.linear.weight" not in sd:
        raise ValueError("no IR-SE backbone with style heads (input_layer.0.weight / styles.0.linear.weight)")
    input_nc = int(sd["input_layer.0.weight"].shape[1])
    styles = _style_indices(sd)
    if styles != list(range(len(styles))):
        raise ValueError("style heads styles.0.. are not numbered consecutively")
    w_dim, head_channels = (int(s) for s in sd["styles.0.linear.weight"].shape)
    n_convs = len({k for k in sd if re.match(r"^styles\.0\.convs\.\d+\.weight$", k)})
    if n_convs < 1:
        raise ValueError("style head styles.0 has no convolutions")
    pyramid = "latlayer1.weight" in sd
    backbone = _infer_backbone(sd, head_channels)

    encoder_type = opts.get("encoder_type")
    if encoder_type is not None:
        kind = ENCODER_TYPES.get(str(encoder_type))
        if kind is None:
            raise ValueError(f"encoder type {encoder_type!r} is not supported (supported: {', '.join(ENCODER_TYPES)})")
        if pyramid != (kind in ("psp", "e4e")):
            raise ValueError(
                f"opts say {encoder_type} but the weights are those of a "
                f"{'pSp/e4e pyramid' if pyramid else 'ReStyle backbone'} encoder"
            )
    else:
        e4e_hints = (
            any(str(k).startswith(("progressive_", "w_discriminator", "delta_norm")) for k in opts)
            or "e4e" in name.lower()
        )
        kind = ("e4e" if e4e_hints else "psp") if pyramid else ("restyle_e4e" if e4e_hints else "restyle_psp")
    expected_nc = 6 if kind in _RECURRENT_KINDS else 3
    if input_nc != expected_nc:
        raise ValueError(f"a {kind} encoder takes {expected_nc} input channels, these weights take {input_nc}")
    # The backbone has 4 stride-2 stages; the coarsest head halves its 2**n_convs map down to 1x1.
    input_size = 16 * 2**n_convs
    return EncoderConfig(kind, input_nc, len(styles), backbone, input_size, w_dim)


def _build_encoder_from_state(
    config: EncoderConfig, state: dict[str, torch.Tensor], device: torch.device | str
) -> nn.Module:
    shell = config.build(device="meta")
    expected = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing, e.g. '{missing[0]}'")
        if extra:
            parts.append(f"{len(extra)} unexpected, e.g. '{extra[0]}'")
        if wrong:
            parts.append(f"'{wrong[0]}' is {list(state[wrong[0]].shape)}, expected {list(expected[wrong[0]])}")
        raise ValueError("; ".join(parts))
    ref = shell.state_dict()
    typed = {
        k: (v.to(torch.float32) if ref[k].is_floating_point() else v.to(ref[k].dtype)).contiguous()
        for k, v in state.items()
    }
    shell.load_state_dict(typed, strict=True, assign=True)
    return shell.to(device).eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------------
# Files


def _read_safetensors_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _load_own(path: Path, device: torch.device | str) -> Inverter:
    from safetensors import safe_open

    from engine.checkpoints import build_generator

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends
        raise _checkpoint_error(
            path, f"the file is truncated or corrupt ({type(e).__name__})", "Copy or download it again."
        ) from None
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version < 1 or version > INVERTER_FORMAT_VERSION:
        raise _checkpoint_error(
            path,
            f"it has format version {meta.get('format_version')!r}",
            "It was written by a newer Charm Studio; update to read it.",
        )
    try:
        config = EncoderConfig.from_json(json.loads(meta["encoder"]))
        gen_kwargs = json.loads(meta["decoder_init_kwargs"])
    except (KeyError, ValueError, TypeError) as e:
        raise _checkpoint_error(
            path,
            f"its configuration is unreadable ({type(e).__name__}: {e})",
            "The file is damaged; write it again with save_inverter.",
        ) from None
    enc_state = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
    dec_state = {k[len("decoder.") :]: v.to(torch.float32) for k, v in tensors.items() if k.startswith("decoder.")}
    try:
        encoder = _build_encoder_from_state(config, enc_state, device)
    except ValueError as e:
        raise _checkpoint_error(
            path,
            f"its encoder weights do not match its configuration ({e})",
            "The file is damaged; write it again with save_inverter.",
        ) from None
    generator = build_generator(gen_kwargs, dec_state, path=path, device=device)
    latent_avg = tensors.get("latent_avg")
    try:
        return (
            Inverter(
                encoder,
                generator,
                None if latent_avg is None else latent_avg.to(device, torch.float32),
                kind=config.kind,
                input_size=config.input_size,
            )
            .to(device)
            .eval()
        )
    except ValueError as e:
        raise _checkpoint_error(path, str(e), "The file is damaged; write it again with save_inverter.") from None


def _load_released(path: Path, device: torch.device | str) -> Inverter:
    from engine.checkpoints import load_encoder_checkpoint

    ckpt = load_encoder_checkpoint(path)
    if ckpt.decoder_init_kwargs is None:
        raise _checkpoint_error(
            path,
            "it holds no generator (no 'decoder.*' weights)",
            "Use an encoder checkpoint from stylegan3-editing that embeds its generator, "
            "such as restyle_pSp_ffhq.pt or restyle_e4e_ffhq.pt.",
        )
    try:
        config = infer_encoder_config(ckpt.encoder_state, ckpt.opts, path.name)
        encoder = _build_encoder_from_state(config, ckpt.encoder_state, device)
    except (ValueError, KeyError, IndexError) as e:
        raise _checkpoint_error(
            path,
            f"its encoder is not one Charm Studio can run ({e})",
            "Use restyle_pSp_ffhq.pt or restyle_e4e_ffhq.pt from stylegan3-editing, "
            "or a pSp / e4e checkpoint with an IR-SE backbone.",
        ) from None
    generator = ckpt.build_decoder(device=device)
    latent_avg = ckpt.latent_avg
    try:
        return (
            Inverter(
                encoder,
                generator,
                None if latent_avg is None else latent_avg.to(device, torch.float32),
                kind=config.kind,
                input_size=config.input_size,
            )
            .to(device)
            .eval()
        )
    except ValueError as e:
        raise _checkpoint_error(path, str(e), "The encoder and its generator do not belong together.") from None


def load_inverter(path: os.PathLike | str, device: torch.device | str = "cpu") -> Inverter:
    """Load an :class:`Inverter` from a released stylegan3-editing encoder checkpoint or our format.

    Released ``.pt`` files are read with ``torch.load(weights_only=True)`` (through
    :mod:`engine.checkpoints`); nothing in a file is executed. The result is in eval mode with
    ``requires_grad`` off. Raises :class:`engine.errors.CheckpointError` (one line naming the file)
    for anything it cannot load.
    """
    from engine.checkpoints import sniff_format

    p = Path(path)
    container = sniff_format(p)
    if container == "safetensors":
        try:
            meta = _read_safetensors_meta(p)
        except Exception as e:  # noqa: BLE001
            raise _checkpoint_error(
                p, f"the file is truncated or corrupt ({type(e).__name__})", "Copy or download it again."
            ) from None
        if meta.get("format") != INVERTER_FORMAT:
            raise _checkpoint_error(
                p,
                f"it is a safetensors file without an encoder (no format={INVERTER_FORMAT!r} metadata)",
                "Pass an inverter written by save_inverter or a released encoder .pt file.",
            )
        return _load_own(p, device)
    if container in ("torch-zip", "torch-legacy"):
        return _load_released(p, device)
    raise _checkpoint_error(
        p,
        "it is a network pickle, not an encoder checkpoint",
        "Use restyle_pSp_ffhq.pt / restyle_e4e_ffhq.pt or a file written by save_inverter.",
    )


def save_inverter(
    inverter: Inverter, path: os.PathLike | str, *, dtype: torch.dtype = torch.float32, source: str = ""
) -> Path:
    """Write ``inverter`` in Charm Studio's format (see the module docstring); returns the path.

    ``dtype`` is the storage type of floating-point weights (float16 halves the file; weights come
    back as float32). The file appears atomically (temporary file, then rename).
    """
    from safetensors.torch import save_file

    from engine.checkpoints import plain_json

    p = Path(path)
    tensors: dict[str, torch.Tensor] = {}

    def put(prefix: str, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            v = v.detach().to("cpu")
            tensors[prefix + k] = (v.to(dtype) if v.is_floating_point() else v).contiguous().clone()

    put("encoder.", inverter.encoder.state_dict())
    put("decoder.", inverter.generator.state_dict())
    tensors["latent_avg"] = inverter.latent_avg.detach().to("cpu", torch.float32).contiguous().clone()
    metadata = {
        "format": INVERTER_FORMAT,
        "format_version": str(INVERTER_FORMAT_VERSION),
        "kind": "inverter",
        "encoder": json.dumps(inverter.config.to_json(), sort_keys=True),
        "decoder_init_kwargs": json.dumps(plain_json(dict(inverter.generator.init_kwargs)), sort_keys=True),
        "source": source,
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(p, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
