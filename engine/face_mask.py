"""Where a pasted-back render replaces the photo: a soft, face-shaped mask built from the 68 landmarks.

:func:`face_mask` maps a face's landmarks (source-photo pixels) into a crop window and asks a
:data:`MaskProvider` for the mask in that window's pixels. The default provider,
:func:`landmark_face_region`, fills the convex region bounded by the jaw line (landmarks 0-16) and an
arc over the forehead and hair, lifted above the eyebrows (17-26) by a fraction of the face height
(brow to chin), and fades it to 0 over a band laid *inside* the region and inside the window. Outside
the region the mask is exactly 0, so :func:`engine.align.paste_back` keeps those pixels bit-exact.

A provider is any ``(landmarks [68,2] float crop px, size) -> [size,size] float32 in [0,1]``; plug in
another (a face-parsing model, a mask tuned for a video clip) with ``face_mask(..., provider=...)``.
The mask of one frame depends only on that frame's landmarks and window, so a video pipeline calls
:func:`face_mask` per frame.

Typical use::

    mask = face_mask(face.landmarks, face.crop_quad, render.shape[0])
    out = paste_back(photo, render, face.crop_quad, mask=mask, feather=0)  # the mask is already soft
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from engine.quads import output_to_source

__all__ = [
    "FACE_FEATHER",
    "FOREHEAD",
    "MaskProvider",
    "default_provider",
    "face_mask",
    "landmark_face_region",
    "landmarks_in_crop",
]

MaskProvider = Callable[[np.ndarray, int], np.ndarray]
"""(landmarks: float [68,2] in crop px of a size x size window, size) -> float [size,size] in [0,1],
1 = take the render, 0 = keep the photo. The mask is used as it is: its soft edge, and fading to 0
at the window's edge, are the provider's job (paste-back does not feather it again)."""

FOREHEAD = 0.75  # arc top above the brows, in face heights (brow to chin): forehead, hairline and hair
FACE_FEATHER = 0.05  # width of the soft edge, as a fraction of the window's side
_GROW = 0.04  # the jaw line pushed outwards by this many face heights, so the edit's jaw is included
_HAIR_WIDTH = 1.1  # the arc's half-width over the hair, in half jaw widths (ear to ear)
_ARC_POINTS = 32


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"expected finite 68x2 landmarks, got shape {lm.shape}")
    return lm


def landmarks_in_crop(landmarks: np.ndarray, crop_quad: np.ndarray, size: int) -> np.ndarray:
    """Source-px landmarks (float [68,2]) in the pixels of a ``size`` x ``size`` warp of ``crop_quad``:
    float64 [68,2], pixel centres at integers (the inverse of :func:`engine.quads.output_to_source`)."""
    lm = _check_landmarks(landmarks)
    a, t = output_to_source(np.asarray(crop_quad, dtype=np.float64), int(size))
    return (lm - t) @ np.linalg.inv(a).T


def _face_outline(lm: np.ndarray, forehead: float, grow: float) -> np.ndarray:
    """float64 [N,2] points whose convex hull is the face region: the jaw, grown outwards, and an
    elliptic arc over the forehead and hair from one end of the jaw to the other."""
    jaw, brows = lm[0:17], lm[17:27]
    brow_mid = brows.mean(axis=0)
    height = float(np.hypot(*(brow_mid - lm[8])))  # brow to chin
    across = lm[16] - lm[0]
    half_width = float(np.hypot(*across)) / 2
    if height < 1e-6 or half_width < 1e-6:
        raise ValueError("degenerate landmarks (the face has no size)")
    right = across / (2 * half_width)
    up = np.array([right[1], -right[0]])  # right turned by -90 degrees in image coordinates (y down)
    if np.dot(brow_mid - lm[8], up) < 0:  # mirrored landmarks: keep 'up' pointing from chin to brows
        up = -up
    origin = (lm[0] + lm[16]) / 2
    centre = jaw.mean(axis=0)
    grown = jaw + grow * height * (jaw - centre) / np.maximum(np.linalg.norm(jaw - centre, axis=1, keepdims=True), 1e-9)
    top = float(np.max((brows - origin) @ up)) + forehead * height
    t = np.linspace(0.0, np.pi, _ARC_POINTS)
    arc = origin + np.outer(np.cos(t), right) * half_width * _HAIR_WIDTH + np.outer(np.sin(t), up) * top
    return np.concatenate([grown, brows, arc])


def landmark_face_region(
    landmarks: np.ndarray, size: int, *, forehead: float = FOREHEAD, feather: float = FACE_FEATHER
) -> np.ndarray:
    """The default :data:`MaskProvider`: the convex face region of ``landmarks`` (float [68,2] crop px).

    forehead: how far the arc over the forehead and hair rises above the highest brow point, in face
    heights (brow midpoint to chin). feather: width of the soft edge as a fraction of ``size``, laid
    inside the region and inside the window (smoothstep ramp), so the mask is exactly 0 outside the
    region and at the window's edge. Returns float32 [size,size] in [0,1].
    """
    if forehead < 0 or feather < 0:
        raise ValueError(f"forehead and feather must be >= 0, got {forehead} and {feather}")
    lm = _check_landmarks(landmarks)
    hull = cv2.convexHull(_face_outline(lm, forehead, _GROW).astype(np.float32))
    # Fill at 16x sub-pixel precision so the region moves smoothly with the landmarks (video).
    shift = 4
    pts = np.round(hull.reshape(-1, 2) * (1 << shift)).astype(np.int32)
    hard = np.zeros((size + 2, size + 2), np.uint8)  # a zero ring: the window's edge counts as an edge
    cv2.fillConvexPoly(hard, pts + (1 << shift), 1, lineType=cv2.LINE_8, shift=shift)
    hard[0, :] = hard[-1, :] = hard[:, 0] = hard[:, -1] = 0
    feather_px = feather * size
    if feather_px <= 0:
        return hard[1:-1, 1:-1].astype(np.float32)
    dist = cv2.distanceTransform(hard, cv2.DIST_L2, 5)[1:-1, 1:-1]
    r = np.clip((dist - 0.5) / feather_px, 0.0, 1.0)  # pixel centres next to the edge sit half a pixel in
    return (r * r * (3.0 - 2.0 * r)).astype(np.float32)


default_provider: MaskProvider = landmark_face_region


def face_mask(
    landmarks: np.ndarray,
    crop_quad: np.ndarray,
    size: int,
    *,
    forehead: float = FOREHEAD,
    feather: float = FACE_FEATHER,
    provider: MaskProvider | None = None,
) -> np.ndarray:
    """The paste-back mask of one face in the crop window ``crop_quad``, at ``size`` x ``size`` px.

    landmarks: the face's 68 dlib landmarks, float [68,2] source px. crop_quad: float [4,2] source px,
    the window the render shows (see :mod:`engine.quads`). forehead, feather: the default provider's
    (:func:`landmark_face_region`). provider: another :data:`MaskProvider` to use instead (forehead and
    feather then do not apply). Returns float32 [size,size] in [0,1], 1 = take the render.
    """
    size = int(size)
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    lm = landmarks_in_crop(landmarks, crop_quad, size)
    if provider is None:
        return landmark_face_region(lm, size, forehead=forehead, feather=feather)
    m = np.asarray(provider(lm, size), dtype=np.float32)
    if m.shape != (size, size):
        raise ValueError(f"the mask provider returned shape {m.shape}, expected {(size, size)}")
    return np.clip(m, 0.0, 1.0)
