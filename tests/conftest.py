"""Shared test configuration: headless Qt, a small thread count, and the ../shared data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def _set_threads() -> None:
    try:
        import torch
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass


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
