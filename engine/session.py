"""Session files: saving an :class:`engine.state.EditState` and opening it again.

A saved session is two files written side by side, each atomically (:func:`engine.imageio.atomic_write`):
``NAME.json`` (format ``charm-session/1``, the scalar fields) and ``NAME.npz`` (the arrays: ``latent``
float32 [num_ws,w_dim], ``face_transform`` float32 [3,3], ``crop_quad`` float64 [4,2], ``landmarks``
float32 [68,2] source px), plus
``NAME.generator.safetensors`` when the state uses a PTI-tuned generator (a copy of
``EditState.generator_file``, :mod:`engine.checkpoints` format). A reopened session renders
bit-identically (:func:`engine.render.render_state`).

Sessions saved before the face's landmarks were kept have no ``landmarks`` array and open with
``state.landmarks = None``; exporting one detects the landmarks on the photo again, and when no
detected face matches its crop window pastes the whole window with a soft edge as before (see
:func:`engine.export.export_images`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import CharmError
from engine.imageio import atomic_write, read_tagged_json
from engine.state import EditState

__all__ = [
    "SESSION_FORMAT",
    "SessionError",
    "load_session",
    "save_session",
    "state_arrays",
    "state_from_json",
    "state_to_json",
]

SESSION_FORMAT = "charm-session/1"

_ARRAYS = ("latent", "face_transform", "crop_quad", "landmarks")


class SessionError(CharmError):
    """A session file is missing, damaged or of a newer format."""


def state_to_json(state: EditState) -> dict:
    """The scalar fields of ``state`` as JSON-ready data (arrays go to :func:`state_arrays`)."""
    return {
        "model_id": state.model_id,
        "input_path": state.input_path,
        "face_index": state.face_index,
        "directions": dict(state.directions),
        "channels": [[layer, ch, v] for (layer, ch), v in sorted(state.channels.items())],
        "angle_deg": state.angle_deg,
        "tx": state.tx,
        "ty": state.ty,
        "view": state.view,
        "generator_file": state.generator_file,
    }


def state_arrays(state: EditState) -> dict[str, np.ndarray]:
    return {k: getattr(state, k) for k in _ARRAYS if getattr(state, k) is not None}


def state_from_json(data: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> EditState:
    arrays = arrays or {}
    return EditState(
        model_id=str(data.get("model_id", "demo")),
        input_path=data.get("input_path"),
        face_index=int(data.get("face_index", 0)),
        latent=arrays.get("latent"),
        face_transform=arrays.get("face_transform"),
        crop_quad=arrays.get("crop_quad"),
        landmarks=arrays.get("landmarks"),
        directions={str(k): float(v) for k, v in (data.get("directions") or {}).items()},
        channels={(str(row[0]), int(row[1])): float(row[2]) for row in (data.get("channels") or [])},
        angle_deg=float(data.get("angle_deg", 0.0)),
        tx=float(data.get("tx", 0.0)),
        ty=float(data.get("ty", 0.0)),
        view=data.get("view", "aligned"),
        generator_file=data.get("generator_file"),
    )


def save_session(state: EditState, path: str | os.PathLike) -> Path:
    """Write ``state`` as ``path`` (JSON; '.json' is added when missing) plus the ``.npz`` beside it.

    The input photo is referenced by absolute path and by path relative to the session file (used
    when the two were moved together). Returns the JSON path.
    """
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path.with_name(path.name + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    npz = path.with_suffix(".npz")
    arrays = state_arrays(state)

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly

    atomic_write(npz, write_npz)
    fields = state_to_json(state)
    source = state.generator_file
    if source:
        gen = path.with_suffix(".generator.safetensors")
        if Path(source).resolve() != gen.resolve():
            atomic_write(gen, lambda tmp: shutil.copyfile(source, tmp))
        fields["generator_file"] = gen.name
    data = {"format": SESSION_FORMAT, "arrays": npz.name, "state": fields}
    if state.input_path:
        try:
            data["input_relative"] = os.path.relpath(Path(state.input_path).resolve(), path.parent.resolve())
        except ValueError:  # another drive on Windows
            pass
    text = json.dumps(data, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def load_session(path: str | os.PathLike) -> EditState:
    """Read a session written by :func:`save_session`; raises :class:`SessionError` when it can't."""
    path = Path(path)
    data = read_tagged_json(
        path, SESSION_FORMAT, SessionError, "session", "choose a session saved by Charm Studio (.json)"
    )
    npz = path.parent / str(data.get("arrays", path.with_suffix(".npz").name))
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k in _ARRAYS}
    except FileNotFoundError:
        raise SessionError(f"'{npz}' is missing; keep a session's .json and .npz files together") from None
    except (OSError, ValueError) as e:
        raise SessionError(f"'{npz}' is damaged ({e}); the session cannot be restored") from None
    fields = dict(data.get("state") or {})
    src = fields.get("input_path")
    rel = data.get("input_relative")
    if src and not Path(src).exists() and rel and (path.parent / rel).exists():
        fields["input_path"] = str((path.parent / rel).resolve())
    if fields.get("generator_file"):
        gen = path.parent / str(fields["generator_file"])
        if not gen.is_file():
            raise SessionError(f"'{gen}' is missing; keep a session's files together")
        fields["generator_file"] = str(gen.resolve())
    try:
        return state_from_json(fields, arrays)
    except (TypeError, ValueError, IndexError) as e:
        raise SessionError(f"'{path}' holds an invalid state ({e})") from None
