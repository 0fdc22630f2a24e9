"""The studio's edit state and its undo/redo history.

An :class:`EditState` has two parts:

- :class:`Subject`: what is being edited and its heavy arrays (the photo's path and face, the inverted
  latent, the face's transform, crop window and landmarks, a tuned generator file). It changes rarely (a new
  photo, an inversion, a PTI run) and is shared, never copied, between the states that edit it.
- :class:`Edits`: the light values the user changes on every slider move (directions, StyleSpace
  channels, the rotation/translation knobs, the view). Undo/redo records and compares these.

Both parts are immutable: a change makes a new state (:meth:`EditState.replace`) that shares the
unchanged part with the old one, so a slider move copies a few floats, not the latent, and comparing
two states compares the subject by identity. Field names are flat (``state.latent``,
``state.directions``), whichever part holds them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

__all__ = ["VIEWS", "EditState", "Edits", "History", "Subject", "ViewMode"]

ViewMode = Literal["aligned", "photo"]
VIEWS = ("aligned", "photo")


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
class Subject:
    """What is edited: the model, the photo and its face, and the arrays computed from them.

    latent: float32 [num_ws,w_dim], the inverted face (None before inversion).
    face_transform: float32 [3,3], stored convention: aligned -> the photo's own framing (the face's
        alignment transform), used in the 'photo' view. crop_quad: float64 [4,2] source px of that
        framing in the photo (for paste-back). landmarks: float32 [68,2] source px, the face's dlib
        landmarks (the shape of the paste-back mask, :mod:`engine.face_mask`); None when unknown.
    generator_file: a tuned (PTI) generator to render with instead of the bundle's, or None.
    Arrays are read-only copies. Two subjects are the same only when they are the same object.
    """

    model_id: str = "demo"
    input_path: str | None = None
    face_index: int = 0
    latent: np.ndarray | None = None
    face_transform: np.ndarray | None = None
    crop_quad: np.ndarray | None = None
    generator_file: str | None = None
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "latent", _frozen_array(self.latent, np.float32))
        if self.latent is not None and self.latent.ndim != 2:
            raise ValueError(f"latent must be [num_ws,w_dim], got {self.latent.shape}")
        set_(self, "face_transform", _frozen_array(self.face_transform, np.float32, (3, 3)))
        set_(self, "crop_quad", _frozen_array(self.crop_quad, np.float64, (4, 2)))
        set_(self, "landmarks", _frozen_array(self.landmarks, np.float32, (68, 2)))
        set_(self, "face_index", int(self.face_index))

    def equals(self, other: Subject) -> bool:
        """Field-by-field equality, arrays compared exactly (for tests and files, not per edit)."""
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
        return True


@dataclass(frozen=True)
class Edits:
    """The user's edit values. directions: name -> strength; channels: (StyleSpace layer, channel) ->
    added value; angle_deg, tx, ty: the user's transform on screen (see :mod:`engine.transforms`);
    view: 'aligned' (the aligned face) or 'photo' (the photo's own framing). Compared by value."""

    directions: Mapping[str, float] = field(default_factory=dict)
    channels: Mapping[tuple[str, int], float] = field(default_factory=dict)
    angle_deg: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    view: ViewMode = "aligned"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "directions", {str(k): float(v) for k, v in self.directions.items()})
        set_(self, "channels", {(str(k[0]), int(k[1])): float(v) for k, v in self.channels.items()})
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {self.view!r}")
        for name in ("angle_deg", "tx", "ty"):
            set_(self, name, float(getattr(self, name)))


_SUBJECT_FIELDS = tuple(f.name for f in dataclasses.fields(Subject))
_EDIT_FIELDS = tuple(f.name for f in dataclasses.fields(Edits))


class EditState:
    """One state of the studio: a :class:`Subject` and its :class:`Edits`. Immutable.

    Build it from parts (``EditState(subject=..., edits=...)``) or from flat fields
    (``EditState(latent=w, directions={"smile": 1.0})``); read any field flat (``state.latent``).
    """

    __slots__ = ("subject", "edits")
    subject: Subject
    edits: Edits

    def __init__(self, subject: Subject | None = None, edits: Edits | None = None, **fields: Any) -> None:
        unknown = set(fields) - set(_SUBJECT_FIELDS) - set(_EDIT_FIELDS)
        if unknown:
            raise TypeError(f"EditState got unknown fields {sorted(unknown)}")
        subject_fields = {k: v for k, v in fields.items() if k in _SUBJECT_FIELDS}
        edit_fields = {k: v for k, v in fields.items() if k in _EDIT_FIELDS}
        subject = subject or Subject()
        edits = edits or Edits()
        if subject_fields:
            subject = dataclasses.replace(subject, **subject_fields)
        if edit_fields:
            edits = dataclasses.replace(edits, **edit_fields)
        object.__setattr__(self, "subject", subject)
        object.__setattr__(self, "edits", edits)

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not slots: the flat field names of the two parts.
        if name in _SUBJECT_FIELDS:
            return getattr(self.subject, name)
        if name in _EDIT_FIELDS:
            return getattr(self.edits, name)
        raise AttributeError(f"'EditState' object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"EditState({self.subject!r}, {self.edits!r})"

    # typed accessors for the flat fields (the common ones)
    latent: np.ndarray | None
    face_transform: np.ndarray | None
    crop_quad: np.ndarray | None
    landmarks: np.ndarray | None
    model_id: str
    input_path: str | None
    face_index: int
    generator_file: str | None
    directions: Mapping[str, float]
    channels: Mapping[tuple[str, int], float]
    angle_deg: float
    tx: float
    ty: float
    view: ViewMode

    def replace(self, **changes: Any) -> EditState:
        """A new state with ``changes`` applied (flat field names); an unchanged part is shared."""
        return EditState(self.subject, self.edits, **changes)

    def with_direction(self, name: str, value: float) -> EditState:
        d = dict(self.edits.directions)
        if value == 0:
            d.pop(name, None)
        else:
            d[name] = float(value)
        return self.replace(directions=d)

    def with_channel(self, layer: str, channel: int, value: float) -> EditState:
        c = dict(self.edits.channels)
        if value == 0:
            c.pop((layer, int(channel)), None)
        else:
            c[(layer, int(channel))] = float(value)
        return self.replace(channels=c)

    def reset_edits(self) -> EditState:
        """No direction or channel edits and the identity user transform (subject and view kept)."""
        return EditState(self.subject, Edits(view=self.edits.view))

    def same_as(self, other: EditState) -> bool:
        """The same subject (by identity, or equal field by field) and equal edits."""
        return self.edits == other.edits and (self.subject is other.subject or self.subject.equals(other.subject))


class History:
    """Undo/redo over :class:`EditState` values.

    ``set(state)`` records the previous state for undo; ``set(state, record=False)`` replaces the
    current one in place (a slider being dragged: keep the state the drag started from and call
    :meth:`record_from` with it when the drag ends, so the whole drag undoes in one step). States share
    their subject, so the history holds one latent per photo or inversion, not one per step.
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
        return self._step(self._undo, self._redo)

    def redo(self) -> bool:
        return self._step(self._redo, self._undo)

    def _step(self, source: list[EditState], target: list[EditState]) -> bool:
        """Go back to the newest state of ``source``, keeping the current one on ``target``."""
        if not source:
            return False
        target.append(self._state)
        self._state = source.pop()
        return True
