"""The layer rule: the engine never imports Qt, so it runs headless (command line, batch jobs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Import every engine module, run a command, and fail if PySide6 (or any Qt binding) got imported.
PROBE = """
import importlib, pkgutil, sys
import engine
names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
for name in names:
    importlib.import_module(name)
import main
rc = main.main(sys.argv[1:])
qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "PyQt5", "PyQt6", "shiboken6"))
print("MODULES", len(names))
print("QT", ",".join(qt) or "none")
sys.exit(rc)
"""


def _probe(*argv: str) -> str:
    proc = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_engine_and_invert_command_never_import_qt(tmp_path):
    from factory.synthetic import write_photo

    photo = write_photo(tmp_path / "face.png", seed=3, size=256)
    out = _probe("invert", str(photo), "--model", "demo", "--out", str(tmp_path / "out"), "--no-identity")
    assert "QT none" in out, out
    assert int(out.split("MODULES ")[1].split()[0]) > 20, "the probe imported too few engine modules"
    assert (tmp_path / "out" / "latent.npy").is_file()


def test_render_command_never_imports_qt(tmp_path):
    gen = ROOT / "resources" / "models" / "demo" / "generator.safetensors"
    out = _probe("render", "--model", str(gen), "--seeds", "0", "--out", str(tmp_path), "--device", "cpu")
    assert "QT none" in out, out
    assert (tmp_path / "seed0000.png").is_file()
