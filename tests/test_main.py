"""The single entry point: the window opens, the headless commands are listed."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_help_lists_commands():
    out = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Charm Studio" in out.stdout


def test_openmp_settings_are_in_place_before_torch_loads():
    """main.py sets how OpenMP threads wait (engine/openmp.py) before anything imports torch, so the
    runtime sees it; a user's own setting wins."""
    probe = (
        "import os, sys; sys.path.insert(0, sys.argv[1]); import main; "
        "print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    out = subprocess.run([sys.executable, "-c", probe, str(ROOT)], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["10000", "False"], out.stderr
    env["GOMP_SPINCOUNT"] = "5"
    out = subprocess.run([sys.executable, "-c", probe, str(ROOT)], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["5", "False"], out.stderr


def test_window_opens_offscreen(tmp_path):
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        CHARM_AUTOQUIT_MS="300",
        CHARM_CACHE_DIR=str(tmp_path / "cache"),
        CHARM_SETTINGS=str(tmp_path / "settings.ini"),  # the app remembers its last model: not in the user's
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "main.py")], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr


def test_window_title(qtbot, tmp_path):
    from app.launch import create_main_window

    win = create_main_window(cache_dir=tmp_path / "cache")
    qtbot.addWidget(win)
    assert win.windowTitle() == "Charm Studio"
