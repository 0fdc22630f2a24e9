"""The studio's main window: the edit history and what the window does with the engine's results.

The window holds the edit history (:class:`engine.state.History` of :class:`engine.state.EditState`)
and the images it shows; everything that touches a model runs on the engine's threads
(:mod:`app.worker`). Each user action makes a new state, records it for undo, syncs the controls and
asks for a render; renders come back as signals (latest request wins). Long jobs are submitted with a
handler for their result; progress, failures and cancels arrive through one set of signals.
Configuration comes from the environment (:mod:`app.settings`).

Videos (File ▸ Open video, or a dropped mp4/mov/webm/mkv) switch the window to video mode
(:mod:`app.video_mode`): the canvas shows the frame at the playhead, the Timeline dock opens, and the
edit panels edit the clip (the whole clip, or keyframes at the playhead).

Models are named as everywhere else (:mod:`engine.model_store`): 'demo', 'random', an installed
model's name, a kit or official file, a bundle folder or a model file. The model manager
(:mod:`app.model_manager`, Models ▸ Manage… or the picker's "…") downloads and adds them on the
models lane while editing goes on; a model that is not downloaded yet is offered there.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QMessageBox,
)

from app.canvas import to_qimage
from app.dialogs import AboutDialog, ExportDialog, ExportVideoDialog, error_box
from app.model_manager import ModelManagerDialog
from app.settings import (
    APP_NAME,
    DEMO_MISSING_NOTICE,
    app_settings,
    default_cache_dir,
    default_device,
    default_model,
    default_threads,
    remember_model,
    remembered_model,
    threads_from_env,
)
from app.video_mode import VideoMode, preload_video
from app.window_layout import WindowLayout
from app.worker import EngineHost, Failure, RenderResult
from engine.export import ExportOptions
from engine.jobs import Progress
from engine.photo import PhotoFace
from engine.state import EditState, History
from engine.studio import RANDOM_SPEC, BundleInfo
from engine.video.session import VIDEO_SUFFIXES, FrameRequest, is_video_session, project_input

__all__ = ["APP_NAME", "DEMO_MISSING_NOTICE", "MainWindow"]

RENDER_PROGRESS_AFTER_S = 0.5  # a render taking longer than this shows its layer progress in the status bar
MODEL_FILE_SUFFIXES = (".pkl", ".pt", ".safetensors")  # dropped onto the window: loaded as a model


class MainWindow(WindowLayout):
    """Charm Studio's window. Signals for tests and tools: ``resultShown(render_id)`` after a render
    is displayed, ``modelReady(BundleInfo)``, ``photoReady(PhotoFace)`` once a face is chosen,
    ``inversionFinished()``, ``errorShown(title, message)``, ``exported(list of paths)``,
    ``sessionSaved(path)``, ``sessionOpened()``, ``jobsIdle()`` when no long job is left,
    ``photoMissing(path)`` when the edit's photo file is not there (a moved session photo).
    :meth:`open_model_manager` opens the model manager; ``dialog_hook`` sees every dialog opened.

    Video mode (:mod:`app.video_mode`): :meth:`open_video`, :meth:`seek`, :meth:`set_edit`,
    :meth:`export_video`; ``videoReady(frame count)`` once a clip is open, ``stageFinished(name)``
    ('track', 'invert', 'tune', 'export'), ``frameShown(index)`` when the edited frame at that index is
    on the canvas."""

    resultShown = Signal(int)
    modelReady = Signal(object)
    photoReady = Signal(object)
    facesFound = Signal(int)
    inversionFinished = Signal()
    errorShown = Signal(str, str)
    exported = Signal(object)
    sessionSaved = Signal(str)
    sessionOpened = Signal()
    jobsIdle = Signal()
    photoMissing = Signal(str)
    videoReady = Signal(int)
    stageFinished = Signal(str)
    frameShown = Signal(int)

    def __init__(
        self,
        model: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str | None = None,
        threads: int | None = None,
        remember: bool = False,
    ):
        """remember: start on the model used last and remember the one loaded (:func:`app.settings.app_settings`);
        without it (tests, tools) nothing is read or written."""
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setObjectName("mainWindow")
        self.resize(1280, 800)
        self.setAcceptDrops(True)
        self.dialog_hook: Callable[[QDialog], None] | None = None  # called with every dialog opened
        self.bundle: BundleInfo | None = None
        self.photo: PhotoFace | None = None
        self.history = History(EditState(model_id=model or ""))
        self.last_render: RenderResult | None = None
        self.last_latency: float | None = None
        self._pending_choice: PhotoFace | None = None
        self._photo_job = self._invert_job = self._refine_job = self._model_job = self._session_job = 0
        self._locate_job = 0
        self._manager: ModelManagerDialog | None = None
        self._demo_notice_dismissed = False
        self.settings = app_settings() if remember else None
        self._refine_steps = 0
        self._session_path = ""
        self._active: dict[int, str] = {}  # long jobs running or queued: job id -> what it does
        self._handlers: dict[int, Callable[[int, Any], None]] = {}  # job id -> what to do with its result
        self._invert_record = False
        self._shown_render = 0
        self._render_asked_at = 0.0  # perf_counter() of the newest render request
        self._render_status = ""  # the render progress text shown in the status bar ("" when none)
        self._drag_origin: EditState | None = None
        self._space_held = False
        self._model_notice: str | None = None
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()

        threads = threads or threads_from_env() or default_threads()
        self.host = EngineHost(self.cache_dir, device=device or default_device(), threads=threads, parent=self)
        self._build_ui()
        self._wire_panels()
        self._connect_worker()
        self.video = VideoMode(self)
        preload_video()
        self.video._ensure_dock()
        default_spec, default_notice = default_model()
        spec, notice = (model, None) if model else (remembered_model(self.settings), None)
        if not spec:
            spec, notice = default_spec, default_notice
        self._model_notice = notice
        # Models to fall back on when the first one cannot be loaded: the default, then random weights.
        self._fallbacks = [s for s in dict.fromkeys((default_spec, RANDOM_SPEC)) if s != spec]
        self._refresh_model_choices(spec)
        self.load_model(spec)
        QApplication.instance().installEventFilter(self)
        self._sync_controls()

    def _wire_panels(self) -> None:
        p = self.directions_panel
        p.directionEdited.connect(self._direction_edited)
        p.reset_all.clicked.connect(lambda: self._reset(("direction",), directions={}))
        s = self.style_panel
        s.channelsEdited.connect(self._channels_edited)
        s.clearRequested.connect(lambda: self._reset(("channel",), channels={}))
        t = self.transform_panel
        t.transformEdited.connect(self._transform_edited)
        t.resetRequested.connect(lambda: self._reset(("transform",), angle_deg=0.0, tx=0.0, ty=0.0))
        t.viewChosen.connect(self.set_view)
        for panel in (p, s, t):
            panel.dragStarted.connect(self._drag_started)
            panel.dragFinished.connect(self._drag_finished)
        self.model_panel.modelChosen.connect(self.load_model)
        self.model_panel.browseRequested.connect(self.open_model_manager)
        self.demo_notice_button.clicked.connect(self.open_model_manager)
        self.demo_notice_close.clicked.connect(self._dismiss_demo_notice)
        self.models_activity.clicked.connect(self.open_model_manager)
        self.photoReady.connect(self._photo_shown)
        self.inversion_panel.reinvertRequested.connect(lambda: self._start_inversion(record=True))
        self.inversion_panel.refineRequested.connect(self.refine)
        self.picker.faceChosen.connect(self.choose_face)

    def _connect_worker(self) -> None:
        jobs, preview = self.host.jobs, self.host.preview
        jobs.progress.connect(self._on_progress)
        jobs.finished.connect(self._on_finished)
        jobs.failed.connect(self._on_failed)
        jobs.cancelled.connect(self._on_cancelled)
        jobs.idle.connect(self._on_idle)
        preview.rendered.connect(self._on_rendered)
        preview.progress.connect(self._on_render_progress)
        preview.failed.connect(self._on_failed)

    # ------------------------------------------------------------------------------------------
    # State

    @property
    def state(self) -> EditState:
        return self.history.state

    @property
    def busy(self) -> bool:
        """True while a long job (model, photo, inversion, PTI, export, session) is running or queued."""
        return bool(self._active)

    def set_state(self, new: EditState, record: bool = True) -> None:
        """Make ``new`` the current state (recorded for undo unless a drag is in progress)."""
        if self._drag_origin is not None:
            record = False
        view_changed = new.view != self.state.view
        self.history.set(new, record=record)
        if view_changed:
            self._show_before()
        self._sync_controls()
        self.request_render()

    def _direction_edited(self, name: str, value: float, record: bool) -> None:
        if self.video.active:
            self.video.edit("direction", name, value, record)
        else:
            self.set_state(self.state.with_direction(name, value), record)

    def _transform_edited(self, angle: float, tx: float, ty: float, record: bool) -> None:
        if self.video.active:
            self.video.edit_transform(angle, tx, ty, record)
        else:
            self.set_state(self.state.replace(angle_deg=angle, tx=tx, ty=ty), record)

    def _reset(self, kinds: tuple[str, ...], **fields: Any) -> None:
        if self.video.active:
            self.video.clear(kinds)
        else:
            self.set_state(self.state.replace(**fields), True)

    def reset_edits(self) -> None:
        if self.video.active:
            self.video.clear(("direction", "channel", "transform"))
        else:
            self.set_state(self.state.reset_edits(), True)

    def _channels_edited(self, values: dict, record: bool) -> None:
        if self.video.active:
            self.video.edit_channels(values, record)
            return
        s = self.state
        for (layer, ch), v in values.items():
            s = s.with_channel(layer, ch, v)
        self.set_state(s, record)

    def _drag_started(self) -> None:
        if self.video.active:
            self.video.drag_started()
            return
        self._drag_origin = self.state

    def _drag_finished(self) -> None:
        if self.video.active:
            self.video.drag_finished()
            return
        origin, self._drag_origin = self._drag_origin, None
        if origin is not None:
            self.history.record_from(origin)
        self._sync_actions()

    def undo(self) -> None:
        if self.video.active:
            self.video.undo()
        elif self.history.undo():
            self._after_history()

    def redo(self) -> None:
        if self.video.active:
            self.video.redo()
        elif self.history.redo():
            self._after_history()

    def _after_history(self) -> None:
        self._show_before()
        self._sync_controls()
        self.request_render()

    def set_view(self, view: str) -> None:
        if self.video.active:
            return  # a clip is always edited in its frames' framing
        self.set_state(self.state.replace(view=view), True)

    def _sync_actions(self) -> None:
        if self.video.active:
            inverted = bool(self.video.done.get("invert"))
            self.act_export.setEnabled(inverted)
            self.act_save_session.setEnabled(self.video.clip is not None)
            self.act_faces.setEnabled(False)
            self.act_undo.setEnabled(bool(self.video.history.undo))
            self.act_redo.setEnabled(bool(self.video.history.redo))
            return
        self.act_undo.setEnabled(self.history.can_undo)
        self.act_redo.setEnabled(self.history.can_redo)
        has_result = self.state.latent is not None and self.bundle is not None
        self.act_export.setEnabled(has_result)
        self.act_save_session.setEnabled(has_result)
        self.act_faces.setEnabled(self.photo is not None and len(self.photo.boxes) > 1)

    def _sync_controls(self) -> None:
        if self.video.active:
            self.video.sync_controls()
            self._sync_actions()
            return
        s = self.state
        self.directions_panel.set_values(dict(s.directions))
        self.style_panel.set_values(dict(s.channels))
        self.transform_panel.set_values(s.angle_deg, s.tx, s.ty, s.view)
        self._sync_actions()

    # ------------------------------------------------------------------------------------------
    # Rendering

    def request_render(self) -> int | None:
        """Ask the worker for the current state's render; returns the request id (None: nothing to render).
        The canvas keeps the previous image until the new one arrives."""
        if self.video.active:
            return self.video.request_frame()
        if self.state.latent is None or self.bundle is None:
            return None
        self._render_asked_at = time.perf_counter()
        return self.host.render(self.state)

    def _on_render_progress(self, request_id: int, p: Progress) -> None:
        """Layer progress of a long render: shown in the status bar once the newest request has waited
        ``RENDER_PROGRESS_AFTER_S`` (quick renders never flash a message), unless a long job's text is there."""
        if request_id != self.host.preview.latest or request_id <= self._shown_render or self._active:
            return
        if p.total <= 0 or time.perf_counter() - self._render_asked_at < RENDER_PROGRESS_AFTER_S:
            return
        self._render_status = f"Rendering {p.done}/{p.total} layers"
        self.statusBar().showMessage(self._render_status)

    def _on_rendered(self, res: RenderResult) -> None:
        if isinstance(res.state, FrameRequest):
            self.video.on_rendered(res)
            return
        if self.video.active:
            return  # a photo render finished after a clip was opened
        if res.request_id < self._shown_render:
            return
        self._shown_render = res.request_id
        self.last_render = res
        self.canvas.set_after(to_qimage(res.image))
        self.canvas.repaint()
        if self._render_status and self.statusBar().currentMessage() == self._render_status:
            self.statusBar().clearMessage()
        self._render_status = ""
        self.last_latency = time.perf_counter() - res.sent_at
        self.render_label.setText(f"render {res.seconds * 1000:.0f} ms \u2022 update {self.last_latency * 1000:.0f} ms")
        self.resultShown.emit(res.request_id)

    def _show_before(self) -> None:
        p = self.photo
        if p is None:
            missing = self._missing_photo()
            self.canvas.before_caption = f"Original missing \u2014 {Path(missing).name}" if missing else "Original"
            self.canvas.set_images(None, self.canvas.after)
            return
        photo_view = self.state.view == "photo"
        self.canvas.before_caption = f"Original \u2014 {Path(p.path).name}"
        self.canvas.after_caption = "Edited (photo framing)" if photo_view else "Edited (aligned)"
        self.canvas.set_images(to_qimage(p.crop if photo_view else p.aligned), self.canvas.after)

    # ------------------------------------------------------------------------------------------
    # Jobs

    def _job(self, job: int, text: str, on_done: Callable[[int, Any], None] | None = None) -> int:
        """Track long job ``job`` (``text`` says what it does); ``on_done(job, result)`` gets its result."""
        self._active[job] = text
        if on_done is not None:
            self._handlers[job] = on_done
        self.progress.setRange(0, 0)
        self.progress.setFormat(text)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.statusBar().showMessage(f"{text}\u2026")
        return job

    def _on_progress(self, job: int, p: Progress) -> None:
        if job not in self._active:
            return
        text = p.stage or self._active[job]
        if p.total > 0:
            self.progress.setRange(0, p.total)
            self.progress.setValue(p.done)
            self.progress.setFormat(f"{text} %v/%m")
            self.canvas.set_busy(f"{text}\u2026 {p.done}/{p.total}")
        else:
            self.progress.setRange(0, 0)
            self.progress.setFormat(text)
            self.canvas.set_busy(f"{text}\u2026")

    def _on_finished(self, job: int, result: Any) -> None:
        handler = self._handlers.pop(job, None)
        if handler is not None:
            handler(job, result)

    def _on_idle(self, job: int) -> None:
        self._handlers.pop(job, None)
        text = self._active.pop(job, None)
        if text is None:
            return
        if self.statusBar().currentMessage() == f"{text}\u2026":
            # The job ended without saying what happened (superseded, or no result): never leave
            # "Refining (PTI)…" behind; show the job still running, if any, or nothing.
            running = list(self._active.values())
            if running:
                self.statusBar().showMessage(f"{running[-1]}\u2026")
            else:
                self.statusBar().clearMessage()
        if not self._active:
            self.progress.hide()
            self.cancel_button.setEnabled(False)
            self.canvas.set_busy("")
            self.jobsIdle.emit()

    def cancel_jobs(self) -> None:
        """Cancel every running or queued long job."""
        self.host.cancel(list(self._active))
        self.statusBar().showMessage("Cancelling\u2026")

    def _on_cancelled(self, job: int) -> None:
        if job in self._active:
            self.statusBar().showMessage(f"{self._active[job]}: cancelled", 5000)

    def _on_failed(self, f: Failure) -> None:
        if f.kind == "render":
            self.statusBar().showMessage(f"Render failed: {f.message}", 8000)
            return
        if f.missing_model:
            self.show_error(
                "Model not downloaded",
                f.message,
                "Get it in the model manager: the download shows its progress, can be stopped, and resumes "
                "where it stopped. Until then the previous model stays in use.",
                [("Open the model manager\u2026", "openManager", self.open_model_manager)],
            )
        else:
            self.show_error(f.title, f.message, f.hint)
        if f.kind == "model" and self.bundle is not None:
            self.model_panel.select(self.bundle.spec)  # the picker goes back to the model still in use
        if f.kind == "model" and self.bundle is None and self._fallbacks:
            spec = self._fallbacks.pop(0)
            if spec == RANDOM_SPEC and not self._model_notice:
                self._model_notice = "the model could not be loaded: random weights"
            self.load_model(spec)

    def show_error(
        self, title: str, message: str, hint: str, actions: Iterable[tuple[str, str, Callable[[], Any]]] = ()
    ) -> QDialog:
        """Tell the user what happened and what to do, without blocking the app. actions: extra buttons
        (text, objectName, what clicking does)."""
        box = error_box(self, title, message, hint)
        for text, name, fn in actions:
            button = box.addButton(text, QMessageBox.ButtonRole.ActionRole)
            button.setObjectName(name)
            button.clicked.connect(fn)
        self.statusBar().showMessage(f"{title}: {message}", 10000)
        self.errorShown.emit(title, message)
        self._open_dialog_box(box)
        return box

    def _open_dialog_box(self, dlg: QDialog) -> None:
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        dlg.open()
        if self.dialog_hook is not None:
            self.dialog_hook(dlg)

    # ------------------------------------------------------------------------------------------
    # Model

    def _refresh_model_choices(self, current: str | None) -> None:
        """The picker: the demo model, random weights, then every installed model by its title."""
        from engine.model_store import installed_models
        from engine.models import DEMO_MANIFEST

        demo = DEMO_MANIFEST.is_file()
        choices = [
            ("Demo model" if demo else "Demo model (missing)", "demo", demo),
            ("Random weights (development)", RANDOM_SPEC, True),
        ]
        choices += [(m.title, m.name, True) for m in installed_models()]
        self.model_panel.set_choices(choices, current)

    def load_model(self, spec: str) -> int:
        """Switch to model ``spec`` (any model name, :mod:`engine.model_store`); the photo is inverted again."""
        self._model_job = self._job(self.host.load_model(spec), "Loading model", self._on_model_loaded)
        return self._model_job

    def _browse_model(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open a model bundle folder (with manifest.json)")
        if d:
            self.load_model(d)

    def open_model_manager(self) -> ModelManagerDialog:
        """Show the model manager (one per window, kept while hidden so a download goes on)."""
        if self._manager is None:
            m = ModelManagerDialog(self.host, self)
            m.dialog_hook = lambda dlg: self.dialog_hook(dlg) if self.dialog_hook is not None else None
            m.modelInstalled.connect(self._model_installed)
            m.modelRemoved.connect(self._model_removed)
            m.useRequested.connect(self.load_model)
            m.activity.connect(self._models_activity)
            self._manager = m
        m = self._manager
        m.current_model = self.bundle.spec if self.bundle else None
        m.refresh()
        self._refresh_model_choices(m.current_model)  # models may have come or gone meanwhile (the CLI)
        m.show()
        m.raise_()
        m.activateWindow()
        if self.dialog_hook is not None:
            self.dialog_hook(m)
        return m

    def _models_activity(self, text: str) -> None:
        self.models_activity.setText(text)
        self.models_activity.setVisible(bool(text))

    def _model_installed(self, name: str) -> None:
        """A model was downloaded or added in the manager: list it and edit with it."""
        self._refresh_model_choices(self.bundle.spec if self.bundle else None)
        self.statusBar().showMessage(f"Model installed: {name}", 8000)
        self.load_model(name)

    def _model_removed(self, name: str) -> None:
        in_use = self.bundle is not None and self.bundle.spec == name
        self._refresh_model_choices(default_model()[0] if in_use or not self.bundle else self.bundle.spec)
        if in_use:
            self.load_model(default_model()[0])  # its files are gone: edit with the default model

    def _apply_bundle(self, info: BundleInfo) -> None:
        self.bundle = info
        # The fallback's reason ("demo model missing") beats the bundle's own notice.
        notice = (self._model_notice if info.spec == RANDOM_SPEC else None) or info.notice
        self.model_panel.select(info.spec)
        self.model_panel.set_info(
            f"{info.title}\n{info.resolution} px \u2022 {len(info.directions)} directions "
            f"\u2022 inversion: {info.inverter}",
            notice,
        )
        self.notice_label.setText(notice or "")
        self.notice_label.setVisible(bool(notice))
        self.device_label.setText(f"device: {info.device}")
        self.directions_panel.set_directions(info.directions)
        self.style_panel.set_model(info.style_layers, info.stylespace)
        self.inversion_panel.set_method(info.inverter, info.encoder, info.pti)
        if self._manager is not None:
            self._manager.set_current_model(info.spec)
        self._update_demo_notice()
        self.modelReady.emit(info)

    def _on_model_loaded(self, job: int, info: BundleInfo) -> None:
        if job != self._model_job:
            return
        self._apply_bundle(info)
        remember_model(self.settings, info.spec)
        self.statusBar().showMessage(f"Model: {info.title}", 5000)
        base = self.state.replace(model_id=info.spec, latent=None, generator_file=None).reset_edits()
        self.history.reset(base)
        self._sync_controls()
        if self.video.active:
            self.video.model_changed()
            return
        if self.photo is not None:
            self.canvas.set_after(None)
            self._start_inversion(record=False)

    # ------------------------------------------------------------------------------------------
    # Photos and inversion

    def _cancel_photo_jobs(self) -> None:
        """A new photo or face replaces whatever photo was being loaded, inverted or refined."""
        self.host.cancel([j for j in (self._photo_job, self._invert_job, self._refine_job) if j in self._active])

    def open_photo(self, path: str | os.PathLike) -> int:
        """Load a photo: find its faces, then align and invert the chosen one (asynchronously)."""
        self.video.close()
        self._cancel_photo_jobs()
        self._photo_job = self._job(self.host.load_photo(str(path)), "Finding faces", self._on_photo_loaded)
        return self._photo_job

    def choose_face(self, index: int) -> int:
        p = self._pending_choice or self.photo
        if p is None:
            raise RuntimeError("no photo loaded")
        self._cancel_photo_jobs()
        self._photo_job = self._job(self.host.load_photo(p.path, index), "Aligning the face", self._on_photo_loaded)
        return self._photo_job

    def show_face_picker(self) -> None:
        p = self._pending_choice or self.photo
        if p is None:
            return
        self.picker.set_photo(to_qimage(p.preview), p.preview_boxes, p.face_index if self.photo else -1)
        self.stack.setCurrentWidget(self.picker)

    def _on_photo_loaded(self, job: int, info: PhotoFace) -> None:
        if job != self._photo_job:
            return
        if info.needs_choice:
            self._pending_choice = info
            self.show_face_picker()
            self.statusBar().showMessage(f"{len(info.boxes)} faces found: click the face to edit")
            self.facesFound.emit(len(info.boxes))
            return
        self._pending_choice = None
        self.photo = info
        self.stack.setCurrentWidget(self.canvas)
        model = self.bundle.spec if self.bundle else self.state.model_id
        self.history.reset(
            EditState(
                model_id=model,
                input_path=info.path,
                face_index=info.face_index,
                face_transform=info.face_transform,
                crop_quad=info.crop_quad,
                landmarks=info.face.landmarks,
                view=self.state.view,
            )
        )
        self.canvas.set_after(None)
        self._show_before()
        self._sync_controls()
        self.statusBar().showMessage(f"{Path(info.path).name}: face {info.face_index + 1} of {len(info.boxes)}")
        self.photoReady.emit(info)
        self._start_inversion(record=False)

    def _start_inversion(self, record: bool) -> None:
        if self.photo is None or self.bundle is None:
            return
        self._invert_record = record
        self._invert_job = self._job(
            self.host.invert(self.photo.aligned, self.inversion_panel.iters.value()), "Inverting", self._on_inverted
        )

    def _on_inverted(self, job: int, latent: np.ndarray) -> None:
        if job != self._invert_job:
            return
        self.history.set(self.state.replace(latent=latent, generator_file=None), record=self._invert_record)
        self._sync_controls()
        self.statusBar().showMessage("Inverted: move the sliders to edit", 5000)
        self.request_render()
        self.inversionFinished.emit()

    def refine(self, steps: int) -> int | None:
        """PTI: tune a copy of the generator to this photo (undoable; the session keeps the weights)."""
        if self.photo is None or self.state.latent is None:
            return None
        self._refine_steps = steps
        self._refine_job = self._job(
            self.host.refine(self.state, self.photo.crop, steps), "Refining (PTI)", self._on_refined
        )
        return self._refine_job

    def _on_refined(self, job: int, path: str) -> None:
        if job != self._refine_job:
            return
        self.history.set(self.state.replace(generator_file=path))
        self._sync_controls()
        self.statusBar().showMessage(f"Refined: PTI {self._refine_steps} steps", 8000)
        self.request_render()

    # ------------------------------------------------------------------------------------------
    # Files

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a photo", "", "Images (*.jpg *.jpeg *.png *.bmp *.webp *.tif *.tiff);;All files (*)"
        )
        if path:
            self.open_photo(path)

    def save_session(self, path: str | os.PathLike) -> int:
        if self.video.active:
            saved = self.video.save_session(path)  # a small JSON file: written here
            self.statusBar().showMessage(f"Session saved: {saved}", 8000)
            self.sessionSaved.emit(str(saved))
            return 0
        return self._job(self.host.save_session(self.state, str(path)), "Saving session", self._on_session_saved)

    def open_session(self, path: str | os.PathLike) -> int:
        if is_video_session(path):
            self._session_path = str(path)
            return self.video.open_session(path)
        self.video.close()
        self._cancel_photo_jobs()
        self._session_path = str(path)
        self._session_job = self._job(self.host.open_session(str(path)), "Opening session", self._on_session_opened)
        return self._session_job

    def _save_session_dialog(self) -> None:
        start = str(Path(self.state.input_path).with_suffix(".json")) if self.state.input_path else ""
        if self.video.active and self.video.clip is not None:
            start = str(Path(self.video.clip.path).with_suffix(".json"))
        path, _ = QFileDialog.getSaveFileName(self, "Save session", start, "Charm sessions (*.json)")
        if path:
            self.save_session(path)

    def _open_session_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open session", "", "Charm sessions (*.json)")
        if path:
            self.open_session(path)

    def _on_session_saved(self, job: int, path: str) -> None:
        self.statusBar().showMessage(f"Session saved: {path}", 8000)
        self.sessionSaved.emit(path)

    def _on_session_opened(self, job: int, result: tuple[EditState, PhotoFace | None, BundleInfo | None]) -> None:
        state, photo, info = result
        if job != self._session_job:
            return
        if info is not None:
            self._apply_bundle(info)
        self.photo = photo
        self._pending_choice = None
        self.stack.setCurrentWidget(self.canvas)
        self.history.reset(state)
        self.canvas.set_after(None)
        self._show_before()
        self._sync_controls()
        self._update_demo_notice()
        self.request_render()
        missing = self._missing_photo()
        if missing:
            self.show_missing_photo(missing, "The edit is kept; without the photo, export cannot paste it back.")
        else:
            self.statusBar().showMessage(f"Session opened: {Path(self._session_path).name}", 8000)
        self.sessionOpened.emit()

    # ------------------------------------------------------------------------------------------
    # A photo that is not where the edit says (a session opened after its photo was moved)

    def _missing_photo(self) -> str | None:
        """The edit's photo path when that file is not there any more, else None."""
        path = self.state.input_path
        return path if path and not Path(path).is_file() else None

    def show_missing_photo(self, path: str, consequence: str) -> QMessageBox:
        """Say which photo file is missing and offer to locate it (status bar and a dialog)."""
        name = Path(path).name
        self.statusBar().showMessage(f"The photo {path} is missing: locate it to continue")
        box = QMessageBox(self)
        box.setObjectName("missingPhotoBox")
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Photo not found")
        box.setText(f"<b>The photo {html.escape(name)} is missing</b>")
        box.setInformativeText(
            f"{html.escape(path)} is not there any more: it may have been moved, renamed or deleted. "
            f"{html.escape(consequence)} Locate the photo to continue."
        )
        locate = box.addButton("Locate\u2026", QMessageBox.ButtonRole.ActionRole)
        locate.setObjectName("locatePhoto")
        locate.clicked.connect(lambda: self._locate_dialog(path))
        box.addButton(QMessageBox.StandardButton.Close)
        self.photoMissing.emit(path)
        self._open_dialog_box(box)
        return box

    def _locate_dialog(self, missing: str) -> QFileDialog:
        near = Path(self._session_path).parent if self._session_path else Path(missing).parent
        dlg = QFileDialog(self, f"Locate {Path(missing).name}", str(near if near.is_dir() else Path.home()))
        dlg.setObjectName("locatePhotoDialog")
        dlg.setFileMode(QFileDialog.FileMode.ExistingFile)
        dlg.setNameFilter("Images (*.jpg *.jpeg *.png *.bmp *.webp *.tif *.tiff);;All files (*)")
        dlg.selectFile(Path(missing).name)
        dlg.fileSelected.connect(self.locate_photo)
        self._open_dialog_box(dlg)
        return dlg

    def locate_photo(self, path: str | os.PathLike) -> int:
        """Use ``path`` as the edit's photo (its file was moved): the photo is loaded for the same face,
        and the edit (latent, sliders, history) is kept."""
        self._locate_job = self._job(
            self.host.load_photo(str(path), self.state.face_index), "Loading the photo", self._on_photo_located
        )
        return self._locate_job

    def _on_photo_located(self, job: int, info: PhotoFace) -> None:
        if job != self._locate_job:
            return
        old = self.state.input_path
        self.photo = info
        self._pending_choice = None
        self.stack.setCurrentWidget(self.canvas)
        h = self.history
        # Every step of the history names the new file (an undo must not bring the missing path back).
        # History has no public way to rewrite all its steps; its undo/redo lists hold plain states.
        for steps in (h._undo, h._redo):
            steps[:] = [st.replace(input_path=info.path) if st.input_path == old else st for st in steps]
        h.set(self.state.replace(input_path=info.path), record=False)
        self._show_before()
        self._sync_controls()
        self.statusBar().showMessage(f"Photo found: {info.path}", 8000)
        self.photoReady.emit(info)

    def export_to(self, options: ExportOptions) -> int | None:
        """Export the edit; None (and a dialog that offers to locate it) when the face must be pasted back
        into a photo whose file is missing."""
        missing = self._missing_photo()
        if missing and "pasted" in options.kinds:
            self.show_missing_photo(missing, "Export needs it to paste the edited face back into the photo.")
            return None
        return self._job(self.host.export(self.state, options), "Exporting", self._on_exported)

    def _export_dialog(self) -> None:
        if self.video.active:
            self._export_video_dialog()
            return
        src = Path(self.state.input_path) if self.state.input_path else None
        dlg = ExportDialog(
            str(src.parent if src else Path.home()),
            f"{src.stem}_edited" if src else "charm",
            self,
            resolution=self.bundle.resolution if self.bundle else None,
        )
        dlg.accepted.connect(lambda: self.export_to(dlg.options()))
        self._open_dialog_box(dlg)

    def _on_exported(self, job: int, paths: list) -> None:
        self.statusBar().showMessage(f"Exported {len(paths)} file(s) to {paths[0].parent if paths else '?'}", 8000)
        self.exported.emit(paths)

    # ------------------------------------------------------------------------------------------
    # Video mode (app.video_mode)

    def open_video(self, path: str | os.PathLike, work: str | os.PathLike | None = None) -> int:
        """Open a clip (or a video project folder): video mode, the Timeline, Track and Invert start."""
        return self.video.open(path, str(work) if work else None)

    def seek(self, frame: int) -> None:
        """Move the playhead to ``frame`` (raw frame at once, the edited one when rendered)."""
        self.video.seek(frame)

    def set_edit(self, name: str, value: float, record: bool = True) -> None:
        """Set edit ``name`` (a direction, 'angle'/'tx'/'ty', or 'LAYER:CHANNEL') on the whole clip, or at
        the playhead with keyframing on."""
        if name in ("angle", "tx", "ty"):
            self.video.edit("transform", name, value, record)
        elif ":" in name:
            self.video.edit("channel", name, value, record)
        else:
            self.video.edit("direction", name, value, record)

    def set_keyframing(self, on: bool) -> None:
        self.video.set_keyframing(on)

    def export_video(
        self, path: str | os.PathLike, kind: str = "full", crf: int | None = None, keep_audio: bool = True
    ) -> int:
        """Export the edited clip (full frame pasted back, 'crop' or 'side_by_side'); the audio is kept."""
        return self.video.export(path, kind=kind, crf=crf, keep_audio=keep_audio)

    def enter_video_mode(self) -> None:
        self._cancel_photo_jobs()
        self.photo = None
        self._pending_choice = None
        self.stack.setCurrentWidget(self.canvas)
        self.demo_notice.hide()
        self.canvas.before_caption = "Original"
        self.canvas.after_caption = "Edited"
        self.act_step_back.setEnabled(True)
        self.act_step_on.setEnabled(True)

    def _open_video_dialog(self) -> None:
        patterns = " ".join(f"*{s}" for s in VIDEO_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Open a video", "", f"Videos ({patterns});;All files (*)")
        if path:
            self.open_video(path)

    def _export_video_dialog(self) -> None:
        clip = self.video.clip
        if clip is None:
            return
        src = Path(clip.path)
        dlg = ExportVideoDialog(str(src.with_name(f"{src.stem}_edited.mp4")), self, has_audio=clip.has_audio)
        dlg.accepted.connect(lambda: self.export_video(dlg.choice()[0], **dlg.choice()[1]))
        self._open_dialog_box(dlg)

    def step_frame(self, delta: int) -> None:
        if self.video.active:
            self.video.step(delta)

    def show_about(self) -> None:
        device = self.bundle.device if self.bundle else "not known yet"
        self._open_dialog_box(AboutDialog(self.bundle, device, self.notice_label.text() or None, self))

    # ------------------------------------------------------------------------------------------
    # Dropped files

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = self._dropped_path(event)
        if not path:
            return
        event.acceptProposedAction()
        suffix = Path(path).suffix.lower()
        if suffix in VIDEO_SUFFIXES or (Path(path).is_dir() and project_input(path)):
            self.open_video(path)
        elif suffix == ".json":
            self.open_session(path)
        elif suffix in MODEL_FILE_SUFFIXES:
            self.load_model(path)  # a model file, named as --model names it (a bundle is built for it once)
        else:
            self.open_photo(path)

    # ------------------------------------------------------------------------------------------
    # The demo model's notice: it draws procedural faces, real photos need a real model

    def _photo_shown(self, _info: PhotoFace) -> None:
        self._demo_notice_dismissed = False
        self._update_demo_notice()

    def _dismiss_demo_notice(self) -> None:
        self._demo_notice_dismissed = True
        self._update_demo_notice()

    def _update_demo_notice(self) -> None:
        """Shown while a photo is open on the demo model (until dismissed for that photo)."""
        on_demo = self.bundle is not None and self.bundle.name == "demo"
        self.demo_notice.setVisible(on_demo and self.photo is not None and not self._demo_notice_dismissed)

    # ------------------------------------------------------------------------------------------
    # Shutdown

    def shutdown(self) -> None:
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        self.host.shutdown()

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)
