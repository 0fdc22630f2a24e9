"""The studio window, offscreen: drop a photo, move every kind of control, undo/redo, sessions, export,
latest-wins rendering, cancelling, and a UI thread that never stalls while an inversion runs.

One window (random development bundle, face_a.jpg inverted) serves the whole module, so the tests
run in order and each leaves the window as it found it (edits reset)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import studio_window
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent

pytest.importorskip("engine.inversion")

TIMEOUT = 60_000


@pytest.fixture(scope="module")
def studio(qapp, tmp_path_factory, faces_dir):
    with studio_window(qapp, tmp_path_factory.getbasetemp() / "charm-cache", (1200, 760), theme=True) as win:
        yield win


def wait_signal(qtbot, signal, action=None, timeout=TIMEOUT):
    with qtbot.waitSignal(signal, timeout=timeout) as blocker:
        if action is not None:
            action()
    return blocker.args


def render_after(qtbot, win, action) -> np.ndarray:
    """Run ``action`` (which must request a render) and return the image displayed for it."""
    wait_signal(qtbot, win.resultShown, action)
    # A render requested by the action may be followed by a newer one still in flight.
    qtbot.waitUntil(lambda: win.last_render.state.same_as(win.state), timeout=TIMEOUT)
    return win.last_render.image.copy()


def drop_file(win, path) -> None:
    """Drag a file over the window and drop it. Qt's offscreen platform cannot run a real drag, so the
    window's handlers get the events directly; children must leave drops to the window."""
    from PySide6.QtGui import QDragEnterEvent

    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(
        QPointF(20, 20), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    win.dragEnterEvent(enter)
    assert enter.isAccepted()
    for child in (win.canvas, win.picker, win.stack, win.dock):
        assert not child.acceptDrops()
    win.dropEvent(
        QDropEvent(
            QPointF(20, 20), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
    )


@pytest.fixture(scope="module")
def loaded(studio, faces_dir, qtbot_module):
    """face_a.jpg dropped onto the window and inverted; returns (window, seconds to the first result)."""
    qtbot = qtbot_module
    qtbot.waitUntil(lambda: studio.bundle is not None, timeout=TIMEOUT)
    t0 = time.perf_counter()
    wait_signal(qtbot, studio.resultShown, lambda: drop_file(studio, faces_dir / "face_a.jpg"))
    return studio, time.perf_counter() - t0


@pytest.fixture(scope="module")
def qtbot_module(qapp, request):
    from pytestqt.qtbot import QtBot

    return QtBot(request)


@pytest.fixture
def win(loaded, qtbot):
    w = loaded[0]
    yield w
    qtbot.waitUntil(lambda: not w.busy, timeout=TIMEOUT)
    if (
        w.state.directions
        or w.state.channels
        or w.state.angle_deg
        or w.state.tx
        or w.state.ty
        or w.state.view != "aligned"
        or w.state.generator_file
    ):
        render_after(qtbot, w, lambda: w.set_state(w.state.reset_edits().replace(view="aligned", generator_file=None)))


def test_fallback_model_notice(studio, qtbot, monkeypatch, tmp_path):
    qtbot.waitUntil(lambda: studio.bundle is not None, timeout=TIMEOUT)
    import engine.models
    from app.launch import create_main_window
    from app.settings import DEMO_MISSING_NOTICE

    assert studio.windowTitle() == "Charm Studio"
    if engine.models.DEMO_MANIFEST.is_file():
        assert studio.bundle.name == "demo" and studio.bundle.notice is None
        assert DEMO_MISSING_NOTICE not in studio.notice_label.text()
    else:
        assert DEMO_MISSING_NOTICE in studio.notice_label.text() and studio.notice_label.isVisible()
    # Without the demo model (a checkout without resources/models/demo) the window falls back to the
    # random development bundle and says so.
    monkeypatch.setattr(engine.models, "DEMO_MANIFEST", tmp_path / "no-demo" / "manifest.json")
    fallback = create_main_window(cache_dir=tmp_path / "cache", threads=1)
    qtbot.addWidget(fallback)
    fallback.dialog_hook = lambda dlg: dlg.close()
    qtbot.waitUntil(lambda: fallback.bundle is not None, timeout=TIMEOUT)
    assert fallback.bundle.name != "demo" and fallback.bundle.notice
    assert DEMO_MISSING_NOTICE in fallback.notice_label.text() and not fallback.notice_label.isHidden()
    fallback.close()
    assert studio.device_label.text() == "device: CPU"


def test_drop_photo_shows_inverted_result(loaded):
    win, seconds = loaded
    assert seconds < 30
    assert win.photo is not None and win.photo.path.endswith("face_a.jpg")
    assert win.state.latent is not None and win.state.latent.shape == (win.bundle.num_ws, win.bundle.w_dim)
    assert win.canvas.before is not None and win.canvas.after is not None
    assert win.last_render.image.shape == (win.bundle.resolution, win.bundle.resolution, 3)
    assert "render" in win.render_label.text() and "ms" in win.render_label.text()


def test_direction_slider_changes_result(win, qtbot):
    base = win.last_render.image.copy()
    names = list(win.directions_panel.sliders)
    assert names[:2] == ["smile", "age"]
    for name in names:
        s = win.directions_panel.sliders[name]
        edited = render_after(qtbot, win, lambda: s.set_value(s.hi, emit=True))
        assert win.state.directions[name] == pytest.approx(s.hi)
        assert np.abs(edited.astype(int) - base).mean() > 0.5, name
        back = render_after(qtbot, win, s.reset_button.click)
        assert name not in win.state.directions
        assert np.array_equal(back, base), "reset must give back the identical image"


def test_stylespace_channel_and_attribute(win, qtbot):
    base = win.last_render.image.copy()
    p = win.style_panel
    p.target.setCurrentIndex(0)
    p.layer.setCurrentIndex(2)
    p.channel.setValue(3)
    layer = p.layer.currentData()
    one = render_after(qtbot, win, lambda: p.slider.set_value(4.0, emit=True))
    assert win.state.channels == {(layer, 3): pytest.approx(4.0)}
    assert np.abs(one.astype(int) - base).mean() > 0.5
    attr = win.bundle.stylespace["smile"]
    p.target.setCurrentIndex(p.target.findData("smile"))
    render_after(qtbot, win, lambda: p.slider.set_value(-2.0, emit=True))
    for attr_layer, c, sign in attr:
        assert win.state.channels[(attr_layer, c)] == pytest.approx(-2.0 * sign)
    cleared = render_after(qtbot, win, p.clear.click)
    assert win.state.channels == {} and np.array_equal(cleared, base)


def _best_shift(a: np.ndarray, b: np.ndarray, r: int = 24) -> tuple[int, int]:
    a, b = a.astype(np.float32), b.astype(np.float32)
    n = a.shape[0]
    best = None
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            pa = a[max(0, -dy) : n - max(0, dy), max(0, -dx) : n - max(0, dx)]
            pb = b[max(0, dy) : n - max(0, -dy), max(0, dx) : n - max(0, -dx)]
            err = float(np.square(pa - pb).mean())
            if best is None or err < best[0]:
                best = (err, dx, dy)
    return best[1], best[2]


def test_transform_controls_move_and_turn_content(win, qtbot):
    base = win.last_render.image.copy()
    n = base.shape[0]
    t = win.transform_panel
    right = render_after(qtbot, win, lambda: t.tx.set_value(0.25, emit=True))
    assert _best_shift(base, right) == (n // 4, 0)
    down = render_after(qtbot, win, lambda: t.ty.set_value(0.125, emit=True))
    assert _best_shift(base, down) == (n // 4, n // 8)
    render_after(qtbot, win, t.reset.click)
    assert (win.state.tx, win.state.ty) == (0.0, 0.0)
    turned = render_after(qtbot, win, lambda: t.angle_spin.setValue(90.0))
    assert win.state.angle_deg == 90.0 and t.dial.value() == -90
    ccw = np.rot90(base, k=1).astype(int)  # +90 degrees turns the content counter-clockwise on screen
    cw = np.rot90(base, k=-1).astype(int)
    assert np.square(turned - ccw).mean() < np.square(turned - cw).mean()
    render_after(qtbot, win, lambda: t.dial.setValue(-30))
    assert win.state.angle_deg == 30.0 and t.angle_spin.value() == 30.0


def test_view_toggle_shows_photo_framing(win, qtbot):
    aligned = win.last_render.image.copy()
    before_aligned = win.canvas.before
    framed = render_after(qtbot, win, win.transform_panel.framed.click)
    assert win.state.view == "photo"
    assert win.canvas.before is not before_aligned
    assert not np.array_equal(framed, aligned)
    back = render_after(qtbot, win, lambda: win.act_undo.trigger())
    assert win.state.view == "aligned" and np.array_equal(back, aligned)
    assert win.transform_panel.aligned.isChecked()


def test_undo_redo(win, qtbot):
    base = win.last_render.image.copy()
    smile, age = win.directions_panel.sliders["smile"], win.directions_panel.sliders["age"]
    v = round(0.8 * smile.hi, 2)  # inside the model's documented range (the slider clamps to it)
    a = render_after(qtbot, win, lambda: smile.set_value(v, emit=True))
    b = render_after(qtbot, win, lambda: age.set_value(age.lo, emit=True))
    assert win.act_undo.isEnabled() and not win.act_redo.isEnabled()
    undone = render_after(qtbot, win, win.act_undo.trigger)
    assert np.array_equal(undone, a) and age.value() == 0 and smile.value() == pytest.approx(v)
    undone2 = render_after(qtbot, win, win.act_undo.trigger)
    assert np.array_equal(undone2, base) and smile.value() == 0
    redone = render_after(qtbot, win, win.act_redo.trigger)
    assert np.array_equal(redone, a) and smile.value() == pytest.approx(v)
    redone2 = render_after(qtbot, win, win.act_redo.trigger)
    assert np.array_equal(redone2, b) and not win.act_redo.isEnabled()


def test_slider_drag_is_one_undo_step(win, qtbot):
    s = win.directions_panel.sliders["beard"].slider
    depth = len(win.history._undo)
    s.setSliderDown(True)
    assert s.maximum() >= 100, "the test drags to position 100 (value 1.0): the beard range must reach it"
    for v in (25, 50, 75, 100):
        s.setValue(v)
    s.setSliderDown(False)
    qtbot.waitUntil(lambda: win.last_render.state.same_as(win.state), timeout=TIMEOUT)
    assert win.state.directions["beard"] == pytest.approx(1.0)
    assert len(win.history._undo) == depth + 1
    render_after(qtbot, win, win.act_undo.trigger)
    assert "beard" not in win.state.directions


def test_latest_render_wins(win, qtbot):
    shown: list[int] = []
    win.resultShown.connect(shown.append)
    s = win.directions_panel.sliders["age"]
    s.slider.setSliderDown(True)
    for v in range(1, 41):  # 40 moves queued at once, faster than the worker renders
        s.slider.setValue(round(s.slider.maximum() * v / 40))
    s.slider.setSliderDown(False)
    last = win.host._render_id
    qtbot.waitUntil(lambda: bool(shown) and shown[-1] == last, timeout=TIMEOUT)
    win.resultShown.disconnect(shown.append)
    assert len(shown) < 10, f"{len(shown)} renders for 40 queued requests: stale requests were not skipped"
    assert s.value() == pytest.approx(s.hi)
    assert win.last_render.state.directions["age"] == pytest.approx(s.hi)


def test_show_original_toggle_and_held_key(win, qtbot):
    assert not win.canvas.show_original
    win.act_original.trigger()
    assert win.canvas.show_original
    win.act_original.trigger()
    assert not win.canvas.show_original
    win.activateWindow()
    win.canvas.setFocus()
    qtbot.keyPress(win.canvas, Qt.Key.Key_Space)
    assert win.canvas.show_original
    qtbot.keyRelease(win.canvas, Qt.Key.Key_Space)
    assert not win.canvas.show_original


def test_split_view_divider_drags(win, qtbot):
    win.act_split.trigger()
    assert win.canvas.mode == "split"
    r = win.canvas.pane_rects()[0]
    y = int(r.center().y())
    qtbot.mousePress(win.canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(r.left() + r.width() * 0.5), y))
    qtbot.mouseMove(win.canvas, QPoint(int(r.left() + r.width() * 0.25), y))
    qtbot.mouseRelease(win.canvas, Qt.MouseButton.LeftButton, pos=QPoint(int(r.left() + r.width() * 0.25), y))
    assert win.canvas.divider == pytest.approx(0.25, abs=0.02)
    img = win.canvas.grab().toImage()
    assert img.width() > 0
    win.act_side.trigger()
    assert win.canvas.mode == "side"


def test_session_round_trip_identical_render(win, qtbot, tmp_path):
    smile = win.directions_panel.sliders["smile"]
    v = round(0.7 * smile.hi, 2)
    render_after(qtbot, win, lambda: smile.set_value(v, emit=True))
    render_after(qtbot, win, lambda: win.transform_panel.tx.set_value(0.1, emit=True))
    saved = render_after(qtbot, win, win.transform_panel.framed.click)
    saved_state = win.state
    path = tmp_path / "edit.json"
    args = wait_signal(qtbot, win.sessionSaved, lambda: win.save_session(path))
    assert args[0] == str(path) and path.is_file() and path.with_suffix(".npz").is_file()
    render_after(qtbot, win, lambda: win.set_state(win.state.reset_edits()))
    with qtbot.waitSignal(win.sessionOpened, timeout=TIMEOUT):
        win.open_session(path)
    qtbot.waitUntil(lambda: win.last_render.state.same_as(win.state), timeout=TIMEOUT)
    reopened = win.last_render.image
    assert win.state.same_as(saved_state)
    assert np.array_equal(reopened, saved)
    assert smile.value() == pytest.approx(v) and win.transform_panel.framed.isChecked()
    assert not win.act_undo.isEnabled(), "an opened session starts a fresh history"


def test_export_writes_readable_files(win, qtbot, tmp_path):
    from engine.export import ExportOptions

    render_after(qtbot, win, lambda: win.directions_panel.sliders["glasses"].set_value(2.0, emit=True))
    for fmt in ("png", "jpg"):
        (paths,) = wait_signal(qtbot, win.exported, lambda: win.export_to(ExportOptions(str(tmp_path), "out", fmt)))
        names = sorted(p.name for p in paths)
        assert names == sorted(f"out_{k}.{fmt}" for k in ("aligned", "framed", "pasted"))
        res = win.bundle.resolution
        for p in paths:
            img = cv2.imread(str(p))
            assert img is not None, p
            if "pasted" in p.name:
                assert img.shape[:2] == win.photo.image.shape[:2]
            else:
                assert img.shape[:2] == (res, res)
    aligned = cv2.imread(str(tmp_path / "out_aligned.png"))[:, :, ::-1]
    assert np.array_equal(aligned, win.last_render.image)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_export_dialog_builds_options(win, qtbot, tmp_path):
    from app.dialogs import ExportDialog

    dlg = ExportDialog(str(tmp_path), "x", win)
    dlg.fmt.setCurrentIndex(dlg.fmt.findData("jpg"))
    dlg.kinds["framed"].setChecked(False)
    o = dlg.options()
    assert (o.folder, o.basename, o.fmt, o.kinds) == (str(tmp_path), "x", "jpg", ("aligned", "pasted"))
    dlg.deleteLater()


def test_ui_never_stalls_during_inversion(win, qtbot):
    """A 10 ms heartbeat on the UI thread while a long inversion runs on the worker: no gap > 100 ms."""
    win.inversion_panel.iters.setValue(40)
    ticks: list[float] = []
    beat = QTimer()
    beat.setInterval(10)
    beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    beat.start()
    progress: list[int] = []
    win.host.jobs.progress.connect(lambda job, p: progress.append(p.done))
    t0 = time.perf_counter()
    with qtbot.waitSignal(win.inversionFinished, timeout=TIMEOUT):
        win.inversion_panel.reinvert.click()
    qtbot.waitUntil(lambda: win.last_render.state.same_as(win.state), timeout=TIMEOUT)
    beat.stop()
    elapsed = time.perf_counter() - t0
    win.inversion_panel.iters.setValue(3)
    gaps = np.diff(ticks)
    assert elapsed > 0.5, "the inversion was too short to tell anything"
    assert len(ticks) > elapsed / 0.05
    assert gaps.max() < 0.1, f"the UI thread stalled for {gaps.max() * 1000:.0f} ms"
    assert max(progress) == 40
    render_after(qtbot, win, win.act_undo.trigger)  # back to the first inversion's latent


def test_cancel_long_inversion(win, qtbot):
    latent = win.state.latent
    win.inversion_panel.iters.setValue(1000)
    cancelled: list[int] = []
    win.host.jobs.cancelled.connect(cancelled.append)
    with qtbot.waitSignal(win.host.jobs.progress, timeout=TIMEOUT):
        win.inversion_panel.reinvert.click()
    assert win.cancel_button.isEnabled() and win.progress.isVisible()
    with qtbot.waitSignal(win.jobsIdle, timeout=TIMEOUT):
        win.cancel_button.click()
    win.inversion_panel.iters.setValue(3)
    assert cancelled and not win.progress.isVisible() and not win.cancel_button.isEnabled()
    assert win.state.latent is latent


def test_new_photo_supersedes_running_inversion(win, qtbot, faces_dir):
    win.inversion_panel.iters.setValue(1000)
    cancelled: list[int] = []
    win.host.jobs.cancelled.connect(cancelled.append)
    with qtbot.waitSignal(win.host.jobs.progress, timeout=TIMEOUT):
        win.inversion_panel.reinvert.click()
    old_job = win._invert_job
    win.inversion_panel.iters.setValue(3)
    with qtbot.waitSignal(win.photoReady, timeout=TIMEOUT):
        drop_file(win, faces_dir / "face_b.jpg")
    qtbot.waitUntil(lambda: not win.busy and win.last_render.state.same_as(win.state), timeout=TIMEOUT)
    assert old_job in cancelled
    assert win.photo.path.endswith("face_b.jpg") and win.state.input_path.endswith("face_b.jpg")
    assert win.state.latent is not None and not win.act_undo.isEnabled()


@pytest.mark.filterwarnings("ignore:LPIPS")  # no AlexNet weights offline: PTI's perceptual term is L2
def test_pti_refine_changes_result_and_undoes(win, qtbot):
    base = win.last_render.image.copy()
    win.inversion_panel.pti_steps.setValue(3)
    with qtbot.waitSignal(win.resultShown, timeout=TIMEOUT):
        win.inversion_panel.refine.click()
        qtbot.waitUntil(lambda: win.state.generator_file is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: win.last_render.state.same_as(win.state), timeout=TIMEOUT)
    assert not np.array_equal(win.last_render.image, base)
    back = render_after(qtbot, win, win.act_undo.trigger)
    assert win.state.generator_file is None and np.array_equal(back, base)


def test_about_shows_versions_and_model(win, qtbot):
    from app.dialogs import AboutDialog

    win.dialogs.clear()
    win.show_about()
    (seen,) = win.dialogs
    dlg = seen.dialog
    assert isinstance(dlg, AboutDialog)
    text = dlg.text.toPlainText()
    assert "PySide6" in text and "torch" in text and win.bundle.title in text
    if win.bundle.notice:
        assert "random" in text
    assert win.notice_label.text() in text
    card_title = Path(win.bundle.model_card).read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
    assert hasattr(dlg, "card") and card_title and card_title in dlg.card.toPlainText()


def test_unreadable_model_keeps_previous(win, qtbot, tmp_path):
    import shutil

    bad = tmp_path / "bad-bundle"
    shutil.copytree(win.bundle.folder, bad)
    (bad / "generator.safetensors").write_bytes(b"\0" * 100)
    before = win.bundle
    win.dialogs.clear()
    args = wait_signal(qtbot, win.errorShown, lambda: win.load_model(str(bad)))
    assert args[0] == "Cannot load the model" and "generator.safetensors" in args[1]
    assert win.bundle is before
    assert win.model_panel.combo.currentData() == before.spec
    (seen,) = win.dialogs
    assert "previous model stays" in seen.info
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)
    assert win.render_label.text()
