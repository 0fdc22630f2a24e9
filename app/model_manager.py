"""The model manager (Models ▸ Manage…): get the official models, add files downloaded by hand, use or
remove models.

- **Kits** (:data:`engine.model_store.KITS`): ready-to-edit sets of official files, one click each:
  downloaded with progress, speed and time left, cancellable; a download that breaks off after making
  progress is resumed on its own (the downloader keeps a ``.part`` file and asks for the rest), and a
  stopped one resumes on the next Get. The bundle is then built and the window loads it.
- **Installed** models: use one, or remove it (after a confirmation).
- **Official files** (:data:`engine.download.KNOWN_MODELS`): what each is for, its size, whether it is
  downloaded (with the SHA-256 recorded at its first download).
- When a download cannot be done (offline, blocked, Google Drive's quota), one line gives the exact URLs
  of the missing files: files downloaded in a browser can be dropped onto the dialog (or chosen with
  Add files…). Files named like an official file go into the model cache, so the kit builds without
  downloading; any other generator, encoder or boundary files are built into a new model.

Every download, build, import and removal runs on the models lane (:class:`app.worker.EngineHost`), so
the window stays responsive and editing goes on meanwhile. Signals: ``modelInstalled(name)`` after a
model was built or added, ``modelRemoved(name)``, ``useRequested(spec)`` when the user picks a model to
edit with, ``failed(line)`` with the one-line error shown, ``idle()`` when none of its jobs is left,
``activity(text)`` with a short progress line for the window's status bar ("" when idle).
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.worker import EngineHost, Failure
from engine import download as dl
from engine import model_store as ms
from engine.jobs import JobControl, Progress

__all__ = ["ModelManagerDialog"]

DROP_HINT = "or download them in a browser and drop the files here"


def _known_of(name: str) -> tuple[dl.KnownModel, ...]:
    kit = ms.find_kit(name)
    return kit.known if kit is not None else (dl.find_model(name),)


@dataclass(frozen=True)
class FilesAdded:
    """What adding files did: the official files imported, the model built from the other files."""

    imported: tuple[str, ...]  # known file names
    built: str | None  # the new model's name
    kits_ready: tuple[str, ...]  # kits that have every file now but are not built yet


def _add_files(paths: list[Path], ctl: JobControl) -> FilesAdded:
    ctl.stage("Importing files")
    before = {k for k in ms.KITS if not ms.missing_files(k)}
    imported, others = ms.import_files(paths)
    built = None
    if others:
        ctl.stage("Building a model from the files")
        built = ms.add_model(others, ctl=ctl).parent.name
    installed = {m.name for m in ms.installed_models()}
    ready = tuple(k for k in ms.KITS if k not in before and k not in installed and not ms.missing_files(k))
    return FilesAdded(tuple(m.name for m in imported), built, ready)


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    return re.split(r"(?<=\.)\s+(?=[A-Z])", text, maxsplit=1)[0]


def describe_eta(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


class ModelManagerDialog(QDialog):
    """The model manager (see the module docstring). Non-modal: keep it open while editing.

    Entry points for tests: :meth:`get_kit`, :meth:`add_files`, :meth:`remove_model`, :meth:`cancel`,
    :meth:`refresh`; ``dialog_hook`` is called with the confirmation boxes it opens.
    """

    modelInstalled = Signal(str)
    modelRemoved = Signal(str)
    useRequested = Signal(str)
    failed = Signal(str)
    idle = Signal()
    activity = Signal(str)

    def __init__(self, host: EngineHost, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self.setWindowTitle("Models")
        self.setObjectName("modelManager")
        self.setAcceptDrops(True)
        self.resize(920, 700)
        self.dialog_hook: Callable[[QDialog], None] | None = None
        self.current_model: str | None = None  # the model the window edits with ("In use")
        self._jobs: dict[int, tuple[str, str]] = {}  # job id -> (kind, model or file name)
        self._installed: list[ms.InstalledModel] = []  # what refresh() read from the model cache
        self._missing: dict[str, list[dl.KnownModel]] = {}  # kit -> its files not downloaded yet
        self._rate: tuple[str, float, int] | None = None  # (stage, start time, bytes at start) for the speed
        self.kit_buttons: dict[str, QPushButton] = {}
        self.kit_sizes: dict[str, QLabel] = {}

        self.tabs = QTabWidget()
        self.tabs.setObjectName("modelTabs")
        self.tabs.addTab(self._build_kits(), "Get models")
        self.installed = self._table("installedModels", ["Model", "Name (--model)", "Size", "Made from", "", ""])
        self.tabs.addTab(self.installed, "Installed")
        self.tabs.addTab(self._build_files(), "Official files")

        self.stage = QLabel()
        self.stage.setObjectName("progressStage")
        self.bar = QProgressBar()
        self.bar.setObjectName("progressBar")
        self.bar.setTextVisible(False)
        self.detail = QLabel()
        self.detail.setObjectName("progressDetail")
        self.detail.setStyleSheet("color: palette(mid);")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelDownload")
        self.cancel_button.clicked.connect(self.cancel)
        self.progress_box = QWidget()
        box = QVBoxLayout(self.progress_box)
        box.setContentsMargins(0, 0, 0, 0)
        top, bottom = QHBoxLayout(), QHBoxLayout()
        top.addWidget(self.stage, 1)
        top.addWidget(self.detail)
        bottom.addWidget(self.bar, 1)
        bottom.addWidget(self.cancel_button)
        box.addLayout(top)
        box.addLayout(bottom)
        self.progress_box.hide()

        self.status = QLabel()
        self.status.setObjectName("statusLine")
        self.status.setWordWrap(True)
        self.error = QLabel()
        self.error.setObjectName("errorLine")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #e0664a;")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        hint = QLabel(
            "Downloaded the files in a browser? Drop them here, or choose them with Add files\u2026 "
            "Files of other StyleGAN3 models (.pkl, .pt, .safetensors, boundary .npy) become a new model."
        )
        hint.setWordWrap(True)
        hint.setStyleSheet("color: palette(mid);")
        self.add_button = QPushButton("Add files\u2026")
        self.add_button.setObjectName("addFiles")
        self.add_button.clicked.connect(self._choose_files)
        self.folder_button = QPushButton("Open a bundle folder\u2026")
        self.folder_button.setObjectName("openBundle")
        self.folder_button.setToolTip("Edit with a model bundle folder (with manifest.json) from anywhere on disk")
        self.folder_button.clicked.connect(self._choose_folder)
        close = QPushButton("Close")
        close.setObjectName("closeManager")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        buttons.addWidget(close)

        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(self.progress_box)
        lay.addWidget(self.status)
        lay.addWidget(self.error)
        lay.addWidget(hint)
        lay.addLayout(buttons)

        lane = host.models
        lane.progress.connect(self._on_progress)
        lane.finished.connect(self._on_finished)
        lane.failed.connect(self._on_failed)
        lane.cancelled.connect(self._on_cancelled)
        lane.idle.connect(self._on_idle)
        self.refresh()

    # -- building -----------------------------------------------------------------------------------

    def _build_kits(self) -> QWidget:
        page = QWidget()
        grid = QGridLayout(page)
        grid.setColumnStretch(0, 1)
        grid.setVerticalSpacing(14)
        for i, kit in enumerate(ms.KITS.values()):
            text = QLabel(
                f"<b>{html.escape(kit.title)}</b><br>{html.escape(kit.description)}<br>"
                f"<span style='color:#8a9099'>{html.escape(kit.speed)}</span>"
            )
            text.setObjectName(f"kit:{kit.name}")
            text.setWordWrap(True)
            size = QLabel()
            size.setObjectName(f"kitSize:{kit.name}")
            size.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            button = QPushButton()
            button.setObjectName(f"kitButton:{kit.name}")
            button.setMinimumWidth(90)
            button.clicked.connect(lambda _=False, k=kit.name: self._kit_clicked(k))
            grid.addWidget(text, i, 0)
            grid.addWidget(size, i, 1)
            grid.addWidget(button, i, 2)
            self.kit_buttons[kit.name] = button
            self.kit_sizes[kit.name] = size
        self.cache_note = QLabel()
        self.cache_note.setWordWrap(True)
        self.cache_note.setStyleSheet("color: palette(mid);")
        grid.addWidget(self.cache_note, len(ms.KITS), 0, 1, 3)
        grid.setRowStretch(len(ms.KITS) + 1, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(page)
        return scroll

    def _build_files(self) -> QWidget:
        self.files = self._table("knownFiles", ["File", "What it is for", "Kind", "Size", "Status"])
        self.files.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.files.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.get_file_button = QPushButton("Download selected")
        self.get_file_button.setObjectName("getFile")
        self.get_file_button.setToolTip("Download the selected file and build a model from it")
        self.get_file_button.clicked.connect(lambda: self._selected_file() and self.get_kit(self._selected_file()))
        self.delete_file_button = QPushButton("Delete selected file")
        self.delete_file_button.setObjectName("deleteFile")
        self.delete_file_button.clicked.connect(
            lambda: self._selected_file() and self.remove_model(self._selected_file(), file=True)
        )
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.addWidget(self.files, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.get_file_button)
        row.addWidget(self.delete_file_button)
        lay.addLayout(row)
        return page

    @staticmethod
    def _table(name: str, headers: list[str]) -> QTableWidget:
        t = QTableWidget(0, len(headers))
        t.setObjectName(name)
        t.setHorizontalHeaderLabels(headers)
        t.verticalHeader().hide()
        t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        t.setWordWrap(False)
        h = t.horizontalHeader()
        h.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        return t

    # -- what is installed --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read what is in the model cache now and show it (kits, installed models, official files)."""
        self._installed = ms.installed_models()
        self._missing = {k: ms.missing_files(k) for k in ms.KITS}
        self._show_kits()
        self._fill_installed()
        self._fill_files()

    def set_current_model(self, spec: str | None) -> None:
        """Mark the model the window edits with as in use (no disk access)."""
        self.current_model = spec
        self._show_kits()
        for r in range(self.installed.rowCount()):
            use = self.installed.cellWidget(r, 4)
            if isinstance(use, QPushButton):
                in_use = use.objectName() == f"use:{spec}"
                use.setText("In use" if in_use else "Use")
                use.setEnabled(not in_use)

    def _show_kits(self) -> None:
        names = {m.name for m in self._installed}
        busy = {name for _, name in self._jobs.values()}
        for kit in ms.KITS.values():
            missing = self._missing[kit.name]
            button, size = self.kit_buttons[kit.name], self.kit_sizes[kit.name]
            if kit.name in names:
                in_use = self.current_model == kit.name
                size.setText("installed")
                button.setText("In use" if in_use else "Use")
                button.setEnabled(not in_use)
            elif not missing:
                size.setText("downloaded")
                button.setText("Build")
                button.setToolTip("Every file is here: build the model (no download)")
                button.setEnabled(True)
            else:
                left = sum(m.approx_bytes for m in missing)
                size.setText(ms.describe_size(left) + ("" if len(missing) == len(kit.files) else " left"))
                button.setText("Get")
                button.setToolTip("Download: " + ", ".join(dl.known_url(m) for m in missing))
                button.setEnabled(True)
            if kit.name in busy:
                button.setEnabled(False)
        self.cache_note.setText(
            f"Models are kept in {dl.models_dir()}. A download that stops is resumed where it stopped."
        )

    def _fill_installed(self) -> None:
        from engine.models import DEMO_MANIFEST

        rows: list[tuple[str, str, str, str, bool]] = []
        if DEMO_MANIFEST.is_file():
            demo_bytes = sum(p.stat().st_size for p in DEMO_MANIFEST.parent.iterdir() if p.is_file())
            rows.append(
                ("Charm demo faces, 64 px", "demo", ms.describe_size(demo_bytes, approx=False), "built in", False)
            )
        for m in self._installed:
            rows.append((m.title, m.name, ms.describe_size(m.bytes, approx=False), m.source, True))
        t = self.installed
        t.setRowCount(len(rows))
        for r, (title, name, size, source, removable) in enumerate(rows):
            for c, text in enumerate((title, name, size, source)):
                t.setItem(r, c, QTableWidgetItem(text))
            use = QPushButton("In use" if name == self.current_model else "Use")
            use.setObjectName(f"use:{name}")
            use.setEnabled(name != self.current_model)
            use.clicked.connect(lambda _=False, n=name: self.useRequested.emit(n))
            t.setCellWidget(r, 4, use)
            if removable:
                rm = QPushButton("Remove")
                rm.setObjectName(f"remove:{name}")
                rm.clicked.connect(lambda _=False, n=name: self.remove_model(n))
                t.setCellWidget(r, 5, rm)
            else:
                t.removeCellWidget(r, 5)
        self.tabs.setTabText(1, f"Installed ({len(rows)})")

    def _fill_files(self) -> None:
        t = self.files
        models = list(dl.KNOWN_MODELS.values())
        t.setRowCount(len(models))
        for r, m in enumerate(models):
            path = ms.known_file_path(m)
            part = dl.model_path(m.name)
            part = part.with_name(part.name + ".part")
            if path is not None:
                size = ms.describe_size(path.stat().st_size, approx=False)
                digest = dl.recorded_checksum(m)
                status = "downloaded" + (f" (SHA-256 {digest[:12]}\u2026)" if digest else "")
            else:
                size = ms.describe_size(m.approx_bytes)
                status = (
                    f"partly downloaded ({dl.format_bytes(part.stat().st_size)}; Get resumes it)"
                    if part.is_file()
                    else "not downloaded"
                )
            for c, text in enumerate((Path(m.filename).name, m.description, m.kind, size, status)):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, m.name)
                item.setToolTip(f"{m.description}\n{dl.known_url(m)}")
                t.setItem(r, c, item)

    def _selected_file(self) -> str | None:
        items = self.files.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    # -- actions ------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while one of the dialog's jobs is running or queued."""
        return bool(self._jobs)

    def _start(self, kind: str, name: str, fn: Callable[[JobControl], Any], text: str) -> int:
        job = self.host.submit_models(kind, fn)
        self._jobs[job] = (kind, name)
        self.error.hide()
        self.status.setText("")
        self.stage.setText(text)
        self.detail.setText("")
        self.bar.setRange(0, 0)
        self.progress_box.show()
        self.cancel_button.setEnabled(True)
        self._rate = None
        self._show_kits()
        return job

    def _kit_clicked(self, name: str) -> None:
        if name in {m.name for m in ms.installed_models()}:
            self.useRequested.emit(name)
        else:
            self.get_kit(name)

    def get_kit(self, name: str) -> int:
        """Download what is missing of kit (or official file) ``name`` and build its model; returns the
        job id (the running one when ``name`` is already on its way)."""
        for job, (kind, n) in self._jobs.items():
            if kind == "download" and n == name:
                return job
        kit = ms.find_kit(name)
        title = kit.title if kit else name
        return self._start("download", name, lambda ctl: ms.get_model(name, ctl), f"Getting {title}")

    def add_files(self, paths: Iterable[str | Path]) -> int:
        """Files downloaded by hand: official files go into the model cache, the others are built into a
        new model. Returns the job id."""
        files = [Path(p) for p in paths]
        return self._start(
            "files", ", ".join(p.name for p in files), lambda ctl: _add_files(files, ctl), "Adding files"
        )

    def remove_model(self, name: str, confirm: bool = True, file: bool = False) -> int | None:
        """Remove installed model ``name`` (``file``: an official file downloaded into the cache), after
        a confirmation unless ``confirm`` is False. Returns the job id (None until confirmed)."""
        if confirm:
            what = f"the downloaded file {name}" if file else f"the model '{name}'"
            box = QMessageBox(self)
            box.setObjectName("confirmRemove")
            box.setIcon(QMessageBox.Icon.Question)
            box.setWindowTitle("Remove")
            box.setText(f"Remove {what}?")
            box.setInformativeText(
                "Its files are deleted from the model cache; getting it again downloads them again."
                if file
                else "Its bundle is deleted; downloaded official files stay, so a kit builds again without downloading."
            )
            box.setStandardButtons(QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
            box.accepted.connect(lambda: self.remove_model(name, confirm=False, file=file))
            box.open()
            if self.dialog_hook is not None:
                self.dialog_hook(box)
            return None
        return self._start("remove", name, lambda ctl: ms.remove_model(name), f"Removing {name}")

    def cancel(self) -> None:
        """Stop the dialog's downloads and builds; what was downloaded is kept for the next Get."""
        self.host.cancel(list(self._jobs))
        self.cancel_button.setEnabled(False)
        self.stage.setText("Cancelling\u2026")

    def _choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add model files", "", "Model files (*.pkl *.pt *.safetensors *.npy);;All files (*)"
        )
        if paths:
            self.add_files(paths)

    def _choose_folder(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open a model bundle folder (with manifest.json)")
        if d:
            self.useRequested.emit(d)

    # -- job reports --------------------------------------------------------------------------------

    def _on_progress(self, job: int, p: Progress) -> None:
        if job not in self._jobs:
            return
        self.stage.setText(p.stage)
        if not p.stage.startswith("Downloading") or p.total <= 0:
            self.bar.setRange(0, 0 if p.total <= 0 else p.total)
            if p.total > 0:
                self.bar.setValue(p.done)
            self.detail.setText("")
            self.activity.emit(p.stage)
            return
        self.activity.emit(f"{p.stage}: {min(100, p.done * 100 // p.total)}%")
        self.bar.setRange(0, 1000)  # bytes overflow a QProgressBar's int range beyond 2 GB
        self.bar.setValue(min(1000, p.done * 1000 // p.total))
        now = time.perf_counter()
        if self._rate is None or self._rate[0] != p.stage:
            self._rate = (p.stage, now, p.done)
        stage, t0, done0 = self._rate
        text = f"{dl.format_bytes(p.done)} of {dl.format_bytes(p.total)}"
        if now - t0 > 0.5 and p.done > done0:
            rate = (p.done - done0) / (now - t0)
            text += f" \u2022 {dl.format_bytes(int(rate))}/s \u2022 {describe_eta((p.total - p.done) / rate)} left"
        self.detail.setText(text)

    def _on_finished(self, job: int, result: Any) -> None:
        if job not in self._jobs:
            return
        kind, name = self._jobs[job]
        if kind == "download":
            installed = Path(result).parent.name
            kit = ms.find_kit(installed)
            self.status.setText(f"Installed '{kit.title if kit else installed}'.")
            self.modelInstalled.emit(installed)
        elif kind == "files":
            added: FilesAdded = result
            parts = []
            if added.imported:
                parts.append(f"Put {', '.join(added.imported)} into the model cache.")
            for k in added.kits_ready:
                parts.append(f"'{ms.KITS[k].title}' has every file now: Build makes it without downloading.")
            if added.built:
                parts.append(f"Built the model '{added.built}' from the other files.")
            self.status.setText(" ".join(parts) or "Nothing to add.")
            if added.built:
                self.modelInstalled.emit(added.built)
        elif kind == "remove":
            self.status.setText(f"Removed {name}.")
            self.modelRemoved.emit(name)

    def _on_failed(self, f: Failure) -> None:
        if f.job not in self._jobs:
            return
        kind, name = self._jobs[f.job]
        line = first_sentence(f.message)
        if f.download and kind == "download":
            missing = ms.missing_files(name)
            urls = ", ".join(dl.known_url(m) for m in missing)
            line = f"{line} Missing: {urls} \u2014 try again later, {DROP_HINT}."
        self.show_error(line)

    def show_error(self, line: str) -> None:
        line = " ".join(line.split())
        self.error.setText(line)
        self.error.show()
        self.failed.emit(line)

    def _on_cancelled(self, job: int) -> None:
        if job in self._jobs and self._jobs[job][0] == "download":
            self.status.setText("Cancelled: what was downloaded is kept, and the next Get resumes it.")

    def _on_idle(self, job: int) -> None:
        if self._jobs.pop(job, None) is None:
            return
        if not self._jobs:
            self.progress_box.hide()
            self._rate = None
        self.refresh()
        if not self._jobs:
            self.activity.emit("")
            self.idle.emit()

    # -- dropped files ------------------------------------------------------------------------------

    @staticmethod
    def _local_files(event: QDragEnterEvent | QDropEvent) -> list[str]:
        md = event.mimeData()
        return [u.toLocalFile() for u in md.urls() if u.isLocalFile()] if md.hasUrls() else []

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._local_files(event):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if self._local_files(event):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = self._local_files(event)
        if paths:
            event.acceptProposedAction()
            self.add_files(paths)
