"""The window's side of the engine: three background threads that run :class:`engine.studio.Studio`'s
work and the model library's.

- The **job lane** runs long jobs one at a time, in order: loading a model or a photo, inversion, PTI,
  export, sessions. Each job is a function ``fn(ctl) -> result`` (:mod:`engine.jobs`); the lane reports
  ``progress(job, Progress)``, then exactly one of ``finished(job, result)``, ``failed(Failure)`` or
  ``cancelled(job)``, then ``idle(job)``. :meth:`EngineHost.cancel` marks jobs cancelled, running or
  queued; a running job stops at its next check (adding to a set and testing membership are atomic).
- The **preview lane** renders edit states, latest request wins: :meth:`EngineHost.render` writes the
  newest request id into ``preview.latest`` before queuing, and the lane skips every older request and
  abandons a running one between generator layers (emitting nothing for it), so dragging a slider never
  builds a backlog, and a render never waits behind a long job. Long renders report
  ``progress(request_id, Progress)`` in layers.
- The **models lane** is a second job lane for the model library (:mod:`engine.model_store`):
  downloads, bundle builds, imports and removals, so editing a photo goes on while a 1 GB kit
  downloads. Its jobs take ids from the same counter as the job lane's, so :meth:`EngineHost.cancel`
  takes either.

Video (:class:`engine.video.session.ClipSession`, ``EngineHost.clip``): opening a clip and its stages
(track, invert, tune, export) are jobs on the job lane; a frame's edited preview
(:class:`engine.video.session.FrameRequest`) goes through the preview lane like a photo render, latest
request wins; its :class:`RenderResult` carries the request as ``state`` and a
:class:`engine.video.session.FrameResult` (or None: not renderable yet) as ``image``.

Results are plain data (numpy arrays, dataclasses); the UI thread never touches a tensor. The UI thread
never waits on these threads (requests are queued signals; only :meth:`EngineHost.shutdown` waits).
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.explain import explain
from engine.jobs import Cancelled, JobControl, Progress
from engine.state import EditState
from engine.studio import Studio
from engine.video.session import ClipOptions, ClipSession, FrameRequest


@dataclass(frozen=True)
class Failure:
    job: int  # the job id (a render's is minus its request id)
    kind: str  # what failed: 'model', 'photo', 'invert', 'refine', 'render', 'export', 'session', or a
    # models-lane kind ('download', 'files', 'remove')
    title: str
    message: str
    hint: str
    missing_model: str | None = None  # a known model that is not downloaded (ModelNotInstalledError.name)
    download: bool = False  # a download failed (offline, blocked, quota): the files can be fetched by hand


@dataclass(frozen=True)
class Task:
    job: int
    kind: str
    fn: Callable[[JobControl], Any]


@dataclass(frozen=True)
class RenderRequest:
    request_id: int
    state: EditState
    sent_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class RenderResult:
    request_id: int
    image: np.ndarray  # [R,R,3] uint8
    seconds: float  # time the preview lane spent rendering
    sent_at: float  # perf_counter() when the UI sent the request
    state: EditState


def _failure(job: int, kind: str, exc: BaseException) -> Failure:
    from engine.download import DownloadError
    from engine.errors import CharmError
    from engine.model_store import ModelNotInstalledError

    e = explain(exc)
    if isinstance(exc, DownloadError):
        return Failure(job, kind, e.title, e.message, e.hint, download=True)
    if not e.expected and not isinstance(exc, CharmError):  # CharmErrors are the user's to read, not defects
        traceback.print_exception(exc)
    missing = exc.name if isinstance(exc, ModelNotInstalledError) else None
    return Failure(job, kind, e.title, e.message, e.hint, missing_model=missing)


class JobLane(QObject):
    """Lives on the job thread; runs :class:`Task` s in the order they were submitted."""

    progress = Signal(int, object)  # job, Progress
    finished = Signal(int, object)  # job, result
    failed = Signal(object)  # Failure
    cancelled = Signal(int)  # job
    idle = Signal(int)  # job finished (any outcome)

    def __init__(self) -> None:
        super().__init__()
        self.cancelled_jobs: set[int] = set()

    @Slot(object)
    def run(self, task: Task) -> None:
        job = task.job
        ctl = JobControl(lambda p: self.progress.emit(job, p), lambda: job in self.cancelled_jobs)
        try:
            ctl.check()
            result = task.fn(ctl)
            ctl.check()  # cancelled during its last step: the result is no longer wanted
        except Cancelled:
            self.cancelled.emit(job)
        except Exception as e:  # noqa: BLE001 - the lane must survive anything and tell the UI
            self.failed.emit(_failure(job, task.kind, e))
        else:
            self.finished.emit(job, result)
        finally:
            self.idle.emit(job)


class PreviewLane(QObject):
    """Lives on the preview thread; renders the newest requested state.

    On a slow model (the last finished render took ``slow_render_s`` or more) a render is abandoned
    between generator layers as soon as a newer request exists (its :class:`JobControl` is cancelled
    once ``request_id < latest``) and then emits nothing. On a fast model a running render finishes, so
    a slider being dragged shows frames as it moves (queued older requests are still skipped). A render
    that has run for ``progress_after_s`` reports its layers as ``progress(request_id, Progress)``.
    ``completed`` and ``abandoned`` count the renders that ran to the end and those given up.
    """

    rendered = Signal(object)  # RenderResult
    failed = Signal(object)  # Failure
    progress = Signal(int, object)  # request id, Progress (layers done / total)

    progress_after_s = 0.25  # quick renders report nothing: no signal traffic while dragging on small models
    slow_render_s = 0.25  # slower renders are given up when superseded; faster ones are shown

    def __init__(self, render: Callable[[EditState, JobControl], np.ndarray]) -> None:
        super().__init__()
        self._render = render
        self.latest = 0
        self.completed = 0
        self.abandoned = 0
        self.last_seconds = 0.0  # how long the last finished render took

    @Slot(object)
    def render(self, req: RenderRequest) -> None:
        if req.request_id < self.latest:
            return  # superseded while queued
        rid = req.request_id
        t0 = time.perf_counter()

        def report(p: Progress) -> None:
            if time.perf_counter() - t0 >= self.progress_after_s:
                self.progress.emit(rid, p)

        ctl = JobControl(report, lambda: rid < self.latest and self.last_seconds >= self.slow_render_s)
        try:
            img = self._render(req.state, ctl)
            ctl.check()  # superseded during its last layer: nobody wants this image any more
        except Cancelled:
            self.abandoned += 1
            return
        except Exception as e:  # noqa: BLE001
            self.failed.emit(_failure(-rid, "render", e))
            return
        self.completed += 1
        self.last_seconds = time.perf_counter() - t0
        self.rendered.emit(RenderResult(rid, img, self.last_seconds, req.sent_at, req.state))


def _start_thread(name: str, obj: QObject, on_start: Callable[[], None] | None = None) -> QThread:
    thread = QThread()
    thread.setObjectName(name)
    obj.moveToThread(thread)
    if on_start is not None:
        thread.started.connect(on_start)
    thread.finished.connect(obj.deleteLater)
    thread.start()
    return thread


class EngineHost(QObject):
    """The UI side: owns the three lanes and the :class:`Studio`, issues job ids, queues requests."""

    _submit = Signal(object)
    _submit_models = Signal(object)
    _render = Signal(object)

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        device: str = "cpu",
        threads: int | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.threads = threads
        self.studio = Studio(cache_dir, device)
        self.jobs = JobLane()
        self.models = JobLane()
        self.clip = ClipSession(cache_dir, lambda: (self.studio.bundle, self.studio.spec))
        self.preview = PreviewLane(self._render_any)
        self._submit.connect(self.jobs.run)
        self._submit_models.connect(self.models.run)
        self._render.connect(self.preview.render)
        self._job = 0
        self._render_id = 0
        self._threads = [
            _start_thread("charm-jobs", self.jobs, self._set_torch_threads),
            _start_thread("charm-preview", self.preview, self._set_torch_threads),
            _start_thread("charm-models", self.models, self._set_torch_threads),
        ]

    def _render_any(self, state: Any, ctl: JobControl) -> Any:
        if isinstance(state, FrameRequest):
            return self.clip.render_frame(state, ctl)
        return self.studio.render(state, ctl)

    def _set_torch_threads(self) -> None:
        # Per thread: torch's CPU thread count (OpenMP's) is a setting of the thread that sets it.
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))

    @property
    def last_job(self) -> int:
        return self._job

    def submit(self, kind: str, fn: Callable[[JobControl], Any]) -> int:
        """Queue ``fn(ctl)`` on the job lane; returns its job id (``kind`` names it in failures)."""
        self._job += 1
        self._submit.emit(Task(self._job, kind, fn))
        return self._job

    def submit_models(self, kind: str, fn: Callable[[JobControl], Any]) -> int:
        """Queue ``fn(ctl)`` on the models lane (downloads, builds); returns its job id."""
        self._job += 1
        self._submit_models.emit(Task(self._job, kind, fn))
        return self._job

    def render(self, state: EditState) -> int:
        """Queue a render of ``state`` on the preview lane; older renders are skipped when queued and
        abandoned between layers when running."""
        self._render_id += 1
        self.preview.latest = self._render_id  # before queuing: older queued renders are skipped
        self._render.emit(RenderRequest(self._render_id, state))
        return self._render_id

    def render_frame(self, req: FrameRequest) -> int:
        """Queue an edited preview of a video frame on the preview lane (latest request wins, with
        photo renders too)."""
        self._render_id += 1
        self.preview.latest = self._render_id
        self._render.emit(RenderRequest(self._render_id, req))  # type: ignore[arg-type]
        return self._render_id

    # -- the clip's jobs ----------------------------------------------------------------------------

    def open_video(self, path: str, work: str | None = None) -> int:
        return self.submit("video", lambda ctl: self.clip.open(path, work, ctl))

    def _clip_stage(self, fn: Callable[[JobControl], Any]) -> Callable[[JobControl], Any]:
        """A stage queued behind the opening of a clip: dropped (cancelled) when that opening failed, so
        one failure makes one message."""

        def run(ctl: JobControl) -> Any:
            if not self.clip.is_open:
                raise Cancelled("the stage: the video did not open")
            return fn(ctl)

        return run

    def track_video(self) -> int:
        return self.submit("track", self._clip_stage(lambda ctl: self.clip.track(ctl)))

    def invert_video(self, options: ClipOptions) -> int:
        return self.submit("invert", self._clip_stage(lambda ctl: self.clip.invert(options, ctl)))

    def smooth_video(self, options: ClipOptions) -> int:
        return self.submit("smooth", lambda ctl: self.clip.resmooth(options, ctl))

    def tune_video(self, steps: int) -> int:
        return self.submit("tune", lambda ctl: self.clip.tune(steps, ctl))

    def export_video(self, path: str, edits: Any, options: ClipOptions, **kw: Any) -> int:
        return self.submit("export", lambda ctl: self.clip.export(path, edits, options, ctl=ctl, **kw))

    # -- the studio's jobs --------------------------------------------------------------------------

    def load_model(self, spec: str) -> int:
        return self.submit("model", lambda ctl: self.studio.load_model(spec, ctl))

    def load_photo(self, path: str, face_index: int | None = None) -> int:
        return self.submit("photo", lambda ctl: self.studio.open_photo(path, face_index, ctl))

    def invert(self, aligned: np.ndarray, iters: int) -> int:
        return self.submit("invert", lambda ctl: self.studio.invert(aligned, iters, ctl))

    def refine(self, state: EditState, crop: np.ndarray, steps: int) -> int:
        return self.submit("refine", lambda ctl: self.studio.refine(state, crop, steps, ctl))

    def export(self, state: EditState, options: Any) -> int:
        return self.submit("export", lambda ctl: self.studio.export(state, options, ctl))

    def save_session(self, state: EditState, path: str) -> int:
        return self.submit("session", lambda ctl: self.studio.save_session(state, path, ctl))

    def open_session(self, path: str) -> int:
        return self.submit("session", lambda ctl: self.studio.open_session(path, ctl))

    # -- control ------------------------------------------------------------------------------------

    def cancel(self, jobs: Iterable[int] | None = None) -> None:
        """Cancel ``jobs`` of either job lane (default: every job issued so far); a running one stops at
        its next check, queued ones never start."""
        ids = set(range(1, self._job + 1) if jobs is None else (int(j) for j in jobs))
        self.jobs.cancelled_jobs.update(ids)
        self.models.cancelled_jobs.update(ids)

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        """Cancel everything, stop the threads and wait for them; True when they stopped in time."""
        self.cancel()
        self.preview.latest = self._render_id + 1
        for t in self._threads:
            t.quit()
        deadline = time.monotonic() + timeout_ms / 1000
        ok = True
        for t in self._threads:
            if t.isRunning():
                ok = t.wait(max(0, int((deadline - time.monotonic()) * 1000))) and ok
        return ok


__all__ = ["EngineHost", "Failure", "JobLane", "PreviewLane", "RenderRequest", "RenderResult", "Task"]
