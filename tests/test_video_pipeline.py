"""The whole video pipeline on clips made here: procedural faces (factory.synthetic.render_clip) written
with the bundled ffmpeg, with and without audio, at 30000/1001 fps, with the face hidden in some frames,
with rotation metadata. Frames out = frames in, rate and audio kept, pixels outside the paste-back mask
untouched, resume after a kill, only the affected stages redone, one-line errors."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import main
from engine.jobs import Cancelled, JobControl
from engine.video.edits import ClipEdits, parse_edit
from engine.video.io import VideoWriter, probe_video, read_frames
from engine.video.pipeline import VideoSettings, run_video

FPS = Fraction(30000, 1001)
N = 24
HIDDEN = (9, 10)  # the face is covered by a grey box in these frames


def ffmpeg(*args: str | os.PathLike) -> None:
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    from factory.synthetic import render_clip, sample_factors

    clip, _, _ = render_clip(sample_factors(1, seed=7), n_frames=N, size=256, seed=2, motion=0.6)
    out = np.array(clip)
    for i in HIDDEN:
        out[i, 40:230, 40:220] = 128
    return out


def write_clip(path: Path, frames: np.ndarray, fps: Fraction = FPS, audio: bool = True, rotation: int = 0) -> Path:
    plain = path.with_name(path.stem + "_plain.mp4")
    with VideoWriter(plain, frames.shape[2], frames.shape[1], fps, crf=12) as w:
        for f in frames:
            w.write(f)
    args: list[str | os.PathLike] = []
    if rotation:
        args += ["-display_rotation", str(rotation)]
    args += ["-i", plain]
    if audio:
        dur = len(frames) / fps
        args += ["-f", "lavfi", "-t", f"{float(dur):.6f}", "-i", "sine=frequency=440:sample_rate=48000"]
        args += ["-c:v", "copy", "-c:a", "aac", "-map", "0:v", "-map", "1:a"]
    else:
        args += ["-c", "copy"]
    ffmpeg(*args, path)
    plain.unlink()
    return path


def decoded(path: Path) -> list[np.ndarray]:
    return [f.image for f in read_frames(path)]


def settings(**kw) -> VideoSettings:
    base = dict(model="demo", edits=ClipEdits((parse_edit("smile=1.5"),)), batch=8, iters=2)
    base.update(kw)
    return VideoSettings(**base)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, frames) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", frames)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory, clip):
    """One uninterrupted run: its result and the frames it handed to the encoder."""
    out = tmp_path_factory.mktemp("run") / "edited.mp4"
    captured: list[np.ndarray] = []
    real = VideoWriter.write_frame

    def spy(self, frame, image=None):
        if Path(self.path) == out:
            captured.append(np.array(frame.image if image is None else image))
        return real(self, frame, image)

    mp = pytest.MonkeyPatch()
    mp.setattr(VideoWriter, "write_frame", spy)
    try:
        result = run_video(clip, out, settings(outputs=("full", "side_by_side", "crop")))
    finally:
        mp.undo()
    return result, captured


def test_frames_rate_duration_and_audio_are_kept(clip, one_run):
    result, _ = one_run
    src, out = probe_video(clip), probe_video(result.outputs["full"])
    assert src.frame_count == out.frame_count == N and result.frames == N
    assert out.fps == src.fps == FPS
    assert out.duration_s == pytest.approx(src.duration_s, abs=1e-6)
    assert src.has_audio and out.has_audio
    assert abs(out.audio_duration_s - src.audio_duration_s) <= 1 / float(FPS)
    for kind in ("side_by_side", "crop"):
        other = probe_video(result.outputs[kind])
        assert other.frame_count == N and other.fps == FPS and other.has_audio
    assert probe_video(result.outputs["side_by_side"]).width == 2 * src.width


def test_hidden_face_frames_are_present_and_bridged(one_run):
    from engine.video.track import Track

    result, captured = one_run
    track = Track.load(result.work)
    assert len(captured) == N
    for i in HIDDEN:
        f = track.frames[i]
        assert not f.found and f.interpolated and not f.passthrough
    assert all(track.frames[i].found for i in range(N) if i not in HIDDEN)


def test_outside_the_mask_pixels_are_the_input(clip, one_run, frames):
    from engine.video.track import Track

    result, captured = one_run
    track = Track.load(result.work)
    inputs = decoded(clip)
    outputs = decoded(result.outputs["full"])
    for i, (src, edited, enc) in enumerate(zip(inputs, captured, outputs)):
        changed = np.any(edited != src, axis=2)
        q = track.frames[i].crop_quad
        x0, y0 = np.floor(q.min(axis=0)).astype(int)
        x1, y1 = np.ceil(q.max(axis=0)).astype(int) + 1
        outside = np.ones_like(changed)
        outside[max(y0, 0) : y1, max(x0, 0) : x1] = False
        assert changed.any(), f"frame {i} was not edited"
        assert not changed[outside].any(), f"frame {i}: pixels outside the window changed"
        # The window's corners lie outside the face-shaped mask: no square halo.
        h = int(min(y1, 256) - max(y0, 0)) // 8
        corner = (slice(max(y0, 0), max(y0, 0) + h), slice(max(x0, 0), max(x0, 0) + h))
        assert not changed[corner].any(), f"frame {i}: the window's corner changed"
        err = (enc.astype(np.float64) - src)[outside]
        psnr = 10 * np.log10(255.0**2 / max(np.mean(err**2), 1e-12))
        assert psnr >= 40.0, f"frame {i}: {psnr:.1f} dB outside the mask after encoding"


def test_long_gap_frames_pass_through_unedited(tmp_path, frames):
    hidden = np.array(frames)
    hidden[6:14, 40:230, 40:220] = 128
    clip = write_clip(tmp_path / "gap.mp4", hidden)
    captured = {}
    real = VideoWriter.write_frame

    def spy(self, frame, image=None):
        captured[frame.index] = np.array(frame.image if image is None else image)
        return real(self, frame, image)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VideoWriter, "write_frame", spy)
        result = run_video(clip, tmp_path / "out.mp4", settings(max_gap=3))
    assert result.passthrough == list(range(6, 14))
    src = decoded(clip)
    for i in range(6, 14):
        assert np.array_equal(captured[i], src[i])
    assert probe_video(result.outputs["full"]).frame_count == N


def test_no_audio_rotated_clip_comes_out_upright(tmp_path, frames):
    upright = np.ascontiguousarray(frames[:, 16:240, :, :])  # 224 x 256: a rotation visibly swaps the sides
    # Store the frames turned as a phone does, so that the rotation metadata turns them upright again.
    for k in (1, -1):
        stored = np.ascontiguousarray(np.rot90(upright, k, axes=(1, 2)))
        clip = write_clip(tmp_path / "rotated.mp4", stored, audio=False, rotation=90)
        first = next(iter(read_frames(clip))).image
        if first.shape == upright.shape[1:] and np.abs(first.astype(int) - upright[0]).mean() < 8:
            break
    src = probe_video(clip)
    assert src.rotation in (90, 270) and (src.width, src.height) == (256, 224)
    result = run_video(clip, tmp_path / "out.mp4", settings())
    out = probe_video(result.outputs["full"])
    assert (out.width, out.height) == (256, 224) and out.rotation == 0
    assert out.frame_count == N and out.fps == FPS and not out.has_audio


def test_25_fps_clip_keeps_its_rate(tmp_path, frames):
    clip = write_clip(tmp_path / "pal.mp4", frames[:12], fps=Fraction(25))
    result = run_video(clip, tmp_path / "out.mp4", settings(expand=(8, 8, 4, 0), outputs=("full", "crop")))
    out = probe_video(result.outputs["full"])
    assert out.fps == Fraction(25) and out.frame_count == 12 and out.has_audio
    crop = probe_video(result.outputs["crop"])  # the demo model's 64 px window, expanded by L+R and T+B
    assert (crop.width, crop.height) == (64 + 16, 64 + 4) and crop.frame_count == 12


def test_killed_during_inversion_resumes_without_tracking_again(tmp_path, clip, one_run):
    work = tmp_path / "work"
    seen = []

    def cancel() -> bool:
        return any(p.stage == "Inverting" and p.done >= 8 for p in seen)

    with pytest.raises(Cancelled):
        run_video(clip, tmp_path / "a.mp4", settings(), work=work, ctl=JobControl(seen.append, cancel))
    assert not (tmp_path / "a.mp4").exists()
    from engine.video.project import Project, file_identity

    project = Project(work, file_identity(clip))
    assert project.key("track") is not None and project.key("invert") is None
    assert project.progress("invert")["frames"] >= 8
    done = project.progress("invert")["frames"]
    again: list = []
    inverted: list[int] = []
    from engine.inversion.restyle import Inverter

    real = Inverter.invert

    def counting(self, images, *args, **kwargs):
        inverted.append(images.shape[0])
        return real(self, images, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Inverter, "invert", counting)
        result = run_video(clip, tmp_path / "a.mp4", settings(), work=work, ctl=JobControl(again.append))
    assert "track" in result.reused
    assert not any(p.stage == "Tracking" for p in again)
    # Only the frames the killed run had not inverted yet (the hidden ones are never inverted).
    assert sum(inverted) == len([i for i in range(done, N) if i not in HIDDEN])
    first = decoded(one_run[0].outputs["full"])
    for a, b in zip(first, decoded(result.outputs["full"])):
        assert np.array_equal(a, b)


def test_changing_an_edit_redoes_only_the_render(tmp_path, clip):
    work = tmp_path / "work"
    run_video(clip, tmp_path / "a.mp4", settings(), work=work)
    result = run_video(clip, tmp_path / "b.mp4", settings(edits=ClipEdits((parse_edit("age=0:0,23:3"),))), work=work)
    assert set(result.reused) >= {"track", "invert", "smooth"}
    changed = run_video(clip, tmp_path / "c.mp4", settings(iters=3), work=work)
    assert "track" in changed.reused and "invert" not in changed.reused


def test_video_pti_checkpoints_and_resumes(tmp_path):
    from official_files import tiny_generator

    from engine.video.pti import ClipTuneSettings, tune_clip

    G = tiny_generator(seed=1)
    m = 6
    rng = np.random.default_rng(0)
    pivots = (G.mapping.w_avg.view(1, 1, -1).repeat(m, G.num_ws, 1) + 0.1 * torch.randn(m, G.num_ws, G.w_dim)).numpy()
    targets = rng.integers(0, 255, size=(m, 64, 64, 3), dtype=np.uint8)
    transforms = np.repeat(np.eye(3, dtype=np.float32)[None], m, axis=0)
    s = ClipTuneSettings(steps=6, batch=2, checkpoint_every=3, lpips_weight=0.0, stop_below=None, patience=0)
    seen: list = []
    with pytest.raises(Cancelled):
        tune_clip(
            G, pivots, targets, transforms, s, folder=tmp_path, ctl=JobControl(seen.append, lambda: len(seen) > 5)
        )
    assert (tmp_path / "checkpoint.pt").is_file()
    resumed = tune_clip(G, pivots, targets, transforms, s, folder=tmp_path / "", ctl=JobControl())
    fresh = tune_clip(G, pivots, targets, transforms, s, folder=tmp_path / "fresh", ctl=JobControl())
    assert resumed.resumed_from == 3 and resumed.steps == fresh.steps == 6
    for (name, a), (_, b) in zip(resumed.generator.named_parameters(), fresh.generator.named_parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), tiny_generator(seed=1).state_dict().values()))
    stop = ClipTuneSettings(steps=500, batch=2, lpips_weight=0.0, stop_below=None, patience=5, min_improvement=0.5)
    early = tune_clip(G, pivots, targets, transforms, stop, ctl=JobControl())
    assert early.stopped_early == "plateau" and early.steps < 500


def test_command_writes_the_video_and_errors_are_one_line(tmp_path, clip, capsys):
    out = tmp_path / "cli.mp4"
    rc = main.main(["video", str(clip), "--model", "demo", "--out", str(out), "--edit", "age=0:0,23:2", "--iters", "1"])
    assert rc == 0 and probe_video(out).frame_count == N
    assert f"{N} frames at 30000/1001 fps" in capsys.readouterr().out
    (tmp_path / "notes.txt").write_text("not a video")
    assert main.main(["video", str(tmp_path / "notes.txt"), "--model", "demo", "--out", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "notes.txt" in err
    blank = write_clip(tmp_path / "blank.mp4", np.full((6, 128, 128, 3), 90, np.uint8), audio=False)
    assert main.main(["video", str(blank), "--model", "demo", "--out", str(tmp_path / "y.mp4")]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bars: one line naming the clip
    assert last.startswith("error:") and "no face" in last and "blank.mp4" in last
    assert not (tmp_path / "y.mp4").exists()
    rc = main.main(["video", str(clip), "--model", "demo", "--out", str(tmp_path / "z.mp4"), "--edit", "smiel=1"])
    assert rc == 2 and "smile" in capsys.readouterr().err  # the known directions are listed
