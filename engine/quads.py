"""Square windows on a photo ("quads"): the FFHQ quad of a face's landmarks, its unaligned crop window,
the StyleGAN3 transform between the two, resampling a quad to a square picture, and smoothed windows
for a video clip. Pure geometry on numpy arrays; detection lives in :mod:`engine.faces`, the whole
alignment of a photo in :mod:`engine.align`.

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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

__all__ = [
    "ScaleMode",
    "crop_quad_for",
    "crop_quads_for_clip",
    "face_quad",
    "output_to_source",
    "quad_frame",
    "quad_from_frame",
    "quad_transform",
    "rot90",
    "smooth_quads",
    "warp_quad",
]

ScaleMode = Literal["eyes", "ffhq"]


# --------------------------------------------------------------------------------------------------
# Quads and the transform


def rot90(v: np.ndarray) -> np.ndarray:
    """Turn a vector by +90 degrees in image coordinates (y down): right -> down."""
    return np.array([-v[1], v[0]])


def quad_from_frame(c: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The quad (float64 [4,2]) with centre ``c`` and half-axes ``x`` (right) and ``y`` (down)."""
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y]).astype(np.float64)


def quad_frame(quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    c, x, y = quad_frame(quad)
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
    x = eye_to_eye - rot90(eye_to_mouth)
    x /= np.hypot(*x)
    if scale_mode == "eyes":
        x *= 2.0 * np.hypot(*eye_to_eye)
    elif scale_mode == "ffhq":
        x *= max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    else:
        raise ValueError(f"scale_mode must be 'eyes' or 'ffhq', got {scale_mode!r}")
    c = eye_avg + 0.1 * eye_to_mouth
    return quad_from_frame(c, x, rot90(x))


def _axis_aligned(c: np.ndarray, half: float) -> np.ndarray:
    """The axis-aligned square quad with centre ``c`` and half-size ``half``."""
    return quad_from_frame(c, np.array([half, 0.0]), np.array([0.0, half]))


def crop_quad_for(quad: np.ndarray) -> np.ndarray:
    """The unaligned crop of an aligned quad: axis-aligned square, same centre and size (float64 [4,2])."""
    c, x, _ = quad_frame(quad)
    return _axis_aligned(c, float(np.hypot(*x)))


def quad_transform(quad: np.ndarray, crop_quad: np.ndarray) -> np.ndarray:
    """The stored StyleGAN3 transform (float64 [3,3]) that turns the aligned view into the crop's view.

    A generator that renders the aligned face (identity transform) renders, with this matrix, the
    face as it appears in the window ``crop_quad``: exactly ``inv(P_aligned) @ P_crop``. Its inverse is
    the user matrix ``M = [[k cos a, k sin a, tx], [-k sin a, k cos a, ty], [0, 0, 1]]`` with ``k = 1``
    when both quads have the same size.
    """
    return np.linalg.solve(_frame_matrix(quad), _frame_matrix(crop_quad))


# --------------------------------------------------------------------------------------------------
# Warping


def output_to_source(quad: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(a, t): output pixel index p of a size x size warp of ``quad`` samples source pixel ``a @ p + t``."""
    c, x, y = quad_frame(quad)
    a = np.array([[2 * x[0], 2 * y[0]], [2 * x[1], 2 * y[1]]]) / size
    return a, c - a @ np.array([size / 2 - 0.5, size / 2 - 0.5])


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
    a, t = output_to_source(q, size)
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
# Video: smoothed windows


def _frames(quads: Sequence[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """(float64 [N,4]: each quad's centre and half-axis x, zeros where it is None; bool [N]: not None)."""
    ok = np.array([q is not None for q in quads])
    frames = np.zeros((len(quads), 4))
    for i, q in enumerate(quads):
        if q is not None:
            c, x, _ = quad_frame(q)
            frames[i] = [c[0], c[1], x[0], x[1]]
    return frames, ok


def _local_linear(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted local linear fit of each column of ``values`` [N,K] over time, evaluated at
    every frame (sigma in frames, support 4 sigma). Where the window lies inside the clip this is the
    plain Gaussian average; near the ends a steady motion is followed instead of being pulled toward
    the end frame's value, as padding by repetition does."""
    from scipy.ndimage import correlate1d

    r = int(4.0 * sigma + 0.5)
    if r < 1 or len(values) < 2:
        return values.copy()
    d = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (d / sigma) ** 2)
    ones = np.ones(len(values))
    m0, m1, m2 = (correlate1d(ones, k * d**p, mode="constant") for p in (0, 1, 2))
    y0 = correlate1d(values, k, axis=0, mode="constant")
    y1 = correlate1d(values, k * d, axis=0, mode="constant")
    det = m0 * m2 - m1 * m1
    ok = det > 1e-9 * m0 * m0
    out = y0 / m0[:, None]  # the plain weighted mean where a line cannot be fitted
    out[ok] = (m2[ok, None] * y0[ok] - m1[ok, None] * y1[ok]) / det[ok, None]
    return out


def _fill_and_smooth(values: np.ndarray, ok: np.ndarray, sigma: float, keep_trend: bool = False) -> np.ndarray:
    """Per-frame values [N,K], rows where ``ok`` is False interpolated linearly from their neighbours
    (held constant past the ends), then Gaussian-smoothed over time (sigma in frames; 0 = not at all;
    ``keep_trend``: by :func:`_local_linear`, else with the end values repeated past the ends)."""
    idx = np.arange(len(values))
    out = values.copy()
    for j in range(values.shape[1]):
        out[:, j] = np.interp(idx, idx[ok], values[ok, j])
    if sigma <= 0 or len(out) < 2:
        return out
    if keep_trend:
        return _local_linear(out, sigma)
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(out, sigma, axis=0, mode="nearest")


def smooth_quads(quads: np.ndarray | Sequence[np.ndarray | None], sigma: float) -> np.ndarray:
    """Gaussian-smooth a clip's quads over time (sigma in frames): centres and x axes are filtered,
    y is rebuilt as rot90(x) so every quad stays a square. Missing frames (None) are interpolated.

    Returns float64 [N,4,2].
    """
    frames, ok = _frames(list(quads))
    if not ok.any():
        raise ValueError("no quads to smooth: every frame is missing")
    frames = _fill_and_smooth(frames, ok, sigma)
    return np.stack([quad_from_frame(f[:2], f[2:], rot90(f[2:])) for f in frames])


def crop_quads_for_clip(
    landmarks: Sequence[np.ndarray | None],
    sigma: float = 3.0,
    scale_mode: ScaleMode = "eyes",
    *,
    keep_trend: bool = False,
) -> np.ndarray:
    """Per-frame crop windows (float64 [N,4,2]) for a clip, from each frame's [68,2] landmarks.

    Window centres and sizes follow the face but are Gaussian-smoothed over time (sigma in frames;
    0 = no smoothing) so the crops do not jitter. Frames without a face (None) are interpolated from
    their neighbours. Use the result as ``align_face(frame, crop_quad=quads[i])``. keep_trend: near the
    clip's ends, follow the face's motion with a Gaussian-weighted local linear fit instead of holding
    the windows back toward the end frame's (unbiased for steady motion, a little noisier there; the same
    smoothing elsewhere).
    """
    frames, ok = _frames([None if lm is None else face_quad(lm, scale_mode) for lm in landmarks])
    if not ok.any():
        raise ValueError("no landmarks in any frame")
    sizes = np.c_[frames[:, :2], np.hypot(frames[:, 2], frames[:, 3])]  # centre and half-size
    sizes = _fill_and_smooth(sizes, ok, sigma, keep_trend)
    return np.stack([_axis_aligned(f[:2], f[2]) for f in sizes])
