"""Video in and out of the engine: probing, streaming decode, H.264 writing with the source's audio.

Reading (PyAV, i.e. FFmpeg's libraries):

- :func:`probe_video` demuxes the whole video stream once (packets only, no decoding: about a second
  for an hour of video) to count the frames exactly, whatever the container's header claims, and to
  learn every frame's timestamp; the result is cached per file (path, size, modification time). An
  mp4/mov whose frames stop before its index says (an interrupted copy) is reported as truncated.
- :func:`read_frames` decodes a range of frames as a stream (memory: one decoded frame plus the
  decoder's reference frames). A start index seeks to the last keyframe at or before it and decodes
  forward, so reading frames ``i..j`` again gives the same pixels as a full read, bit for bit.
- Frame indices are presentation order, ``0 .. frame_count - 1``. ``pts`` is the stream's own
  timestamp (in ``time_base`` units), ``time_s`` the seconds since frame 0. A frame the decoder cannot
  produce (a damaged packet) is replaced by the nearest decoded one, with a warning in the log, so
  that frames out = frames in; a read missing more than a tenth of the file's frames raises instead.
- Pictures are [H,W,3] uint8 RGB, upright: the stream's rotation metadata (phone videos) is applied
  with ``np.rot90``, so ``width``/``height`` in :class:`VideoInfo` are the upright sizes.

Writing (:class:`VideoWriter`): H.264 (libx264, yuv420p, constant quality ``crf``) in mp4, at the
exact rational frame rate given, or with the caller's timestamps (variable frame rate sources keep
theirs; :meth:`VideoWriter.like` and :meth:`VideoWriter.write_frame` choose for a source). The
audio of a source file is carried over in sync: stream copy when mp4 can hold the codec (AAC, MP3,
ALAC, AC-3, E-AC-3), otherwise decoded and encoded as AAC. The file is written under a temporary name
beside the target and renamed into place by :meth:`VideoWriter.close`; a failure or
:meth:`VideoWriter.abort` removes it, so nothing ever appears under the final name half-written.

Colour: RGB <-> YUV uses one matrix both ways. The writer converts with BT.709, limited range, and
tags the stream BT.709 (matrix, primaries, transfer: those of sRGB) so players convert it back the same
way. The reader uses the matrix and range the stream is tagged with; an untagged stream is read as
BT.601 limited range, FFmpeg's convention (and what FFmpeg uses when it encodes RGB input untagged).

Odd sizes: yuv420p needs even widths and heights, so the writer pads an odd picture by one
replicated column and/or row on the right/bottom (no source pixel is lost); the file is then one pixel
larger than the pictures (:attr:`VideoWriter.encoded_size`).
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation

from engine.errors import CharmError, VideoReadError, short_reason

__all__ = [
    "DEFAULT_CRF",
    "DEFAULT_PRESET",
    "Frame",
    "VideoInfo",
    "VideoWriteError",
    "VideoWriter",
    "pad_to_even",
    "probe_video",
    "read_frames",
]

log = logging.getLogger(__name__)

DEFAULT_CRF = 18  # x264's constant quality: 18 is visually lossless for most content
DEFAULT_PRESET = "medium"

# Audio codecs an mp4/mov file holds and common players play: copied as they are. Others become AAC.
MP4_AUDIO_COPY = frozenset({"aac", "mp3", "alac", "ac3", "eac3"})
AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
WRITE_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}  # output suffix -> FFmpeg muxer

_ROUNDING_S = 0.0006  # timestamps this close to a constant rate's grid are on it (mkv rounds to 1 ms)
MAX_MISSING_FRACTION = 0.1  # a read missing more than this part of the file's frames: the stream is unreadable

# FFmpeg formats that open an image or a text file as a "video" of one frame
_STILL_FORMATS = ("image2", "tty", "_pipe")

# AVColorSpace tags -> the swscale matrix (libswscale knows the matrices, not every tag)
_MATRICES = {1: Colorspace.ITU709, 4: Colorspace.FCC, 5: Colorspace.ITU601, 6: Colorspace.ITU601}
_MATRICES.update({7: Colorspace.SMPTE240M, 9: Colorspace.BT2020, 10: Colorspace.BT2020})
_BT709 = 1  # AVCOL_PRI_BT709 = AVCOL_TRC_BT709 = AVCOL_SPC_BT709
_RANGE_LIMITED, _RANGE_FULL = 1, 2  # AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG
# swscale's defaults round coarsely and repeat each chroma sample over two pixels: an RGB -> yuv420p -> RGB
# round trip then loses 42-44 dB PSNR before any compression; interpolated chroma with accurate rounding
# keeps 50-51 dB (measured on a photo and on a smooth test pattern)
_TO_YUV = Interpolation.BICUBIC | Interpolation.ACCURATE_RND
_TO_RGB = Interpolation.BILINEAR | Interpolation.FULL_CHR_H_INT | Interpolation.ACCURATE_RND


class VideoWriteError(CharmError, OSError):
    """A video cannot be written (disk full, no permission, folder missing); the message names the file.
    Also an :class:`OSError`, so callers that handle file errors handle it too."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learns about a video file.

    width, height: upright, after the rotation metadata. frame_count: counted by demuxing every packet
    of the video stream (packets the container marks as discarded, such as frames cut by an mp4 edit
    list, excluded), never taken from the header. fps: the stream's exact rate (30000/1001, not 29.97);
    for a variable frame rate (``vfr``) stream its average, frame_count / duration. duration_s:
    frame_count / fps at a constant rate (exact, whatever rounding the container's timestamps have),
    else from frame 0's timestamp to the end of the last frame. rotation: degrees counter-clockwise
    that make frames upright (``np.rot90``'s k = rotation / 90). codec: the video codec's name.
    start_s: frame 0's time in the file's timeline (the audio is aligned to it). audio_duration_s: the
    first audio stream's length (None without audio).
    """

    path: Path
    width: int
    height: int
    frame_count: int
    fps: Fraction
    time_base: Fraction
    duration_s: float
    rotation: int
    vfr: bool
    has_audio: bool
    audio_codec: str | None
    codec: str = ""
    start_s: float = 0.0
    audio_duration_s: float | None = None


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame. index: presentation order from 0; pts, duration: in the stream's time_base
    (None when the stream has no timestamps); time_s: seconds since frame 0; image: [H,W,3] uint8 RGB,
    upright."""

    index: int
    pts: int | None
    time_s: float
    image: np.ndarray
    duration: int | None = None


@dataclass(frozen=True)
class _Index:
    """Per-frame timing of a video stream, in presentation order (int64 arrays in time_base units)."""

    pts: np.ndarray  # [N] sorted; empty when the stream has no timestamps
    durations: np.ndarray  # [N] time to the next frame; the last frame's from its packet
    key_seek: np.ndarray  # [K] where to seek for each keyframe: min(pts, dts), by keyframe pts order
    key_pts: np.ndarray  # [K] sorted keyframe pts
    stream_index: int
    count: int  # frames


# --------------------------------------------------------------------------------------------------
# Errors


def _read_error(path: str | os.PathLike, why: str) -> VideoReadError:
    return VideoReadError(f"cannot read '{path}' as a video: {why}")


def _damaged(path: str | os.PathLike, exc: BaseException | str) -> VideoReadError:
    detail = exc if isinstance(exc, str) else short_reason(exc)
    return _read_error(path, f"the video stream is damaged or truncated ({detail}); copy or export the file again")


def _write_error(path: Path, exc: BaseException) -> VideoWriteError:
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        why = "the disk is full (or the file is larger than allowed); free some space or write to another disk"
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "no permission to write there; choose a folder you may write to"
    elif code in (errno.ENOENT, errno.ENOTDIR):
        why = "the folder does not exist; create it or choose another"
    else:
        why = f"{short_reason(exc)}; check the folder and the free disk space"
    return VideoWriteError(f"cannot write the video '{path}': {why}")


# --------------------------------------------------------------------------------------------------
# Probing


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """What is in the video file ``path`` (see :class:`VideoInfo`). Raises :class:`VideoReadError`,
    one line naming the file and what to do, when it is missing, not a video, has no video stream or
    its stream cannot be decoded."""
    info, _ = _probe_cached(path)
    return info


def _probe_cached(path: str | os.PathLike) -> tuple[VideoInfo, _Index]:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise VideoReadError(f"'{p}' does not exist; check the path") from None
    except OSError as e:
        raise _read_error(p, f"{e.strerror or e}; check that the file exists and that you may read it") from None
    if p.is_dir():
        raise _read_error(p, "it is a folder; choose a video file inside it")
    if st.st_size == 0:
        raise _read_error(p, "the file is empty; copy or export it again")
    info, index = _probe(os.path.abspath(p), st.st_size, st.st_mtime_ns)
    return (info if info.path == p else replace(info, path=p)), index


@functools.lru_cache(maxsize=16)
def _probe(path: str, size: int, mtime_ns: int) -> tuple[VideoInfo, _Index]:
    """Probe ``path``; ``size`` and ``mtime_ns`` are only part of the cache key (a changed file is probed again)."""
    with _open_input(Path(path)) as container:  # stream objects are only valid while it is open
        vs = _video_stream(container, path)
        audio = container.streams.audio[0] if container.streams.audio else None
        tb = Fraction(vs.time_base) if vs.time_base else Fraction(1, 90000)
        index, audio_span = _demux_index(container, vs, audio, path)
        n = index.count
        first = _first_frame(container, vs, path)
        rotation = int(round((first.rotation or 0) / 90.0)) % 4 * 90
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        fps, vfr, duration = _rate(vs, index, tb, n)
        audio_duration = None
        if audio is not None and audio.duration:
            audio_duration = float(audio.duration * Fraction(audio.time_base))
        elif audio_span is not None:
            audio_duration = audio_span[1] - max(0.0, audio_span[0])
        info = VideoInfo(
            path=Path(path),
            width=width,
            height=height,
            frame_count=n,
            fps=fps,
            time_base=tb,
            duration_s=float(duration),
            rotation=rotation,
            vfr=vfr,
            has_audio=audio is not None,
            audio_codec=audio.codec_context.codec.canonical_name if audio is not None else None,
            codec=vs.codec_context.codec.canonical_name,
            start_s=float(index.pts[0] * tb) if len(index.pts) else 0.0,
            audio_duration_s=audio_duration,
        )
    return info, index


def _open_input(path: Path) -> Any:
    try:
        container = av.open(str(path), mode="r", metadata_errors="replace")
    except av.error.PermissionError:
        raise _read_error(path, "no permission to read it; check the file's permissions") from None
    except (av.FFmpegError, OSError, ValueError) as e:
        raise _read_error(
            path, f"it is not a video file, or it is damaged or incomplete ({short_reason(e)}); choose a video file"
        ) from None
    if any(name.endswith(_STILL_FORMATS) for name in container.format.name.split(",")):
        container.close()
        raise _read_error(path, "it is a still image or a text file, not a video; choose a video file")
    return container


def _video_stream(container: Any, path: str | os.PathLike) -> Any:
    """The first video stream that is not cover art."""
    for s in container.streams.video:
        if not s.disposition & av.stream.Disposition.attached_pic:
            s.thread_type = "AUTO"
            return s
    what = "it holds only audio" if container.streams.audio else "it holds no picture"
    raise _read_error(path, f"{what}, no video stream; choose a video file")


def _demux_index(
    container: Any, vs: Any, audio: Any, path: str | os.PathLike
) -> tuple[_Index, tuple[float, float] | None]:
    """Timing of every frame of ``vs`` (and the audio's first and last second) from one pass of demuxing."""
    pts: list[int] = []
    dts: list[int | None] = []
    dur: list[int] = []
    key: list[bool] = []
    audio_span: tuple[float, float] | None = None
    has_pts = True
    stored = 0  # video packets in the file, those an edit list discards included
    cut = False  # the last video packet is incomplete
    streams = [vs] if audio is None or audio.duration else [vs, audio]  # the audio's length from its packets
    try:
        for packet in container.demux(streams):
            if packet.size == 0:
                continue
            if packet.stream.index == vs.index:
                stored += 1
                cut = bool(packet.is_corrupt)
            if packet.is_discard:
                continue
            if packet.stream.index == vs.index:
                if packet.pts is None:
                    has_pts = False
                pts.append(packet.pts if packet.pts is not None else -1)
                dts.append(packet.dts)
                dur.append(int(packet.duration or 0))
                key.append(bool(packet.is_keyframe))
            elif packet.pts is not None:
                a_tb = Fraction(audio.time_base)
                t0, t1 = float(packet.pts * a_tb), float((packet.pts + (packet.duration or 0)) * a_tb)
                audio_span = (t0, t1) if audio_span is None else (min(audio_span[0], t0), max(audio_span[1], t1))
    except (av.FFmpegError, OSError) as e:
        raise _damaged(path, e) from None
    if not pts:
        raise _read_error(path, "its video stream holds no frames; choose another video")
    # mp4/mov index every frame up front (other containers' counts are estimates): fewer is a cut-off file
    listed = int(vs.frames or 0) if "mp4" in container.format.name else 0
    if cut or stored < listed:
        held = f"it holds {stored} of the {listed} frames its index lists" if listed else "its last frame is cut off"
        raise _read_error(path, f"the file is truncated ({held}); copy or download it again")
    if not has_pts:  # no timestamps (raw streams): frames are counted, not seeked
        empty = np.zeros(0, np.int64)
        return _Index(empty, empty, empty, empty, vs.index, len(pts)), audio_span
    p = np.asarray(pts, np.int64)
    order = np.argsort(p, kind="stable")
    p_sorted = p[order]
    durations = np.empty_like(p_sorted)
    durations[:-1] = np.diff(p_sorted)
    last = int(np.asarray(dur, np.int64)[order[-1]])
    durations[-1] = last if last > 0 else (int(np.median(durations[:-1])) if len(p) > 1 else 0)
    k = np.flatnonzero(np.asarray(key))
    if len(k) == 0:
        k = np.asarray([int(order[0])])  # no keyframe flags: the first frame is the only way in
    key_pts = p[k]
    key_dts = [dts[i] for i in k]
    key_seek = np.asarray([int(p[i]) if d is None else min(int(p[i]), d) for i, d in zip(k, key_dts)], np.int64)
    korder = np.argsort(key_pts, kind="stable")
    return _Index(p_sorted, durations, key_seek[korder], key_pts[korder], vs.index, len(pts)), audio_span


def _first_frame(container: Any, vs: Any, path: str | os.PathLike) -> Any:
    """The first decodable frame (its size and rotation describe the stream)."""
    try:
        container.seek(0, stream=vs) if vs.start_time is None else container.seek(vs.start_time, stream=vs)
    except (av.FFmpegError, OSError):
        pass  # a stream that cannot seek is still at its start
    try:
        for frame in container.decode(vs):
            return frame
    except (av.FFmpegError, OSError) as e:
        raise _damaged(path, e) from None
    raise _damaged(path, "no frame could be decoded")


def _rate(vs: Any, index: _Index, tb: Fraction, n: int) -> tuple[Fraction, bool, Fraction]:
    """(fps, vfr, duration in seconds as an exact fraction) of a stream of ``n`` frames.

    Constant rate when every frame lies on the grid ``frame 0 + i / fps`` of one of the stream's
    nominal rates (or of its average rate), to within a tick of the time base, 1% of a frame or
    :data:`_ROUNDING_S`, so timestamps rounded to milliseconds (mkv, webm), even after a copy into a
    finer time base, stay constant-rate; the duration is then
    exactly n / fps. Otherwise the rate is variable: fps = n / duration, the duration running from
    frame 0's timestamp to the end of the last frame.
    """
    nominal = [Fraction(r) for r in (vs.guessed_rate, vs.average_rate, vs.base_rate) if r]
    if len(index.pts) == 0:  # no timestamps: trust the stream's rate
        fps = nominal[0] if nominal else Fraction(25)
        return fps, False, n / fps
    span = int(index.pts[-1] - index.pts[0] + index.durations[-1]) * tb
    if span > 0:
        nominal.append(Fraction(n) / span)
    if n < 2 or span <= 0:
        fps = nominal[0] if nominal else Fraction(25)
        return fps, False, n / fps
    t = (index.pts - index.pts[0]).astype(np.float64) * float(tb)
    i = np.arange(n, dtype=np.float64)
    for fps in nominal:
        period = 1.0 / float(fps)
        if float(np.max(np.abs(t - i * period))) <= max(1.01 * float(tb), 0.01 * period, _ROUNDING_S):
            return fps, False, n / fps
    return Fraction(n) / span, True, span


# --------------------------------------------------------------------------------------------------
# Reading


def read_frames(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> Iterator[Frame]:
    """Frames ``start .. stop-1`` (presentation order; ``stop`` None: to the end) of the video at
    ``path``, decoded one at a time. The file is probed first (cached), so a file that is not a video
    raises :class:`VideoReadError` here, before the first frame; a stream that turns out damaged while
    decoding raises it from the iterator."""
    info, index = _probe_cached(path)
    stop = info.frame_count if stop is None else min(int(stop), info.frame_count)
    start = int(start)
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    return _read(Path(path), info, index, start, stop)


def _read(path: Path, info: VideoInfo, index: _Index, start: int, stop: int) -> Iterator[Frame]:
    if start >= stop:
        return
    timed = len(index.pts) > 0
    missing = 0
    expected = start
    last: np.ndarray | None = None
    seek = timed and start > 0
    while True:
        with _open_input(path) as container:
            vs = container.streams[index.stream_index]
            vs.thread_type = "AUTO"
            if seek:
                _seek_before(container, vs, index, start)
            overshot = False
            for i, frame in _positions(container, vs, index, path):
                if i < expected:
                    continue
                if i >= stop:
                    break
                if seek and expected == start and i > start:
                    overshot = True  # the seek landed after the start: decode from the beginning instead
                    break
                image = _to_rgb(frame, info.rotation)
                fill = image if last is None else last
                while expected < i:  # frames the decoder could not produce
                    missing += 1
                    yield _frame(index, info, expected, fill.copy())
                    expected += 1
                last = image
                yield _frame(index, info, i, image)
                expected = i + 1
        if overshot:
            seek = False
            continue
        break
    if last is None:
        raise _damaged(path, f"none of frames {start}..{stop - 1} could be decoded")
    while expected < stop:
        missing += 1
        yield _frame(index, info, expected, last.copy())
        expected += 1
    if missing:
        log.warning(
            "%s: %d of frames %d..%d could not be decoded; repeated their neighbours", path, missing, start, stop
        )
        if missing > MAX_MISSING_FRACTION * info.frame_count:  # of the file, so a part never fails alone
            raise _damaged(path, f"{missing} of frames {start}..{stop - 1} could not be decoded")


def _seek_before(container: Any, vs: Any, index: _Index, start: int) -> None:
    """Seek to the last keyframe whose pts is at or before frame ``start``'s."""
    k = int(np.searchsorted(index.key_pts, index.pts[start], side="right")) - 1
    if k < 0:
        return
    try:
        container.seek(int(index.key_seek[k]), stream=vs, backward=True, any_frame=False)
    except (av.FFmpegError, OSError):
        container.seek(0)


def _positions(container: Any, vs: Any, index: _Index, path: Path) -> Iterator[tuple[int, Any]]:
    """(frame index, decoded frame) in decode output order; undecodable packets are skipped."""
    timed = len(index.pts) > 0
    counter = 0
    try:
        for packet in container.demux(vs):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as e:
                log.debug("%s: skipping a damaged packet (%s)", path, short_reason(e))
                continue
            for frame in frames:
                i = _index_of(index, frame.pts) if timed else None
                if i is None:
                    i = counter
                counter = i + 1
                yield i, frame
    except (av.FFmpegError, OSError) as e:
        raise _damaged(path, e) from None


def _index_of(index: _Index, pts: int | None) -> int | None:
    if pts is None:
        return None
    i = int(np.searchsorted(index.pts, pts))
    return i if i < len(index.pts) and index.pts[i] == pts else None


def _frame(index: _Index, info: VideoInfo, i: int, image: np.ndarray) -> Frame:
    if len(index.pts):
        pts = int(index.pts[i])
        return Frame(i, pts, float((pts - int(index.pts[0])) * info.time_base), image, int(index.durations[i]))
    return Frame(i, None, float(i / info.fps), image, None)


def _to_rgb(frame: Any, rotation: int) -> np.ndarray:
    """A decoded frame as an upright [H,W,3] uint8 RGB picture, converted with the matrix it is tagged with."""
    matrix = _MATRICES.get(int(frame.colorspace), Colorspace.ITU601)
    full = int(frame.color_range) == _RANGE_FULL or frame.format.name.startswith("yuvj")
    rgb = frame.to_ndarray(
        format="rgb24",
        src_colorspace=matrix,
        src_color_range=ColorRange.JPEG if full else ColorRange.MPEG,
        interpolation=_TO_RGB,
    )
    if rotation:
        rgb = np.rot90(rgb, rotation // 90)
    return np.ascontiguousarray(rgb)


# --------------------------------------------------------------------------------------------------
# Writing


def pad_to_even(image: np.ndarray) -> np.ndarray:
    """``image`` [H,W,C] with its last column and/or row repeated so that H and W are even."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoWriter:
    """Writes an H.264 mp4 frame by frame, atomically; a context manager (an exception inside the
    ``with`` block aborts: nothing is left under ``path``).

    path: the output (.mp4, .m4v or .mov). width, height: the pictures' size (odd sizes are padded,
    see the module's docstring). fps: the exact frame rate. crf, preset: x264's quality (lower is
    better; 18 is about visually lossless) and speed. time_base: the unit of the ``pts`` given to
    :meth:`write` (the source's ``VideoInfo.time_base`` to keep its timestamps); None: 1/fps.
    audio_from: a file whose first audio stream is carried into the output, in sync: its audio from
    ``audio_offset_s`` seconds after that file's first video frame (its ``VideoInfo.start_s``) up to
    ``audio_stop_s`` seconds after it (None: to its end) starts at the output's first frame.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction,
        *,
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
        time_base: Fraction | None = None,
        audio_from: str | os.PathLike | None = None,
        audio_offset_s: float = 0.0,
        audio_stop_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        fmt = WRITE_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise ValueError(f"{self.path.name!r}: the file name must end in .mp4, .m4v or .mov")
        if width < 1 or height < 1:
            raise ValueError(f"invalid video size {width}x{height}")
        self.fps = Fraction(fps)
        if self.fps <= 0:
            raise ValueError(f"invalid frame rate {fps}")
        self.width, self.height = int(width), int(height)
        self.encoded_size = (self.width + self.width % 2, self.height + self.height % 2)
        self.time_base = Fraction(time_base) if time_base is not None else 1 / self.fps
        self._keeps_time = time_base is not None
        self.frames_written = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.{os.getpid()}.{id(self):x}.tmp{self.path.suffix}")
        self._first_pts: int | None = None
        self._last_pts: int | None = None
        self._pending: tuple[Any, int] | None = None  # (frame, pts) waiting for the next one: its duration
        self._durations: dict[int, int] = {}  # pts -> duration of frames inside the encoder
        self._last_interval: int | None = None  # pts difference of the last two frames
        self._final_duration: int | None = None  # the last frame's duration as given to write()
        self._closed = False
        self._audio: _AudioCarrier | None = None
        self._out: Any = None
        try:
            open(self._tmp, "xb").close()  # FFmpeg opens the file only at the first packet: fail now instead
            self._out = av.open(str(self._tmp), mode="w", format=fmt, container_options={"movflags": "+faststart"})
            self._video = self._add_video(crf, preset)
            if audio_from is not None:
                self._audio = _AudioCarrier.open(Path(audio_from), self._out, audio_offset_s, audio_stop_s)
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError) and not isinstance(e, CharmError):
                raise _write_error(self.path, e) from None
            raise

    @classmethod
    def like(
        cls,
        info: VideoInfo,
        path: str | os.PathLike,
        *,
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
        audio: bool = True,
        audio_offset_s: float = 0.0,
        audio_stop_s: float | None = None,
    ) -> VideoWriter:
        """A writer for frames read from the video ``info`` describes, to be fed with :meth:`write_frame`:
        the same size and rate, its audio (``audio``), and for a variable-rate source its timestamps
        (a constant-rate one is written on the exact 1/fps grid, so rounded container timestamps, such
        as mkv's milliseconds, do not turn into jitter)."""
        return cls(
            path,
            info.width,
            info.height,
            info.fps,
            crf=crf,
            preset=preset,
            time_base=info.time_base if info.vfr else None,
            audio_from=info.path if audio and info.has_audio else None,
            audio_offset_s=audio_offset_s,
            audio_stop_s=audio_stop_s,
        )

    def _add_video(self, crf: int, preset: str) -> Any:
        stream = self._out.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = self.encoded_size
        stream.pix_fmt = "yuv420p"
        stream.time_base = self.time_base
        cc = stream.codec_context
        cc.time_base = self.time_base
        cc.framerate = self.fps
        cc.color_primaries = cc.color_trc = cc.colorspace = _BT709
        cc.color_range = _RANGE_LIMITED
        cc.options = {"crf": str(int(crf)), "preset": preset}
        return stream

    # -- context manager
    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    # -- writing
    def write(
        self, image: np.ndarray, pts: int | None = None, time_s: float | None = None, duration: int | None = None
    ) -> None:
        """Append one picture ([height, width, 3] uint8 RGB). pts (in ``time_base`` units) or time_s
        (seconds) place it in time (timestamps are shifted so that the first frame is at 0; they must
        increase); neither: one frame period after the previous frame. duration (``time_base`` units)
        matters only for the last frame; by default it lasts as long as the frame before it."""
        if self._closed:
            raise ValueError("the writer is closed")
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.shape != (self.height, self.width, 3):
            raise ValueError(
                f"expected a [{self.height},{self.width},3] uint8 picture, got {image.dtype} {image.shape}"
            )
        p = self._place(pts, time_s)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pad_to_even(image)), format="rgb24")
        frame = frame.reformat(
            format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG, interpolation=_TO_YUV
        )
        frame.colorspace = frame.color_primaries = frame.color_trc = _BT709
        frame.color_range = _RANGE_LIMITED
        frame.time_base = self.time_base
        frame.pts = p
        try:
            if self._pending is not None:
                self._last_interval = p - self._pending[1]
                self._encode(*self._pending, self._last_interval)
            self._pending = (frame, p)
            self._final_duration = int(duration) if duration is not None and duration > 0 else None
            self.frames_written += 1
            if self._audio is not None:
                self._audio.pump(float(p * self.time_base))
        except BaseException as e:
            self._fail(e)

    def write_frame(self, frame: Frame, image: np.ndarray | None = None) -> None:
        """Write ``image`` (default: ``frame.image``) in the place of the source's ``frame``: at its
        timestamp when the writer keeps timestamps (a ``time_base`` was given, as :meth:`like` does for
        variable-rate sources), else in the next slot of the 1/fps grid."""
        picture = frame.image if image is None else image
        if self._keeps_time and frame.pts is not None:
            self.write(picture, pts=frame.pts, duration=frame.duration)
        else:
            self.write(picture)

    def _place(self, pts: int | None, time_s: float | None) -> int:
        """The output pts of the next frame (first frame at 0)."""
        if pts is None and time_s is not None:
            pts = int(round(time_s / self.time_base))
        if pts is None:
            if self._last_pts is None:
                p = 0
            else:  # one period later, on the grid of frame periods (exact when time_base = 1/fps)
                i = round(self._last_pts * self.time_base * self.fps) + 1
                p = int(round(i / self.fps / self.time_base))
        else:
            if self._first_pts is None:
                self._first_pts = int(pts)
            p = int(pts) - self._first_pts
        if self._last_pts is not None and p <= self._last_pts:
            raise ValueError(f"timestamps must increase: {p} after {self._last_pts} (in units of {self.time_base})")
        self._last_pts = p
        return p

    def _encode(self, frame: Any, pts: int, duration: int) -> None:
        frame.duration = duration
        self._durations[pts] = duration
        for packet in self._video.encode(frame):
            self._mux_video(packet)

    def _mux_video(self, packet: Any) -> None:
        if packet.pts is not None and packet.pts in self._durations:
            packet.duration = self._durations.pop(packet.pts)
        self._out.mux(packet)

    def close(self) -> Path:
        """Finish the file (flush the encoder, the rest of the audio, the index) and rename it to ``path``."""
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"no frames were written to {self.path}")
        try:
            assert self._pending is not None
            frame, p = self._pending
            period = max(1, int(round(1 / self.fps / self.time_base)))
            self._encode(frame, p, self._final_duration or self._last_interval or period)
            self._pending = None
            for packet in self._video.encode(None):
                self._mux_video(packet)
            if self._audio is not None:
                self._audio.finish()
            self._out.close()
            self._out = None
            if self._audio is not None:
                self._audio.close()
            os.replace(self._tmp, self.path)
        except BaseException as e:
            self._fail(e)
        self._closed = True
        return self.path

    def _fail(self, exc: BaseException) -> None:
        """Abort and raise ``exc``; file errors (FFmpeg's carry an errno and are OSErrors too) become a
        :class:`VideoWriteError` naming the output, other errors are defects and stay as they are."""
        self.abort()
        if isinstance(exc, OSError) and not isinstance(exc, CharmError):
            raise _write_error(self.path, exc) from exc
        raise exc

    def abort(self) -> None:
        """Stop writing and remove the temporary file; nothing is left under ``path``."""
        self._closed = True
        if self._audio is not None:
            self._audio.close()
            self._audio = None
        self._remove_tmp()  # first: closing writes the index and, by name, rewrites the file for faststart
        if self._out is not None:
            try:
                self._out.close()
            except (av.FFmpegError, OSError):
                pass
            self._out = None
        self._remove_tmp()  # where an open file cannot be removed (Windows)

    def _remove_tmp(self) -> None:
        try:
            self._tmp.unlink(missing_ok=True)
        except OSError:
            pass


class _AudioCarrier:
    """Moves the audio of a source file into an output container, interleaved with the video: packets
    are copied as they are, or decoded, trimmed and encoded as AAC when mp4 cannot hold the codec.

    Times are seconds relative to the output's first frame; the source's audio at time
    ``source video start + offset`` lands at 0."""

    def __init__(self, src: Path, container: Any, stream: Any, out_stream: Any, shift: float, stop: float | None):
        self.src = src
        self._in = container
        self._stream = stream
        self._out_stream = out_stream
        self._shift = shift
        self._stop = stop
        self._tb = Fraction(stream.time_base)
        self._items = self._packets()
        self._held: tuple[float, Any] | None = None
        self._done = False

    @staticmethod
    def open(src: Path, out: Any, offset_s: float, stop_s: float | None) -> _AudioCarrier | None:
        try:
            start = probe_video(src).start_s
        except VideoReadError:
            start = 0.0  # an audio file: its audio starts with the output
        container = _open_input(src)
        if not container.streams.audio:
            container.close()
            return None
        stream = container.streams.audio[0]
        shift = start + float(offset_s)
        stop = None if stop_s is None else float(stop_s) - float(offset_s)
        if stream.codec_context.codec.canonical_name in MP4_AUDIO_COPY:
            out_stream = out.add_stream_from_template(stream)
            return _AudioCarrier(src, container, stream, out_stream, shift, stop)
        return _AacCarrier(src, container, stream, out, shift, stop)

    def _packets(self) -> Iterator[tuple[float, Any]]:
        """(time, packet) ready to mux, in order."""
        shift_ticks = int(round(self._shift / self._tb))
        for packet in self._demux():
            if packet.pts is None or packet.size == 0:
                continue
            t0 = float(packet.pts * self._tb) - self._shift
            t1 = t0 + float((packet.duration or 0) * self._tb)
            if t1 <= 1e-9 and packet.duration:
                continue  # ends before the output starts
            if self._stop is not None and t0 >= self._stop - 1e-9:
                break
            packet.pts -= shift_ticks
            if packet.dts is not None:
                packet.dts -= shift_ticks
            packet.stream = self._out_stream
            yield t0, packet

    def _demux(self) -> Iterator[Any]:
        try:
            yield from self._in.demux(self._stream)
        except (av.FFmpegError, OSError) as e:
            raise _read_error(self.src, f"its audio stream is damaged ({short_reason(e)})") from None

    def pump(self, until: float | None) -> None:
        """Mux the audio that starts before ``until`` seconds (None: all of it)."""
        while not self._done:
            if self._held is None:
                self._held = next(self._items, None)
                if self._held is None:
                    self._done = True
                    break
            t, item = self._held
            if until is not None and t > until:
                break
            self._mux(item)
            self._held = None

    def _mux(self, packet: Any) -> None:
        self._out_stream.container.mux(packet)

    def finish(self) -> None:
        self.pump(None)

    def close(self) -> None:
        try:
            self._in.close()
        except (av.FFmpegError, OSError):
            pass


class _AacCarrier(_AudioCarrier):
    """Decodes the source's audio, cuts it to the output's span and encodes it as AAC."""

    def __init__(self, src: Path, container: Any, stream: Any, out: Any, shift: float, stop: float | None):
        rate = stream.codec_context.sample_rate or 48000
        rate = rate if rate in AAC_RATES else 48000
        channels = stream.codec_context.channels or 2
        layout = "mono" if channels == 1 else "stereo"  # more channels are mixed down to two
        out_stream = out.add_stream("aac", rate=rate)
        out_stream.layout = layout
        out_stream.bit_rate = 96000 * (1 if channels == 1 else 2)
        out_stream.time_base = Fraction(1, rate)
        self._rate = rate
        self._resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate, frame_size=1024)
        self._next_pts: int | None = None
        super().__init__(src, container, stream, out_stream, shift, stop)

    def _packets(self) -> Iterator[tuple[float, Any]]:
        for t, frame in self._frames():
            if self._next_pts is None:  # the first kept sample keeps its place; the rest follow it gaplessly
                self._next_pts = max(0, int(round(t * self._rate)))
            for out_frame in self._resampler.resample(frame):
                yield from self._encoded(out_frame)
        for out_frame in self._resampler.resample(None):
            yield from self._encoded(out_frame)
        yield from self._encoded(None)

    def _encoded(self, frame: Any) -> Iterator[tuple[float, Any]]:
        """AAC packets (with their time) for one resampled frame; None flushes the encoder."""
        if frame is not None:
            assert self._next_pts is not None
            frame.pts = self._next_pts
            frame.time_base = Fraction(1, self._rate)
            self._next_pts += frame.samples
        for packet in self._out_stream.encode(frame):
            yield (float(packet.pts * Fraction(1, self._rate)) if packet.pts is not None else 0.0), packet

    def _frames(self) -> Iterator[tuple[float, Any]]:
        """(time of the first kept sample, decoded frame trimmed to the output's span)."""
        for packet in self._demux():
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as e:
                log.warning("%s: skipping a damaged audio packet (%s)", self.src, short_reason(e))
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                sr = frame.sample_rate
                t0 = float(frame.pts * Fraction(frame.time_base)) - self._shift
                a = max(0, math.ceil(-t0 * sr - 1e-6))
                b = frame.samples
                if self._stop is not None:
                    b = min(b, int(math.floor((self._stop - t0) * sr + 1e-6)))
                if a >= b:
                    if self._stop is not None and t0 >= self._stop:
                        return
                    continue
                yield t0 + a / sr, (frame if (a, b) == (0, frame.samples) else _cut(frame, a, b))


def _cut(frame: Any, a: int, b: int) -> Any:
    """Samples ``a..b-1`` of an audio frame."""
    arr = frame.to_ndarray()  # planar: [channels, samples]; packed: [1, samples * channels]
    ch = 1 if frame.format.is_planar else len(frame.layout.channels)
    out = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(arr[:, a * ch : b * ch]), format=frame.format.name, layout=frame.layout.name
    )
    out.sample_rate = frame.sample_rate
    return out
