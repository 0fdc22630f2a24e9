"""The studio window's widgets, actions, menus, tool bar and status bar.

:class:`WindowLayout` builds them; :class:`app.main_window.MainWindow` adds the behaviour (the slots the
actions call and what the window does with the engine's results).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QAction, QActionGroup, QDragEnterEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QStyle,
    QTabWidget,
    QTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.canvas import CompareCanvas, FacePicker
from app.panels import DirectionsPanel, InversionPanel, ModelPanel, StyleSpacePanel, TransformPanel, make_scroll_column
from app.settings import DEMO_PHOTO_NOTICE


class WindowLayout(QMainWindow):
    """The window's parts and how they are viewed (compare modes, the held space bar, accepting dragged
    files). Subclasses provide the slots named in :meth:`_build_actions` and handle dropped files."""

    def _build_ui(self) -> None:
        self.canvas = CompareCanvas()
        self.picker = FacePicker()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.canvas)
        self.stack.addWidget(self.picker)
        central = QWidget()
        column = QVBoxLayout(central)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self._build_demo_notice())
        column.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.model_panel = ModelPanel()
        self.directions_panel = DirectionsPanel()
        self.style_panel = StyleSpacePanel()
        self.transform_panel = TransformPanel()
        self.inversion_panel = InversionPanel()
        self.tools_tabs = QTabWidget()
        self.tools_tabs.setObjectName("toolTabs")
        for panel, name in (
            (self.transform_panel, "Transform"),
            (self.style_panel, "StyleSpace"),
            (self.inversion_panel, "Inversion"),
        ):
            panel.setTitle("")
            panel.setFlat(True)
            self.tools_tabs.addTab(panel, name)
        column = make_scroll_column([self.model_panel, self.directions_panel, self.tools_tabs])
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(column)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.dock = QDockWidget("Edit", self)
        self.dock.setObjectName("editDock")
        self.dock.setWidget(scroll)
        self.dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.dock.setMinimumWidth(370)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)

        self._build_actions()
        self._build_status()

    def _build_demo_notice(self) -> QFrame:
        """A one-line bar above the photo: the demo model is not made for real photos (hidden until shown)."""
        bar = QFrame()
        bar.setObjectName("demoNotice")
        bar.setStyleSheet(
            "#demoNotice { background: #3a3220; border-bottom: 1px solid #6b5a2a; }"
            "#demoNotice QLabel { color: #f0d79a; }"
        )
        text = QLabel(DEMO_PHOTO_NOTICE)
        text.setObjectName("demoNoticeText")
        self.demo_notice_button = QPushButton("Get real models\u2026")
        self.demo_notice_button.setObjectName("demoNoticeButton")
        self.demo_notice_button.setToolTip("Open the model manager: download the FFHQ models, or add model files")
        self.demo_notice_close = QToolButton()
        self.demo_notice_close.setObjectName("demoNoticeClose")
        self.demo_notice_close.setText("\u00d7")
        self.demo_notice_close.setAutoRaise(True)
        self.demo_notice_close.setToolTip("Hide this notice for this photo")
        row = QHBoxLayout(bar)
        row.setContentsMargins(10, 4, 6, 4)
        row.addWidget(text, 1)
        row.addWidget(self.demo_notice_button)
        row.addWidget(self.demo_notice_close)
        bar.hide()
        self.demo_notice = bar
        return bar

    def _action(self, text: str, slot, shortcut=None, icon=None, tip: str = "", checkable: bool = False) -> QAction:
        a = QAction(text, self)
        if icon is not None:
            a.setIcon(self.style().standardIcon(icon))
        if shortcut is not None:
            a.setShortcut(shortcut)
        a.setToolTip(tip or text.replace("&", "").replace("\u2026", ""))
        a.setCheckable(checkable)
        (a.toggled if checkable else a.triggered).connect(slot)
        return a

    def _build_actions(self) -> None:
        SP = QStyle.StandardPixmap
        self.act_open = self._action(
            "&Open photo\u2026", self._open_dialog, QKeySequence.StandardKey.Open, SP.SP_DialogOpenButton
        )
        self.act_open_video = self._action(
            "Open &video\u2026",
            self._open_video_dialog,
            QKeySequence("Ctrl+Shift+V"),
            SP.SP_MediaPlay,
            "Open a video (mp4, mov, webm, mkv): track, invert and edit it on a timeline",
        )
        self.act_step_back = self._action("Previous frame", lambda: self.step_frame(-1), QKeySequence(Qt.Key.Key_Left))
        self.act_step_on = self._action("Next frame", lambda: self.step_frame(1), QKeySequence(Qt.Key.Key_Right))
        for a in (self.act_step_back, self.act_step_on):
            a.setEnabled(False)
            self.addAction(a)
        self.act_open_session = self._action(
            "Open &session\u2026", self._open_session_dialog, QKeySequence("Ctrl+Shift+O"), SP.SP_DirOpenIcon
        )
        self.act_save_session = self._action(
            "&Save session\u2026", self._save_session_dialog, QKeySequence.StandardKey.Save, SP.SP_DialogSaveButton
        )
        self.act_export = self._action(
            "&Export\u2026",
            self._export_dialog,
            QKeySequence("Ctrl+E"),
            SP.SP_ArrowDown,
            "Export the edited face (aligned, framed, pasted back)",
        )
        self.act_quit = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_undo = self._action("&Undo", self.undo, QKeySequence.StandardKey.Undo, SP.SP_ArrowBack)
        self.act_redo = self._action("&Redo", self.redo, QKeySequence.StandardKey.Redo, SP.SP_ArrowForward)
        self.act_reset = self._action("Reset &all edits", self.reset_edits)
        self.act_original = self._action(
            "Show &original",
            self._original_toggled,
            None,
            SP.SP_DesktopIcon,
            "Show the original in place of the result (or hold Space)",
            True,
        )
        self.act_side = self._action(
            "Side by side", lambda on: on and self.set_compare_mode("side"), QKeySequence("Ctrl+1"), checkable=True
        )
        self.act_split = self._action(
            "Split view", lambda on: on and self.set_compare_mode("split"), QKeySequence("Ctrl+2"), checkable=True
        )
        group = QActionGroup(self)
        group.addAction(self.act_side)
        group.addAction(self.act_split)
        self.act_side.setChecked(True)
        self.act_faces = self._action(
            "Choose &face\u2026",
            self.show_face_picker,
            None,
            SP.SP_FileDialogContentsView,
            "Pick another face of the photo",
        )
        self.act_about = self._action("&About", self.show_about, None, SP.SP_MessageBoxInformation)
        self.act_models = self._action(
            "&Manage\u2026",
            self.open_model_manager,
            QKeySequence("Ctrl+M"),
            SP.SP_DriveNetIcon,
            "Get the official models (with progress, resumable), add model files, remove models",
        )
        self.act_open_bundle = self._action(
            "Open a &bundle folder\u2026", self._browse_model, None, SP.SP_DirIcon, "Edit with a model bundle folder"
        )

        bar = self.menuBar()
        m = bar.addMenu("&File")
        for a in (self.act_open, self.act_open_video, self.act_open_session, self.act_save_session, self.act_export):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = bar.addMenu("&Edit")
        for a in (self.act_undo, self.act_redo, self.act_reset):
            m.addAction(a)
        m = bar.addMenu("&View")
        for a in (self.act_side, self.act_split, self.act_original, self.act_faces):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.dock.toggleViewAction())
        m = bar.addMenu("&Models")
        m.addAction(self.act_models)
        m.addAction(self.act_open_bundle)
        m = bar.addMenu("&Help")
        m.addAction(self.act_about)

        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolBar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        for a in (
            self.act_open,
            self.act_open_video,
            self.act_open_session,
            self.act_save_session,
            self.act_export,
            None,
            self.act_undo,
            self.act_redo,
            None,
            self.act_side,
            self.act_split,
            self.act_original,
            self.act_faces,
            None,
            self.act_about,
        ):
            tb.addSeparator() if a is None else tb.addAction(a)

    def _build_status(self) -> None:
        sb = self.statusBar()
        self.notice_label = QLabel()
        self.notice_label.setObjectName("noticeLabel")
        self.notice_label.setStyleSheet("color: #e09a2a; font-weight: 600; padding: 0 6px;")
        self.device_label = QLabel("device: \u2026")
        self.device_label.setObjectName("deviceLabel")
        self.render_label = QLabel("render: \u2014")
        self.render_label.setObjectName("renderLabel")
        self.render_label.setToolTip("Worker render time / time from the request to the image on screen")
        self.progress = QProgressBar()
        self.progress.setObjectName("progress")
        self.progress.setFixedWidth(170)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_jobs)
        self.models_activity = QPushButton()  # a download or build of the model manager, while it runs
        self.models_activity.setObjectName("modelsActivity")
        self.models_activity.setFlat(True)
        self.models_activity.setToolTip("Open the model manager")
        self.models_activity.hide()
        for w in (
            self.models_activity,
            self.notice_label,
            self.device_label,
            self.render_label,
            self.progress,
            self.cancel_button,
        ):
            sb.addPermanentWidget(w)
        sb.showMessage("Drop a portrait photo onto the window, or use File \u25b8 Open.")

    # -- compare modes, the held space bar (show the original), dragged files ------------------------

    def set_compare_mode(self, mode: str) -> None:
        self.canvas.set_mode(mode)
        (self.act_side if mode == "side" else self.act_split).setChecked(True)

    def _original_toggled(self, on: bool) -> None:
        self.canvas.set_show_original(on or self._space_held)

    def set_space_held(self, held: bool) -> None:
        self._space_held = held
        self.canvas.set_show_original(held or self.act_original.isChecked())

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
        t = event.type()
        if (
            t in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease)
            and event.key() == Qt.Key.Key_Space
            and self.isActiveWindow()
        ):
            focus = QApplication.focusWidget()
            if isinstance(focus, (QLineEdit, QTextEdit, QAbstractSpinBox, QComboBox)):
                return False
            if not event.isAutoRepeat():
                self.set_space_held(t == QEvent.Type.KeyPress)
            return True
        return False

    @staticmethod
    def _dropped_path(event) -> str | None:
        md = event.mimeData()
        if md.hasUrls():
            for url in md.urls():
                if url.isLocalFile():
                    return url.toLocalFile()
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_path(event):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        if self._dropped_path(event):
            event.acceptProposedAction()
