"""Rendering batches of faces and short clips from factor vectors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from engine.quads import ScaleMode
from factory.synthetic.draw import Canvas
from factory.synthetic.face import draw_face
from factory.synthetic.factors import FACTOR_NAMES, SHIFT_FRACTION, Factors, factor_index, sample_factors
from factory.synthetic.geometry import aligned_camera, apply_camera, face_shape, unaligned_camera

__all__ = ["render", "render_one", "render_clip", "write_photo"]

_POSE = ("roll", "tx", "ty", "scale")


def _as_factors(factors: Factors | np.ndarray) -> Factors:
    return factors if isinstance(factors, Factors) else Factors(np.asarray(factors, dtype=np.float32))


def render_one(
    f: dict[str, float],
    size: int,
    aligned: bool = True,
    scale_mode: ScaleMode = "eyes",
    scene_camera: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One face from a factor dict: (image uint8 [size,size,3] RGB, landmarks float32 [68,2] pixels).

    scene_camera: float [2,3], where the background and body sit in the *unaligned* picture (a clip
    passes the same one for every frame so that only the head moves); None: they move with the head.
    """
    shape = face_shape(f)
    if aligned:
        A = aligned_camera(shape.landmarks, size, scale_mode)
    else:
        A = unaligned_camera(shape.landmarks, size, f["roll"], f["tx"], f["ty"], f["scale"], scale_mode)
    cv = Canvas(size, A)
    scene = None
    if scene_camera is not None:
        S = np.asarray(scene_camera, dtype=np.float64)
        if aligned:
            # the aligned crop shows the scene as it shows it in the unaligned picture: A o H^-1 o S
            H = unaligned_camera(shape.landmarks, size, f["roll"], f["tx"], f["ty"], f["scale"], scale_mode)
            S = _compose(A, _compose(_invert(H), S))
        scene = Canvas(size, S, img=cv.img)
    draw_face(cv, f, shape, scene)
    return cv.to_uint8(), apply_camera(A, shape.landmarks).astype(np.float32)


def _invert(M: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([M, [0.0, 0.0, 1.0]]))[:2]


def _compose(M1: np.ndarray, M2: np.ndarray) -> np.ndarray:
    """M1 after M2 (both [2,3])."""
    return (np.vstack([M1, [0.0, 0.0, 1.0]]) @ np.vstack([M2, [0.0, 0.0, 1.0]]))[:2]


def render(
    factors: Factors | np.ndarray, size: int = 256, aligned: bool = True, scale_mode: ScaleMode = "eyes"
) -> tuple[np.ndarray, np.ndarray, Factors]:
    """Render a batch of faces.

    factors: :class:`Factors` or float array [N, len(FACTORS)] (or [len(FACTORS)] for one face).
    size: output side in pixels (any size; 64..1024 are exercised).
    aligned: True renders the FFHQ-aligned crop (roll, shift and zoom are not applied); False applies
        the pose factors: the aligned crop, zoomed out to ``ZOOM_RANGE``, rotated by ``roll`` and shifted
        by ``tx``, ``ty`` about the image centre, as a photo of the face would show it.
    scale_mode: the alignment's crop size, "eyes" (2 x eye distance, the editing reference) or
        "ffhq" (max of 2 x eye distance and 1.8 x eye-to-mouth distance).

    Returns (images uint8 [N,size,size,3] RGB, landmarks float32 [N,68,2] in pixel-index coordinates
    (x = column, y = row, pixel centres at integers), labels :class:`Factors` [N]: the factors as
    rendered, i.e. with the pose factors set to 0 when ``aligned``).
    """
    fac = _as_factors(factors)
    n = len(fac)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    landmarks = np.empty((n, 68, 2), dtype=np.float32)
    for i, f in enumerate(fac):
        images[i], landmarks[i] = render_one(f, size, aligned, scale_mode)
    labels = fac.replace(**{k: 0.0 for k in _POSE}) if aligned else fac
    return images, landmarks, labels


def write_photo(path: str | Path, seed: int, size: int = 512) -> Path:
    """Write one unaligned procedural face (``sample_factors(1, seed)``, roll / shift / zoom applied) as an
    image file at ``path`` (format from the suffix, e.g. .png), ``size`` x ``size`` px: a stand-in photo
    from the demo model's domain. Returns the path as a ``pathlib.Path``."""
    from engine.imageio import write_image

    images, _, _ = render(sample_factors(1, seed=seed), size, aligned=False)
    return write_image(path, images[0])


def _smooth_path(rng: np.random.Generator, n: int, n_waves: int = 3, max_cycles: float = 1.0) -> np.ndarray:
    """A smooth random curve over n frames in [-1, 1] (a sum of a few slow sinusoids), float [n]."""
    t = np.linspace(0.0, 1.0, n)
    out = np.zeros(n)
    for k in range(n_waves):
        freq = rng.uniform(0.2, max_cycles)
        out += rng.uniform(0.5, 1.0) / (k + 1) * np.sin(2 * math.pi * freq * t + rng.uniform(0, 2 * math.pi))
    peak = np.max(np.abs(out))
    return out / peak if peak > 0 else out


def render_clip(
    factors: Factors | np.ndarray,
    n_frames: int = 24,
    size: int = 256,
    seed: int = 0,
    aligned: bool = False,
    motion: float = 1.0,
    scale_mode: ScaleMode = "eyes",
    animate: tuple[str, ...] = ("roll", "tx", "ty", "yaw", "smile"),
    static_background: bool = True,
) -> tuple[np.ndarray, np.ndarray, Factors]:
    """A short clip of one face with smooth head motion and a changing expression.

    factors: one face (the first row is used); its identity and unanimated factors stay fixed.
    Each factor in ``animate`` follows its own smooth random path (deterministic for ``seed``): pose
    factors and yaw swing within +-0.6 ``motion`` around half their value in ``factors``, smile moves
    within [0, 1]. static_background: the background and shoulders stay where the first face's pose puts
    them while the head moves (as in a video); False moves the whole picture with the head.
    aligned: every frame is the FFHQ-aligned crop of the unaligned frame (the background then moves).

    Returns (frames uint8 [T,size,size,3], landmarks float32 [T,68,2], labels Factors [T]).
    """
    base = _as_factors(factors)[0].values[0]
    rng = np.random.default_rng(seed)
    vals = np.repeat(base[None], n_frames, axis=0)
    for name in animate:
        j = factor_index(name)
        path = _smooth_path(rng, n_frames)
        if name == "smile":
            centre = 0.5 * (base[j] + 0.5)
            vals[:, j] = np.clip(centre + 0.5 * motion * path, 0.0, 1.0)
        else:
            vals[:, j] = np.clip(0.5 * base[j] + 0.6 * motion * path, -1.0, 1.0)
    scene = None
    if static_background:
        # The scene's camera: the mean head pose, framing the face without yaw and smile. The head
        # turns about the base of the neck, so each frame's shift is what keeps the neck's base on the
        # shoulders, plus a smaller share of the shift path.
        rest = dict(zip(FACTOR_NAMES, map(float, vals.mean(axis=0))))
        rest.update(yaw=0.0, smile=0.0)
        shape = face_shape(rest)
        scene = unaligned_camera(shape.landmarks, size, rest["roll"], rest["tx"], rest["ty"], rest["scale"], scale_mode)
        pivot = np.array([0.0, shape.chin + 0.3])
        target = apply_camera(scene, pivot)
        ix, iy = factor_index("tx"), factor_index("ty")
        for t in range(n_frames):
            f = dict(zip(FACTOR_NAMES, map(float, vals[t])))
            H = unaligned_camera(face_shape(f).landmarks, size, f["roll"], 0.0, 0.0, f["scale"], scale_mode)
            need = (target - apply_camera(H, pivot)) / (SHIFT_FRACTION * size)
            vals[t, ix] = np.clip(need[0] + 0.3 * (vals[t, ix] - base[ix] * 0.5), -1.0, 1.0)
            vals[t, iy] = np.clip(need[1] + 0.3 * (vals[t, iy] - base[iy] * 0.5), -1.0, 1.0)
    labels = Factors(vals)
    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    landmarks = np.empty((n_frames, 68, 2), dtype=np.float32)
    for t, f in enumerate(labels):
        frames[t], landmarks[t] = render_one(f, size, aligned, scale_mode, scene)
    if aligned:
        labels = labels.replace(**{k: 0.0 for k in _POSE})
    return frames, landmarks, labels
