"""Command-line options that several commands share."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_face_option(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--face N``: which detected face to use (0 = the largest, the default)."""
    parser.add_argument(
        "--face",
        type=int,
        default=None,
        metavar="N",
        help=f"which face to {verb} when there are several, 0 = largest (default)",
    )


def add_device_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--device``: the torch device to run on (checked by :func:`resolve_device`)."""
    choices = "cpu, cuda, cuda:N or auto" if default == "auto" else "cpu, cuda or cuda:N"
    parser.add_argument("--device", default=default, help=f"torch device: {choices} (default {default})")


def resolve_device(spec: str):
    """The torch device ``--device spec`` names, checked before any model is loaded.

    ``auto`` is the first GPU when there is one, else the CPU. Raises :class:`engine.errors.CharmError`
    (one line saying what to do) for an unknown name or a GPU this machine does not have.
    """
    import torch

    from engine.errors import CharmError

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise CharmError(f"unknown device {spec!r}; use --device cpu or --device cuda") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CharmError(f"no CUDA device is available on this machine (--device {spec}); use --device cpu")
        if device.index is not None and device.index >= count:
            raise CharmError(
                f"there is no CUDA device {device.index} (this machine has {count}); "
                f"use --device cuda:0 .. cuda:{count - 1} or --device cpu"
            )
    elif device.type != "cpu":
        raise CharmError(f"device {spec!r} is not supported; use --device cpu or --device cuda")
    return device


def check_out_dir(path: str | os.PathLike) -> Path:
    """``--out`` as a folder that can be created or written to, checked before any work starts.

    Nothing is created here. Raises :class:`engine.errors.CharmError` naming the path and what to do
    when it is an existing file, lies under a file, or is in a folder that may not be written to.
    """
    from engine.errors import CharmError

    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise CharmError(f"--out {str(out)!r} is a file, not a folder; choose a folder for --out")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise CharmError(
            f"cannot create the folder {str(out)!r}: {str(parent)!r} is a file, not a folder; choose another --out"
        )
    if not os.access(parent if parent.exists() else Path.cwd(), os.W_OK | os.X_OK):
        raise CharmError(f"cannot write into {str(parent)!r} (no permission) for --out; choose another folder")
    return out


def add_model_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--model NAME`` (demo, a known name, a bundle folder or a model file) and ``--download``."""
    parser.add_argument(
        "--model",
        required=True,
        help=f"{what}: 'demo', a known model name (see 'models list'), a bundle folder or a model file "
        "(.pkl, .pt, .safetensors)",
    )
    parser.add_argument(
        "--download", action="store_true", help="download the named known model first when it is not installed yet"
    )


def model_manifest(spec: str, download: bool) -> Path:
    """The bundle manifest ``--model spec`` names, downloading or building it first (progress on stderr)."""
    from engine.jobs import run_in_terminal
    from engine.model_store import resolve_model

    return run_in_terminal(lambda ctl: resolve_model(spec, download=download, ctl=ctl))
