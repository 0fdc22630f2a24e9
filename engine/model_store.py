"""The model library: one way to name a model everywhere, kits of official files, installed bundles.

A model is named, identically in the window and in every command's ``--model``, by one of:

- ``demo``: the embedded demo model (procedural faces, 64 px; no download);
- a **known name**: a kit (:data:`KITS`, e.g. ``ffhq``) or a known official file
  (:data:`engine.dl.KNOWN_MODELS`, e.g. ``stylegan3-t-ffhqu-256x256``); installed bundles by
  their name (``python3 main.py models list``);
- a **bundle folder** (with ``manifest.json``) or its manifest;
- a **single model file** (``.pkl``, ``.pt``, ``.safetensors``): a bundle is built for it once and kept
  in the model cache.

:func:`resolve_model` turns a name into a bundle manifest, downloading a missing known model only when
asked (``download=True``); otherwise :class:`ModelNotInstalledError` names the command that gets it.
Installed bundles live in ``<model cache>/bundles/<name>/`` (:func:`engine.dl.models_dir`), the
downloaded official files beside them under their own names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine import download as dl
from engine.bundle_build import ModelFiles, build_bundle, classify_files, safe_name
from engine.download import KNOWN_MODELS, KnownModel, format_bytes
from engine.errors import CheckpointError
from engine.jobs import JobControl

__all__ = [
    "KITS",
    "MAX_RESUMES",
    "InstalledModel",
    "Kit",
    "ModelNotInstalledError",
    "add_model",
    "bundles_dir",
    "describe_size",
    "find_kit",
    "get_model",
    "import_files",
    "installed_models",
    "is_known_name",
    "known_file_path",
    "missing_files",
    "remove_model",
    "resolve_model",
]

BUNDLES = "bundles"
_RESERVED = {"demo", "random"}


@dataclass(frozen=True)
class Kit:
    """A ready-to-edit set of official files: what it is for, which files, how fast it runs."""

    name: str
    title: str
    description: str
    files: tuple[str, ...]  # names in KNOWN_MODELS
    speed: str

    @property
    def approx_bytes(self) -> int:
        return sum(KNOWN_MODELS[f].approx_bytes for f in self.files)

    @property
    def known(self) -> tuple[KnownModel, ...]:
        return tuple(KNOWN_MODELS[f] for f in self.files)


_FFHQ_BOUNDARIES = ("boundary-ffhq-age", "boundary-ffhq-Smiling", "boundary-ffhq-pose", "boundary-ffhq-Male")

KITS: dict[str, Kit] = {
    k.name: k
    for k in (
        Kit(
            "ffhq",
            "Real photos (FFHQ)",
            "The paper's setup for aligned portraits: StyleGAN3-R 1024 px (inside the encoder file), the "
            "ReStyle-pSp encoder and InterFaceGAN sliders for age, smile, pose and gender.",
            ("restyle_pSp_ffhq", *_FFHQ_BOUNDARIES),
            "GPU: under a second per photo; CPU: about a minute to invert, 15-30 s per edit",
        ),
        Kit(
            "ffhq-e4e",
            "Real photos, more editable (FFHQ, e4e)",
            "Like 'Real photos (FFHQ)' with the ReStyle-e4e encoder: slightly less faithful inversions that "
            "edit more cleanly.",
            ("restyle_e4e_ffhq", *_FFHQ_BOUNDARIES),
            "GPU: under a second per photo; CPU: about a minute to invert, 15-30 s per edit",
        ),
        Kit(
            "ffhqu",
            "Real photos, unaligned (FFHQ-U)",
            "StyleGAN3-R 1024 px trained on unaligned faces (the paper's video model). No encoder: photos are "
            "inverted by optimisation; sliders are the model's principal components (GANSpace).",
            ("sg3-r-ffhqu-1024",),
            "GPU: about a minute per photo; CPU: slow (tens of minutes to invert)",
        ),
        Kit(
            "fast-cpu",
            "Fast on CPU (256 px)",
            "NVIDIA's StyleGAN3-T 256 px trained on unaligned faces: small and quick on a CPU. Inverted by "
            "optimisation; sliders are principal components (GANSpace).",
            ("stylegan3-t-ffhqu-256x256",),
            "CPU: about a second per edit, a few minutes to invert",
        ),
    )
}


class ModelNotInstalledError(CheckpointError):
    """A known model is not downloaded yet; the message names the command that gets it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class InstalledModel:
    """A bundle in the model cache."""

    name: str
    title: str
    folder: Path
    bytes: int
    source: str  # what it was built from, for the user


def bundles_dir() -> Path:
    return dl.models_dir() / BUNDLES


def describe_size(n: int, approx: bool = True) -> str:
    return ("about " if approx else "") + format_bytes(n)


def find_kit(name: str) -> Kit | None:
    return KITS.get(name.strip().lower())


def _known_file(name: str) -> KnownModel | None:
    try:
        return dl.find_model(name)
    except dl.DownloadError:
        return None


def is_known_name(name: str) -> bool:
    """True for a kit's or a known official file's name."""
    return find_kit(name) is not None or _known_file(name) is not None


def known_file_path(model: KnownModel) -> Path | None:
    """Where a known file lies in the cache, when it is there (whole: never a ``.part``)."""
    p = dl.model_path(model.name)
    return p if p.is_file() and p.stat().st_size > 0 else None


def _folder_bytes(folder: Path) -> int:
    seen: set[tuple[int, int]] = set()
    total = 0
    for p in folder.rglob("*"):
        if p.is_file():
            st = p.stat()
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def installed_models() -> list[InstalledModel]:
    """The bundles in the model cache, by name."""
    from engine.imageio import read_tagged_json
    from engine.models import BUNDLE_FORMAT, MANIFEST_NAME

    root = bundles_dir()
    out: list[InstalledModel] = []
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        manifest = folder / MANIFEST_NAME
        if folder.name.startswith(".") or not manifest.is_file():
            continue
        try:
            data = read_tagged_json(manifest, BUNDLE_FORMAT, CheckpointError, "bundle manifest", "build it again")
        except CheckpointError:
            continue
        src = data.get("source") or {}
        parts = [str(src.get(k)) for k in ("kit", "generator", "encoder") if src.get(k)]
        if src.get("boundaries"):
            parts.append(f"{len(src['boundaries'])} boundaries")
        out.append(
            InstalledModel(
                name=folder.name,
                title=str(data.get("title") or folder.name),
                folder=folder,
                bytes=_folder_bytes(folder),
                source=", ".join(parts) or "bundle",
            )
        )
    return out


def _installed_manifest(name: str) -> Path | None:
    from engine.models import MANIFEST_NAME

    p = bundles_dir() / safe_name(name) / MANIFEST_NAME
    return p if p.is_file() else None


def missing_files(name: str) -> list[KnownModel]:
    """The known files of kit or known file ``name`` that are not in the cache yet."""
    kit = find_kit(name)
    known = kit.known if kit else ((_known_file(name),) if _known_file(name) else ())
    return [m for m in known if m is not None and known_file_path(m) is None]


def _not_installed(name: str) -> ModelNotInstalledError:
    kit = find_kit(name)
    known = kit.known if kit else (dl.find_model(name),)
    title = kit.title if kit else known[0].description
    size = describe_size(sum(m.approx_bytes for m in missing_files(name)) or sum(m.approx_bytes for m in known))
    key = kit.name if kit else known[0].name
    return ModelNotInstalledError(
        key,
        f"model '{key}' ({title}, {size}) is not downloaded yet; get it with 'python3 main.py models get {key}' "
        "(or add --download, or use Models > Manage in the window)",
    )


def _file_bundle_name(path: Path) -> str:
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()
    return f"file-{safe_name(path.stem)}-{hashlib.sha1(key).hexdigest()[:8]}"


def resolve_model(spec: str | os.PathLike, *, download: bool = False, ctl: JobControl | None = None) -> Path:
    """The manifest of the bundle model ``spec`` names (see the module docstring).

    download: fetch a known model that is not in the cache yet (else :class:`ModelNotInstalledError`).
    A single model file gets a bundle built once (GANSpace directions; inverted by optimisation unless
    it is an encoder file). Raises :class:`CheckpointError` for anything that is not a model.
    """
    from engine.models import MANIFEST_NAME, resolve_manifest

    text = str(spec).strip()
    if text == "demo":
        return resolve_manifest("demo")
    p = Path(text).expanduser()
    if p.is_dir() or p.name == MANIFEST_NAME:
        return resolve_manifest(p)
    if p.is_file():
        name = _file_bundle_name(p)
        manifest = _installed_manifest(name)
        if manifest is not None:
            return manifest
        files = classify_files([p])
        return build_bundle(
            bundles_dir() / name, files, name=name, title=f"{p.name}", source={"file": str(p.resolve())}, ctl=ctl
        )
    manifest = _installed_manifest(text) if text else None
    if manifest is not None:
        return manifest
    if is_known_name(text):
        kit = find_kit(text)
        key = kit.name if kit is not None else dl.find_model(text).name
        manifest = _installed_manifest(key)
        if manifest is not None:
            return manifest
        if download or not missing_files(key):  # (with every file here, the bundle is only built)
            return get_model(key, ctl=ctl)
        raise _not_installed(key)
    if any(sep in text for sep in ("/", os.sep)) or Path(text).suffix:
        raise CheckpointError(f"'{text}' does not exist; check the path, or give a model name from 'models list'")
    raise CheckpointError(
        f"'{text}' is not a model: give 'demo', a known model name ('python3 main.py models list'), a bundle "
        "folder or a model file (.pkl, .pt, .safetensors)"
    )


def _download_all(known: Iterable[KnownModel], ctl: JobControl) -> None:
    todo = [m for m in known if known_file_path(m) is None]
    for i, m in enumerate(todo):
        total = m.approx_bytes
        ctl.stage(f"Downloading {m.name} ({i + 1}/{len(todo)})", total=total)

        def progress(done: int, size: int | None, total: int = total) -> None:
            ctl.progress(done, size or max(done, total))

        try:
            dl.ensure_model(m.name, progress=progress, cancel=ctl.cancelled)
        except dl.DownloadCancelled:
            ctl.check()
            raise


MAX_RESUMES = 3  # automatic resumes of a download that broke off after making progress


def _bytes_on_disk(known: Iterable[KnownModel]) -> int:
    """Bytes of these files in the cache, whole or partly downloaded (grows while a download progresses)."""
    total = 0
    for m in known:
        path = dl.model_path(m.name)
        for p in (path, path.with_name(path.name + ".part")):
            if p.is_file():
                total += p.stat().st_size
    return total


def get_model(name: str, ctl: JobControl | None = None, resumes: int = MAX_RESUMES) -> Path:
    """Download (what is missing of) kit or known file ``name`` and build its bundle; returns the manifest.

    Files already in the cache are not downloaded again. A download that breaks off after making
    progress (a dropped connection) is resumed up to ``resumes`` times, from where it stopped; a refusal
    (quota page, HTTP error, offline) fails at once, keeping the partial file for a later resume.
    """
    ctl = ctl or JobControl()
    kit = find_kit(name)
    if kit is not None:
        known: tuple[KnownModel, ...] = kit.known
        key, title, description = kit.name, kit.title, kit.description
    else:
        m = dl.find_model(name)
        known, key, title, description = (m,), m.name, m.description, m.description
    tries = 0
    while True:
        before = _bytes_on_disk(known)
        try:
            _download_all(known, ctl)
            break
        except dl.DownloadError:
            ctl.check()
            if tries >= resumes or _bytes_on_disk(known) <= before:
                raise
            tries += 1
            ctl.stage(f"Connection dropped: resuming ({tries}/{resumes})")
    paths = [known_file_path(m) for m in known]
    if any(p is None for p in paths):
        raise CheckpointError(f"the files of '{key}' are incomplete after downloading; run the command again")
    files = classify_files(p for p in paths if p is not None)
    return build_bundle(
        bundles_dir() / key, files, name=key, title=title, description=description, source={"kit": key}, ctl=ctl
    )


def add_model(paths: Iterable[os.PathLike | str], name: str | None = None, ctl: JobControl | None = None) -> Path:
    """Build a bundle from model files (a generator and/or an encoder, boundaries) and install it under
    ``name`` (default: the generator's or encoder's file name). Returns the manifest."""
    files: ModelFiles = classify_files(paths)
    main = files.generator or files.encoder
    assert main is not None
    key = safe_name(name or main.stem)
    if key in _RESERVED or key in KITS or key in KNOWN_MODELS:
        raise CheckpointError(f"'{key}' is a reserved model name; choose another with --name")
    title = name or main.name
    return build_bundle(bundles_dir() / key, files, name=key, title=title, ctl=ctl)


def remove_model(name: str) -> list[Path]:
    """Remove an installed bundle, or a known file from the cache (and the kit bundle built from it).
    Returns what was removed; CheckpointError when there is nothing of that name."""
    removed: list[Path] = []
    key = safe_name(name)
    if key in _RESERVED:
        raise CheckpointError(f"'{key}' cannot be removed: it is built into Charm Studio")
    folder = bundles_dir() / key
    if folder.is_dir():
        shutil.rmtree(folder)
        removed.append(folder)
    known = _known_file(name)
    if known is not None:
        p = dl.model_path(known.name)
        for f in (p, p.with_name(p.name + ".part")):
            if f.exists():
                f.unlink()
                removed.append(f)
    kit = find_kit(name)
    if kit is not None and not removed:
        raise CheckpointError(
            f"kit '{kit.name}' is not installed; its downloaded files stay until removed by name "
            f"({', '.join(kit.files)})"
        )
    if not removed:
        raise CheckpointError(f"no installed model or downloaded file is called '{name}'; see 'models list'")
    return removed


def import_files(paths: Iterable[os.PathLike | str]) -> tuple[list[KnownModel], list[Path]]:
    """Put files the user downloaded by hand into the cache: those whose name is a known file's go to
    its place (hard link, else copy; checked against the recorded SHA-256 when there is one). Returns
    (the known files imported, the other files)."""
    by_name = {Path(m.filename).name.lower(): m for m in KNOWN_MODELS.values()}
    imported: list[KnownModel] = []
    others: list[Path] = []
    for raw in paths:
        p = Path(raw).expanduser()
        m = by_name.get(p.name.lower())
        if m is None or not p.is_file():
            others.append(p)
            continue
        dest = dl.model_path(m.name)
        expected = dl.recorded_checksum(m)
        if expected is not None:
            got = dl.file_sha256(p)
            if got != expected:
                raise CheckpointError(
                    f"'{p}' is not the official {m.name} (its SHA-256 differs from the one recorded); download it again"
                )
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists() and dest.resolve() == p.resolve():
            imported.append(m)
            continue
        tmp = dest.with_name(dest.name + ".import")
        tmp.unlink(missing_ok=True)
        try:
            os.link(p, tmp)
        except OSError:
            shutil.copyfile(p, tmp)
        os.replace(tmp, dest)
        if expected is None:
            dl.record_checksum(m, dest)
        imported.append(m)
    return imported, others
