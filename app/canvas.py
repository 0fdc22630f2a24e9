"""The central canvas: before/after side by side or as a split view with a draggable divider, and the
face picker (the whole photo with a clickable box on every detected face)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

BACKGROUND = QColor(0x23, 0x25, 0x29)
CAPTION = QColor(0xCF, 0xD3, 0xDA)
ACCENT = QColor(0x4D, 0xA3, 0xFF)


def to_qimage(rgb: np.ndarray) -> QImage:
    """[H,W,3] uint8 RGB -> a QImage that owns its pixels."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class CompareCanvas(QWidget):
    """Shows the "before" image and the rendered "after" image.

    mode 'side': two panes; mode 'split': one pane, before left of the divider, after right of it
    (drag anywhere to move the divider). ``show_original`` shows the before image in place of the
    result. ``busy_text`` is drawn over the result while a long job runs.
    """

    dividerMoved = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("canvas")
        self.setMinimumSize(360, 240)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMouseTracking(True)
        self.before: QImage | None = None
        self.aspect = 1.0  # width / height of the images (video frames: the clip's)
        self.after: QImage | None = None
        self.mode = "side"
        self.show_original = False
        self.divider = 0.5
        self.busy_text = ""
        self.before_caption = "Original"
        self.after_caption = "Edited"
        self._dragging = False

    def set_images(self, before: QImage | None = None, after: QImage | None = None) -> None:
        self.before, self.after = before, after
        self.update()

    def set_after(self, after: QImage | None) -> None:
        self.after = after
        self.update()

    def set_mode(self, mode: str) -> None:
        if mode not in ("side", "split"):
            raise ValueError(mode)
        self.mode = mode
        self.setCursor(Qt.CursorShape.SplitHCursor if mode == "split" else Qt.CursorShape.ArrowCursor)
        self.update()

    def set_show_original(self, on: bool) -> None:
        self.show_original = bool(on)
        self.update()

    def set_busy(self, text: str) -> None:
        self.busy_text = text
        self.update()

    def set_divider(self, frac: float) -> None:
        self.divider = min(1.0, max(0.0, float(frac)))
        self.dividerMoved.emit(self.divider)
        self.update()

    # -- geometry ---------------------------------------------------------------------------------

    def set_aspect(self, aspect: float) -> None:
        """Width / height of the images shown (1 for faces; a video frame's own for video mode)."""
        self.aspect = max(0.05, float(aspect))
        self.update()

    def pane_rects(self) -> list[QRectF]:
        """Image rects of ``aspect`` (square for faces): two for 'side', one for 'split'."""
        margin, caption = 16.0, 26.0
        w, h = float(self.width()), float(self.height())
        a = self.aspect
        avail_h = h - 2 * margin - caption
        if self.mode == "side":
            pw = max(16.0, min((w - 3 * margin) / 2, avail_h * a))
            ph = pw / a
            top = (h - ph + caption) / 2
            left = (w - 2 * pw - margin) / 2
            return [QRectF(left, top, pw, ph), QRectF(left + pw + margin, top, pw, ph)]
        pw = max(16.0, min(w - 2 * margin, avail_h * a))
        ph = pw / a
        return [QRectF((w - pw) / 2, (h - ph + caption) / 2, pw, ph)]

    # -- painting ---------------------------------------------------------------------------------

    def _draw_image(
        self, p: QPainter, img: QImage | None, rect: QRectF, source_frac: tuple[float, float] = (0, 1)
    ) -> None:
        if img is None:
            p.fillRect(rect, QColor(0x2E, 0x31, 0x36))
            return
        a, b = source_frac
        src = QRectF(img.width() * a, 0, img.width() * (b - a), img.height())
        dst = QRectF(rect.left() + rect.width() * a, rect.top(), rect.width() * (b - a), rect.height())
        p.drawImage(dst, img, src)

    def _caption(self, p: QPainter, rect: QRectF, text: str, align=Qt.AlignmentFlag.AlignHCenter) -> None:
        p.setPen(CAPTION)
        p.drawText(
            QRectF(rect.left(), rect.top() - 24, rect.width(), 20), int(align | Qt.AlignmentFlag.AlignVCenter), text
        )

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.fillRect(self.rect(), BACKGROUND)
        if self.before is None and self.after is None:
            p.setPen(CAPTION)
            f = QFont(self.font())
            f.setPointSizeF(f.pointSizeF() * 1.4)
            p.setFont(f)
            p.drawText(
                self.rect(),
                int(Qt.AlignmentFlag.AlignCenter),
                "Drop a portrait photo here\nor use File \u25b8 Open\u2026"
                + (f"\n\n{self.busy_text}" if self.busy_text else ""),
            )
            p.end()
            return
        after = self.before if self.show_original else self.after
        after_caption = "Original (shown while held)" if self.show_original else self.after_caption
        rects = self.pane_rects()
        if self.mode == "side":
            self._draw_image(p, self.before, rects[0])
            self._draw_image(p, after, rects[1])
            self._caption(p, rects[0], self.before_caption)
            self._caption(p, rects[1], after_caption)
            busy_rect = rects[1]
        else:
            r = rects[0]
            d = self.divider
            self._draw_image(p, self.before, r, (0.0, d))
            self._draw_image(p, after, r, (d, 1.0))
            x = r.left() + r.width() * d
            p.setPen(QPen(QColor(255, 255, 255, 230), 2))
            p.drawLine(QPointF(x, r.top()), QPointF(x, r.bottom()))
            p.setBrush(ACCENT)
            p.setPen(QPen(QColor(255, 255, 255), 2))
            p.drawEllipse(QPointF(x, r.center().y()), 9, 9)
            self._caption(
                p,
                QRectF(r.left(), r.top(), r.width() / 2, r.height()),
                f"\u25c0 {self.before_caption}",
                Qt.AlignmentFlag.AlignLeft,
            )
            self._caption(
                p,
                QRectF(r.center().x(), r.top(), r.width() / 2, r.height()),
                f"{after_caption} \u25b6",
                Qt.AlignmentFlag.AlignRight,
            )
            busy_rect = r
        if self.busy_text:
            band = QRectF(busy_rect.left(), busy_rect.bottom() - 34, busy_rect.width(), 34)
            p.fillRect(band, QColor(0, 0, 0, 150))
            p.setPen(QColor(255, 255, 255))
            p.drawText(band, int(Qt.AlignmentFlag.AlignCenter), self.busy_text)
        p.end()

    # -- divider dragging -------------------------------------------------------------------------

    def _divider_from(self, x: float) -> None:
        r = self.pane_rects()[0]
        self.set_divider((x - r.left()) / max(1.0, r.width()))

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self.mode == "split" and event.button() == Qt.MouseButton.LeftButton:
            self._dragging = True
            self._divider_from(event.position().x())
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if self._dragging:
            self._divider_from(event.position().x())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._dragging = False
        super().mouseReleaseEvent(event)


class FacePicker(QWidget):
    """The whole photo with a numbered box on each detected face; clicking a box emits faceChosen."""

    faceChosen = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("facePicker")
        self.setMouseTracking(True)
        self.setMinimumSize(360, 240)
        self.image: QImage | None = None
        self.boxes: list[tuple[float, float, float, float]] = []
        self.current = -1
        self._hover = -1

    def set_photo(self, image: QImage, boxes, current: int = -1) -> None:
        self.image, self.boxes, self.current = image, [tuple(b) for b in boxes], current
        self.update()

    def _image_rect(self) -> QRectF:
        if self.image is None:
            return QRectF()
        top_band = 36.0
        w, h = self.width() - 24.0, self.height() - 24.0 - top_band
        s = min(w / self.image.width(), h / self.image.height())
        iw, ih = self.image.width() * s, self.image.height() * s
        return QRectF((self.width() - iw) / 2, top_band + (self.height() - top_band - ih) / 2, iw, ih)

    def box_rect(self, i: int) -> QRectF:
        """Face ``i``'s box in widget coordinates."""
        r = self._image_rect()
        s = r.width() / self.image.width()
        left, top, right, bottom = self.boxes[i]
        return QRectF(r.left() + left * s, r.top() + top * s, (right - left) * s, (bottom - top) * s)

    def _hit(self, pos: QPointF) -> int:
        for i in range(len(self.boxes)):
            if self.box_rect(i).adjusted(-6, -6, 6, 6).contains(pos):
                return i
        return -1

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.fillRect(self.rect(), BACKGROUND)
        if self.image is None:
            p.end()
            return
        p.setPen(CAPTION)
        p.drawText(
            QRectF(0, 6, self.width(), 26),
            int(Qt.AlignmentFlag.AlignCenter),
            f"{len(self.boxes)} faces found: click the face to edit",
        )
        p.drawImage(self._image_rect(), self.image)
        for i in range(len(self.boxes)):
            r = self.box_rect(i)
            color = ACCENT if i in (self._hover, self.current) else QColor(255, 255, 255, 200)
            p.setPen(QPen(color, 3 if i == self._hover else 2))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(r, 4, 4)
            tag = QRectF(r.left(), r.top() - 22, 26, 20)
            p.fillRect(tag, color)
            p.setPen(QColor(0, 0, 0))
            p.drawText(tag, int(Qt.AlignmentFlag.AlignCenter), str(i + 1))
        p.end()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        hover = self._hit(event.position())
        if hover != self._hover:
            self._hover = hover
            self.setCursor(Qt.CursorShape.PointingHandCursor if hover >= 0 else Qt.CursorShape.ArrowCursor)
            self.update()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        i = self._hit(event.position())
        if i >= 0 and event.button() == Qt.MouseButton.LeftButton:
            self.current = i
            self.update()
            self.faceChosen.emit(i)
