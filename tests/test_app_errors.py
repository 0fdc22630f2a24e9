"""The studio window with awkward input: photos without faces, a corrupt file, a photo with two faces,
and a session file that is not one. Dialogs are closed by a hook so nothing blocks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import studio_window
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QMessageBox

pytest.importorskip("engine.inversion")

TIMEOUT = 60_000


@pytest.fixture(scope="module")
def studio(qapp, tmp_path_factory):
    with studio_window(qapp, tmp_path_factory.getbasetemp() / "charm-cache", (1100, 700)) as win:
        yield win


@pytest.fixture
def win(studio, qtbot):
    qtbot.waitUntil(lambda: studio.bundle is not None, timeout=TIMEOUT)
    studio.dialogs.clear()
    yield studio
    qtbot.waitUntil(lambda: not studio.busy, timeout=TIMEOUT)


def _open_expecting_error(win, qtbot, path) -> tuple[str, str, str]:
    with qtbot.waitSignal(win.errorShown, timeout=TIMEOUT) as blocker:
        win.open_photo(path)
    title, message = blocker.args
    (seen,) = win.dialogs
    assert seen.kind is QMessageBox and seen.title == title
    qtbot.waitUntil(
        lambda: not any(isinstance(w, QMessageBox) and w.isVisible() for w in win.findChildren(QMessageBox)),
        timeout=5000,
    )
    return title, message, seen.info


@pytest.mark.parametrize("name", ["no_face_car.jpg", "no_face_church.jpg"])
def test_no_face_dialog(win, qtbot, faces_dir, name):
    title, message, info = _open_expecting_error(win, qtbot, faces_dir / name)
    assert title == "No face found" and name in message
    assert "clearly visible" in info
    assert win.photo is None or not win.photo.path.endswith(name)
    assert not win.progress.isVisible() or win.busy


def test_corrupt_file_dialog(win, qtbot, tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG" * 20)
    title, message, info = _open_expecting_error(win, qtbot, bad)
    assert title == "Cannot read the image" and "holiday.jpg" in message
    assert "JPEG or PNG" in info


def test_missing_session_dialog(win, qtbot, tmp_path):
    (tmp_path / "s.json").write_text("{}")
    with qtbot.waitSignal(win.errorShown, timeout=TIMEOUT) as blocker:
        win.open_session(tmp_path / "s.json")
    assert blocker.args[0] == "Cannot open the session"


def test_two_faces_pick_by_clicking(win, qtbot, faces_dir, tmp_path):
    a = cv2.imread(str(faces_dir / "face_a.jpg"))
    b = cv2.imread(str(faces_dir / "face_b.jpg"))
    pair = np.concatenate([cv2.resize(a, (512, 512)), cv2.resize(b, (512, 512))], axis=1)
    path = tmp_path / "two.jpg"
    cv2.imwrite(str(path), pair)
    with qtbot.waitSignal(win.facesFound, timeout=TIMEOUT) as blocker:
        win.open_photo(path)
    assert blocker.args == [2]
    assert win.stack.currentWidget() is win.picker
    picker = win.picker
    boxes = [picker.box_rect(i) for i in range(2)]
    right = max(range(2), key=lambda i: boxes[i].center().x())
    c = boxes[right].center()
    with qtbot.waitSignal(win.resultShown, timeout=TIMEOUT):
        qtbot.mouseClick(picker, Qt.MouseButton.LeftButton, pos=QPoint(int(c.x()), int(c.y())))
    assert win.stack.currentWidget() is win.canvas
    assert win.photo.face_index == right and win.state.face_index == right
    # The chosen face is the right half's: its crop centre lies in the right half of the photo.
    assert np.array(win.state.crop_quad)[:, 0].mean() > 512
    assert win.act_faces.isEnabled()
    win.act_faces.trigger()
    assert win.stack.currentWidget() is win.picker
    win.stack.setCurrentWidget(win.canvas)


def test_app_keeps_working_after_errors(win, qtbot, faces_dir):
    with qtbot.waitSignal(win.resultShown, timeout=TIMEOUT):
        win.open_photo(faces_dir / "face_c.jpg")
    assert win.photo.path.endswith("face_c.jpg") and win.state.latent is not None


def test_missing_photo_dialog(win, qtbot, tmp_path):
    title, message, info = _open_expecting_error(win, qtbot, tmp_path / "gone.jpg")
    assert "gone.jpg" in message and "Check the path" in info and "damaged" not in info


def test_folder_as_photo_dialog(win, qtbot, tmp_path):
    title, message, info = _open_expecting_error(win, qtbot, tmp_path)
    assert "folder" in message and "Choose an image file" in info and "damaged" not in info


@pytest.mark.filterwarnings("ignore:LPIPS")  # no AlexNet weights offline: PTI's perceptual term is L2
def test_status_says_what_finished_jobs_did(win, qtbot, faces_dir, tmp_path):
    """No job leaves its running text ("Refining (PTI)…") in the status bar once it has ended."""
    status = win.statusBar()
    if win.photo is None or win.state.latent is None:
        with qtbot.waitSignal(win.inversionFinished, timeout=TIMEOUT):
            win.open_photo(faces_dir / "face_c.jpg")
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert win.refine(2) is not None
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert status.currentMessage() == "Refined: PTI 2 steps"
    path = tmp_path / "s.json"
    with qtbot.waitSignal(win.sessionSaved, timeout=TIMEOUT):
        win.save_session(path)
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert status.currentMessage() == f"Session saved: {path}"
    with qtbot.waitSignal(win.sessionOpened, timeout=TIMEOUT):
        win.open_session(path)
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert status.currentMessage() == "Session opened: s.json"
    # A job whose result is dropped (a newer refine replaced it) leaves no running text either.
    first = win.refine(2)
    win._refine_job = -1  # as if a newer photo had superseded it
    qtbot.waitUntil(lambda: first not in win._active, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert not status.currentMessage().endswith("\u2026"), status.currentMessage()
