"""Loading StyleGAN3 generators from the files users bring, without ever running code from them.

Formats read by :func:`load_generator` (recognised by their first bytes, not by their extension):

- **NVIDIA ``.pkl``** (the official release): a pickle of ``dict(G, D, G_ema, augment_pipe,
  training_set_kwargs)`` whose networks are "persistent" objects carrying their own Python source.
  Loading them the usual way executes that source. Here they are read by the restricted unpickler of
  :mod:`engine.pickle_reader`, which hands back each network as a :class:`PersistentObject` (class
  name and state) and drops the source unread. The state dict is rebuilt from each module's
  ``_parameters``, ``_buffers`` and ``_modules``; the constructor arguments come from
  ``_init_kwargs``. ``G_ema`` is preferred over ``G``.
- **stylegan3-editing generator ``.pt``**: a plain ``G_ema.state_dict()`` written by ``torch.save``.
  The construction arguments are inferred from the tensor names and shapes
  (:func:`engine.generator_config.infer_init_kwargs`) and checked by building the network and
  comparing every shape (:func:`state_dict_mismatch`).
- **stylegan3-editing encoder checkpoint ``.pt``**: a dict with ``state_dict`` (``encoder.*`` and
  ``decoder.*``), ``opts`` (holding ``pathlib`` paths), ``latent_avg`` and optional training state.
  Its decoder is the generator; ``synthesis.input.transform`` is dropped (it is set per image).
  :func:`load_encoder_checkpoint` also hands back the encoder weights for :mod:`engine.inversion`.
- **Charm Studio ``.safetensors``** (written by ``python main.py convert IN OUT``, see
  :func:`save_generator`): ONE file, the generator's full ``state_dict()`` as safetensors tensors, and
  the configuration in the safetensors header metadata (string values):
  ``format`` = ``"charm-studio/stylegan3-generator"``, ``format_version`` = ``"1"``,
  ``kind`` = ``"stylegan3"``, ``init_kwargs`` = JSON of the ``Generator(**init_kwargs)`` arguments,
  ``source`` = name of the file it was converted from, ``source_format``. A safetensors file without
  this metadata is read as a plain state dict (shapes are inferred as for ``.pt``).

``.pt`` files are read with ``torch.load(weights_only=True)``; only ``pathlib`` paths, NumPy scalars
and arrays and ``argparse.Namespace`` are added to torch's allowlist
(:func:`engine.pickle_reader.torch_load`). Every failure (missing, empty, truncated or corrupt file, a
web page saved under a model's name, a refused name in a pickle, another architecture) raises a
one-line :class:`engine.errors.CheckpointError` that names the file and says what to do.

:class:`PersistentObject`, :class:`RestrictedUnpickler` and :func:`sniff_format` live in
:mod:`engine.pickle_reader`, :func:`infer_init_kwargs` and :func:`plain_json` in
:mod:`engine.generator_config`; they stay importable from here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.errors import CheckpointError, cannot_load, corrupt_file, short_reason
from engine.generator_config import infer_init_kwargs, plain_json, unknown_kwargs
from engine.imageio import atomic_write
from engine.pickle_reader import (
    PersistentObject,
    RestrictedUnpickler,
    read_restricted_pickle,
    sniff_format,
    torch_load,
)

if TYPE_CHECKING:
    from engine.networks.stylegan3 import Generator

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GeneratorCheckpoint",
    "EncoderCheckpoint",
    "PersistentObject",
    "RestrictedUnpickler",
    "load_generator",
    "read_generator_checkpoint",
    "load_encoder_checkpoint",
    "build_generator",
    "infer_init_kwargs",
    "plain_json",
    "save_generator",
    "sniff_format",
    "state_dict_mismatch",
]

FORMAT_NAME = "charm-studio/stylegan3-generator"
FORMAT_VERSION = 1

_TRANSFORM_KEY = "synthesis.input.transform"
_POSITIONAL_ORDER = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


# --------------------------------------------------------------------------------------------------
# Results


@dataclass
class GeneratorCheckpoint:
    """A generator read from a file: weights, constructor arguments and where they came from.

    ``state_dict`` uses the release's names; ``source_format`` is one of ``"nvidia-pkl"``,
    ``"state-dict"``, ``"encoder-checkpoint"``, ``"charm-safetensors"``.
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    init_kwargs: dict[str, Any]
    source_format: str

    def describe(self) -> str:
        """Short human description, e.g. ``StyleGAN3-R 1024 px (z 512, w 512)``."""
        kw = self.init_kwargs
        cfg = "R" if kw.get("use_radial_filters") else "T"
        cond = f", {kw['c_dim']} classes" if kw.get("c_dim") else ""
        return f"StyleGAN3-{cfg} {kw['img_resolution']} px (z {kw['z_dim']}, w {kw['w_dim']}{cond})"


@dataclass
class EncoderCheckpoint:
    """A stylegan3-editing encoder checkpoint (ReStyle pSp / e4e), split into its parts.

    ``encoder_state`` and ``decoder_state`` have their ``encoder.`` / ``decoder.`` prefixes removed;
    ``decoder_state`` lacks ``synthesis.input.transform``. ``opts`` is the training options dict
    (paths come back as ``pathlib.PurePosixPath`` / ``PureWindowsPath``). ``decoder_init_kwargs`` is
    None when the file holds no decoder.
    """

    path: Path
    encoder_state: dict[str, torch.Tensor]
    decoder_state: dict[str, torch.Tensor]
    decoder_init_kwargs: dict[str, Any] | None
    latent_avg: torch.Tensor | None
    opts: dict[str, Any] = field(default_factory=dict)

    def build_decoder(self, device: str | torch.device = "cpu") -> Generator:
        """The decoder as a :class:`engine.Generator` in eval mode (identity transform)."""
        if self.decoder_init_kwargs is None:
            raise cannot_load(
                self.path,
                "it holds no decoder (no 'decoder.*' weights)",
                "Use an encoder checkpoint from stylegan3-editing that embeds its generator.",
            )
        return build_generator(self.decoder_init_kwargs, self.decoder_state, path=self.path, device=device)


# --------------------------------------------------------------------------------------------------
# From loaded objects to a generator state dict


def _module_state_dict(obj: PersistentObject, path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, PersistentObject):
            raise cannot_load(
                path,
                f"the network pickle holds an unexpected object at '{prefix or 'G'}' ({type(node).__name__})",
                "Use an official StyleGAN3 .pkl or convert the weights to a state dict .pt.",
            )
        state = node.state
        params = state.get("_parameters") or {}
        buffers = state.get("_buffers") or {}
        skip = state.get("_non_persistent_buffers_set") or set()
        for name, t in list(params.items()) + [(n, b) for n, b in buffers.items() if n not in skip]:
            if t is None:
                continue
            if not isinstance(t, torch.Tensor):
                raise corrupt_file(path, f"entry '{prefix}{name}' is not a tensor")
            out[prefix + name] = t.detach()
        for name, child in (state.get("_modules") or {}).items():
            if child is not None:
                walk(child, f"{prefix}{name}.")

    walk(obj, "")
    return out


def _init_kwargs_from_persistent(obj: PersistentObject) -> dict[str, Any] | None:
    kwargs = obj.state.get("_init_kwargs")
    args = obj.state.get("_init_args") or ()
    if kwargs is None and not args:
        return None
    out = plain_json(dict(kwargs or {}))
    for name, value in zip(_POSITIONAL_ORDER, args):
        out.setdefault(name, plain_json(value))
    return out


def _strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}


def _is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def _what_is_it(keys: Iterable[str]) -> str:
    keys = list(keys)
    if any(re.match(r"^(.*\.)?synthesis\.b\d+\.", k) for k in keys):
        return "a StyleGAN2 / StyleGAN2-ADA generator (layers 'synthesis.b4...')"
    if any(k.startswith(("convs.", "to_rgbs.", "style.")) or ".convs." in k for k in keys):
        return "a StyleGAN2 generator in the rosinality layout ('convs', 'to_rgbs')"
    if keys and all(k.startswith("encoder.") for k in keys):
        return "an encoder without a generator"
    sample = ", ".join(repr(k) for k in keys[:3])
    return f"other weights (entries like {sample})" if sample else "no weights at all"


def _other_architecture(path: Path, what: str) -> CheckpointError:
    return cannot_load(
        path,
        f"it holds {what}, not a StyleGAN3 generator",
        "Use a StyleGAN3 (T or R) generator: an NVIDIA stylegan3-*.pkl, a stylegan3-editing "
        "generator .pt or encoder checkpoint, or a file written by 'python main.py convert'.",
    )


def _generator_state_from_tensor_dict(state: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if "synthesis.input.weight" in tensors:
        return tensors
    for prefix in ("decoder.", "G_ema.", "g_ema.", "generator.", "module."):
        if prefix + "synthesis.input.weight" in tensors:
            return _strip_prefix(tensors, prefix)
    raise _other_architecture(path, _what_is_it(tensors))


def _from_loaded_object(obj: Any, path: Path) -> GeneratorCheckpoint:
    if isinstance(obj, dict):
        # NVIDIA network pickle: prefer the moving average of the weights.
        for key in ("G_ema", "G"):
            net = obj.get(key)
            if isinstance(net, PersistentObject):
                if net.class_name != "Generator":
                    raise _other_architecture(path, f"a '{net.class_name}' network under '{key}'")
                state = _module_state_dict(net, path)
                if "synthesis.input.weight" not in state:
                    raise _other_architecture(path, _what_is_it(state))
                kwargs = _init_kwargs_from_persistent(net)
                if kwargs is None:
                    kwargs = _infer_or_fail(state, path)
                else:
                    kwargs = _drop_unknown_kwargs(kwargs, path)
                return GeneratorCheckpoint(path, state, kwargs, "nvidia-pkl")
        if isinstance(obj.get("state_dict"), dict):
            inner = obj["state_dict"]
            if any(k.startswith("decoder.") for k in inner):
                state = _strip_prefix(inner, "decoder.")
                state.pop(_TRANSFORM_KEY, None)
                if "synthesis.input.weight" not in state:
                    raise _other_architecture(path, _what_is_it(state))
                state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
                return GeneratorCheckpoint(path, state, _infer_or_fail(state, path), "encoder-checkpoint")
            if _is_tensor_dict(inner):
                state = _generator_state_from_tensor_dict(inner, path)
                return GeneratorCheckpoint(path, state, _infer_or_fail(state, path), "state-dict")
        for key in ("G_ema", "g_ema", "generator"):
            if _is_tensor_dict(obj.get(key)):
                state = _generator_state_from_tensor_dict(obj[key], path)
                return GeneratorCheckpoint(path, state, _infer_or_fail(state, path), "state-dict")
        if _is_tensor_dict(obj):
            state = _generator_state_from_tensor_dict(obj, path)
            return GeneratorCheckpoint(path, state, _infer_or_fail(state, path), "state-dict")
        if isinstance(obj.get("D"), PersistentObject) or "augment_pipe" in obj:
            raise _other_architecture(path, "a network pickle without 'G_ema' or 'G'")
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        raise _other_architecture(path, f"a dict with entries {keys or '(none)'}")
    if isinstance(obj, PersistentObject):
        return _from_loaded_object({"G_ema": obj}, path)
    raise _other_architecture(path, f"a {type(obj).__name__} object")


def _infer_or_fail(state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    try:
        return infer_init_kwargs(state)
    except (ValueError, KeyError, IndexError, AttributeError) as e:
        if "synthesis.input.weight" not in state:
            raise _other_architecture(path, _what_is_it(state)) from None
        raise cannot_load(
            path,
            f"its StyleGAN3 weights have an unexpected layout ({e})",
            "The file may be damaged or come from a modified StyleGAN3; re-export G_ema's "
            "state_dict() with the official code.",
        ) from None


# --------------------------------------------------------------------------------------------------
# Building


def state_dict_mismatch(module: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """How ``state`` differs from ``module.state_dict()`` in names and shapes ("" when it fits): the
    number of missing and unexpected entries with an example of each, and the first wrong shape."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing, e.g. '{missing[0]}'")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. '{extra[0]}'")
    if wrong:
        k = wrong[0]
        parts.append(f"'{k}' is {list(state[k].shape)}, expected {list(expected[k])}")
    return "; ".join(parts)


def _drop_unknown_kwargs(kwargs: dict[str, Any], path: Path) -> dict[str, Any]:
    # A fork's extra constructor options: keep going without them; the shape check that follows
    # catches any that change the network's structure.
    unknown = unknown_kwargs(kwargs)
    if not unknown:
        return kwargs
    warnings.warn(f"{path}: ignoring unknown generator options {', '.join(unknown)}", stacklevel=3)
    out = {k: v for k, v in kwargs.items() if k not in unknown}
    if isinstance(out.get("mapping_kwargs"), dict):
        out["mapping_kwargs"] = {k: v for k, v in out["mapping_kwargs"].items() if f"mapping_kwargs.{k}" not in unknown}
    return out


def _check_init_kwargs(kwargs: dict[str, Any], path: Path) -> dict[str, Any]:
    kwargs = plain_json(dict(kwargs))
    unknown = unknown_kwargs(kwargs)
    if unknown:
        raise cannot_load(
            path,
            f"its generator uses construction options Charm Studio does not know ({', '.join(unknown)})",
            "It is not a standard StyleGAN3 generator; export G_ema's state_dict() and retry.",
        )
    missing = sorted({"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"} - set(kwargs))
    if missing:
        raise cannot_load(
            path,
            f"its generator configuration lacks {', '.join(missing)}",
            "The file may be damaged; download it again.",
        )
    return kwargs


def build_generator(
    init_kwargs: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    path: os.PathLike | str = "<memory>",
    device: str | torch.device = "cpu",
) -> Generator:
    """``Generator(**init_kwargs)`` with ``state_dict`` loaded, checked shape by shape.

    A missing ``synthesis.input.transform`` becomes the identity. The result is in eval mode with
    ``requires_grad`` off (as the release's ``G_ema``); call ``requires_grad_(True)`` to fine-tune.
    """
    from engine.networks.stylegan3 import Generator

    path = Path(path)
    kwargs = _check_init_kwargs(init_kwargs, path)
    try:
        G = Generator(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise cannot_load(
            path,
            f"its generator configuration cannot be built ({short_reason(e)})",
            "The file may be damaged or come from a modified StyleGAN3.",
        ) from None
    state = dict(state_dict)
    if _TRANSFORM_KEY in G.state_dict() and _TRANSFORM_KEY not in state:
        state[_TRANSFORM_KEY] = torch.eye(3)
    mismatch = state_dict_mismatch(G, state)
    if mismatch:
        raise cannot_load(
            path,
            f"its weights do not match the StyleGAN3 layout they describe ({mismatch})",
            "The file may be damaged or come from a modified StyleGAN3; download it again or "
            "re-export G_ema's state_dict() with the official code.",
        )
    for k, v in state.items():
        if not v.is_floating_point():
            raise corrupt_file(path, f"entry '{k}' is not floating point ({v.dtype})")
    with torch.no_grad():
        G.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    return G.eval().requires_grad_(False).to(device)


# --------------------------------------------------------------------------------------------------
# Our format


def _read_safetensors(path: Path) -> GeneratorCheckpoint:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - SafetensorError and friends
        raise corrupt_file(path, e) from None
    if meta.get("format") == FORMAT_NAME:
        try:
            version = int(meta.get("format_version", "0"))
        except ValueError:
            version = -1
        if version > FORMAT_VERSION or version < 1:
            raise cannot_load(
                path,
                f"it was written by a newer Charm Studio (format version {meta.get('format_version')})",
                "Update Charm Studio to read it.",
            )
        if meta.get("kind", "stylegan3") != "stylegan3":
            raise _other_architecture(path, f"a '{meta.get('kind')}' model")
        try:
            kwargs = json.loads(meta["init_kwargs"])
        except (KeyError, json.JSONDecodeError) as e:
            raise corrupt_file(path, f"its configuration is unreadable ({short_reason(e)})") from None
        return GeneratorCheckpoint(path, state, kwargs, "charm-safetensors")
    state = _generator_state_from_tensor_dict(state, path)
    return GeneratorCheckpoint(path, state, _infer_or_fail(state, path), "state-dict")


def save_generator(
    checkpoint: GeneratorCheckpoint | Generator, out: os.PathLike | str, source: str | None = None
) -> Path:
    """Write a generator in Charm Studio's format (see the module docstring); returns the path.

    ``checkpoint`` is a :class:`GeneratorCheckpoint` or an :class:`engine.Generator` (its
    ``init_kwargs`` and ``state_dict()`` are written). The file appears atomically (temp + rename).
    """
    from safetensors.torch import save_file

    out = Path(out)
    if isinstance(checkpoint, GeneratorCheckpoint):
        state, kwargs = checkpoint.state_dict, checkpoint.init_kwargs
        source = source or checkpoint.path.name
        source_format = checkpoint.source_format
    else:
        state, kwargs = checkpoint.state_dict(), checkpoint.init_kwargs
        source_format = "generator"
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in state.items()}
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "kind": "stylegan3",
        "init_kwargs": json.dumps(plain_json(dict(kwargs)), sort_keys=True),
        "source": source or "",
        "source_format": source_format,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return out


# --------------------------------------------------------------------------------------------------
# Public entry points


def read_generator_checkpoint(path: os.PathLike | str) -> GeneratorCheckpoint:
    """Read a generator's weights and constructor arguments from any supported file (no network built)."""
    p = Path(path)
    kind = sniff_format(p)
    if kind == "safetensors":
        return _read_safetensors(p)
    obj = read_restricted_pickle(p) if kind == "pickle" else torch_load(p)
    return _from_loaded_object(obj, p)


def load_generator(path: os.PathLike | str, device: str | torch.device = "cpu") -> Generator:
    """Load a StyleGAN3 generator from an NVIDIA .pkl, a stylegan3-editing .pt (generator or encoder
    checkpoint) or a Charm Studio .safetensors file; returns an :class:`engine.Generator` in eval mode.

    Raises :class:`engine.errors.CheckpointError` (one line, naming the file and what to do) for any
    file it cannot or will not load. Never executes code from the file.
    """
    ckpt = read_generator_checkpoint(path)
    G = build_generator(ckpt.init_kwargs, ckpt.state_dict, path=ckpt.path, device=device)
    return G


def load_encoder_checkpoint(path: os.PathLike | str) -> EncoderCheckpoint:
    """Read a stylegan3-editing encoder checkpoint (ReStyle pSp / e4e) into its parts.

    The decoder's configuration is inferred from its shapes; build it with
    :meth:`EncoderCheckpoint.build_decoder`.
    """
    p = Path(path)
    kind = sniff_format(p)
    if kind not in ("torch-zip", "torch-legacy"):
        raise cannot_load(
            p,
            "it is not an encoder checkpoint (expected a torch.save file with 'state_dict')",
            "Use restyle_pSp_ffhq.pt or restyle_e4e_ffhq.pt from stylegan3-editing.",
        )
    obj = torch_load(p)
    inner = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(inner, dict) or not any(str(k).startswith("encoder.") for k in inner):
        what = _what_is_it(inner if isinstance(inner, dict) else (obj if isinstance(obj, dict) else {}))
        raise cannot_load(
            p,
            f"it is not an encoder checkpoint: no 'state_dict' with 'encoder.*' weights (it holds {what})",
            "Use restyle_pSp_ffhq.pt or restyle_e4e_ffhq.pt from stylegan3-editing.",
        )
    encoder = {k: v for k, v in _strip_prefix(inner, "encoder.").items() if isinstance(v, torch.Tensor)}
    decoder = {k: v for k, v in _strip_prefix(inner, "decoder.").items() if isinstance(v, torch.Tensor)}
    decoder.pop(_TRANSFORM_KEY, None)
    decoder_kwargs = _infer_or_fail(decoder, p) if decoder else None
    latent_avg = obj.get("latent_avg")
    if latent_avg is not None and not isinstance(latent_avg, torch.Tensor):
        latent_avg = torch.as_tensor(np.asarray(latent_avg, dtype=np.float32))
    opts = obj.get("opts")
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    return EncoderCheckpoint(
        path=p,
        encoder_state=encoder,
        decoder_state=decoder,
        decoder_init_kwargs=decoder_kwargs,
        latent_avg=latent_avg,
        opts=dict(opts) if isinstance(opts, dict) else {},
    )
