"""The window's video mode, offscreen, on a 96-frame 640x360 procedural clip with audio (demo model):
a dropped clip is tracked and inverted and its first edited frame shown; seeks show the raw frame at
once and the edited one soon after; keyframes and undo; an export keeps frames, rate and audio and a
keyframed smile raises the predictor's smile score; a session reopens with its edits and resumes the
project; a 20 ms heartbeat on the UI thread never waits 100 ms while the stages and export run.

One window serves the module (tests run in order)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import studio_window
from PySide6.QtCore import QTimer

from engine.video.io import VideoWriter, probe_video, read_frames

TIMEOUT = 120_000
N = 96
FPS = Fraction(25)


def ffmpeg(*args: str | os.PathLike) -> None:
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(cmd, check=True, capture_output=True)


def make_clip(path: Path, n: int = N) -> Path:
    """A procedural face moving in a 640x360 frame, with a 440 Hz tone as its audio."""
    from factory.synthetic import render_clip, sample_factors

    clip, _, _ = render_clip(sample_factors(1, seed=7), n_frames=n, size=256, seed=2, motion=0.6)
    plain = path.with_name(path.stem + "_plain.mp4")
    with VideoWriter(plain, 640, 360, FPS, crf=14) as w:
        for f in clip:
            frame = np.full((360, 640, 3), 90, np.uint8)
            frame[52:308, 192:448] = f
            w.write(frame)
    dur = n / FPS
    ffmpeg("-i", plain, "-f", "lavfi", "-t", f"{float(dur):.6f}", "-i", "sine=frequency=440:sample_rate=48000",
           "-c:v", "copy", "-c:a", "aac", "-map", "0:v", "-map", "1:a", path)  # fmt: skip
    plain.unlink()
    return path


class Heartbeat:
    """A 20 ms timer on the UI thread; ``worst`` is the longest wait between beats (seconds)."""

    def __init__(self) -> None:
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def __enter__(self) -> Heartbeat:
        self.t0 = time.perf_counter()
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.stop()
        self.timer.timeout.disconnect()  # no reference cycle: the garbage collector may run on any thread
        self.gaps = np.diff([self.t0, *self.ticks])
        self.worst = float(self.gaps.max()) if len(self.gaps) else 0.0


@pytest.fixture(scope="module")
def qtbot_module(qapp, request):
    from pytestqt.qtbot import QtBot

    return QtBot(request)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "walk.mp4")


@pytest.fixture(scope="module")
def win(qapp, tmp_path_factory):
    with studio_window(qapp, tmp_path_factory.mktemp("cache"), (1280, 860)) as w:
        yield w


@pytest.fixture(scope="module")
def opened(win, clip, qtbot_module):
    """The clip dropped on the window: (seconds to the first edited frame, heartbeat)."""
    from test_app_window import drop_file

    qtbot = qtbot_module
    qtbot.waitUntil(lambda: win.bundle is not None and not win.busy, timeout=TIMEOUT)
    shown: list[int] = []
    finished: list[str] = []
    early: list[bool] = []  # frames shown while the inversion was still running
    win.frameShown.connect(shown.append)
    win.frameShown.connect(lambda i: early.append("invert" not in finished))
    win.stageFinished.connect(finished.append)
    with Heartbeat() as beat:
        t0 = time.perf_counter()
        with qtbot.waitSignal(win.videoReady, timeout=TIMEOUT) as ready:
            drop_file(win, clip)
        qtbot.waitUntil(lambda: "invert" in finished and bool(shown), timeout=TIMEOUT)
        first = time.perf_counter() - t0
    print(f"\nfirst edited frame after {first:.1f} s; heartbeat worst gap {beat.worst * 1000:.0f} ms")
    assert ready.args == [N]
    return first, beat, finished, any(early)


def test_open_tracks_inverts_and_shows_an_edited_frame(win, opened):
    first, beat, finished, early = opened
    assert finished[:2] == ["track", "invert"]
    assert early, "the playhead's frame should be previewed as soon as its batch is inverted"
    assert win.video.active and win.video.clip is not None and win.video.clip.frames == N
    assert win.video.dock is not None and win.video.dock.isVisible()
    assert win.video.stats is not None and win.video.stats.found.all()
    assert np.isfinite(win.video.stats.quality).all()
    assert win.canvas.before is not None and win.canvas.after is not None
    assert beat.worst < 0.1, f"the UI thread stalled for {beat.worst * 1000:.0f} ms while tracking and inverting"


def test_seeks_show_the_raw_frame_at_once_and_the_edited_frame_soon(win, opened, qtbot_module):
    qtbot = qtbot_module
    win.set_edit("smile", 1.0)
    raw_ms, edited_ms = [], []
    for frame in np.random.default_rng(3).permutation(N)[:30]:
        frame = int(frame)
        before = win.canvas.before
        with qtbot.waitSignal(win.frameShown, timeout=10_000, check_params_cb=lambda i, f=frame: i == f):
            t0 = time.perf_counter()
            win.seek(frame)
            raw_ms.append((time.perf_counter() - t0) * 1000)
            assert win.canvas.before is not before
        edited_ms.append((time.perf_counter() - t0) * 1000)
    print(f"\nseek: raw median {np.median(raw_ms):.1f} ms, edited median {np.median(edited_ms):.0f} ms "
          f"(max {max(edited_ms):.0f} ms)")  # fmt: skip
    # The latency targets (raw < 50 ms, edited < 150 ms, median) are measured, not asserted: timing
    # belongs to benchmarks; run with -s to see the numbers printed above.
    assert len(edited_ms) == 30 and all(np.isfinite(edited_ms))
    win.set_edit("smile", 0.0)


def test_keyframes_markers_interpolation_and_undo(win, opened):
    v = win.video
    win.set_keyframing(True)
    hi = next(d.hi for d in win.bundle.directions if d.name == "smile")
    win.seek(0)
    win.set_edit("smile", 0.0)
    win.seek(N - 1)
    win.set_edit("smile", hi)
    assert v.panel.scrubber.keys == (0, N - 1)
    values = v.frame_values("smile")
    assert values[0] == 0 and values[-1] == pytest.approx(hi) and 0 < values[N // 2] < hi
    win.seek(N // 2)
    assert win.directions_panel.sliders["smile"].value() == pytest.approx(values[N // 2], abs=0.05)
    win.undo()
    assert v.panel.scrubber.keys == (0,)
    win.redo()
    assert v.panel.scrubber.keys == (0, N - 1)
    win.seek(N - 1)
    v.panel.remove_key.click()
    assert v.panel.scrubber.keys == (0,)
    win.undo()
    assert v.panel.scrubber.keys == (0, N - 1)
    win.set_keyframing(False)


def test_rotation_knob_and_stylespace_channels_on_a_clip(win, opened, qtbot_module):
    """The transform knobs and StyleSpace channels edit the clip: constant without keyframing (0 removes
    them), keyed at the playhead with it, and only the knob that moved gets a key."""
    qtbot = qtbot_module
    v = win.video
    layer = next(name for name, n in win.bundle.style_layers.items() if n > 7)

    def knob_edits() -> set[tuple[str, str]]:
        return {(e.kind, e.target) for e in v.state.edits if e.kind in ("transform", "channel")}

    before = list(v.state.edits)
    win.seek(5)
    win._transform_edited(12.0, 0.0, 0.0, True)  # the rotation knob
    win._channels_edited({(layer, 7): 3.0}, True)  # a StyleSpace channel
    at = v.state.edits.at(30)
    assert at.angle_deg == 12.0 and at.tx == 0.0 and at.channels == {(layer, 7): 3.0}
    assert knob_edits() == {("transform", "angle"), ("channel", f"{layer}:7")}
    shown: list[int] = []
    win.frameShown.connect(shown.append)
    qtbot.waitUntil(lambda: bool(shown), timeout=10_000)  # the edited frame renders
    win.set_keyframing(True)
    win.seek(20)
    win._transform_edited(12.0, 0.1, 0.0, True)  # only tx moved: only tx is keyed
    assert v.state.edits.get("transform", "tx").frames == (20,)
    assert v.state.edits.get("transform", "angle").frames == (0,)  # still the constant edit
    win.set_keyframing(False)
    win._transform_edited(0.0, 0.0, 0.0, True)
    win._channels_edited({(layer, 7): 0.0}, True)
    assert knob_edits() == set()
    for _ in range(5):
        win.undo()
    assert list(v.state.edits) == before


def test_a_render_from_before_the_paste_switch_is_not_shown(win, opened, qtbot_module):
    """A frame rendered with paste-back on that arrives after paste-back was switched off (it was in
    flight) is dropped: the canvas never shows the framing the checkbox no longer says."""
    qtbot = qtbot_module
    v = win.video
    results = []
    win.host.preview.rendered.connect(results.append)
    try:
        with qtbot.waitSignal(win.frameShown, timeout=10_000):
            v.request_frame()
        old = results[-1]
        assert old.state.paste is True and win.canvas.aspect == pytest.approx(640 / 360)
        shown: list[int] = []
        win.frameShown.connect(shown.append)
        v.panel.paste.setChecked(False)
        qtbot.waitUntil(lambda: win.canvas.aspect == 1.0, timeout=10_000)
        count = len(shown)
        win._on_rendered(replace(old, request_id=v._shown + 1))  # the stale one, arriving late
        assert win.canvas.aspect == 1.0 and len(shown) == count
    finally:
        win.host.preview.rendered.disconnect(results.append)
        win.undo()
    qtbot.waitUntil(lambda: win.canvas.aspect == pytest.approx(640 / 360), timeout=10_000)
    assert v.state.options.paste is True


def test_play_step_and_paste_back_off(win, opened, qtbot_module):
    qtbot = qtbot_module
    v = win.video
    shown: list[int] = []
    win.frameShown.connect(shown.append)
    win.seek(0)
    with Heartbeat() as beat:
        v.panel.play.click()  # plays at 25 fps; renders that fall behind are skipped
        qtbot.wait(600)
        v.panel.play.click()
    assert not v.timer.isActive() and 8 <= v.frame <= 20, v.frame
    assert len(set(shown)) >= 3 and beat.worst < 0.1
    win.act_step_on.trigger()  # the Right key
    win.act_step_on.trigger()
    win.act_step_back.trigger()
    frame = v.frame
    with qtbot.waitSignal(win.frameShown, timeout=10_000):
        v.panel.paste.setChecked(False)  # the face window, before and after
    assert win.canvas.aspect == 1.0 and win.canvas.before.width() == win.canvas.before.height()
    assert v.state.options.paste is False and v.frame == frame
    win.undo()
    assert v.state.options.paste is True and v.panel.paste.isChecked()
    qtbot.waitUntil(lambda: win.canvas.aspect == pytest.approx(640 / 360), timeout=10_000)


def test_a_cancelled_export_leaves_no_file(win, opened, qtbot_module, tmp_path):
    qtbot = qtbot_module
    out = tmp_path / "cancelled.mp4"
    button = win.video.panel.stage_buttons["export"]
    # (The window's widgets, not the job lane's signals: those are emitted on the job thread.)
    win.export_video(out, kind="side_by_side")
    qtbot.waitUntil(lambda: "%" in button.text(), timeout=TIMEOUT)
    win.cancel_jobs()
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert "cancelled" in win.statusBar().currentMessage()
    assert list(tmp_path.iterdir()) == []
    assert button.text() == "Export\u2026" and button.isEnabled()
    assert win.video.panel.stage_buttons["export"].isEnabled()


def test_export_keeps_frames_rate_audio_and_the_keyframed_smile_shows(win, opened, qtbot_module, tmp_path):
    import torch

    from engine.imageio import from_uint8
    from engine.model_store import resolve_model
    from engine.models import load_bundle
    from engine.quads import warp_quad

    qtbot = qtbot_module
    out = tmp_path / "edited.mp4"
    with Heartbeat() as beat:
        with qtbot.waitSignal(win.exported, timeout=TIMEOUT):
            win.export_video(out)
    print(f"\nexport: heartbeat worst gap {beat.worst * 1000:.0f} ms over {beat.ticks[-1] - beat.t0:.1f} s")
    assert beat.worst < 0.1
    src, got = probe_video(win.video.clip.path), probe_video(out)
    assert got.frame_count == src.frame_count == N and got.fps == src.fps == FPS
    assert got.has_audio and abs(got.audio_duration_s - src.audio_duration_s) <= 1 / float(FPS)
    assert [p.name for p in tmp_path.iterdir()] == ["edited.mp4"]  # nothing half-written beside it
    track = win.host.clip.stage.track
    frames = {f.index: f.image for f in read_frames(out) if f.index < 4 or f.index >= N - 4}
    bundle = load_bundle(resolve_model("demo"))
    col = bundle.predictor.attributes.index("smile")

    def smile(indices: list[int]) -> float:
        x = torch.cat([from_uint8(warp_quad(frames[i], track.frames[i].quad, 64), "cpu") for i in indices])
        return float(bundle.predictor.predict(x)[:, col].mean())

    first, last = smile([0, 1, 2, 3]), smile([N - 4, N - 3, N - 2, N - 1])
    print(f"smile score: first frames {first:.3f}, last frames {last:.3f}")
    assert last > first


@pytest.mark.filterwarnings("ignore::engine.losses.LPIPSUnavailableWarning")
def test_tune_finishes_and_is_used(win, opened, qtbot_module):
    qtbot = qtbot_module
    win.video.panel.tune_steps.setValue(3)
    with qtbot.waitSignal(win.stageFinished, timeout=TIMEOUT, check_params_cb=lambda s: s == "tune"):
        win.video.panel.stage_buttons["tune"].click()
    assert win.host.clip.tuned
    assert win.video.panel.stage_buttons["tune"].text().startswith("\u2713")


def test_session_reopens_with_edits_and_resumes_the_project(win, opened, qtbot_module, tmp_path):
    qtbot = qtbot_module
    session = tmp_path / "clip.json"
    edits = win.video.state.edits
    win.seek(10)
    win.save_session(session)
    win.video.history.set(type(win.video.state)(), True)  # edits cleared: the session must bring them back
    t0 = time.perf_counter()
    with qtbot.waitSignal(win.stageFinished, timeout=TIMEOUT, check_params_cb=lambda s: s == "invert"):
        win.open_session(session)
    resumed = time.perf_counter() - t0
    print(f"\nsession reopened, stages resumed in {resumed:.2f} s")
    assert win.video.state.edits == edits and win.video.frame == 10
    assert resumed < 10, "track and invert should be taken from the project folder"
    assert win.host.clip.tuned, "the project's tuned generator is used again"


def test_smoothing_is_applied_and_undone(win, opened, qtbot_module):
    qtbot = qtbot_module
    before = np.array(win.host.clip.stage.smooth)
    with qtbot.waitSignal(win.stageFinished, timeout=TIMEOUT, check_params_cb=lambda s: s == "invert"):
        win.video.panel.smoothing.setCurrentIndex(4)  # Gaussian sigma 4
    assert not np.allclose(win.host.clip.stage.smooth, before)
    with qtbot.waitSignal(win.stageFinished, timeout=TIMEOUT, check_params_cb=lambda s: s == "invert"):
        win.undo()
    assert win.video.panel.smoothing.currentIndex() == 0
    np.testing.assert_allclose(win.host.clip.stage.smooth, before)


def test_dropping_the_project_folder_resumes_it(win, opened, qtbot_module):
    from test_app_window import drop_file

    qtbot = qtbot_module
    clip, work = win.video.clip.path, win.video.clip.work
    with qtbot.waitSignal(win.stageFinished, timeout=TIMEOUT, check_params_cb=lambda s: s == "invert"):
        drop_file(win, work)
    assert win.video.clip.path == clip and win.video.clip.work == work


def test_a_file_that_is_not_a_video_gives_one_message(win, opened, qtbot_module, tmp_path):
    qtbot = qtbot_module
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    before = len(win.dialogs)
    with qtbot.waitSignal(win.errorShown, timeout=TIMEOUT):
        win.open_video(bad)
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert len(win.dialogs) == before + 1, [d.title for d in win.dialogs[before:]]
    assert win.video.clip is None


def test_opening_a_photo_leaves_video_mode(win, opened, qtbot_module, tmp_path):
    from factory.synthetic import write_photo

    qtbot = qtbot_module
    photo = write_photo(tmp_path / "face.png", seed=3)
    with qtbot.waitSignal(win.resultShown, timeout=TIMEOUT):
        win.open_photo(photo)
    assert not win.video.active and not win.video.dock.isVisible()
    assert win.canvas.aspect == 1.0 and win.state.latent is not None
