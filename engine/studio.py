"""The studio's engine side, headless: the loaded model, the open photo, tuned generators, and the
operations the window offers on them.

:class:`Studio` is what the window's worker calls (``app/worker.py`` runs its jobs on a background
thread and its renders on another); nothing here knows about Qt. Long operations are jobs
(:mod:`engine.jobs`): they take a :class:`engine.jobs.JobControl` and return plain data (numpy arrays,
dataclasses), never tensors, so a front end can hold results without touching torch.

Threads: jobs run one at a time on one thread; :meth:`Studio.render` runs on another. The model and the
tuned generator are replaced, never modified, and renders read them once per call, so a render during
a model load uses either the old model or the new one, whole.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from engine.jobs import JobControl
from engine.photo import PhotoFace, PhotoReader, invert_face, tune_face
from engine.state import EditState

if TYPE_CHECKING:
    from engine.export import ExportOptions
    from engine.models import ModelBundle
    from engine.networks.stylegan3 import Generator

__all__ = ["RANDOM_SPEC", "BundleInfo", "DirectionInfo", "Studio", "describe_bundle", "device_name"]

RANDOM_SPEC = "random"


@dataclass(frozen=True)
class DirectionInfo:
    name: str
    lo: float
    hi: float
    description: str


@dataclass(frozen=True)
class BundleInfo:
    """What a front end needs to know about the loaded model (no tensors)."""

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


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return device.type.upper()


def describe_bundle(bundle: ModelBundle, spec: str) -> BundleInfo:
    from engine.models import inverter_for

    inv = inverter_for(bundle)
    encoder = bundle.inverter is not None
    return BundleInfo(
        spec=spec,
        name=bundle.name,
        title=bundle.title,
        folder=str(bundle.folder),
        notice=bundle.notice,
        resolution=bundle.resolution,
        w_dim=bundle.w_dim,
        num_ws=bundle.num_ws,
        directions=tuple(
            DirectionInfo(d.name, d.range[0], d.range[1], d.description) for d in bundle.directions.values()
        ),
        stylespace={k: list(v) for k, v in bundle.stylespace.items()},
        style_layers=bundle.style_layers(),
        model_card=str(bundle.model_card) if bundle.model_card else None,
        device=device_name(bundle.device),
        inverter=(f"encoder ({getattr(inv, 'kind', 'restyle')})" if encoder else "latent optimisation"),
        encoder=encoder,
        pti=True,
    )


class Studio:
    """The model, photo and tuned generator of one studio window, and what can be done with them.

    cache_dir: where the random development bundle and PTI results are written. device: torch device,
    or 'auto' (the GPU when there is one).
    """

    def __init__(self, cache_dir: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        self.cache_dir = Path(cache_dir)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.bundle: ModelBundle | None = None
        self.spec: str | None = None
        self.photos = PhotoReader()  # used by jobs only (one thread)
        self._tuned: tuple[str, torch.nn.Module] | None = None  # (file, generator): one at a time
        self._tuned_lock = threading.Lock()

    # -- model --------------------------------------------------------------------------------------

    def _require_bundle(self) -> ModelBundle:
        if self.bundle is None:
            raise RuntimeError("no model is loaded yet")
        return self.bundle

    def load_model(self, spec: str, ctl: JobControl | None = None) -> BundleInfo:
        """Load model ``spec`` and make it current: 'random' (the development bundle) or any name
        :func:`engine.model_store.resolve_model` takes ('demo', a known name, a bundle folder, a model
        file). A known model that is not downloaded raises
        :class:`engine.model_store.ModelNotInstalledError` (the window offers the model manager)."""
        from engine.model_store import resolve_model
        from engine.models import ensure_random_bundle, load_bundle

        ctl = ctl or JobControl()
        ctl.stage("Loading model")
        if spec == RANDOM_SPEC:
            source = ensure_random_bundle(self.cache_dir / "bundles")
        else:
            source = resolve_model(spec, ctl=ctl)
            ctl.stage("Loading model")
        bundle = load_bundle(source, device=self.device)
        ctl.check()
        with self._tuned_lock:
            self.bundle, self.spec, self._tuned = bundle, spec, None
        return describe_bundle(bundle, spec)

    def generator_for(self, state: EditState) -> torch.nn.Module | None:
        """The tuned generator ``state`` renders with (loaded once), or None for the bundle's own."""
        path = state.generator_file
        if not path:
            return None
        with self._tuned_lock:
            if self._tuned is not None and self._tuned[0] == path:
                return self._tuned[1]
        from engine.checkpoints import load_generator

        G = load_generator(path, device=self.device)
        with self._tuned_lock:
            self._tuned = (path, G)
        return G

    # -- photo --------------------------------------------------------------------------------------

    def open_photo(self, path: str, face_index: int | None = None, ctl: JobControl | None = None) -> PhotoFace:
        """Read a photo, find its faces and align one (default the largest)."""
        return self.photos.open(path, face_index, ctl=ctl)

    def invert(self, aligned: np.ndarray, iters: int, ctl: JobControl | None = None) -> np.ndarray:
        """The latent (float32 [num_ws,w_dim]) of an aligned face ([S,S,3] uint8 RGB)."""
        from engine.models import inverter_for

        bundle = self._require_bundle()
        res = invert_face(inverter_for(bundle), aligned, iters, ctl, device=bundle.device)
        return res.latent[0].detach().cpu().numpy().astype(np.float32)

    def refine(self, state: EditState, crop: np.ndarray, steps: int, ctl: JobControl | None = None) -> str:
        """PTI around ``state``'s latent towards ``crop`` (the face in the photo's framing); returns the
        tuned generator's file, which :meth:`generator_for` then renders with."""
        from engine.checkpoints import save_generator

        bundle = self._require_bundle()
        if state.latent is None:
            raise ValueError("invert the photo before refining it")
        G = cast("Generator", self.generator_for(state) or bundle.generator)
        pivot = torch.from_numpy(np.array(state.latent)).to(bundle.device).unsqueeze(0)
        tr = None if state.face_transform is None else torch.from_numpy(np.array(state.face_transform))
        res = tune_face(G, crop, pivot, steps, ctl, transform=tr)
        # A new name per run: earlier runs' files stay valid for the states (undo steps) that use them.
        path = self.cache_dir / "pti" / f"pti-{os.getpid()}-{uuid.uuid4().hex[:12]}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_generator(res.generator, path, source="pti")
        with self._tuned_lock:
            self._tuned = (str(path), res.generator)
        return str(path)

    # -- output -------------------------------------------------------------------------------------

    def render(self, state: EditState, ctl: JobControl | None = None) -> np.ndarray:
        """``state`` rendered as a picture ([R,R,3] uint8 RGB). ctl: optional, reports progress in
        layers and abandons the render between layers once cancelled (:class:`engine.jobs.Cancelled`)."""
        from engine.render import render_picture

        bundle = self._require_bundle()
        return render_picture(state, bundle, generator=self.generator_for(state), ctl=ctl)

    def export(self, state: EditState, options: ExportOptions, ctl: JobControl | None = None) -> list[Path]:
        """Write the export files of ``state`` (see :func:`engine.export.export_images`)."""
        from engine.export import export_images

        ctl = ctl or JobControl()
        ctl.stage("Exporting")
        photo = None
        if state.input_path and "pasted" in options.kinds:
            photo = self.photos.image(state.input_path)
        return export_images(state, self._require_bundle(), photo, options, generator=self.generator_for(state))

    def save_session(self, state: EditState, path: str, ctl: JobControl | None = None) -> str:
        from engine.session import save_session

        (ctl or JobControl()).stage("Saving session")
        return str(save_session(state, path))

    def open_session(
        self, path: str, ctl: JobControl | None = None
    ) -> tuple[EditState, PhotoFace | None, BundleInfo | None]:
        """Open a session: (its state, its photo when the file is there, the model's info when the
        session needed another model than the current one)."""
        from engine.session import SessionError, load_session

        ctl = ctl or JobControl()
        ctl.stage("Opening session")
        state = load_session(path)
        info = None
        if state.model_id != self.spec or self.bundle is None:
            ctl.stage("Loading the session's model")
            info = self.load_model(state.model_id, ctl)
        bundle = self._require_bundle()
        if state.latent is not None and tuple(state.latent.shape) != (bundle.num_ws, bundle.w_dim):
            raise SessionError(f"the session's latent does not fit model '{bundle.name}'")
        photo = None
        if state.input_path and Path(state.input_path).is_file():
            ctl.stage("Loading the photo")
            photo = self.open_photo(state.input_path, state.face_index, ctl)
        self.generator_for(state)
        return state, photo, info
