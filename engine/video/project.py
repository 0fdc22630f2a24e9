"""A video job's project folder: what each stage produced, keyed by the parameters that produced it.

Layout (``--work DIR``; by default ``<output>.charm/`` beside the output)::

    project.json          the manifest: the input's identity and, per stage, its key and parameters
    track.json            per-frame windows and transforms (engine.video.track), landmarks.npy
    latents.npy           float32 [N,num_ws,w_dim] inverted latents (memory-mapped while written)
    quality.npy           float32 [N,2] per-frame reconstruction PSNR (dB) and LPIPS (NaN when unknown)
    invert.progress.json  how many frames of latents.npy are final (inversion resumes from there)
    smooth.npz            smoothed latents and transforms
    pti/                  the tuned generator, its checkpoints and training targets
    edits.json            the clip's edits (engine.video.edits), as the window saves them

A stage's *key* is a hash of its parameters and of the key of the stage it reads from, so changing a
parameter redoes that stage and the ones after it, and nothing before it. Every file is written
atomically (temporary name, then rename); a stage is marked done in the manifest only after its files
are complete, so a run killed at any point leaves a folder the next run resumes from.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import CharmError
from engine.imageio import write_text

__all__ = ["PROJECT_FORMAT", "Project", "ProjectError", "file_identity", "stage_key"]

PROJECT_FORMAT = "charm-video-project/1"
MANIFEST = "project.json"


class ProjectError(CharmError):
    """The project folder cannot be used (another clip's folder, unreadable, not writable)."""


def stage_key(params: Mapping[str, Any], previous: str | None = None) -> str:
    """A short stable hash of a stage's parameters (JSON-able values) and the previous stage's key."""
    text = json.dumps({"params": params, "previous": previous}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_identity(path: Path) -> dict[str, Any]:
    """What identifies an input file cheaply: its absolute path, size and modification time."""
    st = path.stat()
    return {"path": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


class Project:
    """The project folder of one clip. ``input_id`` (:func:`file_identity`) must match the folder's."""

    def __init__(self, folder: os.PathLike | str, input_id: Mapping[str, Any]) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ProjectError(
                f"cannot create the project folder {self.folder} ({e.strerror}); choose another --work"
            ) from None
        if not os.access(self.folder, os.W_OK):
            raise ProjectError(f"cannot write into the project folder {self.folder}; choose another --work")
        self.input_id = dict(input_id)
        self.data = self._read()

    # -- manifest ---------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        path = self.folder / MANIFEST
        if not path.is_file():
            return {"format": PROJECT_FORMAT, "input": self.input_id, "stages": {}}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
            raise ProjectError(
                f"{self.folder} holds something else than a Charm Studio video project ({MANIFEST} is not one); "
                "choose an empty folder for --work"
            )
        if data.get("input", {}).get("path") != self.input_id.get("path"):
            raise ProjectError(
                f"{self.folder} is the project of another clip ({data.get('input', {}).get('path')}); "
                "choose another --work folder"
            )
        if data.get("input") != self.input_id:  # the same file, changed since: nothing can be reused
            data = {"format": PROJECT_FORMAT, "input": self.input_id, "stages": {}}
            self._save(data)
        return data

    def _save(self, data: dict[str, Any] | None = None) -> None:
        write_text(self.folder / MANIFEST, json.dumps(data or self.data, indent=2, default=str) + "\n")

    def path(self, name: str) -> Path:
        return self.folder / name

    def key(self, stage: str) -> str | None:
        """The key the stage was last completed with (None when it is not done)."""
        entry = self.data["stages"].get(stage)
        return entry.get("key") if isinstance(entry, dict) and entry.get("done") else None

    def is_done(self, stage: str, key: str) -> bool:
        return self.key(stage) == key

    def start(self, stage: str, key: str, params: Mapping[str, Any]) -> None:
        """Record that ``stage`` runs with ``key`` (not done yet); a different key resets its progress."""
        entry = self.data["stages"].get(stage) or {}
        if entry.get("key") != key:
            entry = {"key": key, "params": dict(params), "done": False, "progress": {}}
        entry["done"] = False
        self.data["stages"][stage] = entry
        self._save()

    def progress(self, stage: str) -> dict[str, Any]:
        """The stage's saved progress (e.g. frames finished) for its current key."""
        entry = self.data["stages"].get(stage) or {}
        return dict(entry.get("progress") or {})

    def save_progress(self, stage: str, **progress: Any) -> None:
        self.data["stages"][stage].setdefault("progress", {}).update(progress)
        self._save()

    def finish(self, stage: str, **info: Any) -> None:
        entry = self.data["stages"][stage]
        entry.update(done=True, finished=time.strftime("%Y-%m-%d %H:%M:%S"), **info)
        self._save()

    # -- arrays -----------------------------------------------------------------------------------

    def open_array(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32, fresh: bool = False) -> np.memmap:
        """A memory-mapped ``.npy`` array in the folder, created (NaN-filled for floats) when missing,
        of another shape, or ``fresh``; writes go to disk as they are made (flush before marking done)."""
        path = self.path(name)
        if not fresh and path.is_file():
            try:
                arr = np.lib.format.open_memmap(path, mode="r+")
                if arr.shape == tuple(shape) and arr.dtype == np.dtype(dtype):
                    return arr
            except (OSError, ValueError):
                pass
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        if np.issubdtype(np.dtype(dtype), np.floating):
            arr[...] = np.nan
        arr.flush()
        del arr
        os.replace(tmp, path)
        return np.lib.format.open_memmap(path, mode="r+")

    def load_array(self, name: str) -> np.ndarray:
        """A finished array, memory-mapped read-only."""
        return np.load(self.path(name), mmap_mode="r")
