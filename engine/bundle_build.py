"""Building a ready-to-edit model bundle from official files.

A bundle (:mod:`engine.models`) can be made from any mix of:

- a **generator**: NVIDIA's StyleGAN3 ``.pkl``, the paper's ``.pt`` state dict, or our ``.safetensors``;
  it is converted to our safetensors format (G_ema only: smaller, loads fast, nothing executable);
- an **encoder** (the paper's ReStyle ``.pt`` or our inverter ``.safetensors``): placed in the bundle
  by a hard link when the disk allows it (no second copy of a large file), else converted; without a
  generator, the encoder's own decoder is the bundle's generator (``{"from": "inverter"}``);
- InterFaceGAN **boundary** ``.npy`` files ([1,w_dim] or [w_dim]), mapped to named directions with
  the ranges the paper's release uses (:data:`BOUNDARY_NAMES`).

Without an encoder the bundle inverts by optimisation; without boundaries it gets GANSpace directions
(:mod:`engine.ganspace`), computed once here, so every model has sliders. The bundle is written into a
temporary sibling folder and renamed into place, so a cancelled or failed build leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from engine.errors import CheckpointError
from engine.imageio import write_text
from engine.jobs import JobControl

if TYPE_CHECKING:
    from engine.models import Direction
    from engine.networks.stylegan3 import Generator

__all__ = [
    "BOUNDARY_NAMES",
    "ModelFiles",
    "boundary_direction",
    "build_bundle",
    "classify_files",
    "file_kind",
    "safe_name",
]

# Boundary file stem (lower case, "_boundary" removed) -> (direction name, slider range). Ranges are
# those the paper's release uses for its FFHQ boundaries.
BOUNDARY_NAMES: dict[str, tuple[str, tuple[float, float]]] = {
    "age": ("age", (-5.0, 5.0)),
    "smiling": ("smile", (-2.0, 2.0)),
    "smile": ("smile", (-2.0, 2.0)),
    "pose": ("pose", (-4.0, 5.0)),
    "male": ("gender", (-2.0, 4.0)),
}
_DEFAULT_RANGE = (-3.0, 3.0)
_MODEL_SUFFIXES = (".pkl", ".pt", ".pth", ".safetensors")


@dataclass(frozen=True)
class ModelFiles:
    """The files a bundle is built from (any may be missing, but not both generator and encoder)."""

    generator: Path | None = None
    encoder: Path | None = None
    boundaries: tuple[Path, ...] = field(default_factory=tuple)


def safe_name(text: str) -> str:
    """A model name usable as a folder name: lower case letters, digits, '.', '_' and '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower()).strip(".-")
    return name or "model"


def file_kind(path: Path) -> str:
    """'generator', 'encoder' or 'boundary' for a model file; CheckpointError for anything else."""
    from engine.checkpoints import sniff_format

    if not path.is_file():
        raise CheckpointError(f"'{path}' does not exist; check the path")
    if path.suffix.lower() == ".npy":
        return "boundary"
    if path.suffix.lower() not in _MODEL_SUFFIXES:
        raise CheckpointError(
            f"'{path}' is not a model file; give a generator (.pkl, .pt, .safetensors), an encoder (.pt) "
            "or InterFaceGAN boundaries (.npy)"
        )
    container = sniff_format(path)
    if container == "safetensors":
        from safetensors import safe_open

        from engine.inversion.inverter_files import INVERTER_FORMAT

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception as e:  # noqa: BLE001 - SafetensorError and friends
            raise CheckpointError(f"'{path}' is truncated or corrupt ({type(e).__name__}); copy it again") from None
        return "encoder" if meta.get("format") == INVERTER_FORMAT else "generator"
    if container == "pickle":
        return "generator"
    from engine.pickle_reader import torch_load

    obj = torch_load(path)
    inner = obj.get("state_dict") if isinstance(obj, dict) else None
    if isinstance(inner, dict) and any(str(k).startswith("encoder.") for k in inner):
        return "encoder"
    return "generator"


def classify_files(paths: Iterable[os.PathLike | str]) -> ModelFiles:
    """Sort model files into generator, encoder and boundaries (at most one generator and one encoder)."""
    generator = encoder = None
    boundaries: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        kind = file_kind(p)
        if kind == "boundary":
            boundaries.append(p)
        elif kind == "encoder":
            if encoder is not None:
                raise CheckpointError(f"two encoders given ('{encoder.name}' and '{p.name}'); a model takes one")
            encoder = p
        else:
            if generator is not None:
                raise CheckpointError(f"two generators given ('{generator.name}' and '{p.name}'); a model takes one")
            generator = p
    if generator is None and encoder is None:
        raise CheckpointError(
            "no generator or encoder among the files; boundaries need the model they were fitted for "
            "(add its generator .pkl/.pt or encoder .pt)"
        )
    return ModelFiles(generator, encoder, tuple(boundaries))


def boundary_direction(path: Path, w_dim: int, device: torch.device | str = "cpu") -> Direction:
    """An InterFaceGAN boundary file as a named :class:`engine.models.Direction` on every layer."""
    from engine.models import Direction

    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"'{path}' is not a readable .npy boundary ({e}); download it again") from None
    v = torch.from_numpy(np.asarray(arr, dtype=np.float32).reshape(-1))
    norm = float(v.norm()) if v.numel() else 0.0
    if v.numel() != w_dim or not np.isfinite(norm) or norm == 0.0:
        raise CheckpointError(
            f"'{path}' holds {v.numel()} values, but this model's W has {w_dim}; the boundary belongs to another model"
        )
    stem = path.stem.lower().removesuffix("_boundary")
    name, rng = BOUNDARY_NAMES.get(stem, (stem.replace("_", " "), _DEFAULT_RANGE))
    return Direction(
        name=name,
        vector=(v / norm).to(device),
        range=rng,
        description=f"InterFaceGAN boundary from {path.name}",
        layers=None,
        attribute=name,
    )


def _link_or_none(src: Path, dst: Path) -> bool:
    try:
        os.link(src, dst)
        return True
    except OSError:
        return False


def _model_card(title: str, files: ModelFiles, G: Generator, encoder: bool, directions: Mapping[str, Any]) -> str:
    cfg = "R" if G.init_kwargs.get("use_radial_filters") else "T"
    lines = [
        f"# {title}",
        "",
        f"StyleGAN3-{cfg}, {int(G.img_resolution)} px.",
        "",
        "## Inversion",
        "",
        (
            "A ReStyle encoder turns a photo into the model's latent code in a few passes (about a second "
            "on a GPU, longer on a CPU)."
            if encoder
            else "No encoder: a photo is inverted by optimising its latent code (slower, a few hundred steps)."
        ),
        "",
        "## Sliders",
        "",
    ]
    if any(str(n).startswith("component ") for n in directions):
        lines.append(
            "No attribute boundaries were given, so the sliders are the principal components of the model's "
            "latent space (GANSpace): the first ones usually change pose and face shape, later ones "
            "lighting and colour. Try them to see what each does."
        )
    else:
        lines.append("InterFaceGAN boundaries: " + ", ".join(directions) + ".")
    lines += ["", "## Made from", ""]
    for what, p in (("generator", files.generator), ("encoder", files.encoder)):
        if p is not None:
            lines.append(f"- {what}: `{p.name}`")
    for p in files.boundaries:
        lines.append(f"- boundary: `{p.name}`")
    return "\n".join(lines) + "\n"


def build_bundle(
    folder: os.PathLike | str,
    files: ModelFiles,
    *,
    name: str,
    title: str | None = None,
    description: str = "",
    source: Mapping[str, Any] | None = None,
    ctl: JobControl | None = None,
    ganspace_samples: int | None = None,
) -> Path:
    """Build a bundle from ``files`` into ``folder`` (replacing an older one) and return its manifest.

    Raises :class:`CheckpointError` when a file cannot be loaded or the files do not fit together
    (an encoder whose generator differs in size from the given generator, boundaries of another W).
    """
    from engine.checkpoints import load_generator, save_generator
    from engine.ganspace import DEFAULT_SAMPLES, ganspace_directions
    from engine.inversion import load_inverter, save_inverter
    from engine.models import BUNDLE_FORMAT, MANIFEST_NAME, write_directions

    ctl = ctl or JobControl()
    folder = Path(folder)
    if files.generator is None and files.encoder is None:
        raise CheckpointError("a model needs a generator or an encoder file")
    ctl.stage("Reading the model files")
    inverter = load_inverter(files.encoder) if files.encoder is not None else None
    ctl.check()
    G: Generator
    if files.generator is not None:
        G = load_generator(files.generator)
        if inverter is not None:
            own = inverter.generator
            if (int(own.w_dim), int(own.num_ws)) != (int(G.w_dim), int(G.num_ws)):
                raise CheckpointError(
                    f"'{files.encoder}' was trained for a generator with {int(own.num_ws)}x{int(own.w_dim)} "
                    f"latents, but '{files.generator}' has {int(G.num_ws)}x{int(G.w_dim)}; give the generator "
                    "the encoder was trained with (or none: the encoder file holds its own)"
                )
    else:
        assert inverter is not None
        G = inverter.generator
    ctl.check()
    if files.boundaries:
        directions = {}
        for p in files.boundaries:
            d = boundary_direction(p, int(G.w_dim))
            directions[d.name] = d
    else:
        directions = ganspace_directions(G, n_samples=ganspace_samples or DEFAULT_SAMPLES, ctl=ctl)
    ctl.stage("Writing the model")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".building-{folder.name}-", dir=folder.parent))
    try:
        gen_entry: dict[str, Any]
        if files.generator is not None:
            save_generator(G, tmp / "generator.safetensors", source=files.generator.name)
            gen_entry = {"file": "generator.safetensors"}
        else:
            gen_entry = {"from": "inverter"}
        inv_entry = None
        if files.encoder is not None and inverter is not None:
            linked = tmp / files.encoder.name
            if _link_or_none(files.encoder, linked):
                inv_entry = {"file": linked.name}
            else:
                save_inverter(inverter, tmp / "inverter.safetensors", source=files.encoder.name)
                inv_entry = {"file": "inverter.safetensors"}
        ctl.check()
        items = write_directions(tmp, directions)
        title = title or name
        write_text(tmp / "MODEL_CARD.md", _model_card(title, files, G, inverter is not None, items))
        data = {
            "format": BUNDLE_FORMAT,
            "name": name,
            "title": title,
            "description": description,
            "random_weights": False,
            "generator": gen_entry,
            "inverter": inv_entry,
            "predictor": None,
            "directions": {"file": "directions.safetensors", "items": items},
            "stylespace": {},
            "model_card": "MODEL_CARD.md",
            "source": {
                "generator": files.generator.name if files.generator else None,
                "encoder": files.encoder.name if files.encoder else None,
                "boundaries": [p.name for p in files.boundaries],
                "built": time.strftime("%Y-%m-%d %H:%M"),
                **dict(source or {}),
            },
        }
        write_text(tmp / MANIFEST_NAME, json.dumps(data, indent=2) + "\n")
        ctl.check()
        old = None
        if folder.exists():
            old = folder.with_name(f".old-{folder.name}-{os.getpid()}")
            os.replace(folder, old)
        os.replace(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / MANIFEST_NAME
