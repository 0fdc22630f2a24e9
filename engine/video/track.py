"""One face followed through a video: landmarks per frame, smoothed crop windows, and the per-frame
(angle, tx, ty, zoom) of the aligned face inside its window.

Two parts. :class:`FaceTracker` takes the frames one at a time (so a pipeline can stream them) and
returns the followed face's 68 landmarks, or nothing when the face is not there. :func:`finish_track`
turns the per-frame landmarks into a :class:`Track`: FFHQ quads, crop windows smoothed over time
(:func:`engine.quads.crop_quads_for_clip`), windows and quads interpolated over frames without a face,
long gaps marked to pass through unedited, and the transforms. :func:`track_clip` runs both as a job.

How a face is followed (dlib's HOG detector and 68-landmark predictor, :mod:`engine.faces`):

- Start: the first frame with any face; ``face_index`` chooses among that frame's detections, largest
  first (default the largest).
- Every frame: the landmarks are predicted again on an upright view around the previous frame's
  landmarks (:func:`engine.faces.refine_landmarks`, ~3 ms at 640x360), and the detector checks the face
  is still there: it scans only an upright patch around the previous face, scaled so the face is about
  90 px wide (~3 ms whatever the frame size). A detection that disagrees with the landmarks re-seeds
  them; no detection means no face in this frame (covered, turned away, out of the picture).
- Lost: a larger patch around the last place the face was, then the whole frame (reduced), and the
  detection nearest that place within a distance that grows with the frames lost (one face size, plus
  one per 20 frames); a face farther away is not taken, so the tracker does not jump to another person.

Geometry follows :mod:`engine.quads` (source pixel coordinates, pixel centres at integers). Frames are
[H,W,3] uint8 RGB arrays or objects with such an ``image`` attribute (``engine.video.io.Frame``).

Typical use::

    track = track_clip(frames, fps=29.97, ctl=ctl, total=n)
    track.save(project_folder)                     # track.json + landmarks.npy
    G.synthesis(ws, transform=track.transform(i))  # renders frame i's window track.frames[i].crop_quad
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from engine.errors import CharmError, NoFaceError
from engine.faces import (
    BOX_BELOW,
    BOX_SIDE,
    DETECT_SIZE,
    FaceDetection,
    choose_face,
    detect_boxes,
    detect_faces,
    predict_landmarks,
    refine_landmarks,
)
from engine.imageio import load_image, read_tagged_json, write_npy, write_text
from engine.jobs import JobControl
from engine.quads import ScaleMode, crop_quads_for_clip, face_quad, quad_frame, quad_transform, rot90, smooth_quads
from engine.transforms import transform_params

__all__ = [
    "TRACK_FORMAT",
    "FaceTracker",
    "FrameTrack",
    "Track",
    "TrackFileError",
    "default_max_gap",
    "default_smoothing",
    "finish_track",
    "track_clip",
]

TRACK_FORMAT = "charm-track/1"
SMOOTHING_SECONDS = 0.1  # default window smoothing: Gaussian sigma of 0.1 s (3 frames at 30 fps)
MAX_GAP_SECONDS = 1.0  # default longest run of faceless frames that is interpolated rather than passed through

_DETECT_BOX = 90.0  # the face's detector box side, in px of the patch the detector scans (dlib's least: 80)
_PATCH = 1.8  # side of that patch while tracking, in face box sides (the face may move ~0.4 box per frame)
_LOST_PATCH = 4.0  # its side while the face is lost
_ADJUST = -0.3  # detector threshold offset in the patch: where the face just was, a weaker detection counts
_MATCH_SHIFT = 0.3  # a detection confirms landmarks whose box centre is this close (in box sides) ...
_MATCH_SIZE = 1.6  # ... and whose box side is within this factor of the detection's (dlib reports ~1.1x)
_SECOND_PASS = 0.08  # landmarks that moved more than this (in box sides) are predicted once more
_JUMP = 1.0  # how far (box sides) a lost face may reappear from where it was last seen ...
_JUMP_PER_FRAME = 0.05  # ... plus this per frame lost (after a few seconds, anywhere)
_REAPPEAR = 0.6  # ... and how much smaller or larger than it was


class TrackFileError(CharmError):
    """A project's track.json / landmarks.npy is missing, damaged or of another format."""


# --------------------------------------------------------------------------------------------------
# Defaults


def default_smoothing(fps: float) -> float:
    """Default window smoothing, Gaussian sigma in frames: 0.1 s of frames (3.0 at 30 fps, 1.5 at 15 fps)."""
    if not math.isfinite(fps) or fps <= 0:
        return 3.0
    return SMOOTHING_SECONDS * float(fps)


def default_max_gap(fps: float) -> int:
    """Default longest gap (frames without a face) that is interpolated: about one second of frames."""
    if not math.isfinite(fps) or fps <= 0:
        return 30
    return max(1, round(MAX_GAP_SECONDS * float(fps)))


# --------------------------------------------------------------------------------------------------
# The tracker


class _Box(NamedTuple):
    """A face's detector box in source px: centre [2], side, and the face's upright axes ex (right) and
    ey (down), unit [2] each."""

    centre: np.ndarray
    side: float
    ex: np.ndarray
    ey: np.ndarray


def _box_of(landmarks: np.ndarray) -> _Box:
    """Where the HOG detector puts its box on the face with these [68,2] landmarks, in the face's own
    upright frame (see :data:`engine.faces.BOX_BELOW`)."""
    c, x, _ = quad_frame(face_quad(landmarks, "eyes"))
    h = float(np.hypot(*x))
    ex, ey = x / h, rot90(x) / h
    return _Box(c + BOX_BELOW * h * ey, BOX_SIDE * h, ex, ey)


def _matches(det: _Box, box: _Box) -> bool:
    """A detection agrees with the box that landmarks predict."""
    ratio = det.side / box.side
    near = float(np.hypot(*(det.centre - box.centre))) < _MATCH_SHIFT * box.side
    return near and 1 / _MATCH_SIZE < ratio < _MATCH_SIZE


def _detect_near(rgb: np.ndarray, around: _Box, extent: float) -> list[_Box]:
    """Faces in an upright square patch ``extent`` box sides wide centred on ``around``, the patch
    scaled so such a face is :data:`_DETECT_BOX` px wide. Boxes in source px (oriented as ``around``)."""
    h, w = rgb.shape[:2]
    s = min(_DETECT_BOX / around.side, 2.0)  # patch px per source px; tiny faces upsampled at most 2x
    side = max(8, int(round(extent * around.side * s)))
    reach = 0.5 * side / s * float(np.abs(around.ex).sum()) + 2.0  # half the rotated patch's bounding box
    x0, y0 = max(int(around.centre[0] - reach), 0), max(int(around.centre[1] - reach), 0)
    x1, y1 = min(int(around.centre[0] + reach) + 2, w), min(int(around.centre[1] + reach) + 2, h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return []  # the place lies outside the picture
    roi = rgb[y0:y1, x0:x1]
    k = 1.0  # reduced roi px per source px
    while s / k < 0.7 and min(roi.shape[:2]) >= 32:  # halve first (Gaussian) so the patch does not alias
        roi, k = cv2.pyrDown(roi), k / 2  # pyrDown's pixel i sits at source pixel 2i
    # patch px p -> source px: around.centre + R @ (p - pc) / s; then into the reduced roi's px.
    r = np.stack([around.ex, around.ey], axis=1) / s
    pc = np.full(2, (side - 1) / 2.0)
    lin = k * r
    off = k * (around.centre - np.array([x0, y0])) - lin @ pc
    patch = cv2.warpAffine(
        roi,
        np.hstack([lin, off[:, None]]),
        (side, side),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    out = []
    for box, _score in detect_boxes(patch, 1.0, 0, _ADJUST):
        centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2.0
        bside = float(box[2] - box[0] + box[3] - box[1]) / 2.0 + 1.0  # dlib boxes are inclusive
        out.append(_Box(around.centre + r @ (centre - pc), bside / s, around.ex, around.ey))
    return out


def _detect_frame(rgb: np.ndarray, face_side: float) -> list[_Box]:
    """Faces in the whole frame, scanned reduced (never enlarged) so that faces down to :data:`_REAPPEAR`
    times ``face_side`` px are still found. Axis-aligned boxes in source px."""
    scale = min(1.0, 85.0 / (_REAPPEAR * face_side))  # dlib finds faces from 80 px
    out = []
    for box, _score in detect_boxes(rgb, scale, 0):
        centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2.0
        out.append(_Box(centre, float(box[2] - box[0] + box[3] - box[1]) / 2.0, np.r_[1.0, 0.0], np.r_[0.0, 1.0]))
    return out


def _reseed(rgb: np.ndarray, last: np.ndarray, det: _Box) -> np.ndarray:
    """Landmarks for a face detected at ``det``: the last known landmarks moved and scaled onto the
    detection, then predicted again twice (the second pass converges from the first)."""
    box = _box_of(last)
    guess = det.centre + (last - box.centre) * (det.side / box.side)
    return refine_landmarks(rgb, refine_landmarks(rgb, guess))


def _as_rgb(frame: Any) -> np.ndarray:
    """A frame ([H,W,3] uint8 RGB array, or an object with such an ``image``) as a contiguous RGB array."""
    image = getattr(frame, "image", frame)
    return load_image(np.asarray(image))


class FaceTracker:
    """Follows one face through frames given one at a time (see the module docstring).

    face_index: which face of the first frame with faces to follow, largest first (default 0, the
    largest). detect_every: the detector confirms the landmarks every this many frames (1: every frame,
    which is what flags covered frames as faceless; larger is faster, and frames between are checked
    only for implausible jumps). name: the clip's name for error messages.
    """

    def __init__(self, *, face_index: int | None = None, detect_every: int = 1, name: str = "the clip") -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {detect_every}")
        self.face_index = face_index
        self.detect_every = int(detect_every)
        self.name = name
        self._last: np.ndarray | None = None  # float64 [68,2] the last landmarks found
        self._misses = 0  # frames since the face was last found
        self._since_check = 0  # frames since the detector last confirmed the face
        self._searched = 0  # frames searched before any face was found

    @property
    def settings(self) -> dict[str, Any]:
        """What decides this tracker's results (for keys of saved tracks)."""
        return {"face_index": self.face_index, "detect_every": self.detect_every, "tracker": "hog-68/1"}

    def update(self, image: Any) -> tuple[bool, np.ndarray | None]:
        """Follow the face into the next frame: (found, landmarks float64 [68,2] source px or None).

        Raises :class:`NoFaceError` only when ``face_index`` is not among the first frame's faces.
        """
        rgb = _as_rgb(image)
        if self._last is None:
            lm = self._acquire(rgb)
        else:
            try:
                lm = self._recover(rgb, self._last) if self._misses else self._follow(rgb, self._last)
            except ValueError:  # degenerate landmarks (a face collapsed to a point): no face here
                lm = None
        if lm is None or not np.all(np.isfinite(lm)):
            self._misses += 1
            return False, None
        self._last, self._misses = lm, 0
        return True, lm

    def _acquire(self, rgb: np.ndarray) -> np.ndarray | None:
        """The chosen face of the first frame that has faces (None while there are none)."""
        if self._searched == 0:
            faces = detect_faces(rgb)  # the full search, with its retries, for the frame that chooses
        else:  # later frames of a clip that starts without a face: one quick pass each
            scale = min(1.0, DETECT_SIZE / max(rgb.shape[:2]))
            faces = [
                FaceDetection(box, score, refine_landmarks(rgb, predict_landmarks(rgb, box)))
                for box, score in detect_boxes(rgb, scale, 0)
            ]
            faces.sort(key=lambda f: -f.area)
        self._searched += 1
        if not faces:
            return None
        return faces[choose_face(faces, self.face_index, self.name)].landmarks

    def _follow(self, rgb: np.ndarray, last: np.ndarray) -> np.ndarray | None:
        """The face one frame after ``last``: landmarks predicted around the previous ones, confirmed by
        the detector in a patch around the previous face."""
        before = _box_of(last)
        lm = refine_landmarks(rgb, last)
        box = _box_of(lm)
        if float(np.hypot(*(box.centre - before.centre))) > _SECOND_PASS * before.side:
            lm = refine_landmarks(rgb, lm)
            box = _box_of(lm)
        self._since_check += 1
        plausible = _matches(box, before) and self._since_check < self.detect_every
        if plausible:
            return lm
        self._since_check = 0
        dets = _detect_near(rgb, before, _PATCH)
        if any(_matches(d, box) for d in dets):
            return lm
        det = self._nearest(dets, before, lost=0)
        return None if det is None else _reseed(rgb, last, det)

    def _recover(self, rgb: np.ndarray, last: np.ndarray) -> np.ndarray | None:
        """The lost face found again near where it was last seen, or None."""
        before = _box_of(last)
        det = self._nearest(_detect_near(rgb, before, _LOST_PATCH), before, self._misses)
        if det is None:
            det = self._nearest(_detect_frame(rgb, before.side), before, self._misses)
        if det is None:
            return None
        lm = _reseed(rgb, last, det)
        return lm if _matches(det, _box_of(lm)) else None

    @staticmethod
    def _nearest(dets: list[_Box], before: _Box, lost: int) -> _Box | None:
        """The detection nearest ``before`` of a plausible size, if it is near enough after ``lost`` frames."""
        best, best_d = None, (_JUMP + _JUMP_PER_FRAME * lost) * before.side
        for d in dets:
            dist = float(np.hypot(*(d.centre - before.centre)))
            if dist < best_d and _REAPPEAR < d.side / before.side < 1 / _REAPPEAR:
                best, best_d = d, dist
        return best


# --------------------------------------------------------------------------------------------------
# The track


@dataclass
class FrameTrack:
    """One frame of a :class:`Track` (frame ``index`` of the clip, counted from 0).

    found: the face was found here; interpolated: it was not, and ``quad``/``crop_quad`` come from the
    neighbouring frames; passthrough: in a gap longer than ``max_gap``, the frame is written unedited.
    landmarks: float32 [68,2] source px, None when not found. quad: float64 [4,2] the FFHQ-aligned quad;
    crop_quad: float64 [4,2] the smoothed, axis-aligned crop window. angle_deg, tx, ty, zoom: the
    aligned face inside its window, as :func:`engine.align.align_face` gives them for a photo.
    """

    index: int
    found: bool
    interpolated: bool
    passthrough: bool
    landmarks: np.ndarray | None
    quad: np.ndarray
    crop_quad: np.ndarray
    angle_deg: float
    tx: float
    ty: float
    zoom: float


@dataclass
class Track:
    """A face followed through a clip: one :class:`FrameTrack` per frame, none dropped.

    frame_size: (height, width) of the frames; fps: their rate; settings: what produced the track (face
    choice, smoothing sigma in frames, max_gap, scale_mode, detector cadence), JSON-serialisable.
    """

    frames: list[FrameTrack]
    frame_size: tuple[int, int]
    fps: float
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frames)

    def transform(self, i: int) -> torch.Tensor:
        """Frame ``i``'s generator transform, float32 [3,3] (as :func:`engine.align.align_face`'s): a
        generator that renders the aligned face renders, with it, the face as in ``crop_quad``."""
        f = self.frames[i]
        return torch.from_numpy(quad_transform(f.quad, f.crop_quad).astype(np.float32))

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/landmarks.npy`` (float32 [N,68,2], NaN where not found) and then
        ``folder/track.json``, each atomically; returns the path of track.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        lm = np.full((len(self.frames), 68, 2), np.nan, dtype=np.float32)
        for i, f in enumerate(self.frames):
            if f.landmarks is not None:
                lm[i] = f.landmarks
        write_npy(folder / "landmarks.npy", lm)
        data = {
            "format": TRACK_FORMAT,
            "frame_size": list(self.frame_size),
            "fps": self.fps,
            "settings": self.settings,
            "frames": [_frame_json(f) for f in self.frames],
        }
        return write_text(folder / "track.json", json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Track:
        """Read a track written by :meth:`save`; raises :class:`TrackFileError` when it can't."""
        folder = Path(folder)
        fix = "track the clip again"
        data = read_tagged_json(folder / "track.json", TRACK_FORMAT, TrackFileError, "track", fix)
        npy = folder / "landmarks.npy"
        try:
            lm = np.load(npy, allow_pickle=False)
        except FileNotFoundError:
            raise TrackFileError(f"'{npy}' is missing; {fix}") from None
        except (OSError, ValueError) as e:
            raise TrackFileError(f"'{npy}' is damaged ({e}); {fix}") from None
        try:
            items = data["frames"]
            if lm.shape != (len(items), 68, 2):
                raise ValueError(f"landmarks.npy holds {lm.shape}, expected ({len(items)}, 68, 2)")
            frames = [_frame_from_json(d, lm[i]) for i, d in enumerate(items)]
            h, w = data["frame_size"]
            return cls(frames, (int(h), int(w)), float(data["fps"]), dict(data.get("settings") or {}))
        except (KeyError, TypeError, ValueError) as e:
            raise TrackFileError(f"'{folder / 'track.json'}' is damaged ({e!r}); {fix}") from None


def _frame_json(f: FrameTrack) -> dict[str, Any]:
    return {
        "index": f.index,
        "found": f.found,
        "interpolated": f.interpolated,
        "passthrough": f.passthrough,
        "crop_quad": f.crop_quad.tolist(),
        "quad": f.quad.tolist(),
        "angle_deg": f.angle_deg,
        "tx": f.tx,
        "ty": f.ty,
        "zoom": f.zoom,
    }


def _frame_from_json(d: dict[str, Any], landmarks: np.ndarray) -> FrameTrack:
    def quad(key: str) -> np.ndarray:
        q = np.asarray(d[key], dtype=np.float64)
        if q.shape != (4, 2):
            raise ValueError(f"{key} of frame {d.get('index')} has shape {q.shape}")
        return q

    found = bool(d["found"])
    return FrameTrack(
        index=int(d["index"]),
        found=found,
        interpolated=bool(d["interpolated"]),
        passthrough=bool(d["passthrough"]),
        landmarks=landmarks.astype(np.float32) if found and np.all(np.isfinite(landmarks)) else None,
        quad=quad("quad"),
        crop_quad=quad("crop_quad"),
        angle_deg=float(d["angle_deg"]),
        tx=float(d["tx"]),
        ty=float(d["ty"]),
        zoom=float(d["zoom"]),
    )


def _long_gaps(found: np.ndarray, max_gap: int) -> np.ndarray:
    """bool [N]: frames in a run of not-found frames longer than ``max_gap`` (at the ends too)."""
    out = np.zeros(len(found), dtype=bool)
    i = 0
    while i < len(found):
        if found[i]:
            i += 1
            continue
        j = i
        while j < len(found) and not found[j]:
            j += 1
        if j - i > max_gap:
            out[i:j] = True
        i = j
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[(start, stop)] of the runs of True in ``mask``."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def finish_track(
    raw_landmarks: list[np.ndarray | None],
    *,
    frame_size: tuple[int, int],
    fps: float,
    smoothing: float | None = None,
    max_gap: int | None = None,
    scale_mode: ScaleMode = "eyes",
    settings: dict[str, Any] | None = None,
    name: str = "the clip",
) -> Track:
    """A :class:`Track` from each frame's landmarks (float [68,2] source px, None where no face).

    Crop windows are smoothed over time (Gaussian sigma ``smoothing`` frames, default
    :func:`default_smoothing`; 0 = none) separately on each stretch between long gaps, so a face that
    reappears elsewhere does not drag the windows before it. Frames without a face get quads and windows
    interpolated from their neighbours (held at the clip's ends); in gaps longer than ``max_gap`` frames
    (default :func:`default_max_gap`) they are also marked ``passthrough``. frame_size: (height, width).
    Raises :class:`NoFaceError` naming ``name`` when no frame has a face.
    """
    n = len(raw_landmarks)
    found = np.array([lm is not None for lm in raw_landmarks], dtype=bool)
    if n == 0:
        raise NoFaceError(f"no face to track in {name!r}: it has no frames")
    if not found.any():
        raise NoFaceError(
            f"no face found in any of the {n} frames of {name!r}; use a clip where a face is clearly visible, "
            "roughly frontal and at least about 80 pixels wide"
        )
    sigma = default_smoothing(fps) if smoothing is None else float(smoothing)
    gap = default_max_gap(fps) if max_gap is None else int(max_gap)
    if not sigma >= 0 or gap < 0:
        raise ValueError(f"smoothing and max_gap must be >= 0, got {smoothing} and {max_gap}")
    lms = [None if lm is None else np.asarray(lm, dtype=np.float64) for lm in raw_landmarks]
    passthrough = _long_gaps(found, gap)
    quads = smooth_quads([None if lm is None else face_quad(lm, scale_mode) for lm in lms], 0.0)
    crops: list[np.ndarray | None] = [None] * n
    for a, b in _runs(~passthrough):
        part = crop_quads_for_clip(lms[a:b], sigma, scale_mode, keep_trend=True)
        crops[a:b] = list(part)
    crop_quads = smooth_quads(crops, 0.0)  # fills the passthrough frames between the stretches
    frames = []
    for i in range(n):
        stored = quad_transform(quads[i], crop_quads[i])
        angle, tx, ty = transform_params(stored)
        lm = lms[i]
        frames.append(
            FrameTrack(
                index=i,
                found=bool(found[i]),
                interpolated=not found[i],
                passthrough=bool(passthrough[i]),
                landmarks=None if lm is None else lm.astype(np.float32),
                quad=quads[i],
                crop_quad=crop_quads[i],
                angle_deg=angle,
                tx=tx,
                ty=ty,
                zoom=math.sqrt(abs(np.linalg.det(np.linalg.inv(stored)[:2, :2]))),
            )
        )
    info = {"smoothing": sigma, "max_gap": gap, "scale_mode": scale_mode, **(settings or {})}
    return Track(frames, (int(frame_size[0]), int(frame_size[1])), float(fps), info)


# --------------------------------------------------------------------------------------------------
# The job


def track_clip(
    frames: Iterable[Any],
    *,
    fps: float,
    face_index: int | None = None,
    smoothing: float | None = None,
    max_gap: int | None = None,
    scale_mode: ScaleMode = "eyes",
    ctl: JobControl | None = None,
    total: int | None = None,
    detect_every: int = 1,
    name: str = "the clip",
) -> Track:
    """Follow one face through ``frames`` (an iterable of [H,W,3] uint8 RGB arrays or objects with such
    an ``image``, consumed once) and build its :class:`Track` (see :func:`finish_track` for smoothing,
    max_gap and scale_mode, :class:`FaceTracker` for face_index and detect_every).

    ctl: progress (stage "Tracking", ``total`` frames if known) and cancel, checked before every frame.
    Raises :class:`NoFaceError` naming ``name`` when no frame has a face (or ``face_index`` is not
    among the first faces found), :class:`engine.jobs.Cancelled` when cancelled.
    """
    ctl = ctl or JobControl()
    ctl.stage("Tracking", total or 0)
    tracker = FaceTracker(face_index=face_index, detect_every=detect_every, name=name)
    raw: list[np.ndarray | None] = []
    size = (0, 0)
    for frame in frames:
        ctl.check()
        rgb = _as_rgb(frame)
        if not raw:
            size = (rgb.shape[0], rgb.shape[1])
        _found, lm = tracker.update(rgb)
        raw.append(lm)
        ctl.progress(len(raw))
    return finish_track(
        raw,
        frame_size=size,
        fps=fps,
        smoothing=smoothing,
        max_gap=max_gap,
        scale_mode=scale_mode,
        settings=tracker.settings,
        name=name,
    )
