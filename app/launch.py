"""Starting the studio: the theme, the window, the Qt event loop."""

from __future__ import annotations

import os
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app.main_window import MainWindow
from app.settings import APP_NAME


def apply_theme(app: QApplication) -> None:
    """Fusion with a dark palette: photos read better on a dark surround."""
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    pal = QPalette()
    base, window, text = QColor(0x1E, 0x20, 0x24), QColor(0x2B, 0x2E, 0x33), QColor(0xE6, 0xE8, 0xEB)
    for role, color in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, QColor(0x35, 0x39, 0x3F)),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.ToolTipBase, base),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Highlight, QColor(0x3D, 0x8B, 0xE0)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.Mid, QColor(0x8A, 0x90, 0x99)),
        (QPalette.ColorRole.PlaceholderText, QColor(0x8A, 0x90, 0x99)),
    ):
        pal.setColor(role, color)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(0x70, 0x74, 0x7A))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(0x70, 0x74, 0x7A))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor(0x70, 0x74, 0x7A))
    app.setPalette(pal)


def preload_engine() -> None:
    """Import the engine's modules and load the face detector and landmark model now, before a window is
    on screen: each holds Python's lock for up to a second (dlib's model loading cannot be split), which
    would freeze a shown window whichever thread did it."""
    import engine.checkpoints  # noqa: F401
    import engine.export  # noqa: F401
    import engine.inversion  # noqa: F401
    import engine.models  # noqa: F401
    import engine.session  # noqa: F401
    from engine.faces import load_face_models

    load_face_models()


def create_main_window(
    model: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    threads: int | None = None,
    remember: bool = False,
) -> MainWindow:
    """The studio window (a QApplication must exist). model: any model name (:mod:`engine.model_store`);
    default the model used last when ``remember``, else the demo bundle, or random weights while the demo
    bundle is not installed."""
    preload_engine()
    return MainWindow(model=model, cache_dir=cache_dir, device=device, threads=threads, remember=remember)


def run_app(argv: list[str] | None = None) -> int:
    """Open the studio window and run the Qt event loop until it closes.

    ``CHARM_AUTOQUIT_MS`` (milliseconds) closes the window on its own; tests and smoke checks use it.
    """
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    apply_theme(app)
    win = create_main_window(remember=True)
    app.aboutToQuit.connect(win.shutdown)
    win.show()
    quit_ms = os.environ.get("CHARM_AUTOQUIT_MS")
    if quit_ms:
        QTimer.singleShot(int(quit_ms), app.quit)
    return app.exec()
