"""The right dock's panels: model picker, direction sliders, StyleSpace channel editor, transform controls
and inversion settings. Panels only emit what the user did; the main window turns that into states."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDial,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


class ValueSlider(QWidget):
    """A labelled float slider on one row: name with its range, the slider, the value, a reset button.

    ``edited(value, record)``: record is False while the handle is being dragged (the drag is
    recorded once, see ``dragStarted``/``dragFinished``). Values snap to ``step``.
    """

    edited = Signal(float, bool)
    dragStarted = Signal()
    dragFinished = Signal()

    def __init__(
        self,
        name: str,
        lo: float,
        hi: float,
        step: float = 0.01,
        fmt: str = "{:+.2f}",
        tooltip: str = "",
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.name, self.lo, self.hi, self.step, self.fmt = name, float(lo), float(hi), float(step), fmt
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"slider:{name}")
        # End positions round outwards; value() clamps them to the range's exact ends.
        self.slider.setRange(math.floor(self.lo / step + 1e-9), math.ceil(self.hi / step - 1e-9))
        self.slider.setValue(0 if self.lo <= 0 <= self.hi else self.slider.minimum())
        self.slider.setSingleStep(max(1, round(0.1 / step)))
        self.slider.setPageStep(max(1, round((self.hi - self.lo) / step / 10)))
        rng = f"{fmt.format(self.lo)} \u2026 {fmt.format(self.hi)}"
        self.title = QLabel(f"<b>{name}</b><br><span style='font-size:9px; color:#8a9099'>{rng}</span>")
        self.title.setObjectName(f"title:{name}")
        self.title.setFixedWidth(92)
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(52)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.reset_button = QToolButton()
        self.reset_button.setText("\u21ba")
        self.reset_button.setToolTip(f"Reset {name}")
        self.reset_button.setAutoRaise(True)
        self.reset_button.setObjectName(f"reset:{name}")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 1, 0, 1)
        row.setSpacing(6)
        row.addWidget(self.title)
        row.addWidget(self.slider, 1)
        row.addWidget(self.value_label)
        row.addWidget(self.reset_button)
        if tooltip:
            self.setToolTip(tooltip)
        self.slider.valueChanged.connect(self._changed)
        self.slider.sliderPressed.connect(self.dragStarted)
        self.slider.sliderReleased.connect(self.dragFinished)
        self.reset_button.clicked.connect(lambda: self.set_value(0.0, emit=True))
        self._update_label()

    def value(self) -> float:
        return min(self.hi, max(self.lo, self.slider.value() * self.step))

    def set_value(self, value: float, emit: bool = False) -> None:
        """Move the handle; with ``emit`` the change is reported as a recorded edit."""
        v = float(value)
        if v >= self.hi:
            pos = self.slider.maximum()
        elif v <= self.lo:
            pos = self.slider.minimum()
        else:
            pos = min(self.slider.maximum(), max(self.slider.minimum(), round(v / self.step)))
        if emit:
            self.slider.setValue(pos)
        else:
            self.slider.blockSignals(True)
            self.slider.setValue(pos)
            self.slider.blockSignals(False)
        self._update_label()

    def _update_label(self) -> None:
        self.value_label.setText(self.fmt.format(self.value()))
        self.reset_button.setEnabled(self.value() != 0)

    def _changed(self, _: int) -> None:
        self._update_label()
        self.edited.emit(self.value(), not self.slider.isSliderDown())


class _Drags(QGroupBox):
    dragStarted = Signal()
    dragFinished = Signal()

    def _wire(self, s: ValueSlider) -> None:
        s.dragStarted.connect(self.dragStarted)
        s.dragFinished.connect(self.dragFinished)


class ModelPanel(QGroupBox):
    """Model picker: the demo bundle, the random development bundle and the installed models; the "…"
    button asks for the model manager (``browseRequested``)."""

    modelChosen = Signal(str)
    browseRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Model", parent)
        self.combo = QComboBox()
        self.combo.setObjectName("modelCombo")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(18)
        self.browse = QToolButton()
        self.browse.setText("\u2026")
        self.browse.setObjectName("manageModels")
        self.browse.setToolTip("Manage models: get the official ones, add model files, open a bundle folder")
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setStyleSheet("color: palette(mid);")
        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setObjectName("modelNotice")
        self.notice.setStyleSheet("color: #c77c00;")
        self.notice.hide()
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.browse)
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.info)
        lay.addWidget(self.notice)
        self.combo.activated.connect(lambda i: self.modelChosen.emit(self.combo.itemData(i)))
        self.browse.clicked.connect(self.browseRequested)

    def set_choices(self, choices: list[tuple[str, str, bool]], current: str | None) -> None:
        """choices: (label, spec, enabled); the spec is shown as the item's tooltip."""
        self.combo.blockSignals(True)
        self.combo.clear()
        for label, spec, enabled in choices:
            self.combo.addItem(label, spec)
            i = self.combo.count() - 1
            self.combo.model().item(i).setEnabled(enabled)
            self.combo.setItemData(i, f"--model {spec}", Qt.ItemDataRole.ToolTipRole)
        self.select(current)
        self.combo.blockSignals(False)

    def select(self, spec: str | None) -> None:
        i = self.combo.findData(spec)
        if i < 0 and spec:
            self.combo.addItem(spec.rstrip("/").split("/")[-1] or spec, spec)
            i = self.combo.count() - 1
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(i)
        self.combo.blockSignals(False)

    def set_info(self, text: str, notice: str | None) -> None:
        self.info.setText(text)
        self.notice.setText(notice or "")
        self.notice.setVisible(bool(notice))


class DirectionsPanel(_Drags):
    """One slider per InterFaceGAN direction of the bundle's manifest."""

    directionEdited = Signal(str, float, bool)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Edits (InterFaceGAN)", parent)
        self.sliders: dict[str, ValueSlider] = {}
        self._lay = QVBoxLayout(self)
        self._lay.setSpacing(2)
        self._empty = QLabel("This model has no edit directions.")
        self._empty.setStyleSheet("color: palette(mid);")
        self._lay.addWidget(self._empty)
        self.reset_all = QPushButton("Reset edits")
        self.reset_all.setObjectName("resetDirections")
        self._lay.addWidget(self.reset_all)

    def set_directions(self, directions) -> None:
        for s in self.sliders.values():
            self._lay.removeWidget(s)
            s.deleteLater()
        self.sliders.clear()
        for i, d in enumerate(directions):
            tip = (
                f"{d.description}\nDocumented range {d.lo:+g} \u2026 {d.hi:+g}"
                if d.description
                else f"Documented range {d.lo:+g} \u2026 {d.hi:+g}"
            )
            s = ValueSlider(d.name, d.lo, d.hi, tooltip=tip)
            s.edited.connect(lambda v, rec, n=d.name: self.directionEdited.emit(n, v, rec))
            self._wire(s)
            self._lay.insertWidget(i, s)
            self.sliders[d.name] = s
        self._empty.setVisible(not self.sliders)
        self.reset_all.setVisible(bool(self.sliders))

    def set_values(self, values: dict[str, float]) -> None:
        for name, s in self.sliders.items():
            s.set_value(values.get(name, 0.0))


class StyleSpacePanel(_Drags):
    """StyleSpace editor: one channel (layer + index) or an attribute's top channels, one slider."""

    channelsEdited = Signal(object, bool)  # {(layer, channel): value}, record
    clearRequested = Signal()

    SINGLE = "__channel__"

    def __init__(self, parent: QWidget | None = None):
        super().__init__("StyleSpace channels", parent)
        self.target = QComboBox()
        self.target.setObjectName("styleTarget")
        self.layer = QComboBox()
        self.layer.setObjectName("styleLayer")
        self.channel = QSpinBox()
        self.channel.setObjectName("styleChannel")
        self.slider = ValueSlider(
            "strength",
            -5.0,
            5.0,
            step=0.05,
            tooltip="Added to the chosen StyleSpace channel(s); for an attribute, "
            "each top channel moves in the direction that raises it.",
        )
        self.summary = QLabel()
        self.summary.setStyleSheet("color: palette(mid);")
        self.clear = QPushButton("Clear channel edits")
        self.clear.setObjectName("clearChannels")
        form = QGridLayout()
        form.addWidget(QLabel("Edit"), 0, 0)
        form.addWidget(self.target, 0, 1, 1, 3)
        form.addWidget(QLabel("Layer"), 1, 0)
        form.addWidget(self.layer, 1, 1)
        form.addWidget(QLabel("ch"), 1, 2)
        form.addWidget(self.channel, 1, 3)
        form.setColumnStretch(1, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.slider)
        row = QHBoxLayout()
        row.addWidget(self.summary, 1)
        row.addWidget(self.clear)
        lay.addLayout(row)
        self._layers: dict[str, int] = {}
        self._attrs: dict[str, list[tuple[str, int, int]]] = {}
        self._values: dict[tuple[str, int], float] = {}
        self._wire(self.slider)
        self.target.currentIndexChanged.connect(self._target_changed)
        self.layer.currentIndexChanged.connect(self._layer_changed)
        self.channel.valueChanged.connect(lambda _: self._show_value())
        self.slider.edited.connect(self._edited)
        self.clear.clicked.connect(self.clearRequested)

    def set_model(self, layers: dict[str, int], attributes: dict[str, list[tuple[str, int, int]]]) -> None:
        self._layers, self._attrs = dict(layers), dict(attributes)
        for w in (self.target, self.layer):
            w.blockSignals(True)
            w.clear()
        self.target.addItem("Single channel", self.SINGLE)
        for a, rows in self._attrs.items():
            self.target.addItem(f"Attribute: {a} ({len(rows)} channels)", a)
        for name, n in self._layers.items():
            self.layer.addItem(f"{name} ({n})", name)
        for w in (self.target, self.layer):
            w.blockSignals(False)
        self._target_changed()

    def targets(self) -> list[tuple[str, int, int]]:
        """The (layer, channel, sign) rows the slider drives now."""
        t = self.target.currentData()
        if t == self.SINGLE or t is None:
            layer = self.layer.currentData()
            return [(layer, self.channel.value(), 1)] if layer else []
        return list(self._attrs.get(t, []))

    def _target_changed(self, *_: object) -> None:
        single = self.target.currentData() in (self.SINGLE, None)
        self.layer.setEnabled(single)
        self.channel.setEnabled(single)
        self._layer_changed()

    def _layer_changed(self, *_: object) -> None:
        n = self._layers.get(self.layer.currentData(), 1)
        self.channel.setRange(0, max(0, n - 1))
        self._show_value()

    def _show_value(self) -> None:
        rows = self.targets()
        v = self._values.get((rows[0][0], rows[0][1]), 0.0) * rows[0][2] if rows else 0.0
        self.slider.set_value(v)

    def set_values(self, values: dict[tuple[str, int], float]) -> None:
        self._values = dict(values)
        self._show_value()
        n = len(self._values)
        self.summary.setText(f"{n} channel{'s' if n != 1 else ''} edited" if n else "no channel edits")
        self.clear.setEnabled(bool(n))

    def _edited(self, value: float, record: bool) -> None:
        self.channelsEdited.emit({(layer, ch): value * sign for layer, ch, sign in self.targets()}, record)


class TransformPanel(_Drags):
    """Rotation dial (degrees, counter-clockwise positive), tx/ty sliders, reset, and the view toggle."""

    transformEdited = Signal(float, float, float, bool)  # angle_deg, tx, ty, record
    viewChosen = Signal(str)
    resetRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Transform (StyleGAN3 input)", parent)
        self.dial = QDial()
        self.dial.setObjectName("rotationDial")
        self.dial.setWrapping(True)
        self.dial.setNotchesVisible(True)
        self.dial.setNotchTarget(15)
        self.dial.setFixedSize(84, 84)
        self.dial.setRange(-180, 180)
        self.dial.setValue(0)
        # QDial grows clockwise from 12 o'clock; the dial holds -angle so its pointer turns with the face.
        self.dial.setToolTip("Rotate the face on screen (counter-clockwise positive)")
        self.angle_spin = QDoubleSpinBox()
        self.angle_spin.setObjectName("angleSpin")
        self.angle_spin.setRange(-180, 180)
        self.angle_spin.setDecimals(1)
        self.angle_spin.setSuffix("\u00b0")
        self.angle_spin.setToolTip("Rotation in degrees, counter-clockwise positive")
        self.tx = ValueSlider(
            "shift x",
            -0.5,
            0.5,
            step=0.005,
            fmt="{:+.3f}",
            tooltip="Move the content right (+) or left (\u2212), in image widths",
        )
        self.ty = ValueSlider(
            "shift y",
            -0.5,
            0.5,
            step=0.005,
            fmt="{:+.3f}",
            tooltip="Move the content down (+) or up (\u2212), in image heights",
        )
        self.reset = QPushButton("Reset transform")
        self.reset.setObjectName("resetTransform")
        self.aligned = QRadioButton("Aligned face")
        self.framed = QRadioButton("Photo framing")
        self.aligned.setObjectName("viewAligned")
        self.framed.setObjectName("viewPhoto")
        self.aligned.setToolTip("Show the face as the model sees it (FFHQ-aligned)")
        self.framed.setToolTip(
            "Show the face in the photo's own framing (the alignment transform undone by StyleGAN3's input layer)"
        )
        self.aligned.setChecked(True)
        group = QButtonGroup(self)
        group.addButton(self.aligned)
        group.addButton(self.framed)
        dial_box = QHBoxLayout()
        dial_box.addWidget(self.dial)
        col = QVBoxLayout()
        col.addWidget(QLabel("Rotation"))
        col.addWidget(self.angle_spin)
        col.addStretch(1)
        dial_box.addLayout(col, 1)
        views = QHBoxLayout()
        views.addWidget(self.aligned)
        views.addWidget(self.framed)
        lay = QVBoxLayout(self)
        lay.addLayout(dial_box)
        lay.addWidget(self.tx)
        lay.addWidget(self.ty)
        lay.addWidget(self.reset)
        lay.addLayout(views)
        self.dial.valueChanged.connect(self._dial_edited)
        self.dial.sliderPressed.connect(self.dragStarted)
        self.dial.sliderReleased.connect(self.dragFinished)
        for s in (self.tx, self.ty):
            self._wire(s)
            s.edited.connect(lambda _, record: self._emit(record))
        self.angle_spin.valueChanged.connect(self._spin_edited)
        self.reset.clicked.connect(self.resetRequested)
        self.aligned.toggled.connect(lambda on: on and self.viewChosen.emit("aligned"))
        self.framed.toggled.connect(lambda on: on and self.viewChosen.emit("photo"))

    def values(self) -> tuple[float, float, float]:
        return self.angle_spin.value(), self.tx.value(), self.ty.value()

    def set_values(self, angle: float, tx: float, ty: float, view: str) -> None:
        for w in (self.dial, self.angle_spin, self.aligned, self.framed):
            w.blockSignals(True)
        self.dial.setValue(-round(angle))
        self.angle_spin.setValue(angle)
        (self.framed if view == "photo" else self.aligned).setChecked(True)
        for w in (self.dial, self.angle_spin, self.aligned, self.framed):
            w.blockSignals(False)
        self.tx.set_value(tx)
        self.ty.set_value(ty)
        self.reset.setEnabled(bool(angle or tx or ty))

    def _emit(self, record: bool) -> None:
        self.transformEdited.emit(self.angle_spin.value(), self.tx.value(), self.ty.value(), record)

    def _dial_edited(self, value: int) -> None:
        self.angle_spin.blockSignals(True)
        self.angle_spin.setValue(-value)
        self.angle_spin.blockSignals(False)
        self._emit(not self.dial.isSliderDown())

    def _spin_edited(self, angle: float) -> None:
        self.dial.blockSignals(True)
        self.dial.setValue(-round(angle))
        self.dial.blockSignals(False)
        self._emit(True)


class InversionPanel(QGroupBox):
    """How the photo is inverted, and PTI refinement with its number of steps."""

    reinvertRequested = Signal()
    refineRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Inversion", parent)
        self.method = QLabel()
        self.method.setWordWrap(True)
        self.method.setStyleSheet("color: palette(mid);")
        self.iters = QSpinBox()
        self.iters.setObjectName("inversionIters")
        self.iters.setRange(1, 1000)
        self.iters_label = QLabel("Iterations")
        self.reinvert = QPushButton("Invert again")
        self.reinvert.setObjectName("reinvert")
        self.pti_steps = QSpinBox()
        self.pti_steps.setObjectName("ptiSteps")
        self.pti_steps.setRange(1, 5000)
        self.pti_steps.setValue(100)
        self.refine = QPushButton("Refine (PTI)")
        self.refine.setObjectName("refine")
        self.refine.setToolTip(
            "Pivotal tuning: fine-tune a copy of the generator so the inverted latent "
            "reproduces this photo more closely (undoable)"
        )
        grid = QGridLayout(self)
        grid.addWidget(self.method, 0, 0, 1, 3)
        grid.addWidget(self.iters_label, 1, 0)
        grid.addWidget(self.iters, 1, 1)
        grid.addWidget(self.reinvert, 1, 2)
        grid.addWidget(QLabel("PTI steps"), 2, 0)
        grid.addWidget(self.pti_steps, 2, 1)
        grid.addWidget(self.refine, 2, 2)
        self.reinvert.clicked.connect(self.reinvertRequested)
        self.refine.clicked.connect(lambda: self.refineRequested.emit(self.pti_steps.value()))

    def set_method(self, text: str, encoder: bool, pti: bool) -> None:
        self.method.setText(f"Method: {text}")
        self.iters_label.setText("Iterations" if encoder else "Steps")
        self.iters.setValue(3 if encoder else 30)
        self.refine.setEnabled(pti)
        self.pti_steps.setEnabled(pti)


def make_scroll_column(widgets: list[QWidget]) -> QWidget:
    """The dock's content: the panels stacked with a stretch below."""
    w = QWidget()
    lay = QVBoxLayout(w)
    lay.setContentsMargins(8, 8, 8, 8)
    lay.setSpacing(10)
    for x in widgets:
        x.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        lay.addWidget(x)
    lay.addStretch(1)
    return w
