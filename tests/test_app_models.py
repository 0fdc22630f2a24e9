"""The window's model manager and what surrounds it, offscreen, with the loopback mirror (tests never use
the internet): the demo model's notice on a photo, a session whose photo has moved, a kit downloaded
(a dropped connection resumed) -> built -> picked -> a photo inverted, edited and exported, Google
Drive's quota page (one line with the URLs; files dropped in by hand then build the kit without a
download), and a cancelled download (only a ``.part`` is left, nothing is used).

One window (demo model) serves the module; each test gets its own model cache (``CHARM_MODELS_DIR``)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import shiboken6
from conftest import SHARED, studio_window
from model_mirror import ModelMirror
from official_files import serve_kit
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox, QPushButton

pytest.importorskip("engine.inversion")

TIMEOUT = 60_000
ENCODER = "restyle_pSp_ffhq.pt"
PROXIES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The loopback mirror serving tiny stand-ins of every file of kit 'ffhq' (``mirror.kit``: name -> bytes)."""
    with ModelMirror() as m:
        m.kit = serve_kit(m, "ffhq", tmp_path_factory.mktemp("official"))
        yield m


@pytest.fixture(scope="module")
def studio(qapp, tmp_path_factory, mirror):
    with pytest.MonkeyPatch.context() as mp:
        for var in PROXIES:
            mp.delenv(var, raising=False)
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        mp.setenv("CHARM_MODEL_MIRROR", mirror.base)
        mp.setenv("CHARM_MODELS_DIR", str(tmp_path_factory.mktemp("models-at-start")))
        with studio_window(qapp, tmp_path_factory.getbasetemp() / "charm-cache", (1200, 760)) as win:
            yield win


@pytest.fixture
def win(studio, qtbot, monkeypatch, tmp_path, mirror):
    """The window with an empty model cache of its own; dialogs are recorded in ``win.seen`` and left
    open (a test closes what it opened)."""
    monkeypatch.setenv("CHARM_MODELS_DIR", str(tmp_path / "models"))
    mirror.behaviour.clear()
    mirror.requests.clear()
    qtbot.waitUntil(lambda: studio.bundle is not None and not studio.busy, timeout=TIMEOUT)
    hook = studio.dialog_hook
    studio.seen = []
    studio.dialog_hook = studio.seen.append
    yield studio
    studio.dialog_hook = hook
    for dlg in studio.seen:
        if isinstance(dlg, QMessageBox | QFileDialog) and shiboken6.isValid(dlg) and dlg.isVisible():
            dlg.close()
    if getattr(studio, "_manager", None) is not None:
        qtbot.waitUntil(lambda: not studio._manager.busy, timeout=TIMEOUT)
        studio._manager.close()
    qtbot.waitUntil(lambda: not studio.busy, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A real portrait when ../shared is there, else a procedural face (the demo model's own kind)."""
    folder = tmp_path_factory.mktemp("photo")
    real = SHARED / "faces" / "ffhq_0.jpg"
    if real.is_file():
        return Path(shutil.copy(real, folder / "portrait.jpg"))
    from factory.synthetic import write_photo

    return write_photo(folder / "portrait.png", seed=3)


def open_photo(qtbot, win, path) -> None:
    with qtbot.waitSignal(win.inversionFinished, timeout=TIMEOUT):
        win.open_photo(path)
    qtbot.waitUntil(lambda: win.last_render is not None and win.last_render.state.same_as(win.state), timeout=TIMEOUT)


def use_model(qtbot, win, spec: str) -> None:
    if win.bundle.spec != spec:
        with qtbot.waitSignal(win.modelReady, timeout=TIMEOUT):
            win.load_model(spec)
    qtbot.waitUntil(lambda: not win.busy, timeout=TIMEOUT)


def seen(win, kind):
    return [d for d in win.seen if isinstance(d, kind)]


def heartbeat():
    ticks: list[float] = []
    beat = QTimer()
    beat.setInterval(10)
    beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    beat.start()
    return beat, ticks


def drop_files(widget, paths) -> None:
    """Drag files over ``widget`` and drop them (offscreen Qt cannot run a real drag: the handlers get
    the events directly)."""
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    args = (QPointF(20, 20), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    enter = QDragEnterEvent(*args)
    widget.dragEnterEvent(enter)
    assert enter.isAccepted()
    widget.dropEvent(QDropEvent(*args))


# ------------------------------------------------------------------------------------------------


def test_demo_notice_on_a_photo_opens_the_manager(win, qtbot, photo):
    from app.model_manager import ModelManagerDialog
    from app.settings import DEMO_PHOTO_NOTICE

    use_model(qtbot, win, "demo")
    assert not win.demo_notice.isVisible(), "no notice before a photo is opened"
    open_photo(qtbot, win, photo)
    assert win.demo_notice.isVisible()
    assert win.findChild(type(win.demo_notice), "demoNotice") is win.demo_notice
    text = win.demo_notice.findChild(type(win.notice_label), "demoNoticeText").text()
    assert text == DEMO_PHOTO_NOTICE and "procedural faces" in text and "\n" not in text
    button = win.findChild(QPushButton, "demoNoticeButton")
    button.click()
    (manager,) = seen(win, ModelManagerDialog)
    assert manager.isVisible() and manager is win._manager
    assert manager.kit_buttons["ffhq"].text() == "Get" and "MB" in manager.kit_sizes["ffhq"].text()
    manager.close()
    win.findChild(type(win.demo_notice_close), "demoNoticeClose").click()
    assert not win.demo_notice.isVisible()


def test_moved_session_photo_is_named_and_located(win, qtbot, photo, tmp_path):
    from engine.export import ExportOptions

    use_model(qtbot, win, "demo")
    first, other = tmp_path / "a" / f"face{photo.suffix}", tmp_path / "x" / f"other{photo.suffix}"
    for p in (first, other):
        p.parent.mkdir()
        shutil.copy(photo, p)
    open_photo(qtbot, win, first)
    session = tmp_path / "s" / "edit.json"
    session.parent.mkdir()
    with qtbot.waitSignal(win.sessionSaved, timeout=TIMEOUT):
        win.save_session(session)
    moved = tmp_path / "b" / first.name
    moved.parent.mkdir()
    first.rename(moved)
    open_photo(qtbot, win, other)  # another photo is on screen when the session is opened

    with qtbot.waitSignal(win.sessionOpened, timeout=TIMEOUT):
        win.open_session(session)
    assert win.photo is None and win.state.input_path == str(first)
    assert "other" not in win.canvas.before_caption and first.name in win.canvas.before_caption
    assert str(first) in win.statusBar().currentMessage()
    (box,) = seen(win, QMessageBox)
    assert box.objectName() == "missingPhotoBox" and first.name in box.text() and str(first) in box.informativeText()

    # Export never fails silently: it says which file is missing and does nothing else.
    out = tmp_path / "out"
    assert win.export_to(ExportOptions(str(out), "e")) is None
    assert len(seen(win, QMessageBox)) == 2 and not out.exists()

    # Locate: the file dialog opens (through the hook), the moved photo is chosen.
    with qtbot.waitSignal(win.photoReady, timeout=TIMEOUT):
        box.findChild(QPushButton, "locatePhoto").click()
        (chooser,) = seen(win, QFileDialog)
        chooser.fileSelected.emit(str(moved))
    assert win.photo is not None and win.state.input_path == str(moved)
    assert win.state.latent is not None and moved.name in win.canvas.before_caption
    with qtbot.waitSignal(win.exported, timeout=TIMEOUT) as blocker:
        assert win.export_to(ExportOptions(str(out), "e")) is not None
    (paths,) = blocker.args
    assert sorted(p.name for p in paths) == ["e_aligned.png", "e_framed.png", "e_pasted.png"]
    assert all(p.is_file() for p in paths)


def test_kit_download_resumes_builds_and_is_used_end_to_end(win, qtbot, mirror, photo, tmp_path, monkeypatch):
    """Kit 'ffhq' with the connection dropped half-way through the encoder: the manager resumes it
    (a Range request), builds the bundle; the picker lists and selects it; a photo is inverted,
    edited and exported on it. The UI thread keeps beating throughout."""
    from engine import model_store as ms
    from engine.export import ExportOptions

    use_model(qtbot, win, "demo")
    # The first network a process builds on torch's meta device (the encoder, when the bundle is built)
    # makes torch import sympy, torch._dynamo and triton and set up its meta kernels: about 2 s, once per
    # process, holding Python's lock for up to half a second whichever thread does it. A first build in
    # another model cache does that here, so the heartbeat measures the manager's own work.
    with monkeypatch.context() as mp:
        mp.setenv("CHARM_MODELS_DIR", str(tmp_path / "warm-up"))
        ms.get_model("ffhq")
    mirror.requests.clear()
    mirror.behaviour[ENCODER] = "drop_once"
    manager = win.open_model_manager()
    beat, ticks = heartbeat()
    t0 = time.perf_counter()
    done_at: list[float] = []
    manager.modelInstalled.connect(lambda _: done_at.append(time.perf_counter()))
    with qtbot.waitSignal(win.modelReady, timeout=TIMEOUT, check_params_cb=lambda info: info.spec == "ffhq"):
        manager.get_kit("ffhq")
    beat.stop()
    # The heartbeat is judged over the manager's work (download, resume, build); the window's loading of
    # the new model afterwards is the same job as loading any model.
    (end,) = done_at
    elapsed = end - t0
    ticks = [t for t in ticks if t <= end]

    asked = mirror.requests_for(ENCODER)
    assert len(asked) == 2 and asked[0][1] is None and asked[1][1].startswith("bytes=") and asked[1][1] != "bytes=0-"
    assert [m.name for m in ms.installed_models()] == ["ffhq"]
    assert win.bundle.spec == "ffhq" and win.bundle.title == "Real photos (FFHQ)"
    combo = win.model_panel.combo
    assert combo.currentData() == "ffhq" and combo.currentText() == "Real photos (FFHQ)"
    assert manager.status.text() == "Installed 'Real photos (FFHQ)'." and manager.error.isHidden()
    assert manager.kit_buttons["ffhq"].text() == "In use" and manager.kit_sizes["ffhq"].text() == "installed"
    assert ticks, "the heartbeat never ran"
    gaps = np.diff([t0, *ticks, end])
    print(f"kit: {elapsed:.2f} s, {len(ticks)} heartbeats, longest gap {gaps.max() * 1000:.0f} ms")
    assert gaps.max() < 0.1, f"the UI thread stalled for {gaps.max() * 1000:.0f} ms while the kit was got"

    open_photo(qtbot, win, photo)
    assert set(win.directions_panel.sliders) == {"age", "smile", "pose", "gender"}
    before = win.last_render.image.copy()
    with qtbot.waitSignal(win.resultShown, timeout=TIMEOUT):
        win.directions_panel.sliders["smile"].set_value(2.0, emit=True)
    qtbot.waitUntil(lambda: win.last_render.state.same_as(win.state), timeout=TIMEOUT)
    assert win.state.directions == {"smile": 2.0} and not np.array_equal(win.last_render.image, before)
    with qtbot.waitSignal(win.exported, timeout=TIMEOUT) as blocker:
        win.export_to(ExportOptions(str(tmp_path / "out"), "kit"))
    (paths,) = blocker.args
    assert sorted(p.name for p in paths) == ["kit_aligned.png", "kit_framed.png", "kit_pasted.png"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)


def test_quota_page_gives_one_line_with_the_urls_and_dropped_files_build_the_kit(win, qtbot, mirror, tmp_path):
    from engine import model_store as ms
    from engine.download import KNOWN_MODELS, known_url, model_path

    use_model(qtbot, win, "demo")
    mirror.behaviour[ENCODER] = "quota"
    manager = win.open_model_manager()
    with qtbot.waitSignal(manager.failed, timeout=TIMEOUT) as blocker:
        manager.get_kit("ffhq")
    (line,) = blocker.args
    encoder = KNOWN_MODELS["restyle_pSp_ffhq"]
    assert "\n" not in line and "quota" in line and known_url(encoder) in line
    assert known_url(encoder).startswith(mirror.base) and "drop the files here" in line
    assert manager.error.text() == line and manager.error.isVisible()
    path = model_path(encoder.name)
    assert not path.exists() and not path.with_name(path.name + ".part").exists()
    assert ms.installed_models() == [] and win.bundle.spec == "demo"
    qtbot.waitUntil(lambda: not manager.busy, timeout=TIMEOUT)

    # The user downloads the files in a browser and drops them onto the dialog: no download at all.
    by_hand = tmp_path / "Downloads"
    by_hand.mkdir()
    for filename, data in mirror.kit.items():
        (by_hand / Path(filename).name).write_bytes(data)
    asked = len(mirror.requests)
    with qtbot.waitSignal(manager.idle, timeout=TIMEOUT):
        drop_files(manager, sorted(by_hand.iterdir()))
    assert "has every file now" in manager.status.text() and manager.kit_buttons["ffhq"].text() == "Build"
    with qtbot.waitSignal(win.modelReady, timeout=TIMEOUT, check_params_cb=lambda info: info.spec == "ffhq"):
        manager.kit_buttons["ffhq"].click()
    assert len(mirror.requests) == asked
    assert [m.name for m in ms.installed_models()] == ["ffhq"]

    # Remove, after a confirmation: the picker drops it and the window goes back to the demo model.
    manager.tabs.setCurrentIndex(1)
    manager.installed.findChild(QPushButton, "remove:ffhq").click()
    confirm = seen(win, QMessageBox)[-1]
    assert confirm.objectName() == "confirmRemove" and "ffhq" in confirm.text()
    with qtbot.waitSignal(win.modelReady, timeout=TIMEOUT, check_params_cb=lambda info: info.spec == "demo"):
        confirm.button(QMessageBox.StandardButton.Yes).click()
    assert ms.installed_models() == [] and win.model_panel.combo.findData("ffhq") < 0
    assert manager.kit_buttons["ffhq"].text() == "Build", "the downloaded files stay"


def test_cancelled_download_leaves_a_part_file_and_nothing_is_used(win, qtbot, mirror):
    from engine import model_store as ms
    from engine.download import model_path

    use_model(qtbot, win, "demo")
    manager = win.open_model_manager()
    job = []

    def cancel_after_first_bytes(j, p):  # runs on the models thread, inside the download loop
        if p.stage.startswith("Downloading restyle") and p.done > 0:
            win.host.cancel([j])

    lane = win.host.models
    lane.progress.connect(cancel_after_first_bytes, Qt.ConnectionType.DirectConnection)
    try:
        with qtbot.waitSignal(manager.idle, timeout=TIMEOUT):
            job.append(manager.get_kit("ffhq"))
    finally:
        lane.progress.disconnect(cancel_after_first_bytes)
    final = model_path("restyle_pSp_ffhq")
    part = final.with_name(final.name + ".part")
    assert not final.exists() and part.is_file() and 0 < part.stat().st_size < len(mirror.kit[ENCODER])
    assert ms.installed_models() == [] and ms.missing_files("ffhq")
    assert "Cancelled" in manager.status.text() and manager.error.isHidden()
    assert win.bundle.spec == "demo" and win.model_panel.combo.findData("ffhq") < 0
    assert (
        "partly downloaded"
        in manager.files.item(
            next(r for r in range(manager.files.rowCount()) if manager.files.item(r, 0).text() == ENCODER), 4
        ).text()
    )

    # The window asked for the kit by name: it is not downloaded, and the dialog offers the manager.
    manager.close()
    with qtbot.waitSignal(win.errorShown, timeout=TIMEOUT) as blocker:
        win.load_model("ffhq")
    assert blocker.args[0] == "Model not downloaded" and "ffhq" in blocker.args[1]
    assert win.bundle.spec == "demo" and win.model_panel.combo.currentData() == "demo"
    box = seen(win, QMessageBox)[-1]
    box.findChild(QPushButton, "openManager").click()
    assert manager.isVisible()


def test_last_model_is_remembered_only_while_it_can_be_loaded(tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    from app.settings import remember_model, remembered_model

    monkeypatch.setenv("CHARM_MODELS_DIR", str(tmp_path / "models"))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    assert remembered_model(None) is None and remembered_model(settings) is None
    remember_model(settings, "ffhq")  # a kit that is not installed (here): the window starts on the default
    assert remembered_model(settings) is None
    folder = tmp_path / "my-bundle"
    folder.mkdir()
    remember_model(settings, str(folder))
    assert remembered_model(settings) == str(folder)
    remember_model(settings, "random")
    assert remembered_model(settings) is None
