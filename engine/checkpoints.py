"""Loading StyleGAN3 generators from the files users bring, without ever running code from them.

Formats read by :func:`load_generator` (recognised by their first bytes, not by their extension):

- **NVIDIA ``.pkl``** (the official release): a pickle of ``dict(G, D, G_ema, augment_pipe,
  training_set_kwargs)`` whose networks are "persistent" objects carrying their own Python source.
  Loading them the usual way executes that source. Here a restricted unpickler
  (:class:`RestrictedUnpickler`) resolves only an allowlist of names; the persistent-object hook is
  replaced by a stub that returns the object's class name and state, and the source text is dropped
  unread. The state dict is rebuilt from each module's ``_parameters``, ``_buffers`` and ``_modules``;
  the constructor arguments come from ``_init_kwargs``. ``G_ema`` is preferred over ``G``.
- **stylegan3-editing generator ``.pt``**: a plain ``G_ema.state_dict()`` written by ``torch.save``.
  The construction arguments are inferred from the tensor names and shapes
  (:func:`infer_init_kwargs`) and checked by building the network and comparing every shape.
- **stylegan3-editing encoder checkpoint ``.pt``**: a dict with ``state_dict`` (``encoder.*`` and
  ``decoder.*``), ``opts`` (holding ``pathlib`` paths), ``latent_avg`` and optional training state.
  Its decoder is the generator; ``synthesis.input.transform`` is dropped (it is set per image).
  :func:`load_encoder_checkpoint` also hands back the encoder weights for the inversion room.
- **Charm Studio ``.safetensors``** (written by ``python main.py convert IN OUT``, see
  :func:`save_generator`): ONE file, the generator's full ``state_dict()`` as safetensors tensors, and
  the configuration in the safetensors header metadata (string values):
  ``format`` = ``"charm-studio/stylegan3-generator"``, ``format_version`` = ``"1"``,
  ``kind`` = ``"stylegan3"``, ``init_kwargs`` = JSON of the ``Generator(**init_kwargs)`` arguments,
  ``source`` = name of the file it was converted from, ``source_format``. A safetensors file without
  this metadata is read as a plain state dict (shapes are inferred as for ``.pt``).

``.pt`` files are read with ``torch.load(weights_only=True)``; only ``pathlib`` paths, NumPy scalars
and arrays and ``argparse.Namespace`` are added to torch's allowlist. Every failure (missing, empty,
truncated or corrupt file, a web page saved under a model's name, a refused name in a pickle, another
architecture) raises a one-line :class:`engine.errors.CheckpointError` that names the file and says
what to do.
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import math
import os
import pathlib
import pickle
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import CheckpointError
from engine.imageio import atomic_write

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
]

FORMAT_NAME = "charm-studio/stylegan3-generator"
FORMAT_VERSION = 1

# Batch 32 training value, the one every released StyleGAN3 network used; it only matters for training.
DEFAULT_MAGNITUDE_EMA_BETA = 0.5 ** (32 / 20000)

_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_TRANSFORM_KEY = "synthesis.input.transform"
_LAYER_RE = re.compile(r"^synthesis\.L(\d+)_(\d+)_(\d+)\.weight$")
_FC_RE = re.compile(r"^mapping\.fc(\d+)\.weight$")

_GENERATOR_KWARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs"}
_SYNTHESIS_KWARGS = {
    "channel_base",
    "channel_max",
    "num_layers",
    "num_critical",
    "first_cutoff",
    "first_stopband",
    "last_stopband_rel",
    "margin_size",
    "output_scale",
    "num_fp16_res",
    "conv_kernel",
    "filter_size",
    "lrelu_upsampling",
    "use_radial_filters",
    "conv_clamp",
    "magnitude_ema_beta",
}
_MAPPING_KWARGS = {"num_layers", "lr_multiplier", "w_avg_beta"}
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

    def build_decoder(self, device: str | torch.device = "cpu") -> torch.nn.Module:
        """The decoder as a :class:`engine.Generator` in eval mode (identity transform)."""
        if self.decoder_init_kwargs is None:
            raise _error(
                self.path,
                "it holds no decoder (no 'decoder.*' weights)",
                "Use an encoder checkpoint from stylegan3-editing that embeds its generator.",
            )
        return build_generator(self.decoder_init_kwargs, self.decoder_state, path=self.path, device=device)


class PersistentObject:
    """Stand-in for a persistent network object of an NVIDIA pickle: never executes its source."""

    __slots__ = ("class_name", "state", "version")

    def __init__(self, class_name: str, state: Any, version: Any):
        self.class_name = class_name
        self.state = state
        self.version = version

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r})"


# --------------------------------------------------------------------------------------------------
# Errors


def _error(path: os.PathLike | str, what: str, todo: str) -> CheckpointError:
    msg = f"Cannot load '{path}': {what}. {todo}"
    return CheckpointError(re.sub(r"\s*[\r\n]+\s*", " ", msg).strip())


def _short(exc: BaseException, limit: int = 140) -> str:
    text = str(exc).strip().splitlines()
    text = text[0].strip() if text else ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    text = re.split(r"(?<=[a-z])\. (?=[A-Z])", text, maxsplit=1)[0]  # first sentence
    name = type(exc).__name__
    out = f"{name}: {text}" if text else name
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _corrupt(path: os.PathLike | str, exc: BaseException | str) -> CheckpointError:
    detail = exc if isinstance(exc, str) else _short(exc)
    return _error(
        path,
        f"the file is truncated or corrupt ({detail})",
        "Download or copy it again; if it came from a browser, make sure the download finished.",
    )


def _refused(path: os.PathLike | str, global_name: str) -> CheckpointError:
    if global_name.startswith("dnnlib.tflib") or global_name.startswith("tensorflow"):
        return _error(
            path,
            f"it is a TensorFlow StyleGAN pickle (it asks for '{global_name}')",
            "Charm Studio reads PyTorch StyleGAN3 generators only; use NVIDIA's StyleGAN3 .pkl "
            "files or a stylegan3-editing .pt file.",
        )
    if global_name.startswith(("torch_utils.", "training.", "models.", "dnnlib.")):
        return _error(
            path,
            f"it is a whole pickled network object (it asks for '{global_name}'), and "
            f"loading those runs code from the file, so it was refused",
            "Use the original NVIDIA .pkl, or re-save the weights with "
            "torch.save(G_ema.state_dict(), ...) where you trust the code.",
        )
    return _error(
        path,
        f"it asks for '{global_name}', which is not on the list of names a model file may "
        f"use (loading it could run code), so it was refused",
        "Do not use this file unless you trust its source; official StyleGAN3 and "
        "stylegan3-editing checkpoints never need it.",
    )


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allowlist; ``name`` is ``module.qualname``."""

    def __init__(self, name: str):
        super().__init__(f"refused global '{name}'")
        self.name = name


# --------------------------------------------------------------------------------------------------
# The restricted unpickler for NVIDIA .pkl files


def _persistent_stub(meta: Any) -> PersistentObject:
    # Replaces torch_utils.persistence._reconstruct_persistent_obj: keeps the state, drops the source.
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), dict):
        raise pickle.UnpicklingError("persistent object without a state dict")
    if meta.get("type", "class") != "class":
        raise pickle.UnpicklingError(f"persistent object of unknown type {meta.get('type')!r}")
    return PersistentObject(str(meta.get("class_name", "?")), meta["state"], meta.get("version"))


class _EasyDictStandIn(dict):
    """dnnlib.util.EasyDict read as a plain dict (attribute access is not needed)."""

    def __setstate__(self, state: Any) -> None:
        # An EasyDict's items arrive through SETITEMS; a leftover instance __dict__ holds nothing we use.
        pass


def _load_storage_bytes(data: bytes) -> Any:
    # Each tensor storage in a plainly pickled module is a legacy torch.save() blob of that storage.
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage is not a bytes object")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # TypedStorage deprecation notice
        return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)


def _rebuild_tensor(
    storage: Any,
    storage_offset: int,
    size: tuple,
    stride: tuple,
    requires_grad: bool = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    # torch's own rebuild, minus the parts a weights file never needs (hooks, Python metadata).
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("tensor without a storage")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, False, collections.OrderedDict())


def _rebuild_parameter(data: Any, requires_grad: bool = False, backward_hooks: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter without tensor data")
    return data


def _numpy_multiarray() -> Any:
    core = getattr(np, "_core", None)
    return core.multiarray if core is not None else np.core.multiarray


def _pickle_allowlist() -> dict[tuple[str, str], Any]:
    mult = _numpy_multiarray()
    allowed: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_stub,
        ("dnnlib.util", "EasyDict"): _EasyDictStandIn,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Inert containers that protocol-2 pickles spell as globals.
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = mult._reconstruct
        allowed[(mod, "scalar")] = mult.scalar
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for NVIDIA network pickles that resolves only an allowlist of globals.

    Anything else raises :class:`RefusedGlobalError` naming the global, before it is resolved, so a
    malicious pickle's payload never runs. Persistent objects come back as :class:`PersistentObject`.
    """

    _allowed = _pickle_allowlist()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise RefusedGlobalError(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in a network pickle")


def _read_restricted_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return RestrictedUnpickler(f).load()
    except RefusedGlobalError as e:
        raise _refused(path, e.name) from None
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))  # from torch.load inside a storage blob
        if m:
            raise _refused(path, m.group(1)) from None
        raise _corrupt(path, e) from None
    except MemoryError:
        raise _corrupt(path, "it asks for more memory than exists") from None
    except Exception as e:  # noqa: BLE001 - any failure inside a broken pickle means a broken file
        raise _corrupt(path, e) from None


# --------------------------------------------------------------------------------------------------
# torch.save files


def _torch_safe_globals() -> list:
    mult = _numpy_multiarray()
    pure_posix, pure_windows = pathlib.PurePosixPath, pathlib.PureWindowsPath
    # Concrete paths come back as pure paths: they need no file system and load on any OS.
    globals_: list = []
    for mod in ("pathlib", "pathlib._local"):
        globals_ += [
            (pure_posix, f"{mod}.PosixPath"),
            (pure_posix, f"{mod}.PurePosixPath"),
            (pure_windows, f"{mod}.WindowsPath"),
            (pure_windows, f"{mod}.PureWindowsPath"),
        ]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        globals_ += [(mult.scalar, f"{mod}.scalar"), (mult._reconstruct, f"{mod}._reconstruct")]
    globals_ += [np.ndarray, np.dtype, argparse.Namespace]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        globals_ += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return globals_


def _torch_load(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m:
            raise _refused(path, m.group(1)) from None
        text = str(e)
        if "WeightsUnpickler error:" in text:
            detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
            detail = " ".join(detail.split())[:120] or "unsupported content"
            if re.search(r"reduce|build|setstate|function|class|type", detail, re.I):
                raise _error(
                    path,
                    f"it contains pickled objects a model file must not need ({detail})",
                    "Do not use this file unless you trust its source; re-save the weights with "
                    "torch.save(model.state_dict(), ...).",
                ) from None
            raise _corrupt(path, f"unreadable pickle data: {detail}") from None
        raise _corrupt(path, e) from None
    except MemoryError:
        raise _corrupt(path, "it asks for more memory than exists") from None
    except Exception as e:  # noqa: BLE001
        raise _corrupt(path, e) from None


# --------------------------------------------------------------------------------------------------
# File sniffing


def sniff_format(path: os.PathLike | str) -> str:
    """The container format of a file from its first bytes.

    Returns ``"torch-zip"``, ``"torch-legacy"``, ``"pickle"``, ``"safetensors"``; raises
    :class:`CheckpointError` for a missing, empty, HTML, Git-LFS-pointer or unknown file.
    """
    p = Path(path)
    if not p.exists():
        raise _error(p, "the file does not exist", "Check the path, or download the model again.")
    if p.is_dir():
        raise _error(p, "it is a folder, not a model file", "Pass the .pkl, .pt or .safetensors file itself.")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise _error(p, f"the file cannot be read ({_short(e)})", "Check its permissions.") from None
    if size == 0:
        raise _error(p, "the file is empty (0 bytes), so a download or copy did not finish", "Download it again.")
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        text.startswith(b"<") and b"<html" in text
    ):
        title = re.search(rb"<title>(.*?)</title>", head, re.I | re.S)
        hint = f" titled '{title.group(1).decode('utf-8', 'replace').strip()[:60]}'" if title else ""
        raise _error(
            p,
            f"it is a web page (HTML{hint}), not a model: the download returned an error or "
            f"confirmation page instead of the file (Google Drive does this when its download "
            f"quota is exceeded)",
            "Delete it and download the model again later, or through a web browser.",
        )
    if text.startswith(b"version https://git-lfs"):
        raise _error(
            p,
            "it is a Git LFS pointer, not the model itself",
            "Fetch the real file (git lfs pull) or download the model.",
        )
    raise _error(
        p,
        "its format is not one Charm Studio reads (expected an NVIDIA StyleGAN3 .pkl, a "
        "stylegan3-editing .pt or a Charm Studio .safetensors file)",
        "Check that this is the model file; if it is, it may be damaged: download it again.",
    )


# --------------------------------------------------------------------------------------------------
# From loaded objects to a generator state dict


def plain_json(value: Any) -> Any:
    """Deep copy of init kwargs / options as plain JSON-able Python values (NumPy and tensor values as lists
    or scalars)."""
    if isinstance(value, dict):
        return {str(k): plain_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_json(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy arrays and scalars, tensors
        return value.tolist()
    return value


def _module_state_dict(obj: PersistentObject, path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}

    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, PersistentObject):
            raise _error(
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
                raise _corrupt(path, f"entry '{prefix}{name}' is not a tensor")
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
    return _error(
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


# --------------------------------------------------------------------------------------------------
# Shape inference


def _schedule(
    img_resolution: int,
    num_layers: int,
    num_critical: int = 2,
    first_cutoff: float = 2,
    first_stopband: float = 2**2.1,
    last_stopband_rel: float = 2**0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """(cutoffs, sampling rates) per layer, as the synthesis network computes them."""
    last_cutoff = img_resolution / 2
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_cutoff * last_stopband_rel / first_stopband) ** exponents
    sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    return cutoffs, sampling_rates


def _channel_base(channels: np.ndarray, cutoffs: np.ndarray, channel_max: int) -> int | None:
    """A channel_base reproducing ``channels`` (without the RGB layer); powers of two preferred."""

    def fits(cb: float) -> bool:
        return bool(np.array_equal(np.rint(np.minimum((cb / 2) / cutoffs, channel_max)), channels))

    lo, hi = 0.0, math.inf
    for ch, c in zip(channels, cutoffs):
        if ch < channel_max:
            lo, hi = max(lo, 2 * c * (ch - 0.5)), min(hi, 2 * c * (ch + 0.5))
        else:
            lo = max(lo, 2 * c * (ch - 0.5))
    if hi == math.inf:
        hi = 2 * lo + 2
    if hi < lo - 1:
        return None
    lo_i, hi_i = max(1, math.floor(lo)), math.ceil(hi)
    for k in range(30, -1, -1):
        step = 2**k
        cb = -(-lo_i // step) * step
        tries = 0
        while cb <= hi_i and tries < 4096:
            if fits(cb):
                return cb
            cb += step
            tries += 1
    return None


def infer_init_kwargs(state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Constructor arguments of a StyleGAN3 generator, read from its state dict's names and shapes.

    Infers z_dim, c_dim, w_dim, img_resolution, img_channels, mapping layers, num_layers, margin_size,
    conv_kernel, use_radial_filters, channel_base and channel_max (channel_base is the power of two, or
    the roundest number, that reproduces every layer's channel count). Arguments the shapes do not
    determine (num_fp16_res, conv_clamp, magnitude_ema_beta, ...) take the release's defaults.
    Raises ValueError when the names or shapes are not those of a StyleGAN3 generator.
    """
    sd = state_dict
    layers: dict[int, tuple[str, int, int]] = {}
    for key in sd:
        m = _LAYER_RE.match(key)
        if m:
            idx, size, ch = (int(g) for g in m.groups())
            if idx in layers:
                raise ValueError(f"two layers with index {idx}")
            layers[idx] = (key[len("synthesis.") : -len(".weight")], size, ch)
    if "synthesis.input.weight" not in sd or not layers:
        raise ValueError("no StyleGAN3 synthesis layers")
    n = len(layers)
    if sorted(layers) != list(range(n)) or n < 4:
        raise ValueError(f"synthesis layers are not numbered 0..{n - 1}")
    names = [layers[i][0] for i in range(n)]
    sizes = np.array([layers[i][1] for i in range(n)])
    channels = np.array([layers[i][2] for i in range(n)], dtype=np.float64)
    num_layers = n - 1
    img_resolution, img_channels = int(sizes[-1]), int(channels[-1])

    w_dim = int(sd["synthesis.input.affine.weight"].shape[1])
    fcs = sorted(int(m.group(1)) for m in map(_FC_RE.match, sd) if m)
    if not fcs or fcs != list(range(len(fcs))):
        raise ValueError("mapping layers mapping.fc0.. are missing")
    fc0_in = int(sd["mapping.fc0.weight"].shape[1])
    embed = sd.get("mapping.embed.weight")
    c_dim = int(embed.shape[1]) if embed is not None else 0
    z_dim = fc0_in - (w_dim if c_dim > 0 else 0)
    if z_dim <= 0:
        raise ValueError("mapping input width does not fit z_dim + embedding")

    first_weight = sd[f"synthesis.{names[0]}.weight"]
    if first_weight.ndim != 4:
        raise ValueError("synthesis weights are not 4-D")
    conv_kernel = int(first_weight.shape[-1])
    use_radial = any(getattr(sd.get(f"synthesis.{nm}.down_filter"), "ndim", 1) == 2 for nm in names)

    cutoffs, sampling_rates = _schedule(img_resolution, num_layers)
    margin2 = int(sizes[0]) - int(sampling_rates[0])
    margin_size = margin2 // 2 if num_layers >= 2 and margin2 >= 0 and margin2 % 2 == 0 else 10

    channel_max = int(channels[:-1].max())
    channel_base = _channel_base(channels[:-1], cutoffs[:-1], channel_max)
    if channel_base is None:
        raise ValueError("layer channel counts do not follow the StyleGAN3 schedule")

    kwargs: dict[str, Any] = dict(
        z_dim=z_dim,
        c_dim=c_dim,
        w_dim=w_dim,
        img_resolution=img_resolution,
        img_channels=img_channels,
        mapping_kwargs={"num_layers": len(fcs)},
        channel_base=channel_base,
        channel_max=channel_max,
        magnitude_ema_beta=DEFAULT_MAGNITUDE_EMA_BETA,
    )
    if conv_kernel != 3:
        kwargs["conv_kernel"] = conv_kernel
    if use_radial:
        kwargs["use_radial_filters"] = True
    if num_layers != 14:
        kwargs["num_layers"] = num_layers
    if margin_size != 10:
        kwargs["margin_size"] = margin_size
    return kwargs


def _infer_or_fail(state: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    try:
        return infer_init_kwargs(state)
    except (ValueError, KeyError, IndexError, AttributeError) as e:
        if "synthesis.input.weight" not in state:
            raise _other_architecture(path, _what_is_it(state)) from None
        raise _error(
            path,
            f"its StyleGAN3 weights have an unexpected layout ({e})",
            "The file may be damaged or come from a modified StyleGAN3; re-export G_ema's "
            "state_dict() with the official code.",
        ) from None


# --------------------------------------------------------------------------------------------------
# Building


def _unknown_kwargs(kwargs: dict[str, Any]) -> list[str]:
    unknown = sorted(set(kwargs) - _GENERATOR_KWARGS - _SYNTHESIS_KWARGS)
    mapping = kwargs.get("mapping_kwargs") or {}
    return unknown + sorted(f"mapping_kwargs.{k}" for k in set(mapping) - _MAPPING_KWARGS)


def _drop_unknown_kwargs(kwargs: dict[str, Any], path: Path) -> dict[str, Any]:
    # A fork's extra constructor options: keep going without them; the shape check that follows
    # catches any that change the network's structure.
    unknown = _unknown_kwargs(kwargs)
    if not unknown:
        return kwargs
    warnings.warn(f"{path}: ignoring unknown generator options {', '.join(unknown)}", stacklevel=3)
    out = {k: v for k, v in kwargs.items() if k not in unknown}
    if isinstance(out.get("mapping_kwargs"), dict):
        out["mapping_kwargs"] = {k: v for k, v in out["mapping_kwargs"].items() if f"mapping_kwargs.{k}" not in unknown}
    return out


def _check_init_kwargs(kwargs: dict[str, Any], path: Path) -> dict[str, Any]:
    kwargs = plain_json(dict(kwargs))
    unknown = _unknown_kwargs(kwargs)
    if unknown:
        raise _error(
            path,
            f"its generator uses construction options Charm Studio does not know ({', '.join(unknown)})",
            "It is not a standard StyleGAN3 generator; export G_ema's state_dict() and retry.",
        )
    missing = sorted({"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"} - set(kwargs))
    if missing:
        raise _error(
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
) -> torch.nn.Module:
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
        raise _error(
            path,
            f"its generator configuration cannot be built ({_short(e)})",
            "The file may be damaged or come from a modified StyleGAN3.",
        ) from None
    expected = {k: tuple(v.shape) for k, v in G.state_dict().items()}
    state = {k: v for k, v in state_dict.items()}
    if _TRANSFORM_KEY in expected and _TRANSFORM_KEY not in state:
        state[_TRANSFORM_KEY] = torch.eye(3)
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
            k = wrong[0]
            parts.append(f"'{k}' is {list(state[k].shape)}, expected {list(expected[k])}")
        raise _error(
            path,
            f"its weights do not match the StyleGAN3 layout they describe ({'; '.join(parts)})",
            "The file may be damaged or come from a modified StyleGAN3; download it again or "
            "re-export G_ema's state_dict() with the official code.",
        )
    for k, v in state.items():
        if not v.is_floating_point():
            raise _corrupt(path, f"entry '{k}' is not floating point ({v.dtype})")
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
        raise _corrupt(path, e) from None
    if meta.get("format") == FORMAT_NAME:
        try:
            version = int(meta.get("format_version", "0"))
        except ValueError:
            version = -1
        if version > FORMAT_VERSION or version < 1:
            raise _error(
                path,
                f"it was written by a newer Charm Studio (format version {meta.get('format_version')})",
                "Update Charm Studio to read it.",
            )
        if meta.get("kind", "stylegan3") != "stylegan3":
            raise _other_architecture(path, f"a '{meta.get('kind')}' model")
        try:
            kwargs = json.loads(meta["init_kwargs"])
        except (KeyError, json.JSONDecodeError) as e:
            raise _corrupt(path, f"its configuration is unreadable ({_short(e)})") from None
        return GeneratorCheckpoint(path, state, kwargs, "charm-safetensors")
    state = _generator_state_from_tensor_dict(state, path)
    return GeneratorCheckpoint(path, state, _infer_or_fail(state, path), "state-dict")


def save_generator(
    checkpoint: GeneratorCheckpoint | torch.nn.Module, out: os.PathLike | str, source: str | None = None
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
    obj = _read_restricted_pickle(p) if kind == "pickle" else _torch_load(p)
    return _from_loaded_object(obj, p)


def load_generator(path: os.PathLike | str, device: str | torch.device = "cpu") -> torch.nn.Module:
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
        raise _error(
            p,
            "it is not an encoder checkpoint (expected a torch.save file with 'state_dict')",
            "Use restyle_pSp_ffhq.pt or restyle_e4e_ffhq.pt from stylegan3-editing.",
        )
    obj = _torch_load(p)
    inner = obj.get("state_dict") if isinstance(obj, dict) else None
    if not isinstance(inner, dict) or not any(str(k).startswith("encoder.") for k in inner):
        what = _what_is_it(inner if isinstance(inner, dict) else (obj if isinstance(obj, dict) else {}))
        raise _error(
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
