"""The studio's edit state as one serialisable value, its undo/redo history, and session files.

:class:`EditState` is everything needed to reproduce a render: the input photo and face, the inverted
latent, the edit values, the transform, the view and the model. It is immutable; changes make a new
state (:meth:`EditState.replace`), which makes undo/redo a stack of states (:class:`History`).

A saved session is two files written side by side, each to a temporary name and then renamed:
``NAME.json`` (format ``charm-session/1``, the scalar fields) and ``NAME.npz`` (the arrays: ``latent``
float32 [num_ws,w_dim], ``face_transform`` float32 [3,3], ``crop_quad`` float64 [4,2]), plus
``NAME.generator.safetensors`` when the state uses a PTI-tuned generator (a copy of
``EditState.generator_file``, :mod:`engine.checkpoints` format).
:func:`render_state` renders a state with a :class:`engine.models.ModelBundle`; a reopened session
renders bit-identically.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from engine.errors import CharmError
from engine.imageio import atomic_write

__all__ = [
    "SESSION_FORMAT",
    "EditState",
    "History",
    "SessionError",
    "save_session",
    "load_session",
    "render_state",
    "state_edits",
]

SESSION_FORMAT = "charm-session/1"
ViewMode = Literal["aligned", "photo"]
VIEWS = ("aligned", "photo")

_ARRAYS = ("latent", "face_transform", "crop_quad")


class SessionError(CharmError):
    """A session file is missing, damaged or of a newer format."""


def _frozen_array(a: Any, dtype: Any, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    arr = np.array(a, dtype=dtype, copy=True)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"expected an array of shape {shape}, got {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class EditState:
    """One state of the studio. Arrays are read-only copies; dicts are never mutated in place.

    latent: float32 [num_ws,w_dim], the inverted face (None before inversion).
    face_transform: float32 [3,3], stored convention: aligned -> the photo's own framing (the face's
        alignment transform), used in the 'photo' view. crop_quad: float64 [4,2] source px of that
        framing in the photo (for paste-back).
    directions: direction name -> strength. channels: (StyleSpace layer, channel) -> added value.
    angle_deg, tx, ty: the user's transform on screen (see :mod:`engine.transforms`).
    view: 'aligned' (the aligned face) or 'photo' (the photo's own framing).
    generator_file: a tuned (PTI) generator to render with instead of the bundle's, or None.
    """

    model_id: str = "demo"
    input_path: str | None = None
    face_index: int = 0
    latent: np.ndarray | None = None
    face_transform: np.ndarray | None = None
    crop_quad: np.ndarray | None = None
    directions: Mapping[str, float] = field(default_factory=dict)
    channels: Mapping[tuple[str, int], float] = field(default_factory=dict)
    angle_deg: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    view: ViewMode = "aligned"
    generator_file: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "latent", _frozen_array(self.latent, np.float32))
        if self.latent is not None and self.latent.ndim != 2:
            raise ValueError(f"latent must be [num_ws,w_dim], got {self.latent.shape}")
        set_(self, "face_transform", _frozen_array(self.face_transform, np.float32, (3, 3)))
        set_(self, "crop_quad", _frozen_array(self.crop_quad, np.float64, (4, 2)))
        set_(self, "directions", {str(k): float(v) for k, v in self.directions.items()})
        set_(self, "channels", {(str(k[0]), int(k[1])): float(v) for k, v in self.channels.items()})
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        for name in ("angle_deg", "tx", "ty"):
            set_(self, name, float(getattr(self, name)))

    def replace(self, **changes: Any) -> EditState:
        """A new state with ``changes`` applied (the same field names as the constructor)."""
        return dataclasses.replace(self, **changes)

    def with_direction(self, name: str, value: float) -> EditState:
        d = dict(self.directions)
        if value == 0:
            d.pop(name, None)
        else:
            d[name] = float(value)
        return self.replace(directions=d)

    def with_channel(self, layer: str, channel: int, value: float) -> EditState:
        c = dict(self.channels)
        if value == 0:
            c.pop((layer, int(channel)), None)
        else:
            c[(layer, int(channel))] = float(value)
        return self.replace(channels=c)

    def reset_edits(self) -> EditState:
        """No direction or channel edits and the identity user transform (photo, face and view kept)."""
        return self.replace(directions={}, channels={}, angle_deg=0.0, tx=0.0, ty=0.0)

    def same_as(self, other: EditState) -> bool:
        """Field-by-field equality (arrays compared exactly)."""
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True

    # -- serialisation ------------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The scalar fields as JSON-ready data (arrays go to :meth:`arrays`)."""
        return {
            "model_id": self.model_id,
            "input_path": self.input_path,
            "face_index": self.face_index,
            "directions": dict(self.directions),
            "channels": [[layer, ch, v] for (layer, ch), v in sorted(self.channels.items())],
            "angle_deg": self.angle_deg,
            "tx": self.tx,
            "ty": self.ty,
            "view": self.view,
            "generator_file": self.generator_file,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _ARRAYS if getattr(self, k) is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> EditState:
        arrays = arrays or {}
        return cls(
            model_id=str(data.get("model_id", "demo")),
            input_path=data.get("input_path"),
            face_index=int(data.get("face_index", 0)),
            latent=arrays.get("latent"),
            face_transform=arrays.get("face_transform"),
            crop_quad=arrays.get("crop_quad"),
            directions={str(k): float(v) for k, v in (data.get("directions") or {}).items()},
            channels={(str(row[0]), int(row[1])): float(row[2]) for row in (data.get("channels") or [])},
            angle_deg=float(data.get("angle_deg", 0.0)),
            tx=float(data.get("tx", 0.0)),
            ty=float(data.get("ty", 0.0)),
            view=data.get("view", "aligned"),
            generator_file=data.get("generator_file"),
        )


class History:
    """Undo/redo over :class:`EditState` values.

    ``set(state)`` records the previous state for undo; ``set(state, record=False)`` replaces the
    current one in place (a slider being dragged: keep the state the drag started from and call
    :meth:`record_from` with it when the drag ends, so the whole drag undoes in one step).
    """

    def __init__(self, state: EditState | None = None, limit: int = 200):
        self._state = state if state is not None else EditState()
        self._undo: list[EditState] = []
        self._redo: list[EditState] = []
        self.limit = int(limit)

    @property
    def state(self) -> EditState:
        return self._state

    def checkpoint(self) -> None:
        """Remember the current state as an undo step (and forget the redo stack)."""
        self._undo.append(self._state)
        del self._undo[: -self.limit]
        self._redo.clear()

    def record_from(self, previous: EditState) -> None:
        """Record ``previous`` as the undo step before the current state (the end of a drag that
        began at ``previous``); nothing is recorded when the state did not change."""
        if previous.same_as(self._state):
            return
        self._undo.append(previous)
        del self._undo[: -self.limit]
        self._redo.clear()

    def set(self, state: EditState, record: bool = True) -> None:
        if record:
            if state.same_as(self._state):
                return
            self.checkpoint()
        self._state = state

    def reset(self, state: EditState) -> None:
        """Start over at ``state`` with an empty history (a new photo or session)."""
        self._state = state
        self._undo.clear()
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self._state)
        self._state = self._undo.pop()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._state)
        self._state = self._redo.pop()
        return True


# --------------------------------------------------------------------------------------------------
# Files


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
    arrays = state.arrays()

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    atomic_write(npz, write_npz)
    fields = state.to_json()
    if state.generator_file:
        gen = path.with_suffix(".generator.safetensors")
        if Path(state.generator_file).resolve() != gen.resolve():
            atomic_write(gen, lambda tmp: shutil.copyfile(state.generator_file, tmp))
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
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SessionError(f"'{path}' does not exist; choose a saved session (.json)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SessionError(f"'{path}' is not a readable session file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
        fmt = data.get("format") if isinstance(data, dict) else None
        raise SessionError(
            f"'{path}' is not a Charm Studio session (format {fmt!r}, expected "
            f"{SESSION_FORMAT!r}); it may come from a newer Charm Studio"
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
        return EditState.from_json(fields, arrays)
    except (TypeError, ValueError, IndexError) as e:
        raise SessionError(f"'{path}' holds an invalid state ({e})") from None


# --------------------------------------------------------------------------------------------------
# Rendering


def state_edits(state: EditState, bundle) -> tuple[list, list]:
    """The :mod:`engine.editing` edits of ``state`` for ``bundle`` (an :class:`engine.models.ModelBundle`):
    (latent edits, channel edits). Directions the bundle lacks are ignored."""
    from engine.editing import ChannelEdit, LatentEdit

    latent = [
        LatentEdit(bundle.directions[n].vector, v, bundle.directions[n].layers)
        for n, v in sorted(state.directions.items())
        if n in bundle.directions and v != 0
    ]
    channels = [ChannelEdit(layer, ch, v) for (layer, ch), v in sorted(state.channels.items()) if v != 0]
    return latent, channels


def render_state(
    state: EditState, bundle, view: ViewMode | None = None, generator: torch.nn.Module | None = None
) -> torch.Tensor:
    """Render ``state`` with ``bundle``: float32 [1,3,R,R] (~[-1,1]).

    view: override ``state.view``; 'photo' uses ``state.face_transform`` (identity when unset).
    generator: the generator to use (e.g. ``state.generator_file`` loaded once by the caller);
    default the bundle's. Loading files is left to the caller so repeated renders stay fast.
    """
    from engine.editing import edit_transform, render_edited

    if state.latent is None:
        raise ValueError("the state has no latent yet (invert a photo first)")
    G = generator if generator is not None else bundle.generator
    device = bundle.device
    ws = torch.from_numpy(np.array(state.latent)).to(device).unsqueeze(0)
    if ws.shape[1:] != (G.num_ws, G.w_dim):
        raise ValueError(
            f"the latent is {list(ws.shape[1:])} but model '{bundle.name}' needs "
            f"[{G.num_ws}, {G.w_dim}]; invert the photo again with this model"
        )
    base = None
    if (view or state.view) == "photo" and state.face_transform is not None:
        base = torch.from_numpy(np.array(state.face_transform)).to(device)
    transform = edit_transform(state.angle_deg, state.tx, state.ty, base=base, device=device)
    latent_edits, channel_edits = state_edits(state, bundle)
    with torch.no_grad():
        return render_edited(G, ws, latent_edits, channel_edits, transform=transform)
