"""Video reading and writing (engine/video/io.py): exact frame counts, rational rates, timestamps,
rotation, audio carried in sync, seeking, quality after encoding, atomic output and one-line errors.

Test clips are made in each test's tmp_path with the ffmpeg binary bundled with imageio-ffmpeg (small:
160x96, 24-48 frames), or written by our own writer from numpy patterns.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from engine.errors import CharmError, VideoReadError
from engine.explain import explain
from engine.video.io import (
    DEFAULT_CRF,
    VideoWriteError,
    VideoWriter,
    pad_to_even,
    probe_video,
    read_frames,
)

W, H = 160, 96


def ffmpeg(*args: str | os.PathLike) -> None:
    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def make_clip(
    path: Path,
    rate: str = "30000/1001",
    frames: int = 48,
    audio: str | None = "aac",
    beep_at: float | None = None,
) -> Path:
    """A testsrc2 clip (H.264, or VP8 for .webm) of ``frames`` frames at ``rate`` with an optional sine
    track (``audio``: the audio codec) as long as the video; ``beep_at``: the audio is silent except a
    1 kHz tone from then on."""
    n = Fraction(rate)
    seconds = f"{float(frames / n):.6f}"
    args: list[str | os.PathLike] = ["-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate={rate}"]
    if audio is not None:
        tone = "sine=frequency=1000:sample_rate=48000"
        if beep_at is not None:
            tone += f",volume='gte(t,{beep_at})':eval=frame"
        args += ["-f", "lavfi", "-i", tone, "-t", seconds]
    args += ["-frames:v", str(frames), "-g", "12"]
    if path.suffix == ".webm":
        args += ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"]
    else:
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2"]
    args += ["-pix_fmt", "yuv420p"]
    if audio is not None:
        args += ["-c:a", audio]
    ffmpeg(*args, path)
    return path


def natural_frames(n: int, size: tuple[int, int] = (W, H), seed: int = 0) -> list[np.ndarray]:
    """``n`` photo-like pictures [H,W,3] uint8 panning slowly: shading and detail at several scales in the
    brightness, colour varying more smoothly (as in photos, which 4:2:0 chroma relies on)."""
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h + n + 8, w + 2 * n + 8)

    def smooth(sigma: float, channels: int = 1) -> np.ndarray:
        x = cv2.GaussianBlur(rng.normal(size=(*shape, channels)).astype(np.float32), (0, 0), sigma)
        x = x.reshape(*shape, channels)
        return x / x.std()

    luma = smooth(12) * 40 + smooth(4) * 16 + smooth(1.5) * 5
    picture = np.clip(128 + luma + smooth(10, 3) * 20, 0, 255).astype(np.uint8)
    return [np.ascontiguousarray(picture[i : i + h, 2 * i : 2 * i + w]) for i in range(n)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def copy_through(src: Path, out: Path) -> Path:
    """Read every frame of ``src`` and write it to ``out`` with its timing and audio (the pipeline's path)."""
    with VideoWriter.like(probe_video(src), out) as w:
        for f in read_frames(src):
            w.write_frame(f)
    return out


def audio_track(path: Path) -> tuple[np.ndarray, int, float]:
    """(mono float32 samples, sample rate, time of the first sample in seconds) of ``path``'s audio."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks, start = [], None
        for frame in c.decode(stream):
            if start is None:
                start = float(frame.pts * frame.time_base)
            for r in resampler.resample(frame):
                chunks.append(r.to_ndarray()[0])
        for r in resampler.resample(None):
            chunks.append(r.to_ndarray()[0])
    return np.concatenate(chunks), rate, start or 0.0


def onset(path: Path) -> float:
    """Seconds from the start of ``path``'s audio to the first loud sample (the beep)."""
    x, rate, start = audio_track(path)
    return start + int(np.argmax(np.abs(x) > 0.1)) / rate


def no_leftovers(folder: Path, name: str) -> None:
    assert not (folder / name).exists()
    assert [p.name for p in folder.iterdir() if ".tmp" in p.name] == []


# --------------------------------------------------------------------------------------------------
# Round trips: frame count, exact rate, duration, audio


@pytest.mark.parametrize("rate,frames", [("30000/1001", 48), ("25", 40)])
def test_round_trip_keeps_count_rate_duration_and_audio(tmp_path, rate, frames):
    src = make_clip(tmp_path / "src.mp4", rate=rate, frames=frames)
    info = probe_video(src)
    assert (info.width, info.height, info.frame_count) == (W, H, frames)
    assert info.fps == Fraction(rate) and not info.vfr and info.rotation == 0
    assert info.duration_s == pytest.approx(float(frames / Fraction(rate)), abs=1e-9)
    assert info.has_audio and info.audio_codec == "aac"

    out = copy_through(src, tmp_path / "out.mp4")
    o = probe_video(out)
    assert (o.width, o.height, o.frame_count, o.fps, o.vfr) == (W, H, frames, Fraction(rate), False)
    assert o.duration_s == pytest.approx(info.duration_s, abs=1e-9)
    assert o.has_audio and o.audio_codec == "aac"  # AAC is copied as it is
    assert info.audio_duration_s is not None and o.audio_duration_s is not None
    assert abs(o.audio_duration_s - info.audio_duration_s) <= 1 / float(info.fps)
    with av.open(str(out)) as c:  # what players see: the stream's own rate and colour tags
        v = c.streams.video[0]
        assert v.average_rate == Fraction(rate)
        cc = v.codec_context
        assert (cc.name, cc.pix_fmt) == ("h264", "yuv420p")
        assert (cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range) == (1, 1, 1, 1)  # BT.709, limited
    assert {p.name for p in tmp_path.iterdir()} == {"src.mp4", "out.mp4"}  # no temporary file left


def test_clip_without_audio(tmp_path):
    src = make_clip(tmp_path / "silent.mp4", rate="25", frames=30, audio=None)
    info = probe_video(src)
    assert not info.has_audio and info.audio_codec is None and info.audio_duration_s is None
    out = copy_through(src, tmp_path / "out.mp4")
    o = probe_video(out)
    assert not o.has_audio
    assert (o.frame_count, o.fps, o.duration_s) == (30, Fraction(25), pytest.approx(1.2, abs=1e-9))


@pytest.mark.parametrize("codec,container", [("pcm_s16le", "mkv"), ("libopus", "webm")])
def test_audio_mp4_cannot_hold_is_encoded_as_aac_in_sync(tmp_path, codec, container):
    src = make_clip(tmp_path / f"src.{container}", rate="30000/1001", frames=36, audio=codec, beep_at=0.5)
    info = probe_video(src)
    assert info.frame_count == 36 and info.fps == Fraction(30000, 1001) and info.audio_codec in ("pcm_s16le", "opus")
    out = copy_through(src, tmp_path / "out.mp4")
    o = probe_video(out)
    assert o.audio_codec == "aac" and o.frame_count == 36 and o.fps == info.fps
    assert o.duration_s == pytest.approx(info.duration_s, abs=1e-9)
    frame_s = 1 / float(info.fps)
    assert info.audio_duration_s is not None and o.audio_duration_s is not None
    assert abs(o.audio_duration_s - info.audio_duration_s) <= frame_s
    assert abs(onset(out) - onset(src)) < 0.005  # the beep stays where it was, to a few milliseconds


def test_audio_copied_in_sync_and_offset_for_a_part(tmp_path):
    src = make_clip(tmp_path / "src.mp4", rate="25", frames=40, audio="aac", beep_at=1.0)
    assert abs(onset(copy_through(src, tmp_path / "all.mp4")) - onset(src)) < 0.001
    # frames 10..29 with the audio from frame 10's time to frame 30's: the beep comes 0.4 s earlier
    info = probe_video(src)
    frames = list(read_frames(src, 10, 30))
    with VideoWriter(
        tmp_path / "part.mp4",
        W,
        H,
        info.fps,
        audio_from=src,
        audio_offset_s=frames[0].time_s,
        audio_stop_s=frames[-1].time_s + 1 / float(info.fps),
    ) as w:
        for f in frames:
            w.write(f.image)
    part = probe_video(tmp_path / "part.mp4")
    assert part.frame_count == 20 and part.duration_s == pytest.approx(0.8, abs=1e-9)
    assert abs(onset(tmp_path / "part.mp4") - (onset(src) - 0.4)) < 0.001
    assert part.audio_duration_s is not None and abs(part.audio_duration_s - 0.8) <= 1 / float(info.fps)


def test_sample_clip_round_trip(shared_dir, tmp_path):
    src = shared_dir / "video" / "clip.mp4"
    if not src.exists():
        pytest.skip(f"{src} is missing")
    info = probe_video(src)
    assert (info.width, info.height, info.frame_count, info.fps) == (640, 360, 96, Fraction(30000, 1001))
    assert info.has_audio and info.audio_codec == "aac"
    out = copy_through(src, tmp_path / "out.mp4")
    o = probe_video(out)
    assert (o.width, o.height, o.frame_count, o.fps, o.duration_s) == (640, 360, 96, info.fps, info.duration_s)
    assert info.audio_duration_s is not None and o.audio_duration_s is not None
    assert abs(o.audio_duration_s - info.audio_duration_s) <= 1 / float(info.fps)
    # re-encoding an already compressed natural clip at the default quality
    assert min(psnr(a.image, b.image) for a, b in zip(read_frames(src), read_frames(out))) >= 40.0


# --------------------------------------------------------------------------------------------------
# Timestamps, rotation, seeking


def test_variable_frame_rate_keeps_its_timestamps(tmp_path):
    src = tmp_path / "vfr.mp4"
    # 25 fps with a pause of 40 ms after every 5th frame
    ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=25,setpts='PTS+0.04*floor(N/5)/TB'",
        "-frames:v", "32", "-c:v", "libx264", "-preset", "ultrafast", "-fps_mode", "passthrough", src,
    )  # fmt: skip
    info = probe_video(src)
    assert info.vfr and info.frame_count == 32
    times = [f.time_s for f in read_frames(src)]
    gaps = np.diff(times)
    assert gaps.min() == pytest.approx(0.04, abs=1e-6) and gaps.max() == pytest.approx(0.08, abs=1e-6)
    out = copy_through(src, tmp_path / "out.mp4")
    o = probe_video(out)
    assert o.vfr and o.frame_count == 32 and o.fps == info.fps and o.duration_s == pytest.approx(info.duration_s)
    assert [f.time_s for f in read_frames(out)] == pytest.approx(times, abs=1e-9)


def test_millisecond_timestamps_stay_constant_rate(tmp_path):
    src = make_clip(tmp_path / "src.mkv", rate="30000/1001", frames=30, audio=None)  # mkv: 33 or 34 ms apart
    info = probe_video(src)
    assert not info.vfr and info.fps == Fraction(30000, 1001) and info.time_base == Fraction(1, 1000)
    assert info.duration_s == pytest.approx(30 * 1001 / 30000, abs=1e-12)  # n / fps, not the rounded stamps
    frames = list(read_frames(src))
    assert set(np.round(np.diff([f.time_s for f in frames]), 6)) == {0.033, 0.034}
    # written with the source's rounded timestamps (mp4 then stores them in 1/16000 s): still constant-rate
    with VideoWriter(tmp_path / "kept.mp4", W, H, info.fps, time_base=info.time_base) as w:
        for f in frames:
            w.write(f.image, pts=f.pts, duration=f.duration)
    # or on the exact grid, as VideoWriter.like does for constant-rate sources
    with VideoWriter.like(info, tmp_path / "grid.mp4") as w:
        for f in frames:
            w.write_frame(f)
    for name in ("kept.mp4", "grid.mp4"):
        o = probe_video(tmp_path / name)
        assert (o.vfr, o.fps, o.frame_count, o.duration_s) == (False, info.fps, 30, info.duration_s), name


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_clip_comes_out_upright(tmp_path, rotation):
    pattern = natural_frames(6)
    plain = tmp_path / "plain.mp4"
    with VideoWriter(plain, W, H, Fraction(25)) as w:
        for p in pattern:
            w.write(p)
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", rotation, "-i", plain, "-c", "copy", rotated)  # counter-clockwise, as a phone writes it
    info = probe_video(rotated)
    assert info.rotation == rotation
    assert (info.width, info.height) == ((H, W) if rotation in (90, 270) else (W, H))
    k = rotation // 90
    ours = [f.image for f in read_frames(rotated)]
    assert ours[0].shape == (info.height, info.width, 3)
    for a, b, p in zip(ours, read_frames(plain), pattern):
        assert np.array_equal(a, np.rot90(b.image, k))  # the same pixels, turned
        assert psnr(a, np.rot90(p, k)) > 38 > psnr(a, np.rot90(p, k + 2)) + 10  # matches the pre-rotated pattern
    # what FFmpeg's autorotation (as players do it) shows for the first frame
    raw = tmp_path / "first.rgb"
    ffmpeg("-i", rotated, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", raw)
    shown = np.fromfile(raw, np.uint8).reshape(ours[0].shape)
    assert psnr(shown, ours[0]) > 40  # not bit-exact: FFmpeg upsamples the chroma differently


def test_reading_from_a_start_index_gives_the_same_frames(tmp_path):
    src = make_clip(tmp_path / "src.mp4", rate="30000/1001", frames=48, audio=None)  # keyframe every 12, B-frames
    full = list(read_frames(src))
    assert [f.index for f in full] == list(range(48))
    assert all(b.pts > a.pts for a, b in zip(full, full[1:]))  # presentation order
    for start, stop in [(0, 5), (1, 4), (11, 14), (12, 30), (13, None), (47, None), (30, 200)]:
        part = list(read_frames(src, start, stop))
        expect = full[start : stop if stop is None else min(stop, 48)]
        assert [f.index for f in part] == [f.index for f in expect]
        assert [f.pts for f in part] == [f.pts for f in expect]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(part, expect)), (start, stop)
    assert list(read_frames(src, 48)) == []


# --------------------------------------------------------------------------------------------------
# Quality and sizes


def test_default_crf_keeps_psnr_above_40db(tmp_path):
    pattern = natural_frames(30)
    out = tmp_path / "q.mp4"
    with VideoWriter(out, W, H, Fraction(30000, 1001)) as w:
        for p in pattern:
            w.write(p)
    assert DEFAULT_CRF == 18
    got = [f.image for f in read_frames(out)]
    assert len(got) == 30
    values = [psnr(a, b) for a, b in zip(got, pattern)]
    assert min(values) >= 40.0, values


def test_odd_sizes_are_padded_by_replicating_the_edge(tmp_path):
    w_, h_ = 161, 97
    pattern = [p[:h_, :w_] for p in natural_frames(8, size=(w_ + 1, h_ + 1))]
    assert pad_to_even(pattern[0]).shape == (98, 162, 3)
    assert np.array_equal(pad_to_even(pattern[0])[:, -1], pad_to_even(pattern[0])[:, -2])
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, w_, h_, Fraction(25)) as writer:
        assert writer.encoded_size == (162, 98)
        for p in pattern:
            writer.write(p)
    info = probe_video(out)
    assert (info.width, info.height, info.frame_count) == (162, 98, 8)
    got = [f.image for f in read_frames(out)]
    assert min(psnr(g[:h_, :w_], p) for g, p in zip(got, pattern)) >= 40.0  # no source pixel lost
    assert min(psnr(g[:h_, -1], p[:, -1]) for g, p in zip(got, pattern)) >= 35.0  # the extra column repeats the edge


# --------------------------------------------------------------------------------------------------
# Atomic writes and write errors


def test_exception_or_abort_leaves_nothing_under_the_final_name(tmp_path):
    pattern = natural_frames(50)  # more than x264 holds back, so that some of the file is written
    with pytest.raises(RuntimeError, match="stop"):
        with VideoWriter(tmp_path / "a.mp4", W, H, Fraction(25)) as w:
            for p in pattern:
                w.write(p)
            assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]  # written beside, under another name
            assert not (tmp_path / "a.mp4").exists()
            raise RuntimeError("stop")
    no_leftovers(tmp_path, "a.mp4")

    w = VideoWriter(tmp_path / "b.mp4", W, H, Fraction(25))
    w.write(pattern[0])
    w.abort()
    no_leftovers(tmp_path, "b.mp4")

    with pytest.raises(ValueError, match=r"\[96,160,3\] uint8"):  # a wrong picture aborts the file too
        with VideoWriter(tmp_path / "c.mp4", W, H, Fraction(25)) as w:
            w.write(pattern[0][:50])
    no_leftovers(tmp_path, "c.mp4")

    out = tmp_path / "d.mp4"
    out.write_bytes(b"previous")  # a failed write keeps what was there
    with pytest.raises(RuntimeError):
        with VideoWriter(out, W, H, Fraction(25)) as w:
            w.write(pattern[0])
            raise RuntimeError
    assert out.read_bytes() == b"previous"


def test_write_errors_name_the_file(tmp_path):
    missing = tmp_path / "no" / "such" / "out.mp4"
    with pytest.raises(VideoWriteError, match="folder does not exist") as e:
        VideoWriter(missing, W, H, Fraction(25))
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, CharmError) and isinstance(e.value, OSError)
    with pytest.raises(ValueError, match=r"\.mp4"):
        VideoWriter(tmp_path / "out.avi", W, H, Fraction(25))


def test_disk_full_while_writing_is_a_clear_error_and_leaves_nothing(tmp_path):
    # A file size limit makes writes fail like a full disk (EFBIG); run in a child so the limit stays there.
    out = tmp_path / "big.mp4"
    code = textwrap.dedent(
        f"""
        import resource, signal, sys
        from fractions import Fraction
        import numpy as np
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from engine.video.io import VideoWriter, VideoWriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        rng = np.random.default_rng(0)
        try:
            with VideoWriter({str(out)!r}, 160, 96, Fraction(25), crf=0, preset="ultrafast") as w:
                for i in range(60):
                    w.write(rng.integers(0, 256, (96, 160, 3), dtype=np.uint8))
        except VideoWriteError as e:
            print("ERROR", e)
            sys.exit(3)
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    line = r.stdout.strip()
    assert line.startswith("ERROR") and str(out) in line and "disk is full" in line and "\n" not in line
    no_leftovers(tmp_path, "big.mp4")


# --------------------------------------------------------------------------------------------------
# Reading errors


def test_not_a_video_is_a_one_line_error_naming_the_file(tmp_path):
    cases = {
        "notes.mp4": b"these are not the frames you are looking for\n" * 20,
        "empty.mp4": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    ok, png = cv2.imencode(".png", natural_frames(1)[0])
    (tmp_path / "still.png").write_bytes(png.tobytes())
    (tmp_path / "notes.txt").write_text("plain text\n")
    ffmpeg("-f", "lavfi", "-i", "sine=duration=0.5", "-c:a", "aac", tmp_path / "sound.m4a")
    expect = {
        "notes.mp4": "not a video file",
        "empty.mp4": "empty",
        "still.png": "still image",
        "notes.txt": "not a video",
        "sound.m4a": "only audio",
        "missing.mp4": "does not exist",
        ".": "folder",
    }
    for name, why in expect.items():
        path = tmp_path / name
        with pytest.raises(VideoReadError) as e:
            probe_video(path)
        msg = str(e.value)
        assert str(path) in msg and why in msg and "\n" not in msg, msg
        with pytest.raises(VideoReadError):
            read_frames(path)  # raises at the call, before any frame
        ex = explain(e.value)
        assert ex.expected and ex.title == "Cannot read the video"


def test_truncated_files_are_unreadable_streams(tmp_path):
    src = make_clip(tmp_path / "src.mp4", rate="25", frames=40, audio=None)
    cut = tmp_path / "cut.mp4"  # the index (moov) is written last: cut off, nothing is playable
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(VideoReadError, match="damaged or incomplete") as e:
        probe_video(cut)
    assert str(cut) in str(e.value)

    fast = tmp_path / "fast.mp4"  # index first: the frames run out before the index says
    ffmpeg("-i", src, "-c", "copy", "-movflags", "+faststart", fast)
    for fraction in (0.33, 0.95):
        short = tmp_path / f"short{fraction}.mp4"
        short.write_bytes(fast.read_bytes()[: int(fast.stat().st_size * fraction)])
        with pytest.raises(VideoReadError, match="truncated") as e:
            probe_video(short)
        assert str(short) in str(e.value) and "of the 40 frames" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(VideoReadError, match="truncated"):
            read_frames(short)
    assert probe_video(fast).frame_count == 40


def test_damaged_packets_keep_the_frame_count(tmp_path, caplog):
    src = make_clip(tmp_path / "src.mp4", rate="25", frames=40, audio=None)
    with av.open(str(src)) as c:
        where = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    for k in (5, 13):  # two frames' data replaced by noise: the decoder rejects them
        pos, size = where[k]
        data[pos : pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    frames = list(read_frames(damaged))
    assert [f.index for f in frames] == list(range(40))  # frames out = frames in
    assert "could not be decoded" in caplog.text
    good = list(read_frames(src))
    same = [np.array_equal(a.image, b.image) for a, b in zip(frames, good)]
    assert all(same[:3]) and not all(same)  # before the damage (packet 5 in decode order) pictures are intact
    # a range is read with the same indices and its own fill-ins
    assert [f.index for f in read_frames(damaged, 12, 20)] == list(range(12, 20))
