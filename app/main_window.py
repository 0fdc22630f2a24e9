"""The studio's main window (placeholder until the studio-window issue lands) and the app launcher."""
from __future__ import annotations

import os
import sys

APP_NAME = "Charm Studio"


def create_main_window():
    from PySide6.QtWidgets import QLabel, QMainWindow

    win = QMainWindow()
    win.setWindowTitle(APP_NAME)
    label = QLabel("Charm Studio\n\nDrop a photo here (editing arrives with the studio window).")
    label.setObjectName("placeholder")
    win.setCentralWidget(label)
    win.resize(960, 640)
    return win


def run_app(argv: list[str] | None = None) -> int:
    """Open the studio window and run the Qt event loop until it closes.

    ``CHARM_AUTOQUIT_MS`` (milliseconds) closes the window on its own; tests and smoke checks use it.
    """
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    win = create_main_window()
    win.show()
    quit_ms = os.environ.get("CHARM_AUTOQUIT_MS")
    if quit_ms:
        QTimer.singleShot(int(quit_ms), app.quit)
    return app.exec()
