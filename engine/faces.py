"""Faces in a photo: dlib's HOG face detector and 68-point landmark predictor, and :func:`detect_faces`,
which finds every face in a photo with its landmarks.

The two dlib models are loaded once per process and shared. Loading takes about a second and holds
Python's GIL all along, in two C++ calls that cannot be split (decoding the built-in detector, about
0.4 s; parsing the 100 MB landmark model, about 0.7 s), so every Python thread, a GUI's included,
stalls meanwhile. Detection and landmark prediction release the GIL. An interactive program should
therefore call :func:`load_face_models` ahead of time, at a moment when nobody waits on it; otherwise
the first :func:`detect_faces` loads them.

Typical use::

    from engine.faces import detect_faces
    faces = detect_faces("photo.jpg")            # largest first; faces[0].landmarks: [68,2] source px
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from engine.errors import NoFaceError
from engine.imageio import ImageInput, load_image
from engine.quads import face_quad, quad_frame, rot90

__all__ = [
    "BOX_BELOW",
    "BOX_SIDE",
    "DETECT_SIZE",
    "FaceDetection",
    "FaceModels",
    "choose_face",
    "detect_boxes",
    "detect_faces",
    "landmarks_model_path",
    "load_face_models",
    "predict_landmarks",
    "refine_landmarks",
]

LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
DETECT_SIZE = 640  # long side of the copy the HOG detector scans first
_MAX_DETECT_SIZE = 2048  # long side of the second, slower pass when the first finds nothing
# Where the HOG detector puts its box on an upright face, in half-sizes h of the face's quad (measured
# on ../shared/faces): centre BOX_BELOW * h below the quad's centre, side BOX_SIDE * h.
BOX_BELOW = 0.18
BOX_SIDE = 1.17


# --------------------------------------------------------------------------------------------------
# Models (loaded once)


class FaceModels(NamedTuple):
    """dlib's frontal face detector (``dlib.fhog_object_detector``) and 68-landmark predictor
    (``dlib.shape_predictor``)."""

    detector: Any
    predictor: Any


_load_lock = threading.Lock()  # one thread loads, the others wait for its models
_run_lock = threading.Lock()  # the shared models run one call at a time
_models: FaceModels | None = None


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


def load_face_models() -> FaceModels:
    """The face detector and the landmark predictor, loaded by the first call and shared afterwards.

    Safe to call from any thread and any number of times: every call returns the same object, and
    threads that call while the first one loads wait for its models. The first call holds the GIL
    for about a second (see the module docstring), which stalls every Python thread whichever
    thread makes it: make it at a moment when nobody waits on the program, e.g. during start-up.
    Raises ImportError when dlib or the landmark model is not installed (a later call tries again).
    """
    global _models
    models = _models
    if models is None:
        with _load_lock:
            models = _models
            if models is None:
                import dlib

                path = str(landmarks_model_path())
                models = _models = FaceModels(dlib.get_frontal_face_detector(), dlib.shape_predictor(path))
    return models


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


def _run_detector(
    rgb: np.ndarray, scale: float, upsample: int, adjust_threshold: float = 0.0
) -> list[tuple[np.ndarray, float]]:
    """HOG detections on ``rgb`` resized by ``scale``, boxes returned in ``rgb``'s pixels."""
    detector = load_face_models().detector
    if scale < 1.0:
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        sx, sy = small.shape[1] / w, small.shape[0] / h
    else:
        small, sx, sy = rgb, 1.0, 1.0
    with _run_lock:
        rects, scores, _ = detector.run(small, upsample, adjust_threshold)
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

    predictor = load_face_models().predictor
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    with _run_lock:
        shape = predictor(rgb, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _refine_upright(rgb: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Re-predict a face's landmarks on an upright view of it, mapped back to source px.

    dlib's predictor is most accurate on upright faces with detector-like boxes. We warp a patch
    around the face upright and place the box where the detector puts it on upright faces (centre
    0.18 half-sizes below the quad centre, side 1.17 half-sizes, measured on ../shared/faces). On
    faces rolled by 30 degrees this cuts the recovered angle's error from ~1 to ~0.3 degree.
    """
    c, x, _ = quad_frame(face_quad(lm, "eyes"))
    h = float(np.hypot(*x))
    if h < 8:
        return lm
    ex, ey = x / h, rot90(x) / h
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
    bc = pc + np.array([0.0, BOX_BELOW * h])
    box = np.r_[bc - 0.5 * BOX_SIDE * h, bc + 0.5 * BOX_SIDE * h]
    lm_up = _predict_landmarks(patch, box)
    return (lm_up - pc) @ r.T + c


def detect_boxes(
    rgb: np.ndarray, scale: float = 1.0, upsample: int = 0, adjust_threshold: float = 0.0
) -> list[tuple[np.ndarray, float]]:
    """One pass of the HOG face detector over ``rgb`` ([H,W,3] uint8) reduced by ``scale`` (<= 1), no
    landmarks: [(box float64 [4] (left, top, right, bottom) in ``rgb``'s pixels, score)], in the
    detector's order. ``upsample``: 2x upsamplings first (finds smaller faces, slower);
    ``adjust_threshold``: added to the detector's threshold (negative: more, less sure detections).
    Faces smaller than about 80 px at the scanned scale are not found."""
    return _run_detector(rgb, scale, upsample, adjust_threshold)


def predict_landmarks(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The 68 landmarks (float64 [68,2] source px) that dlib's predictor finds in ``box`` (float [4]:
    left, top, right, bottom, source px; a detector's box, or one placed where the detector would put it)."""
    return _predict_landmarks(rgb, np.asarray(box, dtype=np.float64))


def refine_landmarks(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 68 landmarks (float64 [68,2] source px) predicted again on an upright view around an estimate
    of them (float [68,2]): the same face's landmarks in a nearby frame of a video, or a first estimate in
    this photo. The estimate places the predictor's box (see :data:`BOX_BELOW`, :data:`BOX_SIDE`), so
    it must lie within about a tenth of the face's size of the face; faces under 8 px come back as given.
    """
    return _refine_upright(rgb, np.asarray(landmarks, dtype=np.float64))


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


def choose_face(faces: list[FaceDetection], face_index: int | None, name: str) -> int:
    """The index of the face to use among ``faces`` (largest first): ``face_index``, default 0 (the largest).
    Raises :class:`NoFaceError`, naming the photo ``name``, when there is none or the index is out of range."""
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
    return index
