"""The factor table of the synthetic face domain: the single source of truth for names and ranges.

A face is a vector of ``len(FACTORS)`` floats. Every factor is normalised to [0, 1] or [-1, 1];
the table below says what each end means. Three kinds:

- ``identity``: who the person is and the scene they sit in (face shape, colours, hair, background,
  light). Not meant to be edited.
- ``attribute``: what the editing directions change (smile, age, glasses, beard, eyebrow raise, yaw).
- ``pose``: how the camera frames the face in an *unaligned* render (roll, translation, scale). An
  aligned render ignores them and reports them as 0 in its labels.

The renderer is a deterministic function of this vector: there is no hidden randomness, so the labels
fully describe the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple, overload

import numpy as np

__all__ = [
    "Factor",
    "FACTORS",
    "FACTOR_NAMES",
    "Factors",
    "sample_factors",
    "factor_index",
    "factor_table",
    "ROLL_DEGREES",
    "YAW_DEGREES",
    "SHIFT_FRACTION",
    "ZOOM_RANGE",
]

#: roll = +1 turns the whole picture this many degrees counter-clockwise on screen.
ROLL_DEGREES = 25.0
#: yaw = +1 turns the head this many degrees (approximated by shifting features with their depth).
YAW_DEGREES = 22.0
#: tx = +1 moves the face right by this fraction of the image width (ty = +1: down by the height).
SHIFT_FRACTION = 0.10
#: scale = -1 .. +1 maps linearly to this zoom: the FFHQ crop of the face covers this fraction of an
#: unaligned image's width.
ZOOM_RANGE = (0.50, 0.65)


class Factor(NamedTuple):
    name: str
    kind: str  # "identity" | "attribute" | "pose"
    low: float
    high: float
    description: str


FACTORS: tuple[Factor, ...] = (
    # identity: face shape
    Factor("face_width", "identity", 0.0, 1.0, "cheek-to-cheek width: 0 narrow, 1 wide"),
    Factor("face_length", "identity", 0.0, 1.0, "eyes-to-chin length: 0 short, 1 long"),
    Factor("jaw_shape", "identity", 0.0, 1.0, "jaw outline: 0 tapered (V), 1 square"),
    # identity: colours of skin and hair
    Factor("skin_tone", "identity", 0.0, 1.0, "skin lightness: 0 very light, 1 very dark"),
    Factor("skin_warmth", "identity", 0.0, 1.0, "skin undertone: 0 rosy, 1 golden/olive"),
    Factor("hair_lightness", "identity", 0.0, 1.0, "hair colour: 0 black, 0.5 brown, 1 light blond"),
    Factor("hair_red", "identity", 0.0, 1.0, "red in the hair: 0 none, 1 auburn/ginger"),
    # identity: hair style
    Factor("hair_length", "identity", 0.0, 1.0, "0 cropped, 0.5 covers the ears, 1 past the shoulders"),
    Factor("hair_volume", "identity", 0.0, 1.0, "0 flat against the skull, 1 voluminous"),
    Factor("hair_parting", "identity", 0.0, 1.0, "side of the parting: 0 image-left, 0.5 centre, 1 image-right"),
    Factor("fringe", "identity", 0.0, 1.0, "bangs: 0 none, 1 down to just above the brows"),
    Factor("hairline", "identity", 0.0, 1.0, "forehead hairline: 0 low, 1 high/receding"),
    # identity: eyes, brows, nose, mouth
    Factor("eye_color", "identity", 0.0, 1.0, "iris: 0 dark brown, 0.5 hazel/green, 1 light blue"),
    Factor("eye_size", "identity", 0.0, 1.0, "eye width and opening: 0 small, 1 large"),
    Factor("eye_spacing", "identity", 0.0, 1.0, "eye distance relative to the face: 0 close, 1 wide"),
    Factor("eye_tilt", "identity", 0.0, 1.0, "outer corners: 0 lower than inner, 1 higher"),
    Factor("brow_thickness", "identity", 0.0, 1.0, "eyebrows: 0 thin, 1 thick"),
    Factor("brow_arch", "identity", 0.0, 1.0, "eyebrows: 0 straight, 1 arched"),
    Factor("nose_length", "identity", 0.0, 1.0, "0 short, 1 long"),
    Factor("nose_width", "identity", 0.0, 1.0, "0 narrow, 1 wide"),
    Factor("lip_fullness", "identity", 0.0, 1.0, "0 thin lips, 1 full lips"),
    Factor("lip_color", "identity", 0.0, 1.0, "0 pale (close to skin), 1 deep red"),
    Factor("mouth_width", "identity", 0.0, 1.0, "0 narrow, 1 wide"),
    # identity: scene
    Factor("bg_hue", "identity", 0.0, 1.0, "background hue (cyclic)"),
    Factor("bg_brightness", "identity", 0.0, 1.0, "background: 0 dark, 1 light"),
    Factor("bg_layout", "identity", 0.0, 1.0, "direction of the background gradient and blobs (cyclic)"),
    Factor("clothes_hue", "identity", 0.0, 1.0, "clothing hue (cyclic)"),
    Factor("clothes_brightness", "identity", 0.0, 1.0, "clothing: 0 dark, 1 light"),
    Factor("light_dir", "identity", -1.0, 1.0, "key light: -1 from image-left, 0 frontal, 1 from image-right"),
    # attributes (edited by directions)
    Factor("smile", "attribute", 0.0, 1.0, "0 neutral closed mouth, 0.5 smile, 1 broad smile showing teeth"),
    Factor("age", "attribute", 0.0, 1.0, "0 young; higher: grey hair, wrinkles, thinner lips, eye bags"),
    Factor("glasses", "attribute", 0.0, 1.0, "0 none; otherwise frame strength (opacity and thickness)"),
    Factor("beard", "attribute", 0.0, 1.0, "0 clean-shaven, 0.3 stubble, 1 full beard and moustache"),
    Factor("brow_raise", "attribute", -1.0, 1.0, "-1 lowered/frowning, 0 neutral, 1 raised"),
    Factor("yaw", "attribute", -1.0, 1.0, f"head turn, +-{YAW_DEGREES:g} deg: +1 features shift to the image right"),
    # pose (unaligned renders only)
    Factor("roll", "pose", -1.0, 1.0, f"picture rotation, +-{ROLL_DEGREES:g} deg, +1 counter-clockwise on screen"),
    Factor("tx", "pose", -1.0, 1.0, f"shift, +-{SHIFT_FRACTION:g} of the width, +1 to the right"),
    Factor("ty", "pose", -1.0, 1.0, f"shift, +-{SHIFT_FRACTION:g} of the height, +1 down"),
    Factor(
        "scale",
        "pose",
        -1.0,
        1.0,
        f"zoom: the face's FFHQ crop covers {ZOOM_RANGE[0]:g} (-1) .. {ZOOM_RANGE[1]:g} (+1) of the width",
    ),
)

FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
_INDEX = {n: i for i, n in enumerate(FACTOR_NAMES)}
_LOW = np.array([f.low for f in FACTORS], dtype=np.float32)
_HIGH = np.array([f.high for f in FACTORS], dtype=np.float32)


def factor_table() -> str:
    """The factor table as Markdown (for model cards and docs)."""
    rows = ["| # | name | kind | range | meaning |", "|---|---|---|---|---|"]
    for i, f in enumerate(FACTORS):
        rows.append(f"| {i} | `{f.name}` | {f.kind} | [{f.low:g}, {f.high:g}] | {f.description} |")
    return "\n".join(rows)


def factor_index(name: str) -> int:
    """Column of factor ``name`` in a factor array."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"unknown factor {name!r}; known: {', '.join(FACTOR_NAMES)}") from None


@dataclass(frozen=True)
class Factors:
    """A batch of factor vectors.

    values: float32 [N, len(FACTORS)], columns in ``FACTOR_NAMES`` order, each within its range.
    ``f["smile"]`` is a column (float32 [N]); ``f[2:5]`` / ``f[i]`` select faces (still a batch);
    ``f.replace(smile=1.0)`` returns a copy with columns set (scalar or [N]).
    """

    values: np.ndarray

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float32)
        if v.ndim == 1:
            v = v[None]
        if v.ndim != 2 or v.shape[1] != len(FACTORS):
            raise ValueError(f"factors must be [N, {len(FACTORS)}], got {np.shape(self.values)}")
        object.__setattr__(self, "values", np.clip(v, _LOW, _HIGH))

    def __len__(self) -> int:
        return self.values.shape[0]

    @overload
    def __getitem__(self, key: str) -> np.ndarray: ...

    @overload
    def __getitem__(self, key: int | slice | np.ndarray) -> Factors: ...

    def __getitem__(self, key: str | int | slice | np.ndarray) -> np.ndarray | Factors:
        if isinstance(key, str):
            return self.values[:, factor_index(key)]
        if isinstance(key, (int, np.integer)):
            key = slice(int(key), int(key) + 1) if key != -1 else slice(-1, None)
        return Factors(self.values[key])

    def __iter__(self) -> Iterator[dict[str, float]]:
        for row in self.values:
            yield dict(zip(FACTOR_NAMES, map(float, row)))

    def replace(self, **columns: float | np.ndarray) -> Factors:
        v = self.values.copy()
        for name, val in columns.items():
            v[:, factor_index(name)] = val
        return Factors(v)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Name -> float32 [N] column."""
        return {n: self.values[:, i].copy() for i, n in enumerate(FACTOR_NAMES)}

    @staticmethod
    def concat(parts: list[Factors]) -> Factors:
        return Factors(np.concatenate([p.values for p in parts], axis=0))


def sample_factors(n: int, seed: int = 0) -> Factors:
    """``n`` random faces, deterministic for a seed.

    Identity factors are uniform over their range (eye colour leans brown, dark hair is commoner).
    Attributes: smile, age uniform; glasses present on 30% of faces (0.5..1 when present, else 0); beard
    on 35% (0.15..1); brow_raise and yaw uniform on [-1, 1]. Pose factors are uniform on [-1, 1].
    """
    rng = np.random.default_rng(seed)
    v = rng.uniform(_LOW, _HIGH, size=(n, len(FACTORS))).astype(np.float32)
    # Squash a few columns towards the common end so that the domain looks like a population.
    v[:, _INDEX["eye_color"]] **= 1.6
    v[:, _INDEX["hair_lightness"]] **= 1.4
    v[:, _INDEX["hair_red"]] **= 2.0
    has = rng.uniform(size=n) < 0.30
    v[:, _INDEX["glasses"]] = np.where(has, rng.uniform(0.5, 1.0, n), 0.0)
    has = rng.uniform(size=n) < 0.35
    v[:, _INDEX["beard"]] = np.where(has, rng.uniform(0.15, 1.0, n), 0.0)
    return Factors(v)
