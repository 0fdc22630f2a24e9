"""The engine worker: one QObject living on one background QThread. The UI thread never runs model code.

Protocol (see :class:`EngineHost`, the UI-side handle):

- The UI calls host methods; they emit signals that Qt queues to the worker's slots, which run one at
  a time, in order, on the worker thread.
- Every request carries an id. For renders the host writes the newest id into
  ``worker.latest_render`` *before* queuing the request; the worker skips every render whose id is
  older, so dragging a slider never builds a backlog (latest wins).
- Long jobs (model and photo loading, inversion, PTI, export) report ``progress(job, done, total,
  text)`` and poll ``worker.cancelled_jobs`` (a set of job ids): :meth:`EngineHost.cancel` adds jobs to it,
  running or queued. Adding to a set and testing membership are atomic, so no lock is needed.
- Results go back as signals with plain data (numpy arrays, dataclasses); the UI never sees tensors.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

RANDOM_SPEC = "random"
ALIGN_SIZE = 512  # side of the aligned face and crop shown as "before" (and the inverter's input)


@dataclass(frozen=True)
class DirectionInfo:
    name: str
    lo: float
    hi: float
    description: str


@dataclass(frozen=True)
class BundleInfo:
    """What the UI needs to know about the loaded model (no tensors)."""

    spec: str
    name: str
    title: str
    folder: str
    notice: str | None
    resolution: int
    w_dim: int
    num_ws: int
    directions: tuple[DirectionInfo, ...]
    stylespace: dict[str, list[tuple[str, int, int]]]
    style_layers: dict[str, int]
    model_card: str | None
    device: str
    inverter: str  # a line for the user: which inversion runs
    encoder: bool  # True: encoder iterations; False: optimisation steps
    pti: bool  # pivotal tuning available


@dataclass(frozen=True)
class PhotoInfo:
    """A loaded photo and its chosen face. Images are uint8 RGB; ``boxes`` are (left, top, right,
    bottom) source px of every detected face, largest first."""

    path: str
    image: np.ndarray
    boxes: tuple[tuple[float, float, float, float], ...]
    face_index: int
    needs_choice: bool
    aligned: np.ndarray
    crop: np.ndarray
    face_transform: np.ndarray
    crop_quad: np.ndarray


@dataclass(frozen=True)
class RenderRequest:
    request_id: int
    state: Any  # engine.session.EditState
    sent_at: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class RenderResult:
    request_id: int
    image: np.ndarray  # [R,R,3] uint8
    seconds: float  # time the worker spent rendering
    sent_at: float  # perf_counter() when the UI sent the request
    state: Any


@dataclass(frozen=True)
class ExportOptions:
    folder: str
    basename: str
    fmt: str = "png"  # 'png' or 'jpg'
    kinds: tuple[str, ...] = ("aligned", "framed", "pasted")
    jpeg_quality: int = 95


@dataclass(frozen=True)
class Failure:
    job: int
    kind: str  # 'model', 'photo', 'invert', 'refine', 'render', 'export', 'session'
    title: str
    message: str
    hint: str


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(dialog title, what to do) for an engine error."""
    from engine.errors import CheckpointError, ImageReadError, NoFaceError
    from engine.session import SessionError

    if isinstance(exc, NoFaceError):
        return (
            "No face found",
            "Open a photo in which a face is clearly visible, roughly frontal and at least about 80 pixels wide.",
        )
    if isinstance(exc, ImageReadError):
        return ("Cannot read the image", "Choose a JPEG or PNG photo; this file is damaged or not an image.")
    if isinstance(exc, CheckpointError):
        return (
            "Cannot load the model",
            "The previous model stays in use. Choose another model folder, or copy the model files again.",
        )
    if isinstance(exc, SessionError):
        return ("Cannot open the session", "Choose a session saved by Charm Studio (.json with its .npz).")
    if isinstance(exc, OSError):
        return ("Cannot write or read a file", "Check the folder exists and you may write to it.")
    return ("Unexpected error", "Details were printed to the console; please report them.")


def export_images(state, bundle, photo: np.ndarray | None, options: ExportOptions, generator=None) -> list[Path]:
    """Render and write the export files (each to a temporary name, then renamed); returns their paths.

    aligned: the edited aligned face; framed: the edited face in the photo's own framing; pasted: the
    framed render pasted back into the full original photo (needs ``photo`` and ``state.crop_quad``).
    """
    import cv2

    from engine.align import paste_back
    from engine.imageio import to_uint8
    from engine.session import render_state

    fmt = options.fmt.lower().lstrip(".")
    ext = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg"}.get(fmt)
    if ext is None:
        raise ValueError(f"unknown export format {options.fmt!r}; use png or jpg")
    folder = Path(options.folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(options.jpeg_quality)] if ext == ".jpg" else []
    out: list[Path] = []
    framed = None
    for kind in options.kinds:
        if kind == "aligned":
            img = to_uint8(render_state(state, bundle, view="aligned", generator=generator))[0]
        elif kind in ("framed", "pasted"):
            if framed is None:
                framed = to_uint8(render_state(state, bundle, view="photo", generator=generator))[0]
            img = framed
            if kind == "pasted":
                if photo is None or state.crop_quad is None:
                    continue
                img = paste_back(photo, framed, np.array(state.crop_quad))
        else:
            raise ValueError(f"unknown export kind {kind!r}")
        ok, data = cv2.imencode(ext, np.ascontiguousarray(img[:, :, ::-1]), params)
        if not ok:
            raise OSError(f"could not encode the {kind} image as {ext}")
        path = folder / f"{options.basename}_{kind}{ext}"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data.tobytes())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()
        out.append(path)
    return out


class EngineWorker(QObject):
    """Lives on the worker thread; every slot runs there. See the module docstring."""

    modelLoaded = Signal(int, object)  # job, BundleInfo
    photoLoaded = Signal(int, object)  # job, PhotoInfo
    inverted = Signal(int, object)  # job, latent float32 [num_ws,w_dim]
    refined = Signal(int, str)  # job, tuned generator file
    rendered = Signal(object)  # RenderResult
    exported = Signal(int, object)  # job, [Path]
    sessionSaved = Signal(int, str)  # job, path
    sessionOpened = Signal(int, object, object, object)  # job, EditState, PhotoInfo|None, BundleInfo|None
    progress = Signal(int, int, int, str)  # job, done, total (0: unknown), text
    failed = Signal(object)  # Failure
    cancelled = Signal(int)  # job
    idle = Signal(int)  # job finished (any outcome)

    def __init__(self, cache_dir: str | os.PathLike, device: str = "cpu", threads: int | None = None):
        super().__init__()
        self.cache_dir = Path(cache_dir)
        self.device = device
        self.threads = threads
        self.latest_render = 0
        self.cancelled_jobs: set[int] = set()
        self.bundle = None
        self.spec: str | None = None
        self._photo: tuple[str, np.ndarray, list] | None = None
        self._generators: dict[str, Any] = {}

    # -- helpers ------------------------------------------------------------------------------------

    def _is_cancelled(self, job: int) -> bool:
        return job in self.cancelled_jobs

    def _fail(self, job: int, kind: str, exc: BaseException) -> None:
        from engine.errors import CharmError

        if not isinstance(exc, (CharmError, OSError)):
            traceback.print_exception(exc)
        title, hint = describe_error(exc)
        self.failed.emit(Failure(job, kind, title, str(exc) or type(exc).__name__, hint))

    def _run(self, job: int, kind: str, fn) -> None:
        try:
            from engine.inversion import Cancelled
        except ImportError:
            Cancelled = ()  # noqa: N806 - nothing raises it without engine.inversion
        try:
            if self._is_cancelled(job):
                self.cancelled.emit(job)
                return
            fn()
        except Cancelled:
            self.cancelled.emit(job)
        except Exception as e:  # noqa: BLE001 - the worker must survive anything and tell the UI
            self._fail(job, kind, e)
        finally:
            self.idle.emit(job)

    def _progress(self, job: int, text: str):
        def report(done: int, total: int) -> None:
            self.progress.emit(job, int(done), int(total), text)

        return report

    def _info(self) -> BundleInfo:
        from engine.models import inverter_for

        b = self.bundle
        inv = inverter_for(b)
        encoder = b.inverter is not None
        try:
            import engine.inversion  # noqa: F401

            pti = True
        except ImportError:
            pti = False
        return BundleInfo(
            spec=self.spec or "",
            name=b.name,
            title=b.title,
            folder=str(b.folder),
            notice=b.notice,
            resolution=b.resolution,
            w_dim=b.w_dim,
            num_ws=b.num_ws,
            directions=tuple(
                DirectionInfo(d.name, d.range[0], d.range[1], d.description) for d in b.directions.values()
            ),
            stylespace={k: list(v) for k, v in b.stylespace.items()},
            style_layers=b.style_layers(),
            model_card=str(b.model_card) if b.model_card else None,
            device=_device_name(b.device),
            inverter=(f"encoder ({getattr(inv, 'kind', 'restyle')})" if encoder else "latent optimisation"),
            encoder=encoder,
            pti=pti,
        )

    def _load_model(self, spec: str) -> None:
        from engine.models import ensure_random_bundle, load_bundle

        source = ensure_random_bundle(self.cache_dir / "bundles") if spec == RANDOM_SPEC else spec
        bundle = load_bundle(source, device=self.device)
        self.bundle, self.spec = bundle, spec
        self._generators.clear()

    def _generator_for(self, state):
        if not state.generator_file:
            return None
        G = self._generators.get(state.generator_file)
        if G is None:
            from engine.checkpoints import load_generator

            G = load_generator(state.generator_file, device=self.device)
            self._generators = {state.generator_file: G}  # one tuned generator at a time is plenty
        return G

    def _photo_info(self, path: str, face_index: int | None) -> PhotoInfo:
        from engine.align import align_face, detect_faces, load_image

        if self._photo is None or self._photo[0] != path:
            try:
                rgb = load_image(path)
            except OSError as e:  # a decoder's own error (e.g. a truncated JPEG) rather than ImageReadError
                from engine.errors import ImageReadError

                raise ImageReadError(
                    f"{Path(path).name!r} cannot be read: it is corrupt or not an image ({e})"
                ) from None
            self._photo = (path, rgb, detect_faces(rgb))
        _, rgb, faces = self._photo
        if not faces:
            from engine.errors import NoFaceError

            raise NoFaceError(f"no face found in {Path(path).name!r}")
        index = 0 if face_index is None else int(face_index)
        if not 0 <= index < len(faces):
            from engine.errors import NoFaceError

            raise NoFaceError(f"face {index} requested but {len(faces)} face(s) found in {Path(path).name!r}")
        face = align_face(rgb, size=ALIGN_SIZE, landmarks=faces[index].landmarks)
        return PhotoInfo(
            path=path,
            image=rgb,
            boxes=tuple(tuple(float(v) for v in f.box) for f in faces),
            face_index=index,
            needs_choice=face_index is None and len(faces) > 1,
            aligned=face.aligned,
            crop=face.crop,
            face_transform=face.transform.numpy(),
            crop_quad=face.crop_quad,
        )

    # -- slots --------------------------------------------------------------------------------------

    @Slot()
    def start(self) -> None:
        import torch

        if self.threads:
            torch.set_num_threads(int(self.threads))
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"

    @Slot(int, str)
    def load_model(self, job: int, spec: str) -> None:
        def go():
            self.progress.emit(job, 0, 0, "Loading model")
            self._load_model(spec)
            self.modelLoaded.emit(job, self._info())

        self._run(job, "model", go)

    @Slot(int, str, int)
    def load_photo(self, job: int, path: str, face_index: int) -> None:
        def go():
            self.progress.emit(job, 0, 0, "Finding faces")
            self.photoLoaded.emit(job, self._photo_info(path, None if face_index < 0 else face_index))

        self._run(job, "photo", go)

    @Slot(int, object, int)
    def invert(self, job: int, aligned: np.ndarray, iters: int) -> None:
        def go():
            import torch

            from engine.models import inverter_for

            x = torch.from_numpy(np.ascontiguousarray(aligned)).permute(2, 0, 1).unsqueeze(0)
            x = x.to(self.bundle.device, torch.float32) / 127.5 - 1
            text = "Inverting" if self.bundle.inverter is not None else "Inverting (optimising the latent)"
            self.progress.emit(job, 0, iters, text)
            res = inverter_for(self.bundle).invert(
                x, n_iters=int(iters), progress=self._progress(job, text), cancel=lambda: self._is_cancelled(job)
            )
            if self._is_cancelled(job):
                self.cancelled.emit(job)
                return
            self.inverted.emit(job, res.latent[0].detach().cpu().numpy().astype(np.float32))

        self._run(job, "invert", go)

    @Slot(int, object, object, int)
    def refine(self, job: int, state, crop: np.ndarray, steps: int) -> None:
        def go():
            import torch

            from engine.checkpoints import save_generator
            from engine.inversion import tune_generator

            G = self._generator_for(state) or self.bundle.generator
            dev = self.bundle.device
            target = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).unsqueeze(0)
            target = target.to(dev, torch.float32) / 127.5 - 1
            pivot = torch.from_numpy(np.array(state.latent)).to(dev).unsqueeze(0)
            tr = None if state.face_transform is None else torch.from_numpy(np.array(state.face_transform)).to(dev)
            res = tune_generator(
                G,
                target,
                pivot,
                transform=tr,
                steps=int(steps),
                progress=self._progress(job, "Refining (PTI)"),
                cancel=lambda: self._is_cancelled(job),
            )
            path = self.cache_dir / "pti" / f"pti-{os.getpid()}-{job}.safetensors"
            save_generator(res.generator, path, source="pti")
            self._generators = {str(path): res.generator}
            self.refined.emit(job, str(path))

        self._run(job, "refine", go)

    @Slot(object)
    def render(self, req: RenderRequest) -> None:
        if req.request_id < self.latest_render:
            return  # superseded while queued
        try:
            from engine.imageio import to_uint8
            from engine.session import render_state

            t0 = time.perf_counter()
            img = to_uint8(render_state(req.state, self.bundle, generator=self._generator_for(req.state)))[0]
            self.rendered.emit(RenderResult(req.request_id, img, time.perf_counter() - t0, req.sent_at, req.state))
        except Exception as e:  # noqa: BLE001
            self._fail(-req.request_id, "render", e)

    @Slot(int, object, object)
    def export(self, job: int, state, options: ExportOptions) -> None:
        def go():
            from engine.align import load_image

            self.progress.emit(job, 0, 0, "Exporting")
            photo = None
            if state.input_path and "pasted" in options.kinds:
                photo = (
                    self._photo[1]
                    if self._photo and self._photo[0] == state.input_path
                    else load_image(state.input_path)
                )
            self.exported.emit(
                job, export_images(state, self.bundle, photo, options, generator=self._generator_for(state))
            )

        self._run(job, "export", go)

    @Slot(int, object, str)
    def save_session(self, job: int, state, path: str) -> None:
        def go():
            from engine.session import save_session

            self.sessionSaved.emit(job, str(save_session(state, path)))

        self._run(job, "session", go)

    @Slot(int, str)
    def open_session(self, job: int, path: str) -> None:
        def go():
            from engine.session import load_session

            state = load_session(path)
            info = None
            if state.model_id != self.spec or self.bundle is None:
                self.progress.emit(job, 0, 0, "Loading the session's model")
                self._load_model(state.model_id)
                info = self._info()
            if state.latent is not None and tuple(state.latent.shape) != (self.bundle.num_ws, self.bundle.w_dim):
                from engine.session import SessionError

                raise SessionError(f"the session's latent does not fit model '{self.bundle.name}'")
            photo = None
            if state.input_path and Path(state.input_path).is_file():
                self.progress.emit(job, 0, 0, "Loading the photo")
                photo = self._photo_info(state.input_path, state.face_index)
            self._generator_for(state)
            self.sessionOpened.emit(job, state, photo, info)

        self._run(job, "session", go)


def _device_name(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return device.type.upper()


class EngineHost(QObject):
    """The UI side of the worker: owns the thread, issues job ids, forwards requests as queued signals."""

    _loadModel = Signal(int, str)
    _loadPhoto = Signal(int, str, int)
    _invert = Signal(int, object, int)
    _refine = Signal(int, object, object, int)
    _render = Signal(object)
    _export = Signal(int, object, object)
    _saveSession = Signal(int, object, str)
    _openSession = Signal(int, str)

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        device: str = "cpu",
        threads: int | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("charm-engine")
        self.worker = EngineWorker(cache_dir, device=device, threads=threads)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.start)
        self.thread.finished.connect(self.worker.deleteLater)
        w = self.worker
        for sig, slot in (
            (self._loadModel, w.load_model),
            (self._loadPhoto, w.load_photo),
            (self._invert, w.invert),
            (self._refine, w.refine),
            (self._render, w.render),
            (self._export, w.export),
            (self._saveSession, w.save_session),
            (self._openSession, w.open_session),
        ):
            sig.connect(slot)
        self._job = 0
        self._render_id = 0
        self.thread.start()

    def _next(self) -> int:
        self._job += 1
        return self._job

    @property
    def last_job(self) -> int:
        return self._job

    def load_model(self, spec: str) -> int:
        job = self._next()
        self._loadModel.emit(job, spec)
        return job

    def load_photo(self, path: str, face_index: int | None = None) -> int:
        job = self._next()
        self._loadPhoto.emit(job, path, -1 if face_index is None else int(face_index))
        return job

    def invert(self, aligned: np.ndarray, iters: int) -> int:
        job = self._next()
        self._invert.emit(job, aligned, int(iters))
        return job

    def refine(self, state, crop: np.ndarray, steps: int) -> int:
        job = self._next()
        self._refine.emit(job, state, crop, int(steps))
        return job

    def render(self, state) -> int:
        self._render_id += 1
        self.worker.latest_render = self._render_id  # before queuing: older queued renders are skipped
        self._render.emit(RenderRequest(self._render_id, state))
        return self._render_id

    def export(self, state, options: ExportOptions) -> int:
        job = self._next()
        self._export.emit(job, state, options)
        return job

    def save_session(self, state, path: str) -> int:
        job = self._next()
        self._saveSession.emit(job, state, str(path))
        return job

    def open_session(self, path: str) -> int:
        job = self._next()
        self._openSession.emit(job, str(path))
        return job

    def cancel(self, jobs=None) -> None:
        """Cancel ``jobs`` (default: every job issued so far); a running one stops at its next check,
        queued ones never start."""
        self.worker.cancelled_jobs.update(range(1, self._job + 1) if jobs is None else (int(j) for j in jobs))

    def shutdown(self, timeout_ms: int = 60000) -> bool:
        """Cancel everything, stop the thread and wait for it; True when it stopped in time."""
        if not self.thread.isRunning():
            return True
        self.cancel()
        self.worker.latest_render = self._render_id + 1
        self.thread.quit()
        return self.thread.wait(timeout_ms)
