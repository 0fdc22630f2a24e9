"""The window's defaults from the environment and the machine.

``CHARM_CACHE_DIR`` is where the random development bundle and PTI results go (default: the user's
cache folder); ``CHARM_DEVICE`` ('cpu', 'cuda', default: CUDA when available); ``CHARM_THREADS`` (torch
CPU threads; default all cores but one); ``CHARM_AUTOQUIT_MS`` closes the app after that many
milliseconds (tests and smoke checks).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from engine.studio import RANDOM_SPEC

APP_NAME = "Charm Studio"
DEMO_MISSING_NOTICE = "demo model missing (restore resources/models/demo): random weights"


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
