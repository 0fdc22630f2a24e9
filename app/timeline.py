"""The Timeline dock's widgets (video mode): stage buttons, transport, clip options, the scrubber and
the per-frame plot.

- :class:`Scrubber`: a strip of frame thumbnails with frames without a face shaded, a marker for each
  keyframe and the playhead; clicking or dragging seeks.
- :class:`TimelinePanel`: the whole dock: Track / Invert / Tune / Export buttons that show their state,
  play/pause, step, frame number and timecode, the keyframe switch, smoothing, field-of-view expansion
  and paste-back, the scrubber, and a pyqtgraph plot of what the stages measured (face found,
  reconstruction PSNR, window motion) with the playhead on it.

Widgets only: they emit requests and show what they are given (:mod:`app.video_mode` decides).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.canvas import to_qimage
from engine.video.session import SMOOTHINGS, ClipOptions

STAGES = ("track", "invert", "tune", "export")
STAGE_TITLES = {"track": "Track", "invert": "Invert", "tune": "Tune (PTI)", "export": "Export\u2026"}


def timecode(frame: int, fps: Fraction) -> str:
    """HH:MM:SS:FF of ``frame`` at ``fps`` (frames counted within the second)."""
    rate = max(1, round(float(fps)))
    seconds = int(frame / float(fps)) if fps else 0
    ff = frame - round(seconds * float(fps))
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}:{max(0, min(ff, rate - 1)):02d}"


class Scrubber(QWidget):
    """Thumbnails, no-face shading, keyframe markers and the playhead; press or drag to seek."""

    seekRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("scrubber")
        self.setMinimumHeight(56)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.count = 0
        self.frame = 0
        self.thumbs: list[QImage] = []
        self.no_face = np.zeros(0, bool)
        self.keys: tuple[int, ...] = ()

    def set_clip(self, thumbs: np.ndarray) -> None:
        self.count = len(thumbs)
        self.thumbs = [to_qimage(np.ascontiguousarray(t)) for t in thumbs]
        self.no_face = np.zeros(self.count, bool)
        self.keys = ()
        self.frame = 0
        self.update()

    def set_no_face(self, mask: np.ndarray) -> None:
        self.no_face = np.asarray(mask, bool)
        self.update()

    def set_keys(self, frames: tuple[int, ...]) -> None:
        self.keys = tuple(frames)
        self.update()

    def set_frame(self, frame: int) -> None:
        self.frame = int(frame)
        self.update()

    def x_of(self, frame: float) -> float:
        return (frame + 0.5) * self.width() / max(1, self.count)

    def frame_at(self, x: float) -> int:
        return int(max(0, min(self.count - 1, x * self.count / max(1, self.width()))))

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(self.rect(), QColor("#1b1d22"))
        if self.count:
            strip = QRectF(0, 10, w, h - 14)
            tw = max(1.0, strip.height() * self.thumbs[0].width() / max(1, self.thumbs[0].height()))
            slots = max(1, int(w // tw) + 1)
            for k in range(slots):
                i = min(self.count - 1, int((k * tw + tw / 2) * self.count / w))
                p.drawImage(QRectF(k * tw, strip.top(), tw, strip.height()), self.thumbs[i])
            step = w / self.count
            shade = QColor(200, 40, 40, 110)
            for i in np.flatnonzero(self.no_face):
                p.fillRect(QRectF(i * step, strip.top(), max(1.0, step), strip.height()), shade)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor("#f5c542"))
            for f in self.keys:
                x = self.x_of(f)
                p.drawPolygon(QPolygonF([QPointF(x, 1), QPointF(x + 5, 6), QPointF(x, 11), QPointF(x - 5, 6)]))
            p.setPen(QPen(QColor("#4fc3f7"), 2))
            x = self.x_of(self.frame)
            p.drawLine(QPointF(x, 0), QPointF(x, h))
        p.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.count and event.button() == Qt.MouseButton.LeftButton:
            self.seekRequested.emit(self.frame_at(event.position().x()))

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.count and event.buttons() & Qt.MouseButton.LeftButton:
            self.seekRequested.emit(self.frame_at(event.position().x()))


class TimelinePanel(QWidget):
    """The Timeline dock's contents (see the module docstring)."""

    seekRequested = Signal(int)
    stepRequested = Signal(int)
    playToggled = Signal(bool)
    stageRequested = Signal(str)  # 'track', 'invert', 'tune', 'export'
    optionsChanged = Signal(object)  # ClipOptions
    keyframingToggled = Signal(bool)
    removeKeyRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("timeline")
        self.fps = Fraction(25)
        self.count = 0
        sp = QStyle.StandardPixmap
        self.play = QToolButton()
        self.play.setObjectName("playButton")
        self.play.setCheckable(True)
        self.play.setIcon(self.style().standardIcon(sp.SP_MediaPlay))
        self.play.setToolTip("Play / pause at the clip's frame rate")
        self.play.toggled.connect(self._play_toggled)
        back, fwd = QToolButton(), QToolButton()
        back.setIcon(self.style().standardIcon(sp.SP_MediaSeekBackward))
        fwd.setIcon(self.style().standardIcon(sp.SP_MediaSeekForward))
        back.setToolTip("One frame back (Left)")
        fwd.setToolTip("One frame on (Right)")
        back.clicked.connect(lambda: self.stepRequested.emit(-1))
        fwd.clicked.connect(lambda: self.stepRequested.emit(1))
        self.frame_label = QLabel("frame \u2014")
        self.frame_label.setObjectName("frameLabel")
        self.frame_label.setMinimumWidth(200)
        self.keyframe = QCheckBox("Keyframe")
        self.keyframe.setObjectName("keyframeBox")
        self.keyframe.setToolTip("On: an edit sets its value at the playhead (a marker); off: on the whole clip")
        self.keyframe.toggled.connect(self.keyframingToggled)
        self.remove_key = QToolButton()
        self.remove_key.setObjectName("removeKey")
        self.remove_key.setText("Remove key")
        self.remove_key.setToolTip("Remove the keys at the playhead (every edit's)")
        self.remove_key.clicked.connect(self.removeKeyRequested)
        self.smoothing = QComboBox()
        self.smoothing.setObjectName("smoothingBox")
        self.smoothing.setToolTip("Temporal smoothing of the inverted latents")
        for label, _, _ in SMOOTHINGS:
            self.smoothing.addItem(label)
        self.expand = QSpinBox()
        self.expand.setObjectName("expandBox")
        self.expand.setRange(0, 512)
        self.expand.setSuffix(" px")
        self.expand.setToolTip("Field-of-view expansion of the crop video, model pixels per side")
        self.paste = QCheckBox("Paste back")
        self.paste.setObjectName("pasteBox")
        self.paste.setChecked(True)
        self.paste.setToolTip("Blend the edited face into the frame (off: show the edited face window)")
        self.smoothing.currentIndexChanged.connect(self._options_changed)
        self.expand.valueChanged.connect(self._options_changed)
        self.paste.toggled.connect(self._options_changed)
        self.tune_steps = QSpinBox()
        self.tune_steps.setObjectName("tuneSteps")
        self.tune_steps.setRange(1, 5000)
        self.tune_steps.setValue(100)
        self.tune_steps.setSuffix(" steps")
        self.stage_buttons: dict[str, QPushButton] = {}
        stages = QHBoxLayout()
        for name in STAGES:
            b = QPushButton(STAGE_TITLES[name])
            b.setObjectName(f"stage:{name}")
            b.clicked.connect(lambda _=False, n=name: self.stageRequested.emit(n))
            self.stage_buttons[name] = b
            stages.addWidget(b)
            if name == "tune":
                stages.addWidget(self.tune_steps)
            if name != STAGES[-1]:
                stages.addWidget(QLabel("\u2192"))
        stages.addStretch(1)
        for w in (QLabel("Smoothing"), self.smoothing, QLabel("FOV"), self.expand, self.paste):
            stages.addWidget(w)
        transport = QHBoxLayout()
        for w in (back, self.play, fwd, self.frame_label, self.keyframe, self.remove_key):
            transport.addWidget(w)
        transport.addStretch(1)
        self.scrubber = Scrubber()
        self.scrubber.seekRequested.connect(self.seekRequested)
        self.plot = None  # add_plot() adds it: building it takes a UI-thread event of its own
        self.curves: dict = {}
        self._stats: tuple | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.setSpacing(4)
        lay.addLayout(stages)
        lay.addLayout(transport)
        lay.addWidget(self.scrubber)
        self._layout = lay
        self.set_stage("track", "idle")
        self.set_stage("invert", "idle")
        self.set_stage("tune", "idle")
        self.set_stage("export", "idle")

    def add_plot(self) -> None:
        if self.plot is not None:
            return
        self.plot = self._build_plot()
        self._layout.addWidget(self.plot)
        self._plot_range()
        if self._stats is not None:
            self.set_stats(*self._stats)
        self.set_frame(self.scrubber.frame)

    def _build_plot(self) -> QWidget:
        import pyqtgraph as pg

        plot = pg.PlotWidget()
        plot.setObjectName("framePlot")
        plot.setFixedHeight(110)
        plot.setBackground("#1b1d22")
        plot.showGrid(x=False, y=True, alpha=0.2)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.setMenuEnabled(False)
        plot.addLegend(offset=(4, 2), labelTextSize="7pt")
        plot.getPlotItem().hideAxis("left")
        plot.getPlotItem().hideAxis("bottom")  # the scrubber above is the frame axis
        self.curves = {
            "found": plot.plot(pen=pg.mkPen("#66bb6a", width=1), name="face found", stepMode=None),
            "quality": plot.plot(pen=pg.mkPen("#4fc3f7", width=1), name="PSNR (norm.)"),
            "motion": plot.plot(pen=pg.mkPen("#ffb74d", width=1), name="window motion (norm.)"),
        }
        self.playhead = pg.InfiniteLine(0, angle=90, pen=pg.mkPen("#e0e0e0", width=1))
        plot.addItem(self.playhead)
        plot.scene().sigMouseClicked.connect(self._plot_clicked)
        return plot

    def _plot_clicked(self, event) -> None:
        if self.plot is None:
            return
        vb = self.plot.getPlotItem().vb
        x = vb.mapSceneToView(event.scenePos()).x()
        if self.count:
            self.seekRequested.emit(int(max(0, min(self.count - 1, round(x)))))

    # -- what the panel shows ---------------------------------------------------------------------

    def set_clip(self, count: int, fps: Fraction, thumbs: np.ndarray) -> None:
        self.count, self.fps = int(count), Fraction(fps)
        self.scrubber.set_clip(thumbs)
        self._stats = None
        for c in self.curves.values():
            c.setData([], [])
        self._plot_range()
        self.set_frame(0)

    def _plot_range(self) -> None:
        if self.plot is not None:
            self.plot.setXRange(0, max(1, self.count - 1), padding=0.01)
            self.plot.setYRange(-0.05, 1.1, padding=0)

    def set_frame(self, frame: int) -> None:
        self.scrubber.set_frame(frame)
        if self.plot is not None:
            self.playhead.setValue(frame)
        n = self.count
        self.frame_label.setText(f"frame {frame + 1} / {n}   {timecode(frame, self.fps)}")

    def set_stats(self, found: np.ndarray, quality: np.ndarray, motion: np.ndarray, no_face: np.ndarray) -> None:
        self._stats = (found, quality, motion, no_face)
        self.scrubber.set_no_face(no_face)
        if self.plot is None:
            return
        x = np.arange(len(found))
        self.curves["found"].setData(x, found.astype(float))

        def norm(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, float)
            ok = np.isfinite(v)
            if not ok.any():
                return np.full(len(v), np.nan)
            lo, hi = np.nanmin(v), np.nanmax(v)
            return (v - lo) / (hi - lo) if hi > lo else np.where(ok, 0.5, np.nan)

        for name, v in (("quality", quality), ("motion", motion)):
            y = norm(v)
            ok = np.isfinite(y)
            self.curves[name].setData(x[ok], y[ok])

    def set_keys(self, frames: tuple[int, ...]) -> None:
        self.scrubber.set_keys(frames)

    def set_stage(self, name: str, state: str, text: str = "") -> None:
        """state: 'idle' (not run), 'running' (``text``: its progress), 'done', 'off' (not available)."""
        b = self.stage_buttons[name]
        title = STAGE_TITLES[name]
        if state == "done":
            b.setText(f"\u2713 {title}")
        elif state == "running":
            b.setText(f"{title} {text}".strip())
        else:
            b.setText(title)
        b.setProperty("stageState", state)
        b.setEnabled(state != "off")

    def options(self) -> ClipOptions:
        return ClipOptions(self.smoothing.currentIndex(), self.expand.value(), self.paste.isChecked())

    def set_options(self, o: ClipOptions) -> None:
        for w in (self.smoothing, self.expand, self.paste):
            w.blockSignals(True)
        self.smoothing.setCurrentIndex(o.smoothing)
        self.expand.setValue(o.expand)
        self.paste.setChecked(o.paste)
        for w in (self.smoothing, self.expand, self.paste):
            w.blockSignals(False)

    def set_playing(self, on: bool) -> None:
        self.play.blockSignals(True)
        self.play.setChecked(on)
        self.play.blockSignals(False)
        self._play_icon(on)

    def _play_icon(self, on: bool) -> None:
        sp = QStyle.StandardPixmap
        self.play.setIcon(self.style().standardIcon(sp.SP_MediaPause if on else sp.SP_MediaPlay))

    def _play_toggled(self, on: bool) -> None:
        self._play_icon(on)
        self.playToggled.emit(on)

    def _options_changed(self, *_: object) -> None:
        self.optionsChanged.emit(self.options())
