"""Face geometry: the 68 landmarks of a face in its own frame, and the camera that frames it.

Face frame: x to the image right, y down, origin midway between the nominal eye centres, unit = about
the eye-centre distance of an average face (0.97 of it at eye_spacing = 0.5). Landmarks follow the
iBUG 68-point convention used by dlib: jaw 0-16 (from the image-left ear round the chin), brows 17-21
(image-left, outer to inner) and 22-26, nose bridge 27-30 and base 31-35, eyes 36-41 (image-left:
outer corner, upper lid, inner corner, lower lid) and 42-47, outer lips 48-59 (from the image-left
corner along the upper lip) and inner lips 60-67.

Yaw is approximated by giving every point a depth z (towards the camera) and projecting the head turned
about the vertical axis: x' = x cos(yaw) + z sin(yaw). The face outline has z ~ 0 at its sides, so the
silhouette stays while the features slide.

The camera is a similarity from the face frame to pixel-index coordinates (pixel centres at integers).
The aligned camera reproduces the FFHQ alignment recipe exactly: the FFHQ quad computed from the
face's own landmarks maps onto the output square.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.quads import ScaleMode, face_quad, quad_frame
from factory.synthetic.factors import ROLL_DEGREES, SHIFT_FRACTION, YAW_DEGREES, ZOOM_RANGE

__all__ = ["FaceShape", "face_shape", "ffhq_quad", "aligned_camera", "unaligned_camera", "apply_camera"]


@dataclass
class FaceShape:
    """Geometry of one face in the face frame (float64 arrays)."""

    landmarks: np.ndarray  # [68, 2] projected (after yaw)
    width: float  # half-width of the face at the jaw's top (ear level)
    chin: float  # y of the chin
    jaw_top: float  # y where the jaw outline starts (landmarks 0 and 16)
    head_top: float  # y of the top of the skull
    yaw_shift: float  # sin(yaw): x shift per unit of depth
    eye_half_height: float  # eye opening half-height (before squint)
    mouth_open: float  # gap between the inner lips
    smile: float


def _superellipse_quarter(a: float, b: float, power: float, n: int = 64) -> np.ndarray:
    """From (-a, 0) down to (0, b): the lower-left quarter of a superellipse, float [n, 2]."""
    t = np.linspace(0.0, np.pi / 2, n)
    e = 2.0 / power
    return np.stack([-a * np.cos(t) ** e, b * np.sin(t) ** e], axis=1)


def _resample(curve: np.ndarray, n: int) -> np.ndarray:
    seg = np.hypot(*np.diff(curve, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(t, s, curve[:, 0]), np.interp(t, s, curve[:, 1])], axis=1)


def face_shape(f: dict[str, float]) -> FaceShape:
    """Landmarks and outline parameters of the face described by factor dict ``f``."""
    smile, age, raise_ = f["smile"], f["age"], f["brow_raise"]
    W = 1.03 + 0.16 * (f["face_width"] - 0.5) + 0.03 * age
    chin = 1.82 + 0.26 * (f["face_length"] - 0.5) + 0.03 * age
    jaw_top = 0.02
    power = 1.8 + 1.0 * f["jaw_shape"]

    # jaw: resample the outline by arc length (iBUG points are roughly evenly spaced along it)
    left = _superellipse_quarter(W, chin - jaw_top, power)
    left[:, 1] += jaw_top
    right = left[::-1].copy()
    right[:, 0] *= -1
    jaw = _resample(np.concatenate([left, right[1:]], axis=0), 17)
    jaw_z = 0.85 * np.sqrt(np.clip(1.0 - (jaw[:, 0] / (W * 1.001)) ** 2, 0.0, 1.0))

    # eyes
    ex = 0.485 + 0.07 * (f["eye_spacing"] - 0.5)
    ew = 0.205 * (1.0 + 0.2 * (f["eye_size"] - 0.5))
    eh0 = 0.084 * (1.0 + 0.3 * (f["eye_size"] - 0.5))
    eh = eh0 * (1.0 - 0.22 * smile) * (1.0 + 0.08 * raise_)
    tilt = 0.05 * (f["eye_tilt"] - 0.5)
    eyes, eyes_z = [], []
    for side in (-1.0, 1.0):
        cx = side * ex
        outer = (cx + side * (ew - 0.012), -tilt + 0.005)
        inner = (cx - side * ew, 0.3 * tilt + 0.022)
        up_o = (cx + side * 0.26 * ew, -eh * 0.98 - 0.3 * tilt)
        up_i = (cx - side * 0.40 * ew, -eh * 0.95)
        lo_i = (cx - side * 0.32 * ew, eh * 0.85 - 0.02 * smile)
        lo_o = (cx + side * 0.36 * ew, eh * 0.80 - 0.2 * tilt - 0.02 * smile)
        if side < 0:  # 36 outer, 37, 38 upper, 39 inner, 40, 41 lower
            pts = [outer, up_o, up_i, inner, lo_i, lo_o]
            z = [0.25, 0.42, 0.48, 0.45, 0.48, 0.42]
        else:  # 42 inner, 43, 44 upper, 45 outer, 46, 47 lower
            pts = [inner, up_i, up_o, outer, lo_o, lo_i]
            z = [0.45, 0.48, 0.42, 0.25, 0.42, 0.48]
        eyes += pts
        eyes_z += z

    # brows: 17 outer .. 21 inner (left), mirrored for 22 inner .. 26 outer
    by = -0.25 - 0.07 * raise_ + 0.02 * age
    arch = 0.03 + 0.07 * f["brow_arch"]
    frown = max(0.0, -raise_)
    bx = np.array([-0.92, -0.77, -0.56, -0.36, -0.17]) * (ex / 0.5) ** 0.5
    bx[-1] += 0.03 * frown
    prof = np.array([0.45, 0.9, 1.0, 0.75, 0.35])
    byy = by - arch * prof + np.array([0.10, 0.03, 0.0, 0.0, 0.02]) + np.array([0, 0, 0, 0.01, 0.035]) * frown
    brow_l = np.stack([bx, byy], axis=1)
    brow_r = brow_l[::-1].copy()
    brow_r[:, 0] *= -1
    brow_z = [0.25, 0.42, 0.52, 0.6, 0.64]

    # nose
    tip = 0.64 + 0.10 * (f["nose_length"] - 0.5)
    base = tip + 0.15
    nw = 0.21 + 0.07 * (f["nose_width"] - 0.5) + 0.02 * smile
    nose = [
        (0, -0.02),
        (0, tip * 0.33),
        (0, tip * 0.66),
        (0, tip),
        (-nw, base - 0.07),
        (-0.5 * nw, base - 0.015),
        (0, base),
        (0.5 * nw, base - 0.015),
        (nw, base - 0.07),
    ]
    nose_z = [0.62, 0.78, 0.95, 1.12, 0.72, 0.85, 0.92, 0.85, 0.72]

    # mouth
    full = f["lip_fullness"] * (1.0 - 0.35 * age)
    top = base + 0.19 + 0.02 * (f["face_length"] - 0.5)
    up_t = 0.085 + 0.07 * full
    lo_t = 0.12 + 0.08 * full
    mw = 0.40 + 0.07 * (f["mouth_width"] - 0.5) + 0.08 * smile
    line = top + up_t
    opening = 0.16 * max(0.0, smile - 0.3) / 0.7
    lift = 0.09 * smile
    corner_y = line - lift + 0.01
    # outer: 48 corner, 49, 50 (peak), 51 (dip), 52, 53, 54 corner, 55, 56, 57 (bottom), 58, 59
    ul = line - opening * 0.35  # upper inner lip line
    ll = line + opening * 0.65  # lower inner lip line
    outer = [
        (-mw, corner_y),
        (-0.62 * mw, top + 0.35 * up_t - 0.5 * lift - 0.35 * opening),
        (-0.27 * mw, top - 0.02 - 0.35 * opening),
        (0.0, top + 0.012 - 0.35 * opening),
        (0.27 * mw, top - 0.02 - 0.35 * opening),
        (0.62 * mw, top + 0.35 * up_t - 0.5 * lift - 0.35 * opening),
        (mw, corner_y),
        (0.62 * mw, ll + lo_t * 0.72 - 0.3 * lift),
        (0.29 * mw, ll + lo_t * 0.96),
        (0.0, ll + lo_t),
        (-0.29 * mw, ll + lo_t * 0.96),
        (-0.62 * mw, ll + lo_t * 0.72 - 0.3 * lift),
    ]
    ci = 0.84 * mw
    inner = [
        (-ci, corner_y + 0.002),
        (-0.28 * mw, ul - 0.55 * lift * 0.6),
        (0.0, ul - 0.002),
        (0.28 * mw, ul - 0.55 * lift * 0.6),
        (ci, corner_y + 0.002),
        (0.28 * mw, ll - 0.2 * lift),
        (0.0, ll + 0.004),
        (-0.28 * mw, ll - 0.2 * lift),
    ]
    mouth_z = [
        0.55,
        0.72,
        0.8,
        0.82,
        0.8,
        0.72,
        0.55,
        0.7,
        0.78,
        0.8,
        0.78,
        0.7,
        0.58,
        0.76,
        0.8,
        0.76,
        0.58,
        0.74,
        0.78,
        0.74,
    ]

    pts = np.concatenate(
        [
            jaw,
            brow_l,
            brow_r,
            np.array(nose, float),
            np.array(eyes, float),
            np.array(outer, float),
            np.array(inner, float),
        ],
        axis=0,
    )
    z = np.concatenate([jaw_z, brow_z, brow_z[::-1], nose_z, eyes_z, mouth_z])
    yaw = math.radians(YAW_DEGREES * f["yaw"])
    pts[:, 0] = pts[:, 0] * math.cos(yaw) + z * math.sin(yaw)
    return FaceShape(
        landmarks=pts,
        width=W,
        chin=chin,
        jaw_top=jaw_top,
        head_top=-1.85,
        yaw_shift=math.sin(yaw),
        eye_half_height=eh,
        mouth_open=opening,
        smile=smile,
    )


def ffhq_quad(lm: np.ndarray, scale_mode: ScaleMode = "eyes") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FFHQ alignment quad of 68 landmarks (float [68,2], any frame): centre c, half-axes x, y.

    scale_mode "eyes": |x| = 2 |eye_to_eye| (the editing reference); "ffhq": max(2 |e2e|, 1.8 |e2m|).
    The quad's corners are c - x - y, c - x + y, c + x + y, c + x - y: the quad of
    :func:`engine.quads.face_quad`, the one the studio aligns photos with.
    """
    return quad_frame(face_quad(lm, scale_mode))


def aligned_camera(lm: np.ndarray, size: int, scale_mode: ScaleMode = "eyes") -> np.ndarray:
    """Similarity (float64 [2,3]) taking the FFHQ quad of ``lm`` onto a ``size`` square image.

    As in the FFHQ script (which samples the quad at ``quad + 0.5``), the quad's corners land on the
    outer edges of the image, i.e. at pixel-index coordinates -0.5 and size - 0.5.
    """
    c, x, y = ffhq_quad(lm, scale_mode)
    k = size / (2.0 * np.hypot(*x))
    R = np.stack([x, y]) / np.hypot(*x)  # rows: unit x, unit y
    L = k * R
    return np.concatenate([L, (size / 2.0 - 0.5 - L @ c)[:, None]], axis=1)


def unaligned_camera(
    lm: np.ndarray, size: int, roll: float, tx: float, ty: float, scale: float, scale_mode: ScaleMode = "eyes"
) -> np.ndarray:
    """The aligned camera followed by zoom, roll and shift about the image centre (float64 [2,3]).

    roll, tx, ty, scale are the normalised pose factors in [-1, 1] (see ``FACTORS``).
    """
    A = np.vstack([aligned_camera(lm, size, scale_mode), [0.0, 0.0, 1.0]])
    zoom = ZOOM_RANGE[0] + (ZOOM_RANGE[1] - ZOOM_RANGE[0]) * (scale + 1.0) / 2.0
    a = math.radians(ROLL_DEGREES * roll)
    ca, sa = math.cos(a), math.sin(a)
    ctr = (size - 1) / 2.0
    # the same convention as engine.transforms.forward_matrix: +angle turns counter-clockwise on screen
    Rz = np.array([[zoom * ca, zoom * sa, 0.0], [-zoom * sa, zoom * ca, 0.0], [0.0, 0.0, 1.0]])
    T = np.array(
        [[1.0, 0.0, ctr + tx * SHIFT_FRACTION * size], [0.0, 1.0, ctr + ty * SHIFT_FRACTION * size], [0.0, 0.0, 1.0]]
    )
    C = np.array([[1.0, 0.0, -ctr], [0.0, 1.0, -ctr], [0.0, 0.0, 1.0]])
    return (T @ Rz @ C @ A)[:2]


def apply_camera(A: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map float [..., 2] points with a [2,3] similarity."""
    return np.asarray(pts, dtype=np.float64) @ A[:, :2].T + A[:, 2]
