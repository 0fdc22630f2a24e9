"""A clip open in the studio window, headless: what :class:`engine.studio.Studio` is for a photo.

:class:`ClipSession` holds one clip and its project folder (:mod:`engine.video.project`) and offers the
window's operations on it as jobs (:mod:`engine.jobs`): open (probe, a cache of preview frames and
thumbnails), the pipeline's stages (track, invert + smooth, tune; the same stage functions
:func:`engine.video.pipeline.run_video` runs, so the window and the command line share the project
folder and resume each other), preview renders of single frames, and export. Nothing here knows
about Qt; results are plain data.

Preview frames: every frame is decoded once, scaled to at most :data:`PREVIEW_MAX` (w, h), into
``preview.npy`` in the project folder, thumbnails into ``thumbs.npy`` (memory-mapped: long clips
cost disk, not memory; a 96-frame 640x360 clip takes 66 MB), so showing
the raw frame at the playhead is a memory copy. Edited previews are rendered at that scale and pasted
back with the frame's landmarks. While inversion runs, the latents already written (per batch) are
read from ``latents.npy``, so a frame can be previewed as soon as it is inverted.

Threads: jobs run one at a time on one thread; :meth:`ClipSession.render_frame` and
:meth:`ClipSession.raw_frame` run on others. Jobs replace attributes (never mutate arrays a render may
be reading), so a render sees either the old or the new state of a stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import CharmError
from engine.jobs import JobControl
from engine.video.edits import ClipEdits
from engine.video.pipeline import (
    OUTPUT_KINDS,
    Frames,
    VideoSettings,
    check_edits,
    invert_stage,
    render_and_encode,
    render_windows,
    smooth_stage,
    track_stage,
    tune_stage,
)
from engine.video.project import MANIFEST, Project, file_identity
from engine.video.pti import ClipTuneSettings

if TYPE_CHECKING:
    import torch

    from engine.models import ModelBundle
    from engine.video.io import VideoInfo
    from engine.video.track import Track

__all__ = [
    "PREVIEW_MAX",
    "SESSION_FORMAT",
    "SMOOTHINGS",
    "VIDEO_SUFFIXES",
    "ClipInfo",
    "ClipOptions",
    "ClipSession",
    "ClipStats",
    "FrameRequest",
    "FrameResult",
    "is_video_session",
    "project_input",
    "read_video_session",
    "write_video_session",
]

PREVIEW_MAX = (960, 540)  # preview frames fit in this (w, h): a canvas pane, and 1.5 MB a frame at most
THUMB_HEIGHT = 40
VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".mkv", ".m4v", ".avi")
SESSION_FORMAT = "charm-video-session/1"
# Latent smoothing choices: (label, method, sigma in frames).
SMOOTHINGS = (
    ("Paper (5 taps)", "paper", 1.0),
    ("None", "none", 1.0),
    ("Gaussian \u03c3 1", "gaussian", 1.0),
    ("Gaussian \u03c3 2", "gaussian", 2.0),
    ("Gaussian \u03c3 4", "gaussian", 4.0),
)


@dataclass(frozen=True)
class ClipOptions:
    """What the user sets for a clip besides its edits: latent smoothing (an index into
    :data:`SMOOTHINGS`), field-of-view expansion in model pixels per side, paste-back on or off."""

    smoothing: int = 0
    expand: int = 0
    paste: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"smoothing": self.smoothing, "expand": self.expand, "paste": self.paste}

    @staticmethod
    def from_json(d: dict[str, Any]) -> ClipOptions:
        return ClipOptions(int(d.get("smoothing", 0)), int(d.get("expand", 0)), bool(d.get("paste", True)))


@dataclass(frozen=True)
class ClipInfo:
    """An opened clip. thumbs: [N,h,w,3] uint8 thumbnails; preview_size: (h, w) of preview frames."""

    path: str
    work: str
    frames: int
    fps: Fraction
    width: int
    height: int
    has_audio: bool
    preview_size: tuple[int, int]
    thumbs: np.ndarray
    done: dict[str, bool]  # stages finished in the project folder, as last recorded


@dataclass(frozen=True)
class ClipStats:
    """What the stages measured, per frame (NaN or False where not known yet)."""

    found: np.ndarray  # bool [N]: a face was detected
    passthrough: np.ndarray  # bool [N]: written unedited (a long gap without a face)
    inverted: np.ndarray  # bool [N]: the frame has a latent
    quality: np.ndarray  # float32 [N]: reconstruction PSNR in dB
    motion: np.ndarray  # float32 [N]: window motion from the previous frame, in window widths


@dataclass(frozen=True)
class FrameRequest:
    """A preview render of frame ``index`` with ``edits``; ``clip`` is the session's generation (a
    request for a clip that was replaced meanwhile renders nothing)."""

    index: int
    edits: ClipEdits
    paste: bool = True
    clip: int = 0


@dataclass(frozen=True)
class FrameResult:
    index: int
    image: np.ndarray  # [h,w,3] uint8: the edited preview frame (or the edited window without paste-back)
    clip: int
    original: np.ndarray | None = None  # without paste-back: the frame's window as it is ([R,R,3] uint8)


def project_input(folder: str | os.PathLike) -> str | None:
    """The clip a project folder was made for (None when ``folder`` is not a video project)."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["input"]["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_video_session(path: str | os.PathLike) -> bool:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("format") == SESSION_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def write_video_session(
    path: str | os.PathLike, video: str, work: str, model: str, edits: ClipEdits, options: ClipOptions, frame: int
) -> Path:
    from engine.imageio import write_text

    data = {
        "format": SESSION_FORMAT,
        "video": str(video),
        "work": str(work),
        "model": model,
        "edits": edits.to_json(),
        "options": options.to_json(),
        "frame": int(frame),
    }
    return write_text(Path(path), json.dumps(data, indent=2) + "\n")


def read_video_session(path: str | os.PathLike) -> tuple[str, str, str, ClipEdits, ClipOptions, int]:
    """(video, project folder, model, edits, options, playhead) of a video session file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format") != SESSION_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        return (
            str(data["video"]),
            str(data["work"]),
            str(data.get("model") or "demo"),
            ClipEdits.from_json(data["edits"]),
            ClipOptions.from_json(data.get("options") or {}),
            int(data.get("frame", 0)),
        )
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CharmError(f"{path} is not a readable video session ({e})") from None


def _preview_size(width: int, height: int) -> tuple[int, int]:
    s = min(1.0, PREVIEW_MAX[0] / width, PREVIEW_MAX[1] / height)
    return max(2, round(height * s)), max(2, round(width * s))


@dataclass
class _Stage:
    """What the finished stages hold (replaced whole by jobs, read by renders)."""

    track: Track | None = None
    track_key: str = ""
    invert_key: str = ""
    quality: np.ndarray | None = None
    smooth: np.ndarray | None = None
    transforms: np.ndarray | None = None
    smooth_key: str = ""
    generator: torch.nn.Module | None = None
    mask_landmarks: np.ndarray | None = None  # [N,68,2] preview px, smoothed over time
    extra: dict[str, Any] = field(default_factory=dict)


class ClipSession:
    """The clip open in a window. ``bundle()`` returns the current model bundle and its spec (the
    studio's; the clip follows model changes: inversion is keyed by the model)."""

    def __init__(self, cache_dir: str | os.PathLike, bundle: Any) -> None:
        self.cache_dir = Path(cache_dir)
        self._bundle = bundle
        self.generation = 0
        self.info: VideoInfo | None = None
        self.project: Project | None = None
        self.frames: Frames | None = None
        self.clip: ClipInfo | None = None
        self._preview: np.ndarray | None = None
        self._scale = 1.0
        self.stage = _Stage()
        self.settings = VideoSettings()
        self._lat_lock = threading.Lock()
        self._lat: tuple[int, np.ndarray] | None = None  # (inode, memmap of latents.npy)

    # -- opening ------------------------------------------------------------------------------------

    def default_work(self, video: Path) -> Path:
        """The clip's project folder in the cache: one per file path."""
        digest = hashlib.sha256(str(video.resolve()).encode()).hexdigest()[:12]
        return self.cache_dir / "video" / f"{video.stem[:40]}-{digest}"

    def open(
        self, path: str | os.PathLike, work: str | os.PathLike | None = None, ctl: JobControl | None = None
    ) -> ClipInfo:
        """Open a clip (or a project folder: its clip): probe it, fill the preview cache (decoding every
        frame once, unless the folder has it) and load what earlier runs finished."""
        from engine.video.io import probe_video

        ctl = ctl or JobControl()
        self.generation += 1  # the clip open until now is closed, whether this one opens or not
        self.info = self.project = self.frames = self.clip = self._preview = None
        self.stage = _Stage()
        src = Path(path)
        if src.is_dir():
            found = project_input(src)
            if found is None:
                raise CharmError(f"{src} is not a video project folder (no {MANIFEST})")
            work, src = src, Path(found)
            if not src.is_file():
                raise CharmError(f"the project's clip {src} is not there any more")
        ctl.stage("Opening the video")
        info = probe_video(src)
        folder = Path(work) if work else self.default_work(src)
        project = Project(folder, file_identity(src))
        ph, pw = _preview_size(info.width, info.height)
        preview, thumbs = self._preview_cache(project, Frames(src), info.frame_count, (ph, pw), ctl)
        self.info, self.project, self.frames = info, project, Frames(src)
        self._preview, self._scale = preview, ph / info.height
        self.stage = _Stage()
        self._lat = None
        bundle, spec = self._bundle()
        self.settings = VideoSettings(model=spec or "demo", device=str(getattr(bundle, "device", "cpu")))
        stages = project.data.get("stages", {})
        done = {k: bool(stages.get(k, {}).get("done")) for k in ("track", "invert", "smooth", "tune")}
        self.clip = ClipInfo(
            path=str(src),
            work=str(folder),
            frames=info.frame_count,
            fps=info.fps,
            width=info.width,
            height=info.height,
            has_audio=info.has_audio,
            preview_size=(ph, pw),
            thumbs=thumbs,
            done=done,
        )
        return self.clip

    @staticmethod
    def _preview_cache(
        project: Project, frames: Frames, n: int, size: tuple[int, int], ctl: JobControl
    ) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        h, w = size
        th = THUMB_HEIGHT
        tw = max(2, round(w * th / h))
        key = {"size": [h, w], "frames": n}
        entry = project.data["stages"].get("preview", {})
        if entry.get("done") and entry.get("params") == key:
            try:
                cache = project.load_array("preview.npy")
                thumbs = np.load(project.path("thumbs.npy"))
                if cache.shape == (n, h, w, 3) and len(thumbs) == n:
                    return cache, thumbs
            except (OSError, ValueError):
                pass
        project.start("preview", "p", key)
        thumbs = np.zeros((n, th, tw, 3), np.uint8)
        ctl.stage("Reading the frames", total=n)
        # Written frame by frame with plain file writes (they release Python's lock; flushing a big
        # memory map does not, and stalled the window for 50 ms), then renamed into place.
        path = project.path("preview.npy")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as out:
                header = {"descr": "|u1", "fortran_order": False, "shape": (n, h, w, 3)}
                np.lib.format.write_array_header_1_0(out, header)
                count = 0
                for f in frames():
                    ctl.check()
                    if f.index >= n:
                        break
                    img = f.image
                    small = img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                    out.write(np.ascontiguousarray(small, dtype=np.uint8).tobytes())
                    thumbs[f.index] = cv2.resize(small, (tw, th), interpolation=cv2.INTER_AREA)
                    count += 1
                    ctl.progress(count)
                if count < n:  # fewer frames decoded than counted: black, as the track will complain
                    out.write(bytes((n - count) * h * w * 3))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        from engine.imageio import write_npy

        write_npy(project.path("thumbs.npy"), thumbs)
        project.data["stages"]["preview"]["params"] = key
        project.finish("preview")
        return project.load_array("preview.npy"), thumbs

    def _require(self) -> tuple[Project, Frames, VideoInfo]:
        if self.project is None or self.frames is None or self.info is None:
            raise RuntimeError("no video is open")
        return self.project, self.frames, self.info

    def _require_bundle(self) -> ModelBundle:
        bundle, spec = self._bundle()
        if bundle is None:
            raise RuntimeError("no model is loaded yet")
        if spec and spec != self.settings.model:
            self.settings = replace(self.settings, model=spec)
        return bundle

    # -- frames -------------------------------------------------------------------------------------

    def raw_frame(self, index: int) -> np.ndarray:
        """The preview-size frame ``index`` ([h,w,3] uint8): a copy out of the cache (fast; any thread)."""
        preview = self._preview
        if preview is None:
            raise RuntimeError("no video is open")
        return np.array(preview[max(0, min(int(index), len(preview) - 1))])

    # -- stages -------------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.project is not None

    def stats(self) -> ClipStats:
        """What the stages measured so far."""
        n = self.clip.frames if self.clip else 0
        st = self.stage
        found = np.zeros(n, bool)
        passthrough = np.zeros(n, bool)
        motion = np.full(n, np.nan, np.float32)
        if st.track is not None:
            found = np.array([f.found for f in st.track.frames])
            passthrough = np.array([f.passthrough for f in st.track.frames])
            centres = np.array([f.crop_quad.mean(axis=0) for f in st.track.frames])
            sides = np.array([np.linalg.norm(f.crop_quad[3] - f.crop_quad[0]) for f in st.track.frames])
            if n > 1:
                motion[1:] = np.linalg.norm(np.diff(centres, axis=0), axis=1) / np.maximum(sides[1:], 1e-6)
                motion[0] = 0.0
        lat = self._latents()
        inverted = np.isfinite(lat).all(axis=(1, 2)) if lat is not None and len(lat) == n else np.zeros(n, bool)
        quality = np.full(n, np.nan, np.float32)
        q = st.quality if st.quality is not None else self._array("quality.npy")
        if q is not None and len(q) == n:
            quality = np.asarray(q[:, 0], dtype=np.float32).copy()
        return ClipStats(found, passthrough, inverted, quality, motion)

    def track(self, ctl: JobControl | None = None) -> ClipStats:
        """Find and follow the face (resumed from the project folder when done)."""
        project, frames, info = self._require()
        ctl = ctl or JobControl()
        ctl.stage("Tracking", total=info.frame_count)
        track, key = track_stage(project, frames, info, self.settings, ctl)
        lm = np.stack([f.landmarks if f.landmarks is not None else np.full((68, 2), np.nan) for f in track.frames])
        have = np.isfinite(lm).all(axis=(1, 2))
        if have.any():
            from engine.video.pipeline import fill_missing
            from engine.video.smooth import smooth_series

            lm = smooth_series(fill_missing(lm, have), method="gaussian", sigma=1.5)
        self.stage = replace(
            self.stage, track=track, track_key=key, mask_landmarks=(lm * self._scale) if have.any() else None
        )
        return self.stats()

    def invert(self, options: ClipOptions | None = None, ctl: JobControl | None = None) -> ClipStats:
        """Invert every frame with a face (resumed per batch), then smooth; frames can be previewed as
        their batch is written."""
        project, frames, _ = self._require()
        ctl = ctl or JobControl()
        track = self.stage.track
        if track is None:
            raise CharmError("track the clip before inverting it")
        bundle = self._require_bundle()
        with self._lat_lock:
            self._lat = None
        latents, quality, key = invert_stage(project, frames, track, bundle, self.settings, self.stage.track_key, ctl)
        self.stage = replace(self.stage, invert_key=key, quality=np.array(quality))
        self._smooth(latents, options or ClipOptions(), ctl)
        self._resume_tune(ctl)
        return self.stats()

    @property
    def tuned(self) -> bool:
        return self.stage.generator is not None

    def _resume_tune(self, ctl: JobControl) -> None:
        """A tuning the project finished on these latents is used again (loaded, not redone)."""
        project, frames, _ = self._require()
        entry = project.data["stages"].get("tune") or {}
        if self.stage.generator is not None or not entry.get("done"):
            return
        try:
            settings = ClipTuneSettings(**entry.get("params", {}))
        except TypeError:
            return
        saved = self.settings
        self.settings = replace(self.settings, pti=settings)
        st = self.stage
        assert st.track is not None and st.smooth is not None and st.transforms is not None
        from engine.video.project import stage_key

        if project.is_done("tune", stage_key(settings.params(), st.smooth_key)):
            generator, _ = tune_stage(
                project, frames, st.track, self._require_bundle(), st.smooth, st.transforms, self.settings,
                st.smooth_key, ctl,
            )  # fmt: skip
            self.stage = replace(self.stage, generator=generator)
        else:
            self.settings = saved

    def resmooth(self, options: ClipOptions, ctl: JobControl | None = None) -> ClipStats:
        """Smooth again with ``options.smoothing`` (cheap; the tuned generator is dropped when it was
        tuned on other latents)."""
        if not self.stage.invert_key:
            raise CharmError("invert the clip before smoothing it")
        project, _, _ = self._require()
        self._smooth(project.load_array("latents.npy"), options, ctl or JobControl())
        return self.stats()

    def _smooth(self, latents: np.ndarray, options: ClipOptions, ctl: JobControl) -> None:
        project, _, _ = self._require()
        track = self.stage.track
        assert track is not None
        _, method, sigma = SMOOTHINGS[max(0, min(options.smoothing, len(SMOOTHINGS) - 1))]
        self.settings = replace(self.settings, latent_smoothing=method, latent_sigma=sigma)
        smooth, transforms, key = smooth_stage(project, track, latents, self.settings, self.stage.invert_key, ctl)
        generator = self.stage.generator if key == self.stage.smooth_key else None
        self.stage = replace(
            self.stage, smooth=np.array(smooth), transforms=np.array(transforms), smooth_key=key, generator=generator
        )

    def tune(self, steps: int, ctl: JobControl | None = None) -> bool:
        """Video PTI with ``steps`` steps on the smoothed latents; previews and exports then use it."""
        project, frames, _ = self._require()
        st = self.stage
        if st.track is None or st.smooth is None or st.transforms is None:
            raise CharmError("invert the clip before tuning")
        bundle = self._require_bundle()
        self.settings = replace(self.settings, pti=ClipTuneSettings(steps=int(steps)) if steps > 0 else None)
        generator, _ = tune_stage(
            project,
            frames,
            st.track,
            bundle,
            st.smooth,
            st.transforms,
            self.settings,
            st.smooth_key,
            ctl or JobControl(),
        )
        self.stage = replace(self.stage, generator=generator)
        return generator is not None

    # -- previews -----------------------------------------------------------------------------------

    def _array(self, name: str) -> np.ndarray | None:
        if self.project is None:
            return None
        path = self.project.path(name)
        try:
            return np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return None

    def _latents(self) -> np.ndarray | None:
        """latents.npy as it is now (rows are NaN until their batch is written), memory-mapped once per
        file (the stage replaces the file when it starts over)."""
        if self.project is None:
            return None
        path = self.project.path("latents.npy")
        try:
            ino = path.stat().st_ino
        except OSError:
            return None
        with self._lat_lock:
            if self._lat is None or self._lat[0] != ino:
                arr = self._array("latents.npy")
                if arr is None:
                    return None
                self._lat = (ino, arr)
            return self._lat[1]

    def frame_latent(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(latent [num_ws,w_dim], transform params [4]) frame ``index`` renders with: the smoothed ones
        once smoothing is done, else the frame's own inverted latent (None when not inverted yet)."""
        st = self.stage
        if st.smooth is not None and st.transforms is not None and len(st.smooth) > index:
            return np.asarray(st.smooth[index]), np.asarray(st.transforms[index])
        lat = self._latents()
        if st.track is None or lat is None or not 0 <= index < min(len(lat), len(st.track.frames)):
            return None
        w = np.array(lat[index])
        if not np.isfinite(w).all():
            return None
        f = st.track.frames[index]
        return w, np.array([f.angle_deg, f.tx, f.ty, f.zoom], np.float32)

    def render_frame(self, req: FrameRequest, ctl: JobControl | None = None) -> FrameResult | None:
        """The edited preview of frame ``req.index``; None when it cannot be shown yet (not inverted,
        passed through, or the request is for a clip no longer open)."""
        from engine.align import paste_back

        # Read once: a job opening another clip replaces these meanwhile (and bumps the generation).
        preview, scale, st = self._preview, self._scale, self.stage
        if req.clip != self.generation or preview is None:
            return None
        bundle, _ = self._bundle()
        if st.track is None or bundle is None:
            return None
        i = int(req.index)
        if not 0 <= i < len(st.track.frames):
            return None
        ft = st.track.frames[i]
        got = self.frame_latent(i)
        if got is None or ft.passthrough:
            return None
        w, tr = got
        G = st.generator if st.generator is not None else bundle.generator

        class _F:
            index = i

        if ctl is not None:
            ctl.check()
        [(centre, _)] = render_windows([_F()], st.track, bundle, G, {i: w}, {i: tr}, req.edits, (0, 0, 0, 0))  # type: ignore[arg-type]
        if centre is None:
            return None
        if req.clip != self.generation or i >= len(preview):
            return None
        frame = np.array(preview[i])
        if not req.paste:
            from engine.quads import warp_quad

            window = warp_quad(frame, ft.crop_quad * scale, centre.shape[0])
            return FrameResult(i, centre, req.clip, original=window)
        lm = st.mask_landmarks[i] if st.mask_landmarks is not None else None
        out = paste_back(frame, centre, ft.crop_quad * scale, landmarks=lm)
        return FrameResult(i, out, req.clip)

    # -- export -------------------------------------------------------------------------------------

    def export(
        self,
        path: str | os.PathLike,
        edits: ClipEdits,
        options: ClipOptions,
        kind: str = "full",
        crf: int | None = None,
        keep_audio: bool = True,
        ctl: JobControl | None = None,
    ) -> Path:
        """Render and encode the whole clip to ``path`` ('full': pasted back into the frame, 'crop': the
        face window, 'side_by_side': original | edited). The file appears complete or not at all."""
        project, frames, info = self._require()
        st = self.stage
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output {kind!r}; use {', '.join(OUTPUT_KINDS)}")
        if st.track is None or st.smooth is None or st.transforms is None:
            raise CharmError("track and invert the clip before exporting it")
        bundle = self._require_bundle()
        check_edits(edits, bundle)
        e = int(options.expand)
        s = replace(
            self.settings, edits=edits, expand=(e, e, e, e), paste=options.paste, crf=crf, keep_audio=keep_audio
        )
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        ctl = ctl or JobControl()
        render_and_encode(
            project, frames, info, st.track, bundle, st.generator, st.smooth, st.transforms, s, {kind: out}, ctl
        )
        return out

    def save_edits(self, edits: ClipEdits) -> None:
        """The clip's edits into the project folder (edits.json), as the command line writes them."""
        from engine.imageio import write_text

        if self.project is not None:
            write_text(self.project.path("edits.json"), json.dumps(edits.to_json(), indent=2) + "\n")

    def saved_edits(self) -> ClipEdits | None:
        if self.project is None:
            return None
        try:
            return ClipEdits.from_json(json.loads(self.project.path("edits.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None
