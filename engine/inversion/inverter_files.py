"""Inverter files: released stylegan3-editing encoder checkpoints and Charm Studio's own format.

:func:`load_inverter` reads either into an :class:`engine.inversion.restyle.Inverter`;
:func:`save_inverter` writes the latter; :func:`infer_encoder_config` tells an encoder's
configuration from its weights.

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

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine.errors import CheckpointError
from engine.imageio import atomic_write
from engine.inversion.restyle import ENCODER_TYPES, RECURRENT_KINDS, EncoderConfig, Inverter

if TYPE_CHECKING:
    from engine.encoders import EncoderBase
    from engine.networks.stylegan3 import Generator

__all__ = [
    "INVERTER_FORMAT",
    "INVERTER_FORMAT_VERSION",
    "infer_encoder_config",
    "load_inverter",
    "save_inverter",
]

INVERTER_FORMAT = "charm-studio/inverter"
INVERTER_FORMAT_VERSION = 1


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
    channels: list[int] = []
    counts: list[int] = []
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
    expected_nc = 6 if kind in RECURRENT_KINDS else 3
    if input_nc != expected_nc:
        raise ValueError(f"a {kind} encoder takes {expected_nc} input channels, these weights take {input_nc}")
    # The backbone has 4 stride-2 stages; the coarsest head halves its 2**n_convs map down to 1x1.
    input_size = 16 * 2**n_convs
    return EncoderConfig(kind, input_nc, len(styles), backbone, input_size, w_dim)


def _build_encoder_from_state(
    config: EncoderConfig, state: dict[str, torch.Tensor], device: torch.device | str
) -> EncoderBase:
    from engine.checkpoints import state_dict_mismatch

    shell = config.build(device="meta")
    mismatch = state_dict_mismatch(shell, state)
    if mismatch:
        raise ValueError(mismatch)
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


def _assemble(
    path: Path,
    config: EncoderConfig,
    encoder: EncoderBase,
    generator: Generator,
    latent_avg: torch.Tensor | None,
    device: torch.device | str,
    todo: str,
) -> Inverter:
    """The :class:`Inverter` of a file's parts on ``device`` in eval mode; ``todo`` ends the error
    message when the parts do not fit together."""
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
        raise _checkpoint_error(path, str(e), todo) from None


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
    return _assemble(
        path,
        config,
        encoder,
        generator,
        tensors.get("latent_avg"),
        device,
        "The file is damaged; write it again with save_inverter.",
    )


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
    return _assemble(
        path,
        config,
        encoder,
        generator,
        ckpt.latent_avg,
        device,
        "The encoder and its generator do not belong together.",
    )


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

    from engine.generator_config import plain_json

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
