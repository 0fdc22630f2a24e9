"""The window's video mode: a clip, its stages, its keyframed edits, the playhead and playback.

:class:`VideoMode` is owned by :class:`app.main_window.MainWindow`; the window forwards what its
panels, menus and keys do to it while a clip is open (``active``). The clip's engine side is
:class:`engine.video.session.ClipSession` (``host.clip``), driven through the job lane (open, track,
invert, tune, export) and the preview lane (edited frames, latest request wins). The canvas shows the
raw frame at the playhead at once (from the session's preview cache) and the edited frame when it
arrives. Edits are :class:`engine.video.edits.ClipEdits`: with keyframing on, a control sets its value
at the playhead; off, on the whole clip. Undo/redo covers edits and clip options.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import QApplication, QDockWidget

from app.canvas import to_qimage
from engine.jobs import Progress
from engine.video.edits import ClipEdit, ClipEdits
from engine.video.session import (
    ClipInfo,
    ClipOptions,
    ClipStats,
    FrameRequest,
    FrameResult,
    read_video_session,
    write_video_session,
)

if TYPE_CHECKING:
    from app.main_window import MainWindow
    from app.timeline import TimelinePanel
    from app.worker import RenderResult

_TRANSFORM_FIELDS = {"angle": "angle_deg", "tx": "tx", "ty": "ty"}


def preload_video() -> None:
    """Import what video mode needs before the window is on screen. Once PySide6 is loaded, its import
    hook reads the source of every module imported (``__feature__``), and imports made later, even on
    a worker thread, held Python's lock long enough to stall the window for 150-250 ms (pyqtgraph,
    scipy.ndimage, PyAV)."""
    import av  # noqa: F401
    import pyqtgraph  # noqa: F401
    import scipy.ndimage  # noqa: F401

    import engine.align  # noqa: F401
    import engine.face_mask  # noqa: F401
    import engine.video.io  # noqa: F401
    import engine.video.smooth  # noqa: F401
    import engine.video.track  # noqa: F401


@dataclass(frozen=True)
class ClipState:
    """One undo step of a clip: its edits and options."""

    edits: ClipEdits = ClipEdits(())
    options: ClipOptions = ClipOptions()


class _Undo:
    def __init__(self, state: ClipState) -> None:
        self.state = state
        self.undo: list[ClipState] = []
        self.redo: list[ClipState] = []

    def set(self, state: ClipState, record: bool) -> None:
        if record and state != self.state:
            self.undo.append(self.state)
            self.redo.clear()
        self.state = state

    def record_from(self, origin: ClipState) -> None:
        if origin != self.state:
            self.undo.append(origin)
            self.redo.clear()

    def step(self, back: bool) -> bool:
        src, dst = (self.undo, self.redo) if back else (self.redo, self.undo)
        if not src:
            return False
        dst.append(self.state)
        self.state = src.pop()
        return True


class VideoMode(QObject):
    """See the module docstring. ``frame``: the playhead; ``clip``: the open clip (None before)."""

    def __init__(self, win: MainWindow) -> None:
        super().__init__(win)
        self.win = win
        self.host = win.host
        self.active = False
        self.clip: ClipInfo | None = None
        self.stats: ClipStats | None = None
        self.frame = 0
        self.keyframing = False
        self.history = _Undo(ClipState())
        self.done: dict[str, bool] = {}
        self.dock: QDockWidget | None = None
        self.panel: TimelinePanel | None = None
        self._jobs: dict[str, int] = {}
        self._started: dict[int, float] = {}
        self._shown = 0  # the render id of the frame on the canvas
        self._shown_frame = -1
        self._drag_origin: ClipState | None = None
        self._restore: tuple[ClipState, int] | None = None
        self.timer = QTimer(self)
        self.timer.timeout.connect(self._tick)
        self.host.jobs.progress.connect(self._on_progress)
        self.host.jobs.idle.connect(self._on_idle)

    # -- the dock: built with the window, hidden until a clip is opened ----------------------------

    def _ensure_dock(self) -> None:
        """Build the Timeline dock (hidden). The window does it before it is shown: the plot alone takes
        100 ms, a stall if done while a clip opens."""
        if self.dock is not None:
            return
        from app.timeline import TimelinePanel

        panel = TimelinePanel()
        panel.seekRequested.connect(self.seek)
        panel.stepRequested.connect(self.step)
        panel.playToggled.connect(self.play)
        panel.stageRequested.connect(self._stage_clicked)
        panel.optionsChanged.connect(self.set_options)
        panel.keyframingToggled.connect(self._keyframing_toggled)
        panel.removeKeyRequested.connect(self.remove_key)
        dock = QDockWidget("Timeline", self.win)
        dock.setObjectName("timelineDock")
        dock.setWidget(panel)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.win.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.dock, self.panel = dock, panel
        self._reset_stages()
        panel.add_plot()
        dock.hide()

    @property
    def state(self) -> ClipState:
        return self.history.state

    # -- opening ------------------------------------------------------------------------------------

    def open(
        self, path: str | os.PathLike, work: str | None = None, restore: tuple[ClipState, int] | None = None
    ) -> int:
        """Open a clip (or a project folder): the Timeline opens, Track and Invert start."""
        self.play(False)
        self.host.cancel([j for j in self._jobs.values() if j in self.win._active])
        self.active = True
        self.win.enter_video_mode()
        self._restore = restore
        if restore is not None:
            self.history = _Undo(restore[0])  # its options (smoothing) shape the stages started here
        self.clip, self.stats, self.frame, self._shown_frame = None, None, 0, -1
        self.done = {}
        self._ensure_dock()
        assert self.dock is not None
        self._reset_stages()
        self.win.canvas.set_images(None, None)
        if not self.dock.isVisible():
            # Laid out and painted now, before the jobs start: the first paint of the whole window with
            # the dock is the longest the UI thread spends in one go, slower still sharing the CPU.
            self.dock.show()
            QApplication.sendPostedEvents()
            self.win.repaint()
        job = self._run("video", self.host.open_video(str(path), work), "Opening the video", self._on_opened)
        self._start_stages()
        return job

    def _start_stages(self) -> None:
        self._run("track", self.host.track_video(), "Tracking", self._on_tracked)
        self._run("invert", self.host.invert_video(self.state.options), "Inverting", self._on_inverted)

    def _run(self, name: str, job: int, text: str, on_done: Any) -> int:
        self._jobs[name] = job
        self._started[job] = time.perf_counter()
        if self.panel is not None and name in self.panel.stage_buttons:
            self.panel.set_stage(name, "running", "\u2026")
        return self.win._job(job, text, on_done)

    def _reset_stages(self) -> None:
        assert self.panel is not None
        for name in ("track", "invert", "tune", "export"):
            running = self._jobs.get(name) in self.win._active
            self.panel.set_stage(name, "running" if running else "off" if name in ("tune", "export") else "idle")

    def _on_opened(self, job: int, info: ClipInfo) -> None:
        if job != self._jobs.get("video"):
            return
        assert self.panel is not None and self.dock is not None
        self._reset_stages()
        self.clip = info
        saved = self.host.clip.saved_edits()
        if self._restore is not None:
            state, frame = self._restore
        else:
            state, frame = ClipState(saved or ClipEdits(()), self.state.options), 0
        self._restore = None
        self.history = _Undo(state)
        self.panel.set_clip(info.frames, info.fps, info.thumbs)
        self.win.canvas.set_aspect(info.width / info.height)
        self.panel.set_options(state.options)
        self.panel.set_keys(state.edits.key_frames())
        self.timer.setInterval(max(1, round(1000 / float(info.fps))))
        self.win.setWindowTitle(f"{Path(info.path).name} \u2014 Charm Studio")
        self.win.statusBar().showMessage(f"{Path(info.path).name}: {info.frames} frames at {float(info.fps):.3g} fps")
        self.seek(min(frame, info.frames - 1))
        self.sync_controls()
        self.win.videoReady.emit(info.frames)

    def _on_tracked(self, job: int, stats: ClipStats) -> None:
        if job != self._jobs.get("track"):
            return
        self._set_stats(stats)
        self._finish("track")

    def _on_inverted(self, job: int, stats: ClipStats) -> None:
        if job != self._jobs.get("invert"):
            return
        self._set_stats(stats)
        self._finish("invert")
        assert self.panel is not None
        self.panel.set_stage("tune", "idle")
        self.panel.set_stage("export", "idle")
        self.win._sync_actions()
        self.request_frame()

    def _finish(self, name: str) -> None:
        self.done[name] = True
        if self.panel is not None:
            self.panel.set_stage(name, "done")
        self.win.stageFinished.emit(name)

    def _set_stats(self, stats: ClipStats) -> None:
        self.stats = stats
        if self.panel is not None:
            self.panel.set_stats(stats.found, stats.quality, stats.motion, ~stats.found)

    def _on_idle(self, job: int) -> None:
        """A stage ended (finished, failed or cancelled): its button says so."""
        name = next((n for n, j in self._jobs.items() if j == job), None)
        if self.panel is None or name not in self.panel.stage_buttons:
            return
        if self.done.get(name):
            self.panel.set_stage(name, "done")
        else:
            ready = name in ("track", "invert") or bool(self.done.get("invert"))
            self.panel.set_stage(name, "idle" if ready else "off")

    def _on_progress(self, job: int, p: Progress) -> None:
        """Stage buttons and the status bar show progress and the time left; a frame being inverted
        becomes previewable as soon as its batch is written."""
        name = next((n for n, j in self._jobs.items() if j == job), None)
        if name is None or job not in self.win._active or p.total <= 0:
            return
        t0 = self._started.get(job, time.perf_counter())
        elapsed = time.perf_counter() - t0
        frac = p.done / p.total
        eta = f" \u2022 {elapsed * (1 - frac) / frac:.0f} s left" if 0.02 < frac < 1 else ""
        text = f"{100 * frac:.0f}%{eta}"
        if self.panel is not None and name in self.panel.stage_buttons:
            self.panel.set_stage(name, "running", text)
        self.win.progress.setFormat(f"{p.stage or name} %v/%m{eta}")
        if name == "invert" and self._shown_frame != self.frame and self.host.clip.frame_latent(self.frame) is not None:
            self.request_frame()

    # -- stage buttons ------------------------------------------------------------------------------

    def _stage_clicked(self, name: str) -> None:
        if self.clip is None:
            return
        if name == "track" or name == "invert":
            self.done.pop("invert", None)
            if name == "track":
                self.done.pop("track", None)
                self._run("track", self.host.track_video(), "Tracking", self._on_tracked)
            self._run("invert", self.host.invert_video(self.state.options), "Inverting", self._on_inverted)
        elif name == "tune" and self.done.get("invert"):
            assert self.panel is not None
            self.tune(self.panel.tune_steps.value())
        elif name == "export" and self.done.get("invert"):
            self.win._export_dialog()

    def tune(self, steps: int) -> int:
        self.done.pop("tune", None)
        return self._run("tune", self.host.tune_video(steps), "Tuning (PTI)", self._on_tuned)

    def _on_tuned(self, job: int, used: bool) -> None:
        if job == self._jobs.get("tune"):
            self._finish("tune")
            self._shown_frame = -1
            self.request_frame()

    def export(
        self, path: str | os.PathLike, kind: str = "full", crf: int | None = None, keep_audio: bool = True
    ) -> int:
        self.done.pop("export", None)
        self.host.clip.save_edits(self.state.edits)
        job = self.host.export_video(
            str(path), self.state.edits, self.state.options, kind=kind, crf=crf, keep_audio=keep_audio
        )
        return self._run("export", job, "Exporting the video", self._on_exported)

    def _on_exported(self, job: int, path: Path) -> None:
        if job != self._jobs.get("export"):
            return
        self._finish("export")
        self.win.statusBar().showMessage(f"Exported {path}", 8000)
        self.win.exported.emit([path])

    # -- playhead and playback ----------------------------------------------------------------------

    def _aspect(self) -> float:
        return self.clip.width / self.clip.height if self.clip else 1.0

    def seek(self, frame: int) -> None:
        """Move the playhead: the raw frame is shown at once, the edited one when it is rendered."""
        if self.clip is None:
            return
        self.frame = int(max(0, min(self.clip.frames - 1, frame)))
        if self.panel is not None:
            self.panel.set_frame(self.frame)
        if not self.timer.isActive() and self.state.options.paste:
            raw = self.host.clip.raw_frame(self.frame)
            self.win.canvas.aspect = self._aspect()
            self.win.canvas.before_caption = f"Original \u2014 frame {self.frame + 1}"
            self.win.canvas.set_images(to_qimage(raw), self.win.canvas.after)
            self.win.canvas.repaint()
        if self.keyframing or any(not e.is_constant for e in self.state.edits):
            self.sync_controls()
        self.request_frame()

    def step(self, delta: int) -> None:
        self.play(False)
        self.seek(self.frame + delta)

    def play(self, on: bool) -> None:
        if self.clip is None:
            on = False
        if on and not self.timer.isActive():
            if self.frame >= (self.clip.frames - 1 if self.clip else 0):
                self.frame = 0
            self.timer.start()
        elif not on:
            self.timer.stop()
        if self.panel is not None:
            self.panel.set_playing(on)

    def _tick(self) -> None:
        # Never waits: the preview lane skips renders that fall behind, the canvas shows the newest.
        if self.clip is None or self.frame >= self.clip.frames - 1:
            self.play(False)
            return
        self.seek(self.frame + 1)

    def request_frame(self) -> int | None:
        if self.clip is None or not self.active:
            return None
        s = self.state
        return self.host.render_frame(FrameRequest(self.frame, s.edits, s.options.paste, self.host.clip.generation))

    def on_rendered(self, res: RenderResult) -> None:
        if res.request_id < self._shown:
            return
        out: FrameResult | None = res.image  # type: ignore[assignment]
        playing = self.timer.isActive()
        if out is None or out.clip != self.host.clip.generation:
            if out is None and not playing and res.state.index == self.frame:
                self.win.canvas.after_caption = "Edited (frame not inverted yet)"
                self.win.canvas.set_after(None)
            return
        if out.index != self.frame and not playing:
            return  # the playhead moved on: its own render is on the way
        if res.state.paste != self.state.options.paste and not playing:
            return  # rendered before paste-back was switched: the other framing's render is on the way
        self._shown = res.request_id
        self._shown_frame = out.index
        c = self.win.canvas
        c.after_caption = "Edited" if out.original is None else "Edited (face window)"
        if out.original is not None:  # no paste-back: the face window, before and after
            c.set_aspect(1.0)
            c.before_caption = f"Original window \u2014 frame {out.index + 1}"
            c.set_images(to_qimage(out.original), to_qimage(out.image))
        elif playing or abs(c.aspect - self._aspect()) > 1e-6:
            c.set_aspect(self._aspect())
            c.before_caption = f"Original \u2014 frame {out.index + 1}"
            c.set_images(to_qimage(self.host.clip.raw_frame(out.index)), to_qimage(out.image))
        else:
            c.set_after(to_qimage(out.image))
        c.repaint()
        self.win.last_latency = time.perf_counter() - res.sent_at
        self.win.render_label.setText(
            f"render {res.seconds * 1000:.0f} ms \u2022 update {self.win.last_latency * 1000:.0f} ms"
        )
        self.win.frameShown.emit(out.index)

    # -- edits --------------------------------------------------------------------------------------

    def _keyframing_toggled(self, on: bool) -> None:
        self.keyframing = on

    def set_keyframing(self, on: bool) -> None:
        if self.panel is not None:
            self.panel.keyframe.setChecked(on)
        self.keyframing = on

    def _edited(self, edits: ClipEdits, record: bool) -> None:
        if self._drag_origin is not None:
            record = False
        self.history.set(ClipState(edits, self.state.options), record)
        self._after_change()

    def _with(self, e: ClipEdits, kind: str, target: str, value: float) -> ClipEdits:
        """``e`` with one edit set: at the playhead with keyframing on, else on the whole clip (0
        removes it)."""
        if self.keyframing:
            return e.with_key(kind, target, self.frame, float(value))
        if value == 0:
            return e.remove(kind, target)
        return e.set(ClipEdit.constant(kind, target, float(value)))

    def edit(self, kind: str, target: str, value: float, record: bool = True) -> None:
        """Set an edit: at the playhead with keyframing on, else on the whole clip (0 removes it)."""
        self._edited(self._with(self.state.edits, kind, target, value), record)

    def edit_channels(self, values: dict, record: bool) -> None:
        e = self.state.edits
        for (layer, ch), v in values.items():
            e = self._with(e, "channel", f"{layer}:{int(ch)}", v)
        self._edited(e, record)

    def edit_transform(self, angle: float, tx: float, ty: float, record: bool) -> None:
        now = self.state.edits.at(self.frame)
        e = self.state.edits
        for target, v in {"angle": angle, "tx": tx, "ty": ty}.items():
            if abs(getattr(now, _TRANSFORM_FIELDS[target]) - v) > 1e-9:
                e = self._with(e, "transform", target, v)
        self._edited(e, record)

    def clear(self, kinds: tuple[str, ...]) -> None:
        e = self.state.edits
        for edit in list(e):
            if edit.kind in kinds:
                e = e.remove(edit.kind, edit.target)
        self._edited(e, True)

    def remove_key(self) -> None:
        """Remove every edit's key at the playhead."""
        e = self.state.edits
        for edit in list(e):
            if self.frame in edit.frames:
                e = e.without_key(edit.kind, edit.target, self.frame)
        self._edited(e, True)

    def set_options(self, options: ClipOptions) -> None:
        before = self.state.options
        self.history.set(ClipState(self.state.edits, options), True)
        self._after_change(before)

    def drag_started(self) -> None:
        self._drag_origin = self.state

    def drag_finished(self) -> None:
        origin, self._drag_origin = self._drag_origin, None
        if origin is not None:
            self.history.record_from(origin)
        self.win._sync_actions()

    def undo(self) -> None:
        before = self.state.options
        if self.history.step(back=True):
            self._after_change(before)

    def redo(self) -> None:
        before = self.state.options
        if self.history.step(back=False):
            self._after_change(before)

    def _after_change(self, options_before: ClipOptions | None = None) -> None:
        options = self.state.options
        if options_before is not None and options.smoothing != options_before.smoothing and self.done.get("invert"):
            self._run("invert", self.host.smooth_video(options), "Smoothing", self._on_inverted)
        if self.panel is not None:
            self.panel.set_keys(self.state.edits.key_frames())
            self.panel.set_options(self.state.options)
        self.sync_controls()
        self.request_frame()

    def sync_controls(self) -> None:
        """The edit panels show the values at the playhead."""
        w = self.win
        e = self.state.edits.at(self.frame)
        w.directions_panel.set_values(dict(e.directions))
        w.style_panel.set_values(dict(e.channels))
        w.transform_panel.set_values(e.angle_deg, e.tx, e.ty, "photo")
        w.act_undo.setEnabled(bool(self.history.undo))
        w.act_redo.setEnabled(bool(self.history.redo))

    # -- sessions -----------------------------------------------------------------------------------

    def save_session(self, path: str | os.PathLike) -> Path:
        assert self.clip is not None
        self.host.clip.save_edits(self.state.edits)
        spec = self.win.bundle.spec if self.win.bundle else "demo"
        return write_video_session(
            path, self.clip.path, self.clip.work, spec, self.state.edits, self.state.options, self.frame
        )

    def open_session(self, path: str | os.PathLike) -> int:
        video, work, model, edits, options, frame = read_video_session(path)
        if self.win.bundle is None or self.win.bundle.spec != model:
            self.win.load_model(model)
        return self.open(video, work if Path(work).is_dir() else None, (ClipState(edits, options), frame))

    def model_changed(self) -> None:
        """Another model: the clip is inverted again with it (tracking is kept)."""
        if self.clip is None:
            return
        self.done.pop("invert", None)
        self._start_stages()

    def close(self) -> None:
        """Leave video mode (a photo is opened)."""
        if not self.active:
            return
        self.play(False)
        if self.clip is not None:
            self.host.clip.save_edits(self.state.edits)
        self.host.cancel([j for j in self._jobs.values() if j in self.win._active])
        self.active = False
        self.clip = None
        self.win.canvas.set_aspect(1.0)
        self.win.act_step_back.setEnabled(False)
        self.win.act_step_on.setEnabled(False)
        if self.dock is not None:
            self.dock.hide()
        self.win.setWindowTitle("Charm Studio")

    def frame_values(self, name: str) -> np.ndarray:
        """A direction's value on every frame (for tests and tools)."""
        e = self.state.edits.get("direction", name)
        n = self.clip.frames if self.clip else 0
        return e.values(n) if e is not None else np.zeros(n)
