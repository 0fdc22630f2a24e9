"""The photo pipeline, shared by the command line and the window: read -> detect -> choose a face ->
align -> invert -> optionally tune (PTI).

Both front ends call these functions with the same settings, so the same photo gives the same latent
whether it was inverted by ``main.py invert`` or in the studio. The inverter's input is the face aligned
at :data:`ALIGN_SIZE` px (the size the window shows; encoders resize it to their own input size, 256 px
for the released ones).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch

from engine.align import AlignedFace, align_face
from engine.faces import FaceDetection, choose_face, detect_faces
from engine.imageio import from_uint8, load_image
from engine.jobs import JobControl

if TYPE_CHECKING:
    from engine.inversion.pti import PTIResult
    from engine.inversion.restyle import InversionResult
    from engine.networks.stylegan3 import Generator

__all__ = [
    "ALIGN_SIZE",
    "PhotoFace",
    "PhotoReader",
    "invert_face",
    "tune_face",
]

ALIGN_SIZE = 512
PREVIEW_SIZE = 1600  # long side of the copy of the photo a front end shows (the full photo can be 24 MP)


@dataclass(frozen=True)
class PhotoFace:
    """A photo and its chosen face, aligned. Pictures are [H,W,3] uint8 RGB.

    boxes: (left, top, right, bottom) source px of every detected face, largest first; needs_choice:
    several faces were found and none was asked for (the largest was taken). face: the alignment
    (aligned face, crop, transform, crop quad, landmarks). preview: a small copy of the photo to show.
    """

    path: str
    image: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]
    face_index: int
    needs_choice: bool
    face: AlignedFace
    preview: np.ndarray  # the photo with its long side at most PREVIEW_SIZE px
    preview_scale: float  # preview px per photo px

    @property
    def preview_boxes(self) -> tuple[tuple[float, float, float, float], ...]:
        """``boxes`` in preview px."""
        s = self.preview_scale
        return tuple((a * s, b * s, c * s, d * s) for a, b, c, d in self.boxes)

    @property
    def aligned(self) -> np.ndarray:
        return self.face.aligned

    @property
    def crop(self) -> np.ndarray:
        return self.face.crop

    @property
    def face_transform(self) -> np.ndarray:
        """float32 [3,3]: aligned -> the photo's own framing."""
        return self.face.transform.numpy()

    @property
    def crop_quad(self) -> np.ndarray:
        return self.face.crop_quad


def _shrink(rgb: np.ndarray, long_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


class PhotoReader:
    """Opens photos and aligns their faces, keeping the last photo's pixels and detections so that
    choosing another face of it (or exporting it) does not decode and detect again. Not thread-safe:
    one reader per thread."""

    def __init__(self) -> None:
        self._last: tuple[str, np.ndarray, list[FaceDetection], np.ndarray] | None = None

    def image(self, path: str) -> np.ndarray:
        """The photo's pixels ([H,W,3] uint8 RGB), from the cache when it is the last one opened."""
        if self._last is not None and self._last[0] == path:
            return self._last[1]
        return load_image(path)

    def open(
        self,
        path: str | os.PathLike,
        face_index: int | None = None,
        size: int = ALIGN_SIZE,
        ctl: JobControl | None = None,
    ) -> PhotoFace:
        """Read ``path``, detect its faces and align one (``face_index``; default the largest) at ``size``."""
        ctl = ctl or JobControl()
        path = os.fspath(path)
        name = Path(path).name
        if self._last is None or self._last[0] != path:
            ctl.stage("Reading the photo")
            rgb = load_image(path)
            ctl.check()
            ctl.stage("Finding faces")
            self._last = (path, rgb, detect_faces(rgb), _shrink(rgb, PREVIEW_SIZE))
        _, rgb, faces, preview = self._last
        index = choose_face(faces, face_index, name)
        ctl.check()
        ctl.stage("Aligning the face")
        face = align_face(rgb, size=size, landmarks=faces[index].landmarks)
        return PhotoFace(
            path=path,
            image=rgb,
            boxes=tuple((float(f.box[0]), float(f.box[1]), float(f.box[2]), float(f.box[3])) for f in faces),
            face_index=index,
            needs_choice=face_index is None and len(faces) > 1,
            face=face,
            preview=preview,
            preview_scale=preview.shape[1] / rgb.shape[1],
        )


def invert_face(
    inverter,
    aligned: np.ndarray,
    iters: int,
    ctl: JobControl | None = None,
    transform: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> InversionResult:
    """Invert an aligned face ([S,S,3] uint8 RGB): ``iters`` encoder iterations (or optimisation steps
    for a bundle without an encoder). transform: also render the result through it (``unaligned``)."""
    ctl = ctl or JobControl()
    x = from_uint8(aligned, device)
    text = "Inverting (optimising the latent)" if inverter.kind == "optimization" else "Inverting"
    report = ctl.progress_fn(text)
    ctl.progress(0, int(iters))
    tr = None if transform is None else transform.to(device)
    result = inverter.invert(x, n_iters=int(iters), transform=tr, progress=report, cancel=ctl.cancel_fn)
    ctl.check()
    return result


def tune_face(
    generator: Generator,
    target: np.ndarray,
    pivot: torch.Tensor,
    steps: int,
    ctl: JobControl | None = None,
    transform: torch.Tensor | None = None,
    lr: float = 3e-4,
    perceptual=None,
) -> PTIResult:
    """Pivotal tuning: a copy of ``generator`` tuned for ``steps`` so that ``pivot`` ([1,num_ws,w_dim])
    renders ``target`` ([S,S,3] uint8 RGB; through ``transform`` when given). ``generator`` is untouched."""
    from engine.inversion import tune_generator

    ctl = ctl or JobControl()
    device = pivot.device
    x = from_uint8(target, device)
    tr = None if transform is None else transform.to(device)
    return tune_generator(
        generator,
        x,
        pivot,
        transform=tr,
        steps=int(steps),
        lr=lr,
        perceptual=perceptual,
        progress=ctl.progress_fn("Refining (PTI)"),
        cancel=ctl.cancel_fn,
    )
