"""Dialogs: export options (photo and video), About (versions and model card), and user-facing error messages."""

from __future__ import annotations

import html
import platform
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QSpinBox,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from engine.export import UPSCALES, ExportOptions
from engine.studio import BundleInfo

EXPORT_KINDS = (
    ("aligned", "Edited aligned face"),
    ("framed", "Edited face in the photo's own framing"),
    ("pasted", "Edited face pasted back into the full photo"),
)


class ExportDialog(QDialog):
    """Choose the folder, the base name, PNG or JPEG, the size and which images to write.

    resolution: the model's resolution in px, to show the aligned and framed images' size (optional).
    """

    def __init__(self, folder: str, basename: str, parent: QWidget | None = None, resolution: int | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.resolution = resolution
        self.folder = QLineEdit(folder)
        self.folder.setObjectName("exportFolder")
        browse = QToolButton()
        browse.setText("\u2026")
        browse.clicked.connect(self._browse)
        self.basename = QLineEdit(basename)
        self.basename.setObjectName("exportName")
        self.fmt = QComboBox()
        self.fmt.setObjectName("exportFormat")
        self.fmt.addItem("PNG (lossless)", "png")
        self.fmt.addItem("JPEG (quality 95)", "jpg")
        self.upscale = QComboBox()
        self.upscale.setObjectName("exportUpscale")
        for factor in UPSCALES:
            self.upscale.addItem("1x (model size)" if factor == 1 else f"{factor}x", factor)
        self.upscale.setToolTip(
            "Size of the aligned and framed images. 2x and 4x enlarge the model's render with Lanczos "
            "interpolation: bigger, but no new detail. The pasted photo keeps the photo's size."
        )
        self.size_label = QLabel()
        self.size_label.setObjectName("exportSize")
        self.upscale.currentIndexChanged.connect(self._show_size)
        self.kinds: dict[str, QCheckBox] = {}
        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        form.addRow("Folder", row)
        form.addRow("Name", self.basename)
        form.addRow("Format", self.fmt)
        size_row = QHBoxLayout()
        size_row.addWidget(self.upscale)
        size_row.addWidget(self.size_label, 1)
        form.addRow("Upscale", size_row)
        for kind, label in EXPORT_KINDS:
            box = QCheckBox(label)
            box.setChecked(True)
            box.setObjectName(f"export:{kind}")
            self.kinds[kind] = box
            form.addRow("" if kind != "aligned" else "Write", box)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.error = QLabel()  # why Save did not close the dialog
        self.error.setObjectName("exportError")
        self.error.setWordWrap(True)
        self.error.hide()
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self._show_size()

    def _show_size(self) -> None:
        factor = int(self.upscale.currentData())
        if self.resolution:
            side = self.resolution * factor
            note = "" if factor == 1 else f" (interpolated from {self.resolution} px)"
            self.size_label.setText(f"{side} \u00d7 {side} px{note}")
        else:
            self.size_label.setText("model size" if factor == 1 else f"{factor} \u00d7 model size, interpolated")

    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Export to folder", self.folder.text())
        if d:
            self.folder.setText(d)

    def accept(self) -> None:
        """Close only with valid options; otherwise say what is wrong and stay open."""
        try:
            self.options()
        except ValueError as e:
            self.error.setText(str(e)[:1].upper() + str(e)[1:] + ".")
            self.error.show()
            return
        self.error.hide()
        super().accept()

    def options(self) -> ExportOptions:
        """The chosen options (raises ValueError when they are not valid, e.g. no folder)."""
        kinds = tuple(k for k, box in self.kinds.items() if box.isChecked())
        name = self.basename.text().strip() or "charm"
        return ExportOptions(
            folder=self.folder.text().strip(),
            basename=name,
            fmt=self.fmt.currentData(),
            kinds=kinds,
            upscale=int(self.upscale.currentData()),
        )


def _dist_version(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "not installed"


def versions() -> list[tuple[str, str]]:
    """(component, version) rows for the About box, read from package metadata (nothing is imported)."""
    import PySide6
    from PySide6.QtCore import qVersion

    return [
        ("Charm Studio", _dist_version("charm-studio").replace("not installed", "development checkout")),
        ("Python", platform.python_version()),
        ("PySide6 / Qt", f"{PySide6.__version__} / {qVersion()}"),
        ("torch", _dist_version("torch")),
        ("numpy", _dist_version("numpy")),
        ("OpenCV", _dist_version("opencv-python-headless", "opencv-python")),
        ("dlib", _dist_version("dlib-bin", "dlib")),
        ("safetensors", _dist_version("safetensors")),
    ]


def about_html(bundle: BundleInfo | None, device: str, notice: str | None = None) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in versions())
    parts = [
        "<h2>Charm Studio</h2>",
        "<p>Edit faces in photos with StyleGAN3, after <i>Third Time's the Charm? Image and Video "
        "Editing with StyleGAN3</i> (Alaluf et al., 2022).</p>",
        f"<h3>Versions</h3><table cellspacing='4'>{rows}<tr><td>device</td><td>{html.escape(device)}</td></tr></table>",
    ]
    if bundle is not None:
        parts.append(f"<h3>Model: {html.escape(bundle.title)}</h3>")
        for line in dict.fromkeys(n for n in (notice, bundle.notice) if n):
            parts.append(f"<p style='color:#c77c00'><b>{html.escape(line)}</b></p>")
        parts.append(
            f"<p>{bundle.resolution} px, w_dim {bundle.w_dim}, {bundle.num_ws} ws, "
            f"{len(bundle.directions)} directions, inversion by {html.escape(bundle.inverter)}.<br>"
            f"Folder: {html.escape(bundle.folder)}</p>"
        )
    return "".join(parts)


VIDEO_KINDS = (
    ("full", "Full frame (edited face pasted back)"),
    ("crop", "Face window (crop, with the field-of-view expansion)"),
    ("side_by_side", "Side by side (original | edited)"),
)


class ExportVideoDialog(QDialog):
    """Choose the output file, what it shows (:data:`VIDEO_KINDS`), quality (x264 CRF) and whether the
    source's audio is kept. :meth:`choice` gives ``(path, options)`` for
    :meth:`app.main_window.MainWindow.export_video`."""

    def __init__(self, path: str, parent: QWidget | None = None, has_audio: bool = True):
        super().__init__(parent)
        self.setWindowTitle("Export video")
        self.path = QLineEdit(path)
        self.path.setObjectName("videoPath")
        browse = QToolButton()
        browse.setText("\u2026")
        browse.clicked.connect(self._browse)
        self.kind = QComboBox()
        self.kind.setObjectName("videoKind")
        for kind, label in VIDEO_KINDS:
            self.kind.addItem(label, kind)
        self.crf = QSpinBox()
        self.crf.setObjectName("videoCrf")
        self.crf.setRange(0, 51)
        self.crf.setValue(18)
        self.crf.setToolTip("x264 CRF: lower is better and bigger; 18 is about visually lossless")
        self.audio = QCheckBox("Keep the audio")
        self.audio.setObjectName("videoAudio")
        self.audio.setChecked(True)
        self.audio.setEnabled(has_audio)
        if not has_audio:
            self.audio.setText("Keep the audio (the clip has none)")
        form = QFormLayout()
        row = QHBoxLayout()
        row.addWidget(self.path, 1)
        row.addWidget(browse)
        form.addRow("File", row)
        form.addRow("Shows", self.kind)
        form.addRow("Quality (CRF)", self.crf)
        form.addRow("", self.audio)
        self.error = QLabel()
        self.error.setObjectName("exportError")
        self.error.setWordWrap(True)
        self.error.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export video", self.path.text(), "MP4 video (*.mp4 *.mov *.m4v)")
        if path:
            self.path.setText(path)

    def accept(self) -> None:
        try:
            self.choice()
        except ValueError as e:
            self.error.setText(str(e))
            self.error.show()
            return
        super().accept()

    def choice(self) -> tuple[str, dict]:
        path = self.path.text().strip()
        if not path:
            raise ValueError("Choose a file to write.")
        if Path(path).suffix.lower() not in (".mp4", ".mov", ".m4v"):
            raise ValueError("The file name must end in .mp4, .mov or .m4v.")
        return path, {"kind": self.kind.currentData(), "crf": self.crf.value(), "keep_audio": self.audio.isChecked()}


class AboutDialog(QDialog):
    def __init__(
        self, bundle: BundleInfo | None, device: str, notice: str | None = None, parent: QWidget | None = None
    ):
        super().__init__(parent)
        self.setWindowTitle("About Charm Studio")
        self.resize(640, 640)
        self.text = QTextBrowser()
        self.text.setObjectName("aboutText")
        self.text.setOpenExternalLinks(True)
        md = ""
        if bundle is not None and bundle.model_card and Path(bundle.model_card).is_file():
            md = Path(bundle.model_card).read_text(encoding="utf-8", errors="replace")
        self.text.setHtml(about_html(bundle, device, notice))
        if md:
            self.card = QTextBrowser()
            self.card.setObjectName("modelCard")
            self.card.setMarkdown(md)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        lay = QVBoxLayout(self)
        lay.addWidget(self.text, 3)
        if md:
            lay.addWidget(self.card, 2)
        lay.addWidget(buttons)


def error_box(parent: QWidget, title: str, message: str, hint: str) -> QMessageBox:
    """A warning box (not yet shown) that says what happened and what to do."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(title)
    box.setText(f"<b>{html.escape(title)}</b>")
    box.setInformativeText(f"{html.escape(message)}<br><br>{html.escape(hint)}")
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setObjectName("errorBox")
    return box
