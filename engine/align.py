"""Faces in: detection, 68 landmarks, FFHQ alignment, unaligned crops and the (r, tx, ty) transform.

Every photo and video frame enters the engine here. The encoders only see FFHQ-*aligned* faces; the
unaligned look (the face as it sits in an axis-aligned crop of the photo) is restored by StyleGAN3's
input transform, computed here in closed form from the two quads.

Geometry. A *quad* is 4x2 float64 source pixel coordinates (pixel centres at integers) in the order
top-left, bottom-left, bottom-right, top-right of the output square: ``[c-x-y, c-x+y, c+x+y, c+x-y]``
with centre ``c`` and half-axes ``x`` (pointing to the output's right) and ``y = rot90(x)`` (down).
Output pixel ``(i, j)`` of an ``S x S`` warp samples the source at ``c + 2x*u + 2y*v`` with
``u = (i + 0.5)/S - 0.5`` and ``v = (j + 0.5)/S - 0.5``; the same normalised ``(u, v)`` are the
coordinates of StyleGAN3's Fourier input grid (image width = 1, centre = 0).

If the aligned quad maps ``(u, v)`` to the source by ``P_a`` and the crop quad by ``P_c`` (both 3x3
homogeneous), the crop shows at ``g`` the source point ``P_c @ g``, which the aligned image shows at
``inv(P_a) @ P_c @ g``: ``C(g) = A(inv(P_a) @ P_c @ g)``. A generator given
``transform = inv(P_a) @ P_c`` renders ``A(transform @ g)``, i.e. the crop. Its inverse is
:func:`engine.transforms.forward_matrix`'s ``M``, from which ``angle_deg, tx, ty`` are read (see
:mod:`engine.transforms` for the directions).

Typical use::

    from engine.align import align_face, paste_back
    face = align_face("photo.jpg")               # face.aligned -> encoder, face.transform -> G.synthesis
    out = paste_back(photo, edited_crop, face.crop_quad)
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch

from engine.errors import NoFaceError
from engine.imageio import ImageInput, load_image, name_of

__all__ = [
    "AlignedFace",
    "FaceDetection",
    "ScaleMode",
    "align_face",
    "crop_quad_for",
    "crop_quads_for_clip",
    "detect_faces",
    "face_quad",
    "landmarks_model_path",
    "paste_back",
    "quad_transform",
    "smooth_quads",
    "warp_quad",
]

ScaleMode = Literal["eyes", "ffhq"]

LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
DETECT_SIZE = 640  # long side of the copy the HOG detector scans first
_MAX_DETECT_SIZE = 2048  # long side of the second, slower pass when the first finds nothing


# --------------------------------------------------------------------------------------------------
# Models (loaded once, lazily)

_model_lock = threading.Lock()
_models: tuple | None = None


def landmarks_model_path() -> Path:
    """Path of dlib's 68-landmark predictor inside the installed ``face_recognition_models``.

    The package's ``__init__`` imports ``pkg_resources`` (slow, deprecated), so the folder is found
    through the import system without executing it.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the face_recognition_models package is not installed; run: python3 -m pip install face_recognition_models"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / LANDMARKS_FILE
        if path.is_file():
            return path
    raise ImportError(
        f"{LANDMARKS_FILE} is missing from face_recognition_models "
        f"({list(spec.submodule_search_locations)}); reinstall that package"
    )


def _get_models() -> tuple:
    """(detector, predictor), loaded on first use. dlib calls are serialised by ``_model_lock``."""
    global _models
    if _models is None:
        with _model_lock:
            if _models is None:
                import dlib

                _models = (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmarks_model_path())))
    return _models


# --------------------------------------------------------------------------------------------------
# Detection and landmarks


@dataclass(frozen=True)
class FaceDetection:
    """One detected face. ``box``: float64 [4] (left, top, right, bottom) in source pixels;
    ``score``: the HOG detector's confidence (higher is surer); ``landmarks``: float64 [68,2] (x, y)
    in source pixels, dlib's 68-point layout."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def _run_detector(rgb: np.ndarray, scale: float, upsample: int) -> list[tuple[np.ndarray, float]]:
    """HOG detections on ``rgb`` resized by ``scale``, boxes returned in ``rgb``'s pixels."""
    detector, _ = _get_models()
    if scale < 1.0:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
    else:
        small, sx, sy = rgb, 1.0, 1.0
    with _model_lock:
        rects, scores, _ = detector.run(small, upsample, 0.0)
    out = []
    for r, s in zip(rects, scores):
        # dlib boxes are inclusive pixel ranges; convert via pixel edges so the scale maps exactly.
        box = np.array(
            [
                (r.left() + 0.5) / sx - 0.5,
                (r.top() + 0.5) / sy - 0.5,
                (r.right() + 0.5) / sx - 0.5,
                (r.bottom() + 0.5) / sy - 0.5,
            ]
        )
        out.append((box, float(s)))
    return out


def _predict_landmarks(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    import dlib

    _, predictor = _get_models()
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    with _model_lock:
        shape = predictor(rgb, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _refine_upright(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Re-predict a face's landmarks on an upright view of it, mapped back to source px.

    dlib's predictor is most accurate on upright faces with detector-like boxes. We warp a patch
    around the face upright and place the box where the detector puts it on upright faces (centre
    0.18 half-sizes below the quad centre, side 1.17 half-sizes, measured on ../shared/faces). On
    faces rolled by 30 degrees this cuts the recovered angle's error from ~1 to ~0.3 degree.
    """
    c, x, _ = _quad_frame(face_quad(lm, "eyes"))
    h = float(np.hypot(*x))
    if h < 8:
        return lm
    ex, ey = x / h, _rot90(x) / h
    half = int(math.ceil(0.95 * h))  # covers the box below plus the predictor's reach beyond it
    pc = np.array([half, half], dtype=np.float64)  # patch centre <-> c
    # patch px -> source px: src = c + [ex ey] @ (p - pc)
    r = np.stack([ex, ey], axis=1)
    mat = np.hstack([r, (c - r @ pc)[:, None]])
    patch = cv2.warpAffine(
        rgb,
        mat,
        (2 * half + 1, 2 * half + 1),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    bc = pc + np.array([0.0, 0.18 * h])
    box = np.r_[bc - 0.585 * h, bc + 0.585 * h]
    lm_up = _predict_landmarks(patch, box)
    return (lm_up - pc) @ r.T + c


def detect_faces(image: ImageInput, detect_size: int = DETECT_SIZE) -> list[FaceDetection]:
    """All faces in a photo, largest (by box area) first; [] when there are none.

    The detector scans a copy whose long side is at most ``detect_size``; when that finds nothing it
    retries at up to 2048 px, then with 2x upsampling for small photos, so small faces in big photos
    are still found while the common case stays fast. Landmarks are always predicted at full size.
    """
    rgb = load_image(image)
    h, w = rgb.shape[:2]
    long_side = max(h, w)
    passes: list[tuple[float, int]] = [(min(1.0, detect_size / long_side), 0)]
    second = min(1.0, _MAX_DETECT_SIZE / long_side)
    if second > passes[0][0] * 1.25:
        passes.append((second, 0))
    if long_side * passes[-1][0] < 1200:
        passes.append((passes[-1][0], 1))
    found: list[tuple[np.ndarray, float]] = []
    for scale, upsample in passes:
        found = _run_detector(rgb, scale, upsample)
        if found:
            break
    faces = [FaceDetection(box, score, _refine_upright(rgb, _predict_landmarks(rgb, box))) for box, score in found]
    faces.sort(key=lambda f: -f.area)
    return faces


# --------------------------------------------------------------------------------------------------
# Quads and the transform


def _rot90(v: np.ndarray) -> np.ndarray:
    """Turn a vector by +90 degrees in image coordinates (y down): right -> down."""
    return np.array([-v[1], v[0]])


def _quad_from_frame(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]).astype(np.float64)


def _quad_frame(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centre, half-axis x, half-axis y) of a quad in our corner order."""
    q = np.asarray(quad, dtype=np.float64)
    if q.shape != (4, 2) or not np.all(np.isfinite(q)):
        raise ValueError(f"a quad must be a finite 4x2 array, got shape {q.shape}")
    c = q.mean(axis=0)
    x = (q[2] + q[3] - q[0] - q[1]) / 4.0
    y = (q[1] + q[2] - q[0] - q[3]) / 4.0
    if abs(x[0] * y[1] - x[1] * y[0]) < 1e-6:
        raise ValueError("degenerate quad (zero area)")
    return c, x, y


def _frame_matrix(quad: np.ndarray) -> np.ndarray:
    """3x3 P with P @ [u, v, 1] = source point of normalised output coordinate (u, v) in [-0.5, 0.5]."""
    c, x, y = _quad_frame(quad)
    return np.array([[2 * x[0], 2 * y[0], c[0]], [2 * x[1], 2 * y[1], c[1]], [0.0, 0.0, 1.0]])


def face_quad(landmarks: np.ndarray, scale_mode: ScaleMode = "eyes") -> np.ndarray:
    """The FFHQ alignment quad (float64 [4,2], source px) of a face's 68 landmarks.

    ``scale_mode="eyes"``: half-size 2*|eye_to_eye| (the paper's release); ``"ffhq"``: the original
    FFHQ rule max(2*|eye_to_eye|, 1.8*|eye_to_mouth|), which frames long faces a little wider.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68x2 landmarks, got {lm.shape}")
    eye_left, eye_right = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = (lm[48] + lm[54]) / 2 - eye_avg
    x = eye_to_eye - _rot90(eye_to_mouth)
    x /= np.hypot(*x)
    if scale_mode == "eyes":
        x *= 2.0 * np.hypot(*eye_to_eye)
    elif scale_mode == "ffhq":
        x *= max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    else:
        raise ValueError(f"scale_mode must be 'eyes' or 'ffhq', got {scale_mode!r}")
    c = eye_avg + 0.1 * eye_to_mouth
    return _quad_from_frame(c, x, _rot90(x))


def crop_quad_for(quad: np.ndarray) -> np.ndarray:
    """The unaligned crop of an aligned quad: axis-aligned square, same centre and size (float64 [4,2])."""
    c, x, _ = _quad_frame(quad)
    h = float(np.hypot(*x))
    return _quad_from_frame(c, np.array([h, 0.0]), np.array([0.0, h]))


def quad_transform(quad: np.ndarray, crop_quad: np.ndarray) -> np.ndarray:
    """The stored StyleGAN3 transform (float64 [3,3]) that turns the aligned view into the crop's view.

    A generator that renders the aligned face (identity transform) renders, with this matrix, the
    face as it appears in the window ``crop_quad``: exactly ``inv(P_aligned) @ P_crop``. Its inverse is
    the user matrix ``M = [[k cos a, k sin a, tx], [-k sin a, k cos a, ty], [0, 0, 1]]`` with ``k = 1``
    when both quads have the same size.
    """
    return np.linalg.solve(_frame_matrix(quad), _frame_matrix(crop_quad))


def _params(stored: np.ndarray) -> tuple[float, float, float, float]:
    m = np.linalg.inv(stored)
    angle = math.degrees(math.atan2(m[0, 1], m[0, 0]))
    zoom = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    return angle, float(m[0, 2]), float(m[1, 2]), zoom


# --------------------------------------------------------------------------------------------------
# Warping


def _soften_padding(
    out: np.ndarray, a: np.ndarray, t: np.ndarray, image_size: tuple[int, int], step: float, median: np.ndarray
) -> np.ndarray:
    """FFHQ-style treatment of the reflected padding in a finished warp: blur it, fade it to the median.

    out: [S,S,3] uint8 warp whose output pixel p sampled the source at ``a @ p + t``; image_size:
    the photo's (width, height); step: source px per output px; median: float32 [3] photo colour.
    Weights depend only on how far outside the photo a pixel's source point lies, so they are computed
    on a coarse grid (the distance is piecewise linear) and the blur on a reduced copy.
    """
    s = out.shape[0]
    w, h = image_size
    g = min(s, 128)
    u = (np.arange(g, dtype=np.float64) + 0.5) * (s / g) - 0.5
    sx = a[0, 0] * u[None, :] + a[0, 1] * u[:, None] + t[0]
    sy = a[1, 0] * u[None, :] + a[1, 1] * u[:, None] + t[1]
    dist = np.maximum(np.maximum(-sx, sx - (w - 1)), np.maximum(-sy, sy - (h - 1))) / step
    sigma = max(1.0, 0.02 * s)
    # The blur fades in from one sigma inside the photo's edge so no seam shows, full 2 sigma out.
    wb = np.clip((dist + sigma) / (3 * sigma), 0.0, 1.0).astype(np.float32)
    wm = np.clip(dist / (0.5 * s), 0.0, 1.0).astype(np.float32)
    if not np.any(wb > 0):
        return out
    wb = cv2.resize(wb, (s, s), interpolation=cv2.INTER_LINEAR)
    red = max(1.0, sigma / 2.0)
    small = cv2.resize(out, (max(1, round(s / red)), max(1, round(s / red))), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / red, borderType=cv2.BORDER_REFLECT_101)
    blurred = cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
    out = cv2.blendLinear(out, blurred, 1.0 - wb, wb)
    if np.any(wm > 0):
        wm = cv2.resize(wm, (s, s), interpolation=cv2.INTER_LINEAR)
        flat = np.empty_like(out)
        flat[:] = np.clip(median + 0.5, 0, 255).astype(np.uint8)
        out = cv2.blendLinear(out, flat, 1.0 - wm, wm)
    return out


def _output_to_source(quad: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, t): output pixel index p of a size x size warp of ``quad`` samples source pixel ``a @ p + t``."""
    c, x, y = _quad_frame(quad)
    a = np.array([[2 * x[0], 2 * y[0]], [2 * x[1], 2 * y[1]]]) / size
    return a, c - a @ np.array([size / 2 - 0.5, size / 2 - 0.5])


def warp_quad(
    image: np.ndarray, quad: np.ndarray, size: int, *, pad: bool = True, interpolation: int = cv2.INTER_CUBIC
) -> np.ndarray:
    """Resample the square ``quad`` of ``image`` ([H,W,3] uint8) to a [size,size,3] uint8 image.

    Output pixel (i, j) samples ``c + 2x*((i+.5)/size - .5) + 2y*((j+.5)/size - .5)`` (see the module
    docstring). Large quads are first reduced with area averaging so nothing aliases. Where the quad
    leaves the photo, ``pad=True`` fills with blurred reflections fading to the median colour (FFHQ
    style); ``pad=False`` replicates the border pixels.
    """
    img = np.asarray(image)
    h, w = img.shape[:2]
    q = np.asarray(quad, dtype=np.float64)
    a, t = _output_to_source(q, size)
    step = float(np.sqrt(abs(np.linalg.det(a))))  # source px per output px
    margin = 4.0 * max(step, 1.0) + 2.0  # interpolation support
    x0 = max(int(math.floor(q[:, 0].min() - margin)), 0)
    y0 = max(int(math.floor(q[:, 1].min() - margin)), 0)
    x1 = min(int(math.ceil(q[:, 0].max() + margin)) + 1, w)
    y1 = min(int(math.ceil(q[:, 1].max() + margin)) + 1, h)
    if x0 >= x1 or y0 >= y1:
        raise ValueError("the quad lies entirely outside the image")
    # Only the part of the photo under the quad is touched. Its cut edges inside the photo are never
    # sampled (margin), so reflecting at the region's border reflects at the photo's border.
    region = img[y0:y1, x0:x1]
    kx = ky = 1.0
    if step > 1.5:  # reduce first so the warp is close to 1:1 and does not alias
        rh, rw = region.shape[:2]
        nw, nh = max(1, round(rw / step)), max(1, round(rh / step))
        kx, ky = nw / rw, nh / rh
        region = cv2.resize(region, (nw, nh), interpolation=cv2.INTER_AREA)
    mat = np.hstack([np.diag([kx, ky]) @ a, np.array([[(t[0] - x0 + 0.5) * kx - 0.5], [(t[1] - y0 + 0.5) * ky - 0.5]])])
    out = cv2.warpAffine(
        region,
        mat,
        (size, size),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101 if pad else cv2.BORDER_REPLICATE,
    )
    outside = q[:, 0].min() < -0.5 or q[:, 1].min() < -0.5 or q[:, 0].max() > w - 0.5 or q[:, 1].max() > h - 0.5
    if pad and outside:
        sub = img[y0:y1, x0:x1]
        stride = max(1, int(math.sqrt(sub.shape[0] * sub.shape[1] / 40000)))
        median = np.median(sub[::stride, ::stride].reshape(-1, 3), axis=0).astype(np.float32)
        out = _soften_padding(out, a, t, (w, h), step, median)
    return out


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
        if not faces:
            raise NoFaceError(
                f"no face found in {name!r}; use a photo where a face is clearly visible, "
                "roughly frontal and at least about 80 pixels wide"
            )
        index = 0 if face_index is None else int(face_index)
        if not 0 <= index < len(faces):
            raise NoFaceError(
                f"face {index} requested but {len(faces)} face(s) found in {name!r}; "
                f"choose an index from 0 to {len(faces) - 1}"
            )
        lm = faces[index].landmarks
    quad = face_quad(lm, scale_mode)
    cquad = crop_quad_for(quad) if crop_quad is None else np.asarray(crop_quad, dtype=np.float64).copy()
    stored = quad_transform(quad, cquad)
    angle, tx, ty, zoom = _params(stored)
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
# Video: smoothed windows


def _fill_gaps(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames where ``ok`` is False (held constant past the ends)."""
    idx = np.arange(len(values))
    out = values.copy()
    for j in range(values.shape[1]):
        out[:, j] = np.interp(idx, idx[ok], values[ok, j])
    return out


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(values) < 2:
        return values
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(values, sigma, axis=0, mode="nearest")


def smooth_quads(quads: np.ndarray | Sequence[np.ndarray | None], sigma: float) -> np.ndarray:
    """Gaussian-smooth a clip's quads over time (sigma in frames): centres and x axes are filtered,
    y is rebuilt as rot90(x) so every quad stays a square. Missing frames (None) are interpolated.

    Returns float64 [N,4,2].
    """
    n = len(quads)
    ok = np.array([q is not None for q in quads])
    if not ok.any():
        raise ValueError("no quads to smooth: every frame is missing")
    frames = np.zeros((n, 4))
    for i, q in enumerate(quads):
        if q is not None:
            c, x, _ = _quad_frame(q)
            frames[i] = [c[0], c[1], x[0], x[1]]
    frames = _smooth(_fill_gaps(frames, ok), sigma)
    return np.stack([_quad_from_frame(f[:2], f[2:], _rot90(f[2:])) for f in frames])


def crop_quads_for_clip(
    landmarks: Sequence[np.ndarray | None], sigma: float = 3.0, scale_mode: ScaleMode = "eyes"
) -> np.ndarray:
    """Per-frame crop windows (float64 [N,4,2]) for a clip, from each frame's [68,2] landmarks.

    Window centres and sizes follow the face but are Gaussian-smoothed over time (sigma in frames;
    0 = no smoothing) so the crops do not jitter. Frames without a face (None) are interpolated from
    their neighbours. Use the result as ``align_face(frame, crop_quad=quads[i])``.
    """
    quads = [None if lm is None else face_quad(lm, scale_mode) for lm in landmarks]
    ok = np.array([q is not None for q in quads])
    if not ok.any():
        raise ValueError("no landmarks in any frame")
    frames = np.zeros((len(quads), 3))
    for i, q in enumerate(quads):
        if q is not None:
            c, x, _ = _quad_frame(q)
            frames[i] = [c[0], c[1], np.hypot(*x)]
    frames = _smooth(_fill_gaps(frames, ok), sigma)
    return np.stack([_quad_from_frame(f[:2], np.array([f[2], 0.0]), np.array([0.0, f[2]])) for f in frames])


# --------------------------------------------------------------------------------------------------
# Paste-back


def _feathered_alpha(mask: np.ndarray | None, size: int, feather_px: float) -> np.ndarray:
    """[size,size] float32 alpha: the mask, faded to 0 over ``feather_px`` inside its edge and the window's."""
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


def paste_back(
    original: np.ndarray,
    rendered_crop: np.ndarray,
    crop_quad: np.ndarray,
    mask: np.ndarray | None = None,
    feather: float = 0.08,
) -> np.ndarray:
    """Put a rendered (edited) crop back into the photo or frame it was cut from.

    original: [H,W,3] uint8 RGB. rendered_crop: [S,S,3] uint8 RGB of any size S, showing the window
    ``crop_quad`` (float [4,2] source px; any square quad works, also an aligned ``quad``). mask:
    optional [S,S] weights in crop pixels (bool, uint8 0..255 or float 0..1; 1 = take the render),
    e.g. a face-parsing mask; default the whole window. feather: width of the soft edge, as a fraction
    of the crop width, laid *inside* the mask so pixels outside it stay bit-exact.
    Returns a new [H,W,3] uint8 array.
    """
    orig = load_image(original)
    crop = load_image(rendered_crop)
    out = orig.copy()
    h, w = orig.shape[:2]
    _, x, _ = _quad_frame(crop_quad)
    side = 2.0 * float(np.hypot(*x))
    s = crop.shape[0]
    if crop.shape[1] != s:
        raise ValueError(f"rendered_crop must be square, got {crop.shape[:2]}")
    alpha = _feathered_alpha(mask, s, feather * s)
    if s / side > 1.5:  # the render is finer than its footprint: reduce it first so it doesn't alias
        ns = max(2, round(side))
        crop = cv2.resize(crop, (ns, ns), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (ns, ns), interpolation=cv2.INTER_AREA)
        s = ns
    q = np.asarray(crop_quad, dtype=np.float64)
    x0, y0 = max(int(math.floor(q[:, 0].min())), 0), max(int(math.floor(q[:, 1].min())), 0)
    x1, y1 = min(int(math.ceil(q[:, 0].max())) + 1, w), min(int(math.ceil(q[:, 1].max())) + 1, h)
    if x0 >= x1 or y0 >= y1:
        return out
    # Source px -> crop px: the inverse of the crop's sampling map, shifted into the ROI.
    a, t = _output_to_source(q, s)
    ai = np.linalg.inv(a)
    mat = np.hstack([ai, (ai @ (np.array([x0, y0], dtype=np.float64) - t))[:, None]])
    roi = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(
        crop, mat, roi, flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    wa = cv2.warpAffine(
        alpha, mat, roi, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
    )
    wa = np.clip(wa, 0.0, 1.0)[:, :, None]
    base = out[y0:y1, x0:x1].astype(np.float32)
    blended = base + (warped.astype(np.float32) - base) * wa
    region = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1] = np.where(wa > 0, region, out[y0:y1, x0:x1])
    return out
