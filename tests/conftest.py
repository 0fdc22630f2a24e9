"""Shared test configuration: headless Qt, a small thread count, and the ../shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"../shared is not present next to the checkout ({SHARED}); reference data unavailable")
    return SHARED


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    d = shared_dir / "golden"
    if not d.is_dir():
        pytest.skip(f"{d} is missing")
    return d


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    d = shared_dir / "faces"
    if not d.is_dir():
        pytest.skip(f"{d} is missing")
    return d


@pytest.fixture
def small_nets_quiet_lpips():
    """One torch thread (tiny networks: thread synchronisation dominates, above all on a busy machine)
    and no LPIPS-unavailable warnings (the backbone weights are not available offline)."""
    import warnings

    import torch

    from engine.losses import LPIPSUnavailableWarning

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LPIPSUnavailableWarning)
        yield
    torch.set_num_threads(threads)
