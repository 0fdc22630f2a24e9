"""Faces in and back out: :func:`align_face` turns a photo or video frame into an FFHQ-aligned face, its
unaligned crop and the (r, tx, ty) transform between them; :func:`paste_back` puts an edited crop back
into the photo.

Every photo and video frame enters the engine here. The encoders only see FFHQ-*aligned* faces; the
unaligned look (the face as it sits in an axis-aligned crop of the photo) is restored by StyleGAN3's
input transform, computed in closed form from the two quads. The parts live in :mod:`engine.faces`
(detection and landmarks) and :mod:`engine.quads` (the windows, the transform and the warps, with the
coordinate conventions); their public names are importable from here too.

Typical use::

    from engine.align import align_face, paste_back
    face = align_face("photo.jpg")               # face.aligned -> encoder, face.transform -> G.synthesis
    out = paste_back(photo, edited_crop, face.crop_quad, landmarks=face.landmarks)  # face-shaped blend
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from engine.face_mask import FACE_FEATHER, MaskProvider, face_mask
from engine.faces import (
    DETECT_SIZE,
    FaceDetection,
    choose_face,
    detect_faces,
    landmarks_model_path,
    load_face_models,
)
from engine.imageio import ImageInput, load_image, name_of
from engine.quads import (
    ScaleMode,
    crop_quad_for,
    crop_quads_for_clip,
    face_quad,
    output_to_source,
    quad_frame,
    quad_transform,
    smooth_quads,
    warp_quad,
)
from engine.transforms import transform_params

__all__ = [
    "AlignedFace",
    "FaceDetection",
    "ScaleMode",
    "align_face",
    "choose_face",
    "crop_quad_for",
    "crop_quads_for_clip",
    "detect_faces",
    "face_quad",
    "landmarks_model_path",
    "load_face_models",
    "load_image",
    "paste_back",
    "quad_transform",
    "smooth_quads",
    "warp_quad",
]


# --------------------------------------------------------------------------------------------------
# Alignment


@dataclass
class AlignedFace:
    """One face, aligned and cropped, with the transform that connects the two views.

    aligned: [size,size,3] uint8 RGB, FFHQ-aligned (what the encoders see).
    crop: [size,size,3] uint8 RGB, the photo inside ``crop_quad`` (axis-aligned, no rotation).
    quad, crop_quad: float64 [4,2] source px, corners top-left, bottom-left, bottom-right, top-right.
    landmarks: float64 [68,2] source px.
    transform: float32 [3,3] torch tensor for ``G.synthesis(ws, transform=...)``; with it a generator
        trained on aligned faces renders ``crop`` instead of ``aligned``.
    angle_deg, tx, ty: :func:`engine.transforms.make_transform`'s parameters of ``transform`` (+angle:
        the face is turned counter-clockwise in the crop; tx/ty > 0: the face centre is right of /
        below the window centre, in units of the crop width).
    zoom: face size in the crop relative to the aligned image (1 unless ``crop_quad`` was given);
        ``transform`` includes it, ``make_transform(angle_deg, tx, ty)`` is its rigid part.
    faces: every detection in the photo, largest first; ``face_index`` is the one aligned here.
    """

    aligned: np.ndarray
    crop: np.ndarray
    quad: np.ndarray
    crop_quad: np.ndarray
    landmarks: np.ndarray
    transform: torch.Tensor
    angle_deg: float
    tx: float
    ty: float
    zoom: float = 1.0
    faces: list[FaceDetection] = field(default_factory=list)
    face_index: int = 0
    scale_mode: str = "eyes"
    source_size: tuple[int, int] = (0, 0)  # (height, width) of the photo

    @property
    def transform_np(self) -> np.ndarray:
        """``transform`` as a float64 [3,3] array."""
        return self.transform.double().numpy()


def align_face(
    image: ImageInput,
    size: int = 1024,
    crop_quad: np.ndarray | None = None,
    face_index: int | None = None,
    *,
    scale_mode: ScaleMode = "eyes",
    landmarks: np.ndarray | None = None,
    detect_size: int = DETECT_SIZE,
    pad: bool = True,
) -> AlignedFace:
    """Detect, align and crop one face of ``image`` (a path or an [H,W,3] uint8 RGB array).

    size: side of ``aligned`` and ``crop``. crop_quad: a fixed crop window (float [4,2] source px, e.g.
    the first frame's ``crop_quad`` or one from :func:`crop_quads_for_clip`); the transform then places
    the face within that window. face_index: which detection (largest first) to use; default the
    largest. scale_mode: "eyes" (the paper's release) or "ffhq" (original FFHQ). landmarks: skip
    detection and use these [68,2] source-px landmarks. Raises :class:`NoFaceError` when no face is
    found (or ``face_index`` is out of range) and :class:`ImageReadError` for unreadable files.
    """
    name = name_of(image)
    rgb = load_image(image)
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        faces = [FaceDetection(np.r_[lm.min(axis=0), lm.max(axis=0)], float("nan"), lm)]
        index = 0
    else:
        faces = detect_faces(rgb, detect_size=detect_size)
        index = choose_face(faces, face_index, name)
        lm = faces[index].landmarks
    quad = face_quad(lm, scale_mode)
    cquad = crop_quad_for(quad) if crop_quad is None else np.asarray(crop_quad, dtype=np.float64).copy()
    stored = quad_transform(quad, cquad)
    angle, tx, ty = transform_params(stored)
    zoom = math.sqrt(abs(np.linalg.det(np.linalg.inv(stored)[:2, :2])))  # face size in the crop / aligned
    return AlignedFace(
        aligned=warp_quad(rgb, quad, size, pad=pad),
        crop=warp_quad(rgb, cquad, size, pad=pad),
        quad=quad,
        crop_quad=cquad,
        landmarks=lm,
        transform=torch.from_numpy(stored.astype(np.float32)),
        angle_deg=angle,
        tx=tx,
        ty=ty,
        zoom=zoom,
        faces=faces,
        face_index=index,
        scale_mode=scale_mode,
        source_size=(rgb.shape[0], rgb.shape[1]),
    )


# --------------------------------------------------------------------------------------------------
# Paste-back


_WINDOW_FEATHER = 0.08  # paste_back's soft edge without landmarks, as a fraction of the crop width
_MAX_MASK = 4096  # largest side of a face mask built for paste_back


def _feathered_alpha(mask: np.ndarray | None, size: int, feather_px: float) -> np.ndarray:
    """[size,size] float32 alpha: the mask, faded to 0 over ``feather_px`` inside its edge and the window's."""
    m: np.ndarray
    if mask is None:
        m = np.ones((size, size), np.float32)
    else:
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m[:, :, 0]
        if m.dtype == np.bool_:
            m = m.astype(np.float32)
        elif m.dtype == np.uint8:
            m = m.astype(np.float32) / 255.0
        else:
            m = np.clip(m.astype(np.float32), 0.0, 1.0)
        if m.shape != (size, size):
            m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
    if feather_px <= 0:
        return m
    support = np.zeros((size + 2, size + 2), np.uint8)  # zero ring: the window edge counts as an edge
    support[1:-1, 1:-1] = m > 0
    dist = cv2.distanceTransform(support, cv2.DIST_L2, 5)[1:-1, 1:-1]
    # Pixel centres adjacent to the edge sit half a pixel in; the ramp reaches 0 at the edge itself.
    return m * np.clip((dist - 0.5) / feather_px, 0.0, 1.0)


def _source_to_crop(quad: np.ndarray, size: int, x0: int, y0: int) -> np.ndarray:
    """2x3 affine: ROI pixel (source px minus (x0, y0)) -> pixel of a size x size warp of ``quad``
    (the inverse of the crop's sampling map, shifted into the ROI; for ``cv2.WARP_INVERSE_MAP``)."""
    a, t = output_to_source(quad, size)
    ai = np.linalg.inv(a)
    return np.hstack([ai, (ai @ (np.array([x0, y0], dtype=np.float64) - t))[:, None]])


def paste_back(
    original: np.ndarray,
    rendered_crop: np.ndarray,
    crop_quad: np.ndarray,
    mask: np.ndarray | None = None,
    feather: float | None = None,
    *,
    landmarks: np.ndarray | None = None,
    mask_provider: MaskProvider | None = None,
) -> np.ndarray:
    """Put a rendered (edited) crop back into the photo or frame it was cut from.

    original: [H,W,3] uint8 RGB. rendered_crop: [S,S,3] uint8 RGB of any size S, showing the window
    ``crop_quad`` (float [4,2] source px; any square quad works, also an aligned ``quad``). mask:
    optional [S,S] weights in crop pixels (bool, uint8 0..255 or float 0..1; 1 = take the render),
    e.g. a face-parsing mask; default the whole window. feather: width of the soft edge, as a fraction
    of the crop width, laid *inside* the mask so pixels outside it stay bit-exact (default 0.08; with
    ``landmarks`` :data:`engine.face_mask.FACE_FEATHER`).
    landmarks: instead of ``mask``, the face's 68 landmarks (float [68,2] source px): the render is
    blended through :func:`engine.face_mask.face_mask` (face, forehead and hair; ``mask_provider``
    replaces its default provider), whose soft edge is ``feather`` wide (and not feathered again).
    Returns a new [H,W,3] uint8 array; pixels where the mask is 0 are exactly ``original``'s.
    """
    if landmarks is not None and mask is not None:
        raise ValueError("pass either mask or landmarks to paste_back, not both")
    orig = load_image(original)
    crop = load_image(rendered_crop)
    out = orig.copy()
    h, w = orig.shape[:2]
    _, x, _ = quad_frame(crop_quad)
    side = 2.0 * float(np.hypot(*x))
    s = crop.shape[0]
    if crop.shape[1] != s:
        raise ValueError(f"rendered_crop must be square, got {crop.shape[:2]}")
    q = np.asarray(crop_quad, dtype=np.float64)
    if landmarks is not None:
        # Built at the footprint's resolution: the region's outline stays smooth however small the render.
        sa = min(max(2, round(side)), _MAX_MASK)
        f = FACE_FEATHER if feather is None else feather
        alpha = face_mask(landmarks, q, sa, feather=f, provider=mask_provider)
    else:
        alpha = _feathered_alpha(mask, s, (_WINDOW_FEATHER if feather is None else feather) * s)
    if s / side > 1.5:  # the render is finer than its footprint: reduce it first so it doesn't alias
        ns = max(2, round(side))
        crop = cv2.resize(crop, (ns, ns), interpolation=cv2.INTER_AREA)
        if landmarks is None:
            alpha = cv2.resize(alpha, (ns, ns), interpolation=cv2.INTER_AREA)
        s = ns
    x0, y0 = max(int(math.floor(q[:, 0].min())), 0), max(int(math.floor(q[:, 1].min())), 0)
    x1, y1 = min(int(math.ceil(q[:, 0].max())) + 1, w), min(int(math.ceil(q[:, 1].max())) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return out
    roi = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(
        crop,
        _source_to_crop(q, s, x0, y0),
        roi,
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    wa = cv2.warpAffine(
        alpha,
        _source_to_crop(q, alpha.shape[0], x0, y0),
        roi,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    wa = np.clip(wa, 0.0, 1.0)[:, :, None]
    base = out[y0:y1, x0:x1].astype(np.float32)
    blended = base + (warped.astype(np.float32) - base) * wa
    region = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(wa > 0, region, out[y0:y1, x0:x1])
    return out
