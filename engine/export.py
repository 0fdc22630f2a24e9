"""Exporting an edited photo: which images, in which format, at which size, written where.

:func:`export_images` renders a state and writes the chosen kinds of image, each atomically:

- ``aligned``: the edited aligned face, and ``framed``: the edited face in the photo's own framing,
  both at the model's resolution times :attr:`ExportOptions.upscale`. Upscaling (2x, 4x) is Lanczos
  interpolation of the model's render: it makes the picture bigger, it adds no detail.
- ``pasted``: the framed render pasted back into the full original photo, at the photo's size. It is
  blended through a soft face-shaped mask (:mod:`engine.face_mask`: face, forehead and hair, from the
  face's landmarks), so the photo outside that region is kept pixel for pixel and no square edge shows.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from engine.align import paste_back
from engine.imageio import WRITE_FORMATS, encode_image, write_bytes
from engine.render import render_picture
from engine.state import EditState

if TYPE_CHECKING:
    from engine.models import ModelBundle

__all__ = ["EXPORT_KINDS", "UPSCALES", "ExportOptions", "export_images", "find_landmarks", "upscale_picture"]

EXPORT_KINDS = ("aligned", "framed", "pasted")
UPSCALES = (1, 2, 4)
_MATCH_TOLERANCE = 0.25  # a detected face matches the state's window when its window is this close (in sides)


def _whole(value: object) -> int | None:
    """``value`` as an int when it is a whole number (int or numpy integer, not bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


@dataclass(frozen=True)
class ExportOptions:
    """What to export. Raises ValueError on construction when an option is invalid.

    folder and basename of the files (``BASENAME_KIND.EXT``); fmt: 'png' or 'jpg' (also '.jpeg');
    kinds: some of :data:`EXPORT_KINDS`; jpeg_quality: 1-100; upscale: 1, 2 or 4, the size of the
    aligned and framed images in multiples of the model's resolution (Lanczos interpolation: bigger,
    not more detailed; the pasted photo keeps the photo's size).
    """

    folder: str
    basename: str
    fmt: str = "png"
    kinds: tuple[str, ...] = EXPORT_KINDS
    jpeg_quality: int = 95
    upscale: int = 1

    def __post_init__(self) -> None:
        if not str(self.folder).strip():
            raise ValueError("choose a folder to export to")
        if not str(self.basename).strip():
            raise ValueError("choose a name for the exported files")
        if WRITE_FORMATS.get("." + str(self.fmt).lower().lstrip(".")) is None:
            raise ValueError(f"unknown export format {self.fmt!r}; use png or jpg")
        for kind in self.kinds:
            if kind not in EXPORT_KINDS:
                raise ValueError(f"unknown export kind {kind!r}; use one of {', '.join(EXPORT_KINDS)}")
        if _whole(self.jpeg_quality) not in range(1, 101):
            raise ValueError(f"jpeg_quality must be a whole number from 1 to 100, got {self.jpeg_quality!r}")
        if _whole(self.upscale) not in UPSCALES:
            raise ValueError(f"upscale must be one of {', '.join(map(str, UPSCALES))}, got {self.upscale!r}")

    @property
    def extension(self) -> str:
        """The files' extension without the dot: 'png' or 'jpg'."""
        return WRITE_FORMATS["." + self.fmt.lower().lstrip(".")]


def upscale_picture(img: np.ndarray, factor: int) -> np.ndarray:
    """``img`` ([R,R,3] uint8) enlarged ``factor`` times with Lanczos interpolation (no new detail)."""
    if factor == 1:
        return img
    factor = int(factor)
    h, w = img.shape[:2]
    return cv2.resize(img, (w * factor, h * factor), interpolation=cv2.INTER_LANCZOS4)


def find_landmarks(photo: np.ndarray, crop_quad: np.ndarray) -> np.ndarray | None:
    """The landmarks (float64 [68,2] source px) of the face in ``photo`` whose crop window is
    ``crop_quad``, detected again; None when no detected face matches (or face detection is not
    installed). For states without stored landmarks (sessions saved before they were kept)."""
    from engine.faces import detect_faces
    from engine.quads import crop_quad_for, face_quad, quad_frame

    try:
        faces = detect_faces(photo)
    except ImportError:
        return None
    c, x, _ = quad_frame(crop_quad)
    side = 2.0 * float(np.hypot(*x))
    best, best_err = None, _MATCH_TOLERANCE
    for f in faces:
        fc, fx, _ = quad_frame(crop_quad_for(face_quad(f.landmarks)))
        err = (float(np.hypot(*(fc - c))) + abs(2.0 * float(np.hypot(*fx)) - side)) / side
        if err < best_err:
            best, best_err = f.landmarks, err
    return best


def _pasted(state: EditState, photo: np.ndarray, framed: np.ndarray) -> np.ndarray:
    """``framed`` pasted into ``photo`` through the face mask of the state's landmarks (detected again
    when the state has none), or, when no face is found, through the whole window with a soft edge."""
    quad = np.array(state.crop_quad)
    landmarks = state.landmarks if state.landmarks is not None else find_landmarks(photo, quad)
    if landmarks is None:
        return paste_back(photo, framed, quad)
    return paste_back(photo, framed, quad, landmarks=np.array(landmarks))


def export_images(
    state: EditState,
    bundle: ModelBundle,
    photo: np.ndarray | None,
    options: ExportOptions,
    generator: torch.nn.Module | None = None,
) -> list[Path]:
    """Render ``state`` and write the export files; returns their paths.

    photo: the original photo ([H,W,3] uint8 RGB), needed for 'pasted' (skipped without it or without
    ``state.crop_quad``). The paste-back mask follows ``state.landmarks``; a state without them (an
    older session) has its face detected on ``photo`` again, and if that finds no matching face the
    whole crop window is pasted with a soft edge. generator: a tuned generator to render with instead
    of the bundle's.
    """
    fmt = options.extension
    folder = Path(options.folder)
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    framed: np.ndarray | None = None
    for kind in options.kinds:
        if kind == "aligned":
            img = upscale_picture(render_picture(state, bundle, view="aligned", generator=generator), options.upscale)
        else:
            if framed is None:
                framed = render_picture(state, bundle, view="photo", generator=generator)
            if kind == "pasted":
                if photo is None or state.crop_quad is None:
                    continue
                img = _pasted(state, photo, framed)
            else:
                img = upscale_picture(framed, options.upscale)
        path = folder / f"{options.basename}_{kind}.{fmt}"
        out.append(write_bytes(path, encode_image(img, fmt, options.jpeg_quality)))
    return out
