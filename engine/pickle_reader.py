"""Reading untrusted model files without running code from them: file sniffing, a restricted
unpickler for NVIDIA's network pickles and a restricted ``torch.load`` for ``.pt`` files.

- :func:`sniff_format` tells the container from the first bytes (``"torch-zip"``, ``"torch-legacy"``,
  ``"pickle"``, ``"safetensors"``) and turns a missing, empty, HTML, Git-LFS-pointer or unknown file
  into a one-line :class:`engine.errors.CheckpointError`.
- :func:`read_restricted_pickle` reads an NVIDIA ``.pkl`` with :class:`RestrictedUnpickler`, which
  resolves only an allowlist of names. The release's persistent-object hook is replaced by a stub that
  returns a :class:`PersistentObject` (class name and state); the Python source the pickle carries is
  dropped unread.
- :func:`torch_load` is ``torch.load(weights_only=True)`` with only ``pathlib`` paths, NumPy scalars,
  arrays and dtypes and ``argparse.Namespace`` added to torch's allowlist.

A refused name, a truncated or corrupt file and any other failure raise a one-line
:class:`engine.errors.CheckpointError` that names the file and says what to do. What the loaded
objects mean (which generator, which weights) is :mod:`engine.checkpoints`' business.
"""

from __future__ import annotations

import argparse
import collections
import io
import os
import pathlib
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.errors import CheckpointError, cannot_load, corrupt_file, short_reason

__all__ = [
    "PersistentObject",
    "RefusedGlobalError",
    "RestrictedUnpickler",
    "read_restricted_pickle",
    "sniff_format",
    "torch_load",
]

_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


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
# Refusals


def _refused(path: os.PathLike | str, global_name: str) -> CheckpointError:
    if global_name.startswith("dnnlib.tflib") or global_name.startswith("tensorflow"):
        return cannot_load(
            path,
            f"it is a TensorFlow StyleGAN pickle (it asks for '{global_name}')",
            "Charm Studio reads PyTorch StyleGAN3 generators only; use NVIDIA's StyleGAN3 .pkl "
            "files or a stylegan3-editing .pt file.",
        )
    if global_name.startswith(("torch_utils.", "training.", "models.", "dnnlib.")):
        return cannot_load(
            path,
            f"it is a whole pickled network object (it asks for '{global_name}'), and "
            f"loading those runs code from the file, so it was refused",
            "Use the original NVIDIA .pkl, or re-save the weights with "
            "torch.save(G_ema.state_dict(), ...) where you trust the code.",
        )
    return cannot_load(
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
    core: Any = getattr(np, "_core", None) or np.core  # "_core" from NumPy 2 on
    return core.multiarray


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


def read_restricted_pickle(path: Path) -> Any:
    """The object in an NVIDIA network pickle, read with :class:`RestrictedUnpickler`."""
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
        raise corrupt_file(path, e) from None
    except MemoryError:
        raise corrupt_file(path, "it asks for more memory than exists") from None
    except Exception as e:  # noqa: BLE001 - any failure inside a broken pickle means a broken file
        raise corrupt_file(path, e) from None


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


def torch_load(path: Path) -> Any:
    """The object in a ``torch.save`` file, read with ``weights_only=True`` and a few extra safe globals."""
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
                raise cannot_load(
                    path,
                    f"it contains pickled objects a model file must not need ({detail})",
                    "Do not use this file unless you trust its source; re-save the weights with "
                    "torch.save(model.state_dict(), ...).",
                ) from None
            raise corrupt_file(path, f"unreadable pickle data: {detail}") from None
        raise corrupt_file(path, e) from None
    except MemoryError:
        raise corrupt_file(path, "it asks for more memory than exists") from None
    except Exception as e:  # noqa: BLE001
        raise corrupt_file(path, e) from None


# --------------------------------------------------------------------------------------------------
# File sniffing


def sniff_format(path: os.PathLike | str) -> str:
    """The container format of a file from its first bytes.

    Returns ``"torch-zip"``, ``"torch-legacy"``, ``"pickle"``, ``"safetensors"``; raises
    :class:`CheckpointError` for a missing, empty, HTML, Git-LFS-pointer or unknown file.
    """
    p = Path(path)
    if not p.exists():
        raise cannot_load(p, "the file does not exist", "Check the path, or download the model again.")
    if p.is_dir():
        raise cannot_load(p, "it is a folder, not a model file", "Pass the .pkl, .pt or .safetensors file itself.")
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise cannot_load(p, f"the file cannot be read ({short_reason(e)})", "Check its permissions.") from None
    if size == 0:
        raise cannot_load(p, "the file is empty (0 bytes), so a download or copy did not finish", "Download it again.")
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
        raise cannot_load(
            p,
            f"it is a web page (HTML{hint}), not a model: the download returned an error or "
            f"confirmation page instead of the file (Google Drive does this when its download "
            f"quota is exceeded)",
            "Delete it and download the model again later, or through a web browser.",
        )
    if text.startswith(b"version https://git-lfs"):
        raise cannot_load(
            p,
            "it is a Git LFS pointer, not the model itself",
            "Fetch the real file (git lfs pull) or download the model.",
        )
    raise cannot_load(
        p,
        "its format is not one Charm Studio reads (expected an NVIDIA StyleGAN3 .pkl, a "
        "stylegan3-editing .pt or a Charm Studio .safetensors file)",
        "Check that this is the model file; if it is, it may be damaged: download it again.",
    )
