"""Edits on a clip: several at once, each constant or keyframed; what the GUI saves and the CLI parses.

A :class:`ClipEdit` is one edit over time: an InterFaceGAN direction ('direction', target = its name),
a StyleSpace channel ('channel', target = ``"LAYER:CHANNEL"``) or one of the rotation/translation
knobs applied on top of the tracked transform ('transform', target 'angle', 'tx' or 'ty', units as
:class:`engine.state.Edits`). Its keys are (frame, value) pairs: one key is a constant over the whole
clip; with several, the value is interpolated between keys and held constant before the first and
after the last. :class:`ClipEdits` holds several edits (at most one per kind and target) and gives the
photo :class:`engine.state.Edits` of any frame, so rendering a frame reuses :mod:`engine.render`.

Everything is immutable (the timeline's undo keeps old values); changes return new objects.

Command-line form (:func:`parse_edit`): ``NAME=VALUE`` (constant) or ``NAME=F:V,F:V,...`` (keyed),
NAME a direction, ``angle``/``tx``/``ty`` or ``LAYER:CHANNEL``; e.g. ``smile=1.5``, ``age=0:0,48:2``,
``tx=0:0,30:0.1``, ``L3_72_48:12=2``.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from engine.state import Edits, ViewMode

__all__ = [
    "FORMAT",
    "INTERPOLATIONS",
    "KINDS",
    "TRANSFORM_TARGETS",
    "ClipEdit",
    "ClipEdits",
    "Keyframe",
    "parse_edit",
    "parse_edits",
]

FORMAT = "charm-clip-edits/1"
KINDS = ("direction", "channel", "transform")
TRANSFORM_TARGETS = ("angle", "tx", "ty")
INTERPOLATIONS = ("linear", "smooth")
_EDITS_FIELD = {"angle": "angle_deg", "tx": "tx", "ty": "ty"}


@dataclass(frozen=True)
class Keyframe:
    """The value of an edit at a frame (frame >= 0, value finite)."""

    frame: int
    value: float

    def __post_init__(self) -> None:
        frame, value = self.frame, self.value
        if isinstance(frame, bool) or not float(frame).is_integer() or frame < 0:
            raise ValueError(f"a key's frame must be a whole number >= 0, got {frame!r}")
        if not math.isfinite(float(value)):
            raise ValueError(f"a key's value must be a finite number, got {value!r}")
        object.__setattr__(self, "frame", int(frame))
        object.__setattr__(self, "value", float(value))


def _channel_target(target: str) -> tuple[str, int]:
    layer, sep, ch = target.rpartition(":")
    if not sep or not layer or not ch.strip().isdigit():
        raise ValueError(f"a StyleSpace channel is written LAYER:CHANNEL (e.g. L3_72_48:12), got {target!r}")
    return layer.strip(), int(ch)


@dataclass(frozen=True)
class ClipEdit:
    """One edit over a clip; see the module docstring. ``keys`` are kept sorted by frame, one per frame.

    interpolation between keys: 'linear', or 'smooth': a monotone cubic (no overshoot past the keys'
    values) whose slope is 0 at the first and last key, so it eases out of and into the constant parts
    (between two keys it is the smoothstep 3t^2 - 2t^3).
    """

    kind: str
    target: str
    keys: tuple[Keyframe, ...]
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown edit kind {self.kind!r}; use one of {', '.join(KINDS)}")
        target = str(self.target).strip()
        if self.kind == "transform" and target not in TRANSFORM_TARGETS:
            raise ValueError(f"a transform edit targets one of {', '.join(TRANSFORM_TARGETS)}, got {target!r}")
        if self.kind == "channel":
            layer, ch = _channel_target(target)
            target = f"{layer}:{ch}"
        if not target:
            raise ValueError("an edit needs a target (a direction name, LAYER:CHANNEL, angle, tx or ty)")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; use one of {', '.join(INTERPOLATIONS)}")
        keys = tuple(k if isinstance(k, Keyframe) else Keyframe(*k) for k in self.keys)
        if not keys:
            raise ValueError(f"edit {target!r} has no key: give at least one (frame, value)")
        keys = tuple(sorted(keys, key=lambda k: k.frame))
        frames = [k.frame for k in keys]
        dup = sorted({f for f in frames if frames.count(f) > 1})
        if dup:
            raise ValueError(f"edit {target!r} has several keys at frame(s) {dup}")
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "keys", keys)

    @staticmethod
    def constant(kind: str, target: str, value: float) -> ClipEdit:
        """The same value on every frame (one key at frame 0)."""
        return ClipEdit(kind, target, (Keyframe(0, value),))

    @property
    def key(self) -> tuple[str, str]:
        """(kind, target): what the edit changes; a :class:`ClipEdits` holds one edit per key."""
        return self.kind, self.target

    @property
    def frames(self) -> tuple[int, ...]:
        """The frames of the keys (the timeline's markers), ascending."""
        return tuple(k.frame for k in self.keys)

    @property
    def is_constant(self) -> bool:
        return len(self.keys) == 1 or len({k.value for k in self.keys}) == 1

    @property
    def channel(self) -> tuple[str, int]:
        """(layer, channel) of a 'channel' edit."""
        if self.kind != "channel":
            raise ValueError(f"edit {self.target!r} is a {self.kind} edit, not a StyleSpace channel")
        return _channel_target(self.target)

    def value_at(self, frame: float) -> float:
        """The edit's value at ``frame`` (constant before the first key and after the last)."""
        keys = self.keys
        if frame <= keys[0].frame:
            return keys[0].value
        if frame >= keys[-1].frame:
            return keys[-1].value
        i = bisect.bisect_right(self.frames, frame) - 1  # keys[i].frame <= frame < keys[i+1].frame
        a, b = keys[i], keys[i + 1]
        h = b.frame - a.frame
        t = (frame - a.frame) / h
        if self.interpolation == "linear":
            return a.value + t * (b.value - a.value)
        ma, mb = self._slope(i), self._slope(i + 1)
        # cubic Hermite on [a, b] with end slopes ma, mb (values per frame)
        t2, t3 = t * t, t * t * t
        return (
            (2 * t3 - 3 * t2 + 1) * a.value
            + (t3 - 2 * t2 + t) * h * ma
            + (-2 * t3 + 3 * t2) * b.value
            + (t3 - t2) * h * mb
        )

    def values(self, num_frames: int) -> np.ndarray:
        """The values at frames 0..num_frames-1: float64 [num_frames]."""
        return np.array([self.value_at(f) for f in range(int(num_frames))], dtype=np.float64)

    def with_key(self, frame: int, value: float) -> ClipEdit:
        """A copy with the value at ``frame`` set (an existing key there is replaced)."""
        keys = [k for k in self.keys if k.frame != int(frame)] + [Keyframe(frame, value)]
        return replace(self, keys=tuple(keys))

    def without_key(self, frame: int) -> ClipEdit:
        """A copy without the key at ``frame``. The last key cannot go (remove the edit instead:
        :meth:`ClipEdits.without_key` does)."""
        keys = tuple(k for k in self.keys if k.frame != int(frame))
        if len(keys) == len(self.keys):
            raise ValueError(f"edit {self.target!r} has no key at frame {frame}; its keys are at {list(self.frames)}")
        if not keys:
            raise ValueError(f"frame {frame} holds the last key of edit {self.target!r}; remove the edit instead")
        return replace(self, keys=keys)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "interpolation": self.interpolation,
            "keys": [{"frame": k.frame, "value": k.value} for k in self.keys],
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> ClipEdit:
        if not isinstance(d, Mapping):
            raise ValueError(f"an edit must be a JSON object, got {type(d).__name__}")
        try:
            keys = tuple(Keyframe(k["frame"], k["value"]) for k in d["keys"])
            return ClipEdit(str(d["kind"]), str(d["target"]), keys, str(d.get("interpolation", "linear")))
        except (KeyError, TypeError) as e:
            raise ValueError(f"an edit entry is missing or has a malformed field ({e}): {dict(d)}") from None

    def _slope(self, i: int) -> float:
        """The 'smooth' curve's slope at key ``i``: 0 at the first and last key and at a local peak or
        dip; elsewhere the weighted harmonic mean of the neighbouring secants (Fritsch-Butland, as
        PCHIP), which keeps the curve monotone between keys."""
        keys = self.keys
        if i == 0 or i == len(keys) - 1:
            return 0.0
        h0 = keys[i].frame - keys[i - 1].frame
        h1 = keys[i + 1].frame - keys[i].frame
        d0 = (keys[i].value - keys[i - 1].value) / h0
        d1 = (keys[i + 1].value - keys[i].value) / h1
        if d0 * d1 <= 0:
            return 0.0
        w0, w1 = 2 * h1 + h0, h1 + 2 * h0
        return (w0 + w1) / (w0 / d0 + w1 / d1)


@dataclass(frozen=True)
class ClipEdits:
    """Several edits on a clip, at most one per (kind, target), in the order they were added."""

    edits: tuple[ClipEdit, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        edits = tuple(self.edits)
        seen: set[tuple[str, str]] = set()
        for e in edits:
            if not isinstance(e, ClipEdit):
                raise TypeError(f"ClipEdits holds ClipEdit values, got {type(e).__name__}")
            if e.key in seen:
                raise ValueError(f"two edits of the {e.kind} {e.target!r}: give each one once")
            seen.add(e.key)
        object.__setattr__(self, "edits", edits)

    def __len__(self) -> int:
        return len(self.edits)

    def __iter__(self) -> Iterator[ClipEdit]:
        return iter(self.edits)

    def get(self, kind: str, target: str) -> ClipEdit | None:
        for e in self.edits:
            if e.key == (kind, target):
                return e
        return None

    def set(self, edit: ClipEdit) -> ClipEdits:
        """A copy with ``edit`` in place of the edit of the same kind and target (added at the end
        when there is none)."""
        if self.get(*edit.key) is None:
            return ClipEdits((*self.edits, edit))
        return ClipEdits(tuple(edit if e.key == edit.key else e for e in self.edits))

    def remove(self, kind: str, target: str) -> ClipEdits:
        """A copy without the edit of ``kind`` and ``target`` (unchanged when there is none)."""
        return ClipEdits(tuple(e for e in self.edits if e.key != (kind, target)))

    def with_key(self, kind: str, target: str, frame: int, value: float, interpolation: str = "linear") -> ClipEdits:
        """Set the value of an edit at ``frame`` (the playhead); a new edit starts with that one key
        (and ``interpolation``); an existing edit keeps its interpolation."""
        current = self.get(kind, target)
        if current is None:
            return self.set(ClipEdit(kind, target, (Keyframe(frame, value),), interpolation))
        return self.set(current.with_key(frame, value))

    def without_key(self, kind: str, target: str, frame: int) -> ClipEdits:
        """Remove the key at ``frame``; the edit goes when that was its last key."""
        current = self.get(kind, target)
        if current is None:
            raise ValueError(f"there is no {kind} edit of {target!r}")
        if current.frames == (int(frame),):
            return self.remove(kind, target)
        return self.set(current.without_key(frame))

    def key_frames(self) -> tuple[int, ...]:
        """Every frame that holds a key of some edit, ascending."""
        return tuple(sorted({f for e in self.edits for f in e.frames}))

    def at(self, frame: float, view: ViewMode = "aligned") -> Edits:
        """The photo :class:`engine.state.Edits` of ``frame``: direction strengths, StyleSpace channel
        values and the angle/tx/ty knobs (on top of the frame's tracked transform when the caller
        renders the 'photo' view with it as ``face_transform``). Zero values are left out of the
        direction and channel maps, as :class:`engine.state.EditState` does for the photo."""
        directions: dict[str, float] = {}
        channels: dict[tuple[str, int], float] = {}
        knobs = {"angle_deg": 0.0, "tx": 0.0, "ty": 0.0}
        for e in self.edits:
            v = e.value_at(frame)
            if e.kind == "direction":
                if v != 0:
                    directions[e.target] = v
            elif e.kind == "channel":
                if v != 0:
                    channels[e.channel] = v
            else:
                knobs[_EDITS_FIELD[e.target]] = v
        return Edits(directions=directions, channels=channels, view=view, **knobs)

    @staticmethod
    def from_edits(edits: Edits) -> ClipEdits:
        """Constant clip edits equal to a photo's edits (the view is not part of clip edits)."""
        out: list[ClipEdit] = [ClipEdit.constant("direction", n, v) for n, v in edits.directions.items() if v != 0]
        out += [ClipEdit.constant("channel", f"{layer}:{ch}", v) for (layer, ch), v in edits.channels.items() if v != 0]
        for target, name in _EDITS_FIELD.items():
            value = float(getattr(edits, name))
            if value != 0:
                out.append(ClipEdit.constant("transform", target, value))
        return ClipEdits(tuple(out))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, ``{"format": "charm-clip-edits/1", "edits": [...]}``."""
        return {"format": FORMAT, "edits": [e.to_json() for e in self.edits]}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> ClipEdits:
        """The inverse of :meth:`to_json`; raises ValueError for another format or a malformed entry."""
        found = d.get("format") if isinstance(d, Mapping) else None
        if found != FORMAT:
            family = FORMAT.rsplit("/", 1)[0] + "/"
            if isinstance(found, str) and found.startswith(family):
                raise ValueError(f"clip edits of format {found!r} were written by a newer Charm Studio: update it")
            raise ValueError(f"not Charm Studio clip edits (format {found!r}, expected {FORMAT!r})")
        items = d.get("edits", [])
        if not isinstance(items, list):
            raise ValueError(f"'edits' must be a list, got {type(items).__name__}")
        return ClipEdits(tuple(ClipEdit.from_json(e) for e in items))


def _number(text: str, what: str, spec: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"edit {spec!r}: {what} {text.strip()!r} is not a number") from None
    if not math.isfinite(v):
        raise ValueError(f"edit {spec!r}: {what} must be finite, got {text.strip()!r}")
    return v


def _frame(text: str, spec: str) -> int:
    t = text.strip()
    if not t.isdigit():
        raise ValueError(f"edit {spec!r}: frame {t!r} is not a whole number >= 0")
    return int(t)


def parse_edit(
    text: str,
    known_directions: Iterable[str] | None = None,
    interpolation: str = "linear",
    *,
    known_layers: Mapping[str, int] | None = None,
) -> ClipEdit:
    """One ``--edit`` argument as a :class:`ClipEdit` (forms in the module docstring).

    NAME is 'angle', 'tx' or 'ty' (transform knobs), ``LAYER:CHANNEL`` (StyleSpace), else a direction.
    known_directions: when given, a direction must be one of them. known_layers: StyleSpace layer ->
    channel count (:meth:`engine.models.ModelBundle.style_layers`); when given, channels are checked.
    Raises ValueError saying what is wrong (and listing the known names).
    """
    spec = text.strip()
    name, sep, value_text = spec.partition("=")
    name, value_text = name.strip(), value_text.strip()
    if not sep or not name or not value_text:
        raise ValueError(
            f"edit {spec!r} is not NAME=VALUE or NAME=FRAME:VALUE,FRAME:VALUE,... (e.g. smile=1.5, age=0:0,48:2)"
        )
    if name in TRANSFORM_TARGETS:
        kind = "transform"
    elif ":" in name:
        kind = "channel"
        try:
            layer, ch = _channel_target(name)
        except ValueError as e:
            raise ValueError(f"edit {spec!r}: {e}") from None
        if known_layers is not None:
            if layer not in known_layers:
                raise ValueError(f"edit {spec!r}: no StyleSpace layer {layer!r}; layers are {', '.join(known_layers)}")
            if ch >= known_layers[layer]:
                raise ValueError(f"edit {spec!r}: layer {layer!r} has channels 0..{known_layers[layer] - 1}, not {ch}")
    else:
        kind = "direction"
        if known_directions is not None:
            known = sorted(known_directions)
            if name not in known:
                listed = ", ".join(known) if known else "none (this model has no directions)"
                raise ValueError(f"edit {spec!r}: unknown direction {name!r}; known directions: {listed}")
    if ":" in value_text:
        keys: list[Keyframe] = []
        for part in value_text.split(","):
            f, colon, v = part.partition(":")
            if not colon:
                raise ValueError(f"edit {spec!r}: key {part.strip()!r} is not FRAME:VALUE")
            keys.append(Keyframe(_frame(f, spec), _number(v, "value", spec)))
    else:
        keys = [Keyframe(0, _number(value_text, "value", spec))]
    try:
        return ClipEdit(kind, name, tuple(keys), interpolation)
    except ValueError as e:
        raise ValueError(f"edit {spec!r}: {e}") from None


def parse_edits(
    texts: Iterable[str],
    known_directions: Iterable[str] | None = None,
    interpolation: str = "linear",
    *,
    known_layers: Mapping[str, int] | None = None,
) -> ClipEdits:
    """Several ``--edit`` arguments as :class:`ClipEdits` (each name at most once)."""
    known = None if known_directions is None else list(known_directions)
    edits = tuple(parse_edit(t, known, interpolation, known_layers=known_layers) for t in texts)
    return ClipEdits(edits)
