"""Shared test configuration: headless Qt, a small thread count, and the ../shared data folder."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _set_threads() -> None:
    """All cores on an idle machine; one thread when the machine is already busy, where OpenMP
    threads waiting on each other at every small op make the suite several times slower."""
    try:
        import torch
    except ImportError:
        return
    cores = os.cpu_count() or 1
    wanted = os.environ.get("CHARM_TEST_THREADS")
    if wanted:
        torch.set_num_threads(int(wanted))
    else:
        busy = os.getloadavg()[0] >= cores - 0.5
        torch.set_num_threads(1 if busy else cores)


_set_threads()


def _shared(*parts: str) -> Path:
    """``../shared/<parts>`` next to the checkout, or skip the test when that folder is not there."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared is not present next to the checkout ({SHARED}); reference data unavailable")
    d = SHARED.joinpath(*parts)
    if not d.is_dir():
        pytest.skip(f"{d} is missing")
    return d


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared()


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _shared("golden")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return _shared("faces")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block, restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests: the test machine's cores are shared with other jobs,
    and OpenMP oversubscription stalls make small-op tests several times slower."""
    with torch_threads(1):
        yield


@pytest.fixture
def small_nets_quiet_lpips():
    """One torch thread (tiny networks: thread synchronisation dominates, above all on a busy machine)
    and no LPIPS-unavailable warnings (the backbone weights are not available offline)."""
    import warnings

    from engine.losses import LPIPSUnavailableWarning

    with torch_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", LPIPSUnavailableWarning)
        yield


def load_script(relpath: str) -> ModuleType:
    """A script of the checkout (``main.py``, ``tools/….py``: not part of the installed packages) loaded
    as a module from its file, so tests can call its functions."""
    path = ROOT / relpath
    spec = importlib.util.spec_from_file_location(f"charm_script_{path.stem}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SeenDialog(NamedTuple):
    """A dialog the studio window showed, as :func:`studio_window`'s hook saw it before closing it."""

    dialog: object  # the widget (deleted once the event loop runs: read it right away)
    kind: type
    title: str
    info: str  # a message box's informative text, else ""


@contextmanager
def studio_window(qapp, cache_dir: Path, size: tuple[int, int], theme: bool = False):
    """The studio window (default model, one torch thread), shown at ``size``. Every dialog it opens is
    recorded in ``win.dialogs`` (a list of :class:`SeenDialog`) and dismissed as a click on OK would,
    so nothing blocks. Closed, and torch's thread count restored, on exit."""
    from PySide6.QtCore import QTimer

    from app.launch import apply_theme, create_main_window

    with torch_threads(1):
        if theme:
            apply_theme(qapp)
        win = create_main_window(cache_dir=cache_dir, threads=1)
        win.dialogs = []

        def hook(dlg):
            # Read what the user would see, then close it (the dialog deletes itself).
            info = getattr(dlg, "informativeText", str)()
            win.dialogs.append(SeenDialog(dlg, type(dlg), dlg.windowTitle(), info))
            QTimer.singleShot(0, dlg.close)

        win.dialog_hook = hook
        win.resize(*size)
        win.show()
        try:
            yield win
        finally:
            win.close()
            win.deleteLater()
