"""The video pipeline: track -> invert -> smooth -> tune -> edit -> expand -> paste back -> encode.

:func:`run_video` streams a clip through every stage with bounded memory: only per-frame state
(landmarks, windows, transforms, latents, scores) is kept, in memory-mapped files of the project folder
(:mod:`engine.video.project`); frames are decoded again for each pass that needs pixels. Each stage is
keyed by its parameters, so a second run resumes from the last finished stage (inversion: from the last
finished batch of frames) and a changed parameter redoes only the stages it affects. Every stage
reports progress and checks for cancel through an :class:`engine.jobs.JobControl`, so the command line
and the window's timeline drive the same code.

Frames out = frames in: frames without a face get windows, transforms and latents interpolated from
their neighbours; frames in a gap longer than ``max_gap`` are written unedited. The generator is never
mutated (the transform is passed per call), so renders may run on several threads.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.errors import CharmError
from engine.jobs import JobControl
from engine.video.edits import ClipEdits
from engine.video.project import Project, file_identity, stage_key
from engine.video.pti import ClipTuneSettings

if TYPE_CHECKING:
    from engine.models import ModelBundle
    from engine.video.track import Track

__all__ = [
    "OUTPUT_KINDS",
    "Frames",
    "VideoResult",
    "VideoSettings",
    "check_edits",
    "default_work_dir",
    "fill_missing",
    "frame_transform",
    "invert_stage",
    "render_and_encode",
    "render_windows",
    "run_video",
    "smooth_stage",
    "track_stage",
    "tune_stage",
]

OUTPUT_KINDS = ("full", "crop", "side_by_side")


@dataclass(frozen=True)
class VideoSettings:
    """Everything that shapes a video job (see ``python3 main.py video --help`` for the user's view).

    window_smoothing: crop-window smoothing sigma in frames (None: scaled to the frame rate; 0: none).
    latent_smoothing: 'paper' (the release's 5 taps), 'gaussian' (``latent_sigma`` frames) or 'none'.
    pti: video pivotal tuning settings, or None for none. expand: field-of-view expansion in pixels of
    the model's resolution, (left, right, top, bottom). outputs: any of :data:`OUTPUT_KINDS`.
    """

    model: str = "demo"
    edits: ClipEdits = field(default_factory=lambda: ClipEdits(()))
    face_index: int | None = None
    window_smoothing: float | None = None
    max_gap: int | None = None
    iters: int = 3
    batch: int = 8
    warm_start: bool = False
    latent_smoothing: str = "paper"
    latent_sigma: float = 1.0
    fine_mean: bool = False
    pti: ClipTuneSettings | None = None
    expand: tuple[int, int, int, int] = (0, 0, 0, 0)
    paste: bool = True
    outputs: tuple[str, ...] = ("full",)
    crf: int | None = None
    keep_audio: bool = True
    device: str = "cpu"


@dataclass
class VideoResult:
    outputs: dict[str, Path]
    frames: int
    fps: Fraction
    seconds: dict[str, float]  # per stage (0 when it was reused from the project folder)
    reused: list[str]  # stages taken from the project folder
    passthrough: list[int]  # frames written unedited (long gaps without a face)
    flagged: list[int]  # frames whose reconstruction is much worse than the clip's (see quality.npy)
    work: Path


def default_work_dir(output: Path) -> Path:
    """The project folder used when none is given: ``<output>.charm`` beside the output."""
    return output.with_name(output.name + ".charm")


def frame_transform(angle_deg: float, tx: float, ty: float, zoom: float = 1.0) -> np.ndarray:
    """The stored generator transform (float32 [3,3]) of a face at (angle, tx, ty, zoom) in its window:
    the inverse of ``[[k cos a, k sin a, tx], [-k sin a, k cos a, ty], [0, 0, 1]]`` (see engine.quads)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    m = np.array([[zoom * c, zoom * s, tx], [-zoom * s, zoom * c, ty], [0.0, 0.0, 1.0]])
    return np.linalg.inv(m).astype(np.float32)


def fill_missing(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """values [N,...] with rows where ``ok`` is False linearly interpolated from the nearest ok rows
    (held constant before the first and after the last)."""
    out = np.array(values, dtype=np.float32, copy=True)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        raise CharmError("no frame of the clip could be inverted")
    flat = out.reshape(len(out), -1)
    missing = np.flatnonzero(~ok)
    if len(missing):
        for j in range(flat.shape[1]):
            flat[missing, j] = np.interp(missing, idx, flat[idx, j])
    return flat.reshape(out.shape)


class Frames:
    """Decoding the input again, from any frame (each pass streams; nothing is kept)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, start: int = 0, stop: int | None = None) -> Iterator[Any]:
        from engine.video.io import read_frames

        return iter(read_frames(self.path, start=start, stop=stop))


def _model_key(bundle: ModelBundle, spec: str) -> dict[str, Any]:
    manifest = bundle.folder / "manifest.json"
    st = manifest.stat() if manifest.is_file() else None
    return {"spec": spec, "manifest": str(manifest), "mtime_ns": st.st_mtime_ns if st else 0}


# --------------------------------------------------------------------------------------------------
# Stages


def track_stage(project: Project, frames: Frames, info: Any, s: VideoSettings, ctl: JobControl) -> tuple[Track, str]:
    from engine.video.track import Track, track_clip

    params = {"face_index": s.face_index, "smoothing": s.window_smoothing, "max_gap": s.max_gap, "scale": "eyes"}
    key = stage_key(params, json.dumps(project.input_id, sort_keys=True))
    if project.is_done("track", key):
        return Track.load(project.folder), key
    project.start("track", key, params)
    track = track_clip(
        (f.image for f in frames()),
        fps=float(info.fps),
        face_index=s.face_index,
        smoothing=s.window_smoothing,
        max_gap=s.max_gap,
        ctl=ctl,
        total=info.frame_count,
        name=str(info.path),
    )
    if len(track.frames) != info.frame_count:
        raise CharmError(
            f"{project.input_id['path']}: {len(track.frames)} frames decoded, the stream says {info.frame_count}; "
            "the file may be damaged"
        )
    track.save(project.folder)
    project.finish("track", found=int(sum(f.found for f in track.frames)))
    return track, key


def _aligned_batch(images: list[np.ndarray], quads: list[np.ndarray], size: int) -> torch.Tensor:
    from engine.imageio import from_uint8
    from engine.quads import warp_quad

    return torch.cat([from_uint8(warp_quad(img, q, size), "cpu") for img, q in zip(images, quads)])


def _psnr(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    mse = (a.clamp(-1, 1) - b).square().flatten(1).mean(1) / 4.0  # images in [-1,1]: peak-to-peak 2
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).cpu().numpy()


def invert_stage(
    project: Project, frames: Frames, track: Track, bundle: ModelBundle, s: VideoSettings, prev: str, ctl: JobControl
) -> tuple[np.ndarray, np.ndarray, str]:
    from engine.models import inverter_for

    inverter = inverter_for(bundle)
    params = {"model": _model_key(bundle, s.model), "iters": s.iters, "warm_start": s.warm_start}
    key = stage_key(params, prev)
    n = len(track.frames)
    shape = (n, int(bundle.num_ws), int(bundle.w_dim))
    if project.is_done("invert", key):
        return project.load_array("latents.npy"), project.load_array("quality.npy"), key
    fresh = project.data["stages"].get("invert", {}).get("key") != key  # other settings: start over
    project.start("invert", key, params)
    latents = project.open_array("latents.npy", shape, fresh=fresh)
    quality = project.open_array("quality.npy", (n, 2), fresh=fresh)
    done = int(project.progress("invert").get("frames", 0))
    todo = [i for i in range(n) if track.frames[i].found and not track.frames[i].passthrough]
    ctl.stage("Inverting", total=n)
    ctl.progress(done)
    res = int(bundle.resolution)
    batch_imgs: list[np.ndarray] = []
    batch_idx: list[int] = []
    wanted = set(todo)
    last: torch.Tensor | None = None
    if s.warm_start and done > 0:
        ok = [i for i in todo if i < done]
        if ok:
            last = torch.from_numpy(np.array(latents[ok[-1]])).unsqueeze(0)

    def flush(upto: int) -> None:
        nonlocal last
        if batch_idx:
            x = _aligned_batch(batch_imgs, [track.frames[i].quad for i in batch_idx], res).to(bundle.device)
            kwargs: dict[str, Any] = {}
            if s.warm_start and last is not None:
                kwargs["init"] = last.to(bundle.device)
            result = inverter.invert(x, n_iters=s.iters, cancel=ctl.cancelled, **kwargs)
            lat = result.latent.detach().cpu()
            latents[batch_idx] = lat.numpy()
            if result.image is not None:
                quality[batch_idx, 0] = _psnr(result.image.detach().cpu(), x.cpu())
            last = lat[-1:].clone()
            batch_imgs.clear()
            batch_idx.clear()
        latents.flush()
        quality.flush()
        project.save_progress("invert", frames=upto)
        ctl.progress(upto)

    for f in frames(start=done):
        ctl.check()
        if f.index in wanted:
            batch_imgs.append(f.image)
            batch_idx.append(f.index)
        if len(batch_idx) >= max(1, s.batch):
            flush(f.index + 1)
    flush(n)
    project.finish("invert")
    return project.load_array("latents.npy"), project.load_array("quality.npy"), key


def smooth_stage(
    project: Project, track: Track, latents: np.ndarray, s: VideoSettings, prev: str, ctl: JobControl
) -> tuple[np.ndarray, np.ndarray, str]:
    from engine.imageio import write_npy
    from engine.video.smooth import smooth_latents, smooth_series, smooth_transforms

    params = {"method": s.latent_smoothing, "sigma": s.latent_sigma, "fine_mean": s.fine_mean}
    key = stage_key(params, prev)
    if project.is_done("smooth", key):
        return project.load_array("latents_smooth.npy"), project.load_array("transforms_smooth.npy"), key
    project.start("smooth", key, params)
    ctl.stage("Smoothing")
    ok = np.array([f.found and not f.passthrough for f in track.frames]) & np.isfinite(latents).all(axis=(1, 2))
    filled = fill_missing(np.asarray(latents), ok)
    smooth = smooth_latents(filled, method=s.latent_smoothing, sigma=s.latent_sigma, fine_mean=s.fine_mean)
    params3 = np.array([[f.angle_deg, f.tx, f.ty] for f in track.frames], dtype=np.float64)
    zoom = np.log(np.array([[max(f.zoom, 1e-6)] for f in track.frames], dtype=np.float64))
    p3 = smooth_transforms(params3, method=s.latent_smoothing, sigma=s.latent_sigma)
    z = np.exp(smooth_series(zoom, method=s.latent_smoothing, sigma=s.latent_sigma))
    transforms = np.concatenate([p3, z], axis=1).astype(np.float32)  # [N,4]: angle, tx, ty, zoom
    write_npy(project.path("latents_smooth.npy"), smooth.astype(np.float32))
    write_npy(project.path("transforms_smooth.npy"), transforms)
    project.finish("smooth")
    return project.load_array("latents_smooth.npy"), project.load_array("transforms_smooth.npy"), key


def tune_stage(
    project: Project,
    frames: Frames,
    track: Track,
    bundle: ModelBundle,
    latents: np.ndarray,
    transforms: np.ndarray,
    s: VideoSettings,
    prev: str,
    ctl: JobControl,
) -> tuple[torch.nn.Module | None, str]:
    from engine.checkpoints import load_generator, save_generator
    from engine.quads import warp_quad
    from engine.video.pti import sample_frames, tune_clip

    if s.pti is None or s.pti.steps <= 0:
        return None, prev
    params = s.pti.params()
    key = stage_key(params, prev)
    gen_path = project.path("pti") / "generator.safetensors"
    if project.is_done("tune", key) and gen_path.is_file():
        return load_generator(gen_path, device=bundle.device), key
    if project.data["stages"].get("tune", {}).get("key") != key:
        # Other settings: the old checkpoints must not be resumed.
        for old in (project.path("pti") / "checkpoint.pt", project.path("pti") / "targets.npy"):
            old.unlink(missing_ok=True)
    project.start("tune", key, params)
    usable = np.array([f.found and not f.passthrough for f in track.frames])
    pick = sample_frames(usable, s.pti.max_frames)
    if len(pick) == 0:
        raise CharmError("no frame with a face to tune on")
    res = int(bundle.resolution)
    folder = project.path("pti")
    folder.mkdir(exist_ok=True)
    targets = project.open_array("pti/targets.npy", (len(pick), res, res, 3), dtype=np.uint8)
    if not project.progress("tune").get("targets"):
        ctl.stage("Collecting frames for tuning", total=len(pick))
        where = {int(i): j for j, i in enumerate(pick)}
        for f in frames(start=int(pick[0]), stop=int(pick[-1]) + 1):
            ctl.check()
            j = where.get(f.index)
            if j is not None:
                targets[j] = warp_quad(f.image, track.frames[f.index].crop_quad, res)
                ctl.progress(j + 1)
        targets.flush()
        project.save_progress("tune", targets=True)
    tr = np.stack([frame_transform(*transforms[i]) for i in pick])
    result = tune_clip(
        bundle.generator,
        np.asarray(latents[pick]),
        targets,
        tr,
        s.pti,
        folder=folder,
        ctl=ctl,
    )
    save_generator(result.generator, gen_path, source="video-pti")
    project.finish("tune", steps=result.steps, stopped_early=result.stopped_early)
    return result.generator, key


def _expanded_quad(crop_quad: np.ndarray, amounts: tuple[int, int, int, int], res: int) -> np.ndarray:
    """The window an expanded render shows: ``crop_quad`` grown by (left, right, top, bottom) model px."""
    from engine.quads import quad_frame

    c, x, y = quad_frame(np.asarray(crop_quad, dtype=np.float64))
    left, right, top, bottom = (a / res for a in amounts)
    # Corners: top-left, bottom-left, bottom-right, top-right (engine.quads); x, y are half-axes.
    return np.array(
        [
            c - x * (1 + 2 * left) - y * (1 + 2 * top),
            c - x * (1 + 2 * left) + y * (1 + 2 * bottom),
            c + x * (1 + 2 * right) + y * (1 + 2 * bottom),
            c + x * (1 + 2 * right) - y * (1 + 2 * top),
        ]
    )


def render_and_encode(
    project: Project,
    frames: Frames,
    info: Any,
    track: Track,
    bundle: ModelBundle,
    generator: torch.nn.Module | None,
    latents: np.ndarray,
    transforms: np.ndarray,
    s: VideoSettings,
    outputs: dict[str, Path],
    ctl: JobControl,
) -> None:
    from engine.align import paste_back
    from engine.quads import warp_quad
    from engine.video.io import DEFAULT_CRF, VideoWriter
    from engine.video.smooth import smooth_series

    n = len(track.frames)
    res = int(bundle.resolution)
    left, right, top, bottom = (int(a) for a in s.expand)
    expand = (left, right, top, bottom)
    if any(a < 0 or a >= res for a in expand):
        raise CharmError(f"--expand amounts must be 0 to {res - 1} pixels (the model's resolution is {res})")
    expanding = any(expand)
    # The paste-back mask follows landmarks smoothed over time, so its edge does not flicker.
    lm = np.stack([f.landmarks if f.landmarks is not None else np.full((68, 2), np.nan) for f in track.frames])
    have = np.isfinite(lm).all(axis=(1, 2))
    mask_lm = smooth_series(fill_missing(lm, have), method="gaussian", sigma=1.5) if have.any() else lm
    crf = DEFAULT_CRF if s.crf is None else s.crf
    audio = info.path if (s.keep_audio and info.has_audio) else None
    h, w = info.height, info.width
    writers: dict[str, Any] = {}
    sizes = {"full": (w, h), "side_by_side": (2 * w, h)}
    crop_side = res + (expand[2] + expand[3] if expanding else 0), res + (expand[0] + expand[1] if expanding else 0)
    sizes["crop"] = (crop_side[1], crop_side[0])
    try:
        for kind, path in outputs.items():
            cw, ch = sizes[kind]
            # A variable-rate source keeps its timestamps; a constant-rate one is written on the exact grid.
            tb = info.time_base if info.vfr else None
            writers[kind] = VideoWriter(path, cw, ch, info.fps, crf=crf, time_base=tb, audio_from=audio)
        ctl.stage("Rendering and encoding", total=n)
        G = generator if generator is not None else bundle.generator
        pending: list[Any] = []

        def emit(batch: list[Any]) -> None:
            windows = render_windows(batch, track, bundle, G, latents, transforms, s.edits, expand)
            for f, (centre, window) in zip(batch, windows):
                i = f.index
                ft = track.frames[i]
                frame = f.image
                quad = _expanded_quad(ft.crop_quad, expand, res) if expanding else ft.crop_quad
                edited = frame
                if centre is not None and s.paste and ("full" in writers or "side_by_side" in writers):
                    # The mask covers the face, inside the window: the centre render is all it needs.
                    lm_i = mask_lm[i] if have.any() else None
                    edited = paste_back(frame, centre, ft.crop_quad, landmarks=lm_i)
                if "full" in writers:
                    writers["full"].write_frame(f, edited)
                if "side_by_side" in writers:
                    writers["side_by_side"].write_frame(f, np.concatenate([frame, edited], axis=1))
                if "crop" in writers:
                    writers["crop"].write_frame(
                        f, window if window is not None else warp_quad(frame, quad, sizes["crop"][0])
                    )
                ctl.progress(i + 1)

        for f in frames():
            ctl.check()
            pending.append(f)
            if len(pending) >= max(1, s.batch):
                emit(pending)
                pending = []
        emit(pending)
        for wr in writers.values():
            wr.close()
        writers.clear()
    finally:
        for wr in writers.values():
            wr.abort()


def render_windows(
    batch: list[Any],
    track: Track,
    bundle: ModelBundle,
    G: torch.nn.Module,
    latents: np.ndarray,
    transforms: np.ndarray,
    edits: ClipEdits,
    expand: tuple[int, int, int, int],
) -> list[tuple[np.ndarray | None, np.ndarray | None]]:
    """(the edited crop window [R,R,3] uint8, the window as shown: expanded by ``expand`` or the same)
    for each frame of a batch; (None, None) for frames passed through. Frames without StyleSpace edits
    render in one batched call, each with its own latent edits and transform."""
    from engine.editing import apply_latent_edits, edit_transform, render_edited
    from engine.imageio import to_uint8
    from engine.render import state_edits
    from engine.state import EditState

    device = bundle.device
    out: list[tuple[np.ndarray | None, np.ndarray | None]] = [(None, None)] * len(batch)
    plain: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (position, edited ws [1,...], transform [3,3])
    for k, f in enumerate(batch):
        i = f.index
        if track.frames[i].passthrough:
            continue
        e = edits.at(i, view="photo")
        state = EditState(latent=np.asarray(latents[i], dtype=np.float32), directions=e.directions, channels=e.channels)
        base = torch.from_numpy(frame_transform(*(float(v) for v in transforms[i]))).to(device)
        tr = edit_transform(e.angle_deg, e.tx, e.ty, base=base, device=device)
        ws = torch.from_numpy(np.array(state.latent)).to(device).unsqueeze(0)
        latent_edits, channel_edits = state_edits(state, bundle)
        with torch.no_grad():
            if channel_edits or any(expand):
                img = render_edited(G, ws, latent_edits, channel_edits, transform=tr)  # type: ignore[arg-type]
                centre = window = to_uint8(img)[0]
                if any(expand):
                    from engine.video.expand import expand_frame

                    window = expand_frame(
                        G, ws, tr, expand, centre=centre, latent_edits=latent_edits, channel_edits=channel_edits
                    )
                out[k] = (centre, window)
            else:
                plain.append((k, apply_latent_edits(ws, latent_edits), tr))
    if plain:
        with torch.no_grad():
            ws = torch.cat([p[1] for p in plain])
            tr = torch.stack([p[2] for p in plain])
            images = to_uint8(G.synthesis(ws, transform=tr))  # type: ignore[operator]
        for (k, _, _), img in zip(plain, images):
            out[k] = (img, img)
    return out


def check_edits(edits: ClipEdits, bundle: ModelBundle) -> None:
    """Every edit names something the model has (checked before any long stage runs)."""
    layers = bundle.style_layers()
    for e in edits.edits:
        if e.kind == "direction" and e.target not in bundle.directions:
            known = ", ".join(bundle.directions) or "none"
            raise CharmError(f"model '{bundle.name}' has no direction {e.target!r}; its directions: {known}")
        if e.kind == "channel":
            layer, _, ch = e.target.rpartition(":")
            if layer not in layers or not ch.isdigit() or not 0 <= int(ch) < layers[layer]:
                raise CharmError(
                    f"model '{bundle.name}' has no StyleSpace channel {e.target!r}; layers: {', '.join(layers)}"
                )


# --------------------------------------------------------------------------------------------------
# The job


def run_video(
    input_path: str | Path,
    output: str | Path,
    settings: VideoSettings,
    work: str | Path | None = None,
    ctl: JobControl | None = None,
    extra_outputs: dict[str, Path] | None = None,
) -> VideoResult:
    """Run the whole pipeline on ``input_path`` and write ``output`` (the edited full frame; with
    ``settings.outputs`` also ``<stem>_crop.mp4`` / ``<stem>_side_by_side.mp4`` beside it, or the paths
    in ``extra_outputs``). Returns what was written and what each stage cost. Resumes from ``work``."""
    from engine.model_store import resolve_model
    from engine.models import load_bundle
    from engine.video.io import probe_video

    ctl = ctl or JobControl()
    src, out = Path(input_path), Path(output)
    info = probe_video(src)
    for kind in settings.outputs:
        if kind not in OUTPUT_KINDS:
            raise ValueError(f"unknown output {kind!r}; use {', '.join(OUTPUT_KINDS)}")
    outputs: dict[str, Path] = {}
    for kind in settings.outputs:
        if kind == "full":
            outputs[kind] = out
        else:
            outputs[kind] = (extra_outputs or {}).get(kind) or out.with_name(f"{out.stem}_{kind}{out.suffix or '.mp4'}")
    project = Project(Path(work) if work else default_work_dir(out), file_identity(src))
    frames = Frames(src)
    seconds: dict[str, float] = {}
    reused: list[str] = []

    def timed(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        finished = project.data["stages"].get(name, {}).get("finished")
        value = fn()
        seconds[name] = time.perf_counter() - t
        if finished is not None and project.data["stages"].get(name, {}).get("finished") == finished:
            reused.append(name)  # done in an earlier run with the same parameters: taken as it was
        return value

    ctl.stage("Loading the model")
    bundle = load_bundle(resolve_model(settings.model, ctl=ctl), device=settings.device)
    check_edits(settings.edits, bundle)
    track, key = timed("track", lambda: track_stage(project, frames, info, settings, ctl))
    latents, quality, key = timed("invert", lambda: invert_stage(project, frames, track, bundle, settings, key, ctl))
    smooth, transforms, key = timed("smooth", lambda: smooth_stage(project, track, latents, settings, key, ctl))
    generator, key = timed(
        "tune", lambda: tune_stage(project, frames, track, bundle, smooth, transforms, settings, key, ctl)
    )
    from engine.imageio import write_text

    write_text(project.path("edits.json"), json.dumps(settings.edits.to_json(), indent=2) + "\n")
    t = time.perf_counter()
    render_and_encode(project, frames, info, track, bundle, generator, smooth, transforms, settings, outputs, ctl)
    seconds["render"] = time.perf_counter() - t
    q = np.asarray(quality[:, 0])
    good = np.isfinite(q)
    flagged: list[int] = []
    if good.sum() >= 5:
        med = float(np.median(q[good]))
        mad = float(np.median(np.abs(q[good] - med))) or 0.5
        flagged = [int(i) for i in np.flatnonzero(good & (q < med - 4 * mad))]
    return VideoResult(
        outputs=outputs,
        frames=len(track.frames),
        fps=info.fps,
        seconds=seconds,
        reused=reused,
        passthrough=[f.index for f in track.frames if f.passthrough],
        flagged=flagged,
        work=project.folder,
    )


def with_pti_steps(settings: VideoSettings, steps: int) -> VideoSettings:
    """``settings`` with ``steps`` of video PTI (0: none), other PTI settings at their defaults."""
    return replace(settings, pti=ClipTuneSettings(steps=steps) if steps > 0 else None)
