"""A photo inverted end to end with its measurements, as ``main.py invert`` writes it (and a photo's
alignment, as ``main.py align`` writes it: :func:`write_alignment`).

:func:`invert_photo` runs the photo pipeline of :mod:`engine.photo` (the same functions, with the same
settings, as the window, so the latent is the same), optionally tunes the generator (PTI), renders the
results and measures them; :func:`write_photo_inversion` writes them into a folder:

- ``aligned.png`` / ``crop.png``: the aligned input and the unaligned crop, at the generator's resolution;
- ``reconstruction.png`` / ``reconstruction_unaligned.png``: the final latent rendered aligned and through
  the alignment transform (with the PTI-tuned generator when PTI ran, in which case ``pivot.png`` /
  ``pivot_unaligned.png`` hold the encoder's renders);
- ``latent.npy``: float32 [num_ws, w_dim]; ``latents.npy``: [n_iters, num_ws, w_dim], one per iteration;
- ``metrics.json``: MSE, PSNR, MS-SSIM, LPIPS (null without LPIPS weights) and dlib identity similarity of
  the reconstruction against the aligned input and of the unaligned render against the crop,
  per-iteration pixel metrics, the transform, PTI losses and timings;
- ``generator_pti.safetensors`` when asked (Charm Studio generator format).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.align import AlignedFace, align_face
from engine.imageio import from_uint8, write_image, write_npy, write_text
from engine.inversion.restyle import InversionResult
from engine.jobs import JobControl
from engine.photo import PhotoFace, PhotoReader, invert_face, tune_face

__all__ = [
    "InvertSettings",
    "PhotoInversion",
    "invert_photo",
    "load_inverter_spec",
    "write_alignment",
    "write_photo_inversion",
]


@dataclass(frozen=True)
class InvertSettings:
    """iters: encoder iterations; face_index: which face (default the largest); pti_steps: tuning steps
    (0: none); pti_target: tune towards the 'aligned' face or the unaligned 'crop' through its transform;
    identity: measure dlib identity similarity."""

    iters: int = 3
    face_index: int | None = None
    pti_steps: int = 0
    pti_lr: float = 3e-4
    pti_target: str = "aligned"
    identity: bool = True

    def __post_init__(self) -> None:
        if self.iters < 1:
            raise ValueError("the number of iterations must be at least 1")
        if self.pti_steps < 0:
            raise ValueError("the number of PTI steps must be 0 or more")
        if self.pti_target not in ("aligned", "crop"):
            raise ValueError(f"the PTI target must be 'aligned' or 'crop', not {self.pti_target!r}")


@dataclass
class PhotoInversion:
    """Images are float32 [1,3,R,R] in [-1,1] at the generator's resolution R."""

    photo: PhotoFace
    inversion: InversionResult
    aligned: torch.Tensor
    crop: torch.Tensor
    reconstruction: torch.Tensor
    reconstruction_unaligned: torch.Tensor
    pivot: torch.Tensor | None = None  # the encoder's renders, when PTI changed the generator
    pivot_unaligned: torch.Tensor | None = None
    tuned: torch.nn.Module | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def latent(self) -> np.ndarray:
        """float32 [num_ws, w_dim]."""
        return self.inversion.latent[0].detach().cpu().numpy().astype(np.float32)


def load_inverter_spec(
    spec: str, device: torch.device | str = "cpu", download: bool = False, ctl: JobControl | None = None
) -> Any:
    """The inverter of model ``spec`` (named as everywhere, :func:`engine.model_store.resolve_model`):
    an encoder file is loaded as it is, a generator file gets optimisation, anything else its bundle's."""
    from engine.bundle_build import file_kind
    from engine.models import MANIFEST_NAME, inverter_for, load_bundle

    p = Path(spec).expanduser()
    kind = file_kind(p) if p.is_file() and p.name != MANIFEST_NAME else None
    if kind is not None:
        if kind == "encoder":
            from engine.inversion import load_inverter

            return load_inverter(p, device=device)
        if kind == "generator":
            from engine.checkpoints import load_generator
            from engine.inversion.optimize import OptimizationInverter

            return OptimizationInverter(load_generator(p, device=device))
    from engine.model_store import resolve_model

    return inverter_for(load_bundle(resolve_model(spec, download=download, ctl=ctl), device=device))


def invert_photo(
    path: str | os.PathLike,
    inverter: Any,
    settings: InvertSettings,
    ctl: JobControl | None = None,
    device: torch.device | str = "cpu",
) -> PhotoInversion:
    """Open ``path``, invert its face with ``inverter`` (whose ``generator`` renders), optionally tune."""
    from engine.losses import LPIPSUnavailableWarning, PerceptualLoss
    from engine.metrics import compute_metrics

    ctl = ctl or JobControl()
    device = torch.device(device)
    G = inverter.generator
    res = int(G.img_resolution)
    times: dict[str, float] = {}

    t0 = time.perf_counter()
    photo = PhotoReader().open(path, settings.face_index, ctl=ctl)
    at_res = align_face(photo.image, size=res, landmarks=photo.face.landmarks)
    times["align_s"] = time.perf_counter() - t0
    aligned, crop = from_uint8(at_res.aligned, device), from_uint8(at_res.crop, device)
    transform = at_res.transform.to(device)

    t0 = time.perf_counter()
    result = invert_face(inverter, photo.aligned, settings.iters, ctl, transform=transform, device=device)
    times["invert_s"] = time.perf_counter() - t0
    latent = result.latent
    eye = torch.eye(3, device=device)
    with torch.no_grad():
        pivot = result.images[-1] if result.images else G.synthesis(latent, transform=eye)
        pivot_un = result.unaligned if result.unaligned is not None else G.synthesis(latent, transform=transform)

    with warnings.catch_warnings():
        # The fallback warning is reported once in metrics.json instead.
        warnings.simplefilter("ignore", LPIPSUnavailableWarning)
        perceptual = PerceptualLoss("alex", device=device, resize=256)

    out = PhotoInversion(photo, result, aligned, crop, pivot, pivot_un)
    pti_info = None
    if settings.pti_steps > 0:
        target, tr = (at_res.aligned, None) if settings.pti_target == "aligned" else (at_res.crop, at_res.transform)
        t0 = time.perf_counter()
        pti = tune_face(
            G, target, latent, settings.pti_steps, ctl, transform=tr, lr=settings.pti_lr, perceptual=perceptual
        )
        times["pti_s"] = time.perf_counter() - t0
        out.tuned = pti.generator
        pti_info = {
            "steps": pti.steps,
            "stopped_early": pti.stopped_early,
            "target": settings.pti_target,
            "lr": settings.pti_lr,
            "loss_first": pti.losses[0] if pti.losses else None,
            "loss_last": pti.losses[-1] if pti.losses else None,
            "l2_first": pti.l2[0] if pti.l2 else None,
            "l2_last": pti.l2[-1] if pti.l2 else None,
        }
        with torch.no_grad():
            out.pivot, out.pivot_unaligned = pivot, pivot_un
            out.reconstruction = pti.generator.synthesis(latent, transform=eye)
            out.reconstruction_unaligned = pti.generator.synthesis(latent, transform=transform)

    ctl.stage("Measuring")
    t0 = time.perf_counter()
    identity = settings.identity
    metrics: dict[str, Any] = {
        "kind": getattr(inverter, "kind", type(inverter).__name__),
        "resolution": res,
        "iterations": len(result.latents),
        "lpips_available": perceptual.is_lpips,
        "transform": at_res.transform.double().numpy().tolist(),
        "angle_deg": at_res.angle_deg,
        "tx": at_res.tx,
        "ty": at_res.ty,
        "aligned": compute_metrics(out.reconstruction, aligned, perceptual=perceptual, identity=identity),
        "unaligned": compute_metrics(out.reconstruction_unaligned, crop, perceptual=perceptual, identity=identity),
        "per_iteration": [
            compute_metrics(img, aligned, perceptual=perceptual, identity=False) for img in result.images
        ],
    }
    if pti_info is not None:
        metrics["pivot_aligned"] = compute_metrics(pivot, aligned, perceptual=perceptual, identity=identity)
        metrics["pivot_unaligned"] = compute_metrics(pivot_un, crop, perceptual=perceptual, identity=identity)
        metrics["pti"] = pti_info
    times["metrics_s"] = time.perf_counter() - t0
    metrics["timings"] = times
    out.metrics = metrics
    return out


def _json_safe(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _json_safe(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_json_safe(v) for v in d]
    if isinstance(d, float) and not math.isfinite(d):
        return None if math.isnan(d) else ("inf" if d > 0 else "-inf")
    return d


def write_photo_inversion(
    result: PhotoInversion, out: str | os.PathLike, extra: dict[str, Any] | None = None, save_generator: bool = False
) -> Path:
    """Write ``result`` into folder ``out`` (created); ``extra`` goes into metrics.json first."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_image(folder / "aligned.png", result.aligned[0])
    write_image(folder / "crop.png", result.crop[0])
    write_image(folder / "reconstruction.png", result.reconstruction[0])
    write_image(folder / "reconstruction_unaligned.png", result.reconstruction_unaligned[0])
    if result.pivot is not None and result.pivot_unaligned is not None:
        write_image(folder / "pivot.png", result.pivot[0])
        write_image(folder / "pivot_unaligned.png", result.pivot_unaligned[0])
    if save_generator and result.tuned is not None:
        from engine.checkpoints import save_generator as save

        tuned: Any = result.tuned  # a tuned copy of the inverter's Generator
        save(tuned, folder / "generator_pti.safetensors", source=Path(result.photo.path).name)
    latents = torch.stack([w[0] for w in result.inversion.latents]).detach().cpu().numpy().astype(np.float32)
    write_npy(folder / "latent.npy", result.latent)
    write_npy(folder / "latents.npy", latents)
    metrics = {**(extra or {}), **result.metrics}
    write_text(folder / "metrics.json", json.dumps(_json_safe(metrics), indent=1) + "\n")
    return folder


def write_alignment(face: AlignedFace, out: str | os.PathLike, source: str) -> Path:
    """Write one alignment into folder ``out`` (created), as ``main.py align`` does: ``aligned.png``,
    ``crop.png`` and ``transform.json`` (the transform, its parameters, the quads, the landmarks and
    every detected face)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    info = {
        "source": source,
        "source_size": list(face.source_size),
        "size": int(face.aligned.shape[0]),
        "scale_mode": face.scale_mode,
        "face_index": face.face_index,
        "faces": [{"box": f.box.tolist(), "score": f.score} for f in face.faces],
        "angle_deg": face.angle_deg,
        "tx": face.tx,
        "ty": face.ty,
        "zoom": face.zoom,
        "transform": face.transform.double().numpy().tolist(),
        "quad": face.quad.tolist(),
        "crop_quad": face.crop_quad.tolist(),
        "landmarks": face.landmarks.tolist(),
    }
    write_image(folder / "aligned.png", face.aligned)
    write_image(folder / "crop.png", face.crop)
    write_text(folder / "transform.json", json.dumps(info, indent=1) + "\n")
    return folder
