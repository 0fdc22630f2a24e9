"""The window's defaults from the environment and the machine.

``CHARM_CACHE_DIR`` is where the random development bundle and PTI results go (default: the user's
cache folder); ``CHARM_DEVICE`` ('cpu', 'cuda', default: CUDA when available); ``CHARM_THREADS`` (torch
CPU threads; default all cores but one); ``CHARM_AUTOQUIT_MS`` closes the app after that many
milliseconds (tests and smoke checks); ``CHARM_SETTINGS`` is the file where the window remembers the
last model used (an INI file; default: Qt's per-user settings of Charm Studio).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from engine.studio import RANDOM_SPEC

APP_NAME = "Charm Studio"
DEMO_MISSING_NOTICE = "demo model missing (restore resources/models/demo): random weights"
DEMO_PHOTO_NOTICE = (
    "The demo model draws procedural faces: a real photo comes back as a soft, generic face. "
    "For real photos, get the FFHQ models."
)
LAST_MODEL_KEY = "model/last"


def default_cache_dir() -> Path:
    env = os.environ.get("CHARM_CACHE_DIR")
    if env:
        return Path(env)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericCacheLocation)
    return Path(base or Path.home() / ".cache") / "charm-studio"


def default_threads() -> int:
    """Torch CPU threads for the worker: all cores but one, which stays free for the UI thread (with
    every core busy, torch's threads spin against the UI and the rest of the desktop and renders
    stall for seconds on a 2-core machine)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def default_model() -> tuple[str, str | None]:
    """(spec, notice): the demo bundle when installed, else the random development bundle."""
    from engine.models import DEMO_MANIFEST

    return ("demo", None) if DEMO_MANIFEST.is_file() else (RANDOM_SPEC, DEMO_MISSING_NOTICE)


def default_device() -> str:
    return os.environ.get("CHARM_DEVICE", "auto")


def threads_from_env() -> int | None:
    value = os.environ.get("CHARM_THREADS")
    return int(value) if value else None


def app_settings() -> QSettings:
    """Where the window remembers things between runs (``CHARM_SETTINGS`` or Qt's per-user location)."""
    path = os.environ.get("CHARM_SETTINGS")
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("charm-studio", APP_NAME)


def remembered_model(settings: QSettings | None) -> str | None:
    """The last model the window loaded, when it can still be loaded without a download: 'demo', an
    installed model's name, or a bundle folder or model file that still exists."""
    if settings is None:
        return None
    spec = str(settings.value(LAST_MODEL_KEY, "") or "").strip()
    if not spec or spec == RANDOM_SPEC:
        return None
    from engine import model_store
    from engine.models import DEMO_MANIFEST

    if spec == "demo":
        return spec if DEMO_MANIFEST.is_file() else None
    if spec in {m.name for m in model_store.installed_models()} or Path(spec).exists():
        return spec
    return None


def remember_model(settings: QSettings | None, spec: str) -> None:
    if settings is not None:
        settings.setValue(LAST_MODEL_KEY, spec)
