"""The shared timeline: one player (play, pause, step, scrub, speed) that drives the active view's step."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap, QPolygonF
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QToolButton, QWidget

SPEEDS = {"0.5×": 0.5, "1×": 1.0, "2×": 2.0, "4×": 4.0, "8×": 8.0}
BASE_STEPS_PER_SECOND = 2.0


class Player(QWidget):
    """Holds the timeline state: how many steps exist, which one is shown, whether it follows the newest.

    While records stream in, the player follows the newest step unless the user has moved away from it; going
    back to the last step (End, or scrubbing to the end) resumes following.
    """

    step_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.count = 0
        self.step = -1
        self.follow = True
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)

        self._color = "#1d2129"

        def button(kind: str, tip: str, slot) -> QToolButton:
            b = QToolButton(self)
            b.setProperty("icon_kind", kind)
            b.setIconSize(QSize(20, 20))
            b.setToolTip(tip)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
            return b

        self.first_button = button("first", "First step (Home)", self.first)
        self.back_button = button("back", "Step back (←)", self.back)
        self.play_button = button("play", "Play / pause (Space)", self.toggle_play)
        self.forward_button = button("forward", "Step forward (→)", self.forward)
        self.last_button = button("last", "Newest step (End): follow live", self.last)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._slider_moved)
        self.speed = QComboBox(self)
        self.speed.addItems(list(SPEEDS))
        self.speed.setCurrentText("1×")
        self.speed.setToolTip("Playback speed")
        self.speed.currentTextChanged.connect(self._update_interval)
        self.label = QLabel("no steps", self)
        self.label.setMinimumWidth(150)
        self.live = QLabel("", self)
        self.live.setMinimumWidth(self.live.fontMetrics().horizontalAdvance("● live") + 12)
        self.live.setToolTip("Following the newest step as it is computed")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        for w in (self.first_button, self.back_button, self.play_button, self.forward_button, self.last_button):
            lay.addWidget(w)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.label)
        lay.addWidget(self.live)
        lay.addWidget(self.speed)
        self._update_interval()
        self._refresh()

    # ---- state changes
    def reset(self) -> None:
        self.pause()
        self.count, self.step, self.follow = 0, -1, True
        self._refresh()
        self.step_changed.emit(self.step)

    def set_count(self, count: int) -> None:
        """More steps exist (records streamed in). Follow the newest unless the user moved away."""
        self.count = count
        if self.follow or self.step < 0:
            self._go(count - 1, user=False)
        self._refresh()

    def go(self, step: int) -> None:
        self._go(step, user=True)

    def _go(self, step: int, user: bool) -> None:
        step = max(0, min(step, self.count - 1)) if self.count else -1
        if user:
            self.follow = step == self.count - 1
        if step != self.step:
            self.step = step
            self._refresh()
            self.step_changed.emit(step)
        else:
            self._refresh()

    def first(self) -> None:
        self.go(0)

    def last(self) -> None:
        self.go(self.count - 1)

    def back(self) -> None:
        self.pause()
        self.go(self.step - 1)

    def forward(self) -> None:
        self.pause()
        self.go(self.step + 1)

    def toggle_play(self) -> None:
        if self._timer.isActive():
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        if self.count == 0:
            return
        if self.step >= self.count - 1:
            self.go(0)  # replay from the start
        self._timer.start()
        self._refresh()

    def pause(self) -> None:
        self._timer.stop()
        self._refresh()

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def set_icon_scale(self, scale: float) -> None:
        side = int(round(20 * scale))
        for b in (self.first_button, self.back_button, self.play_button, self.forward_button, self.last_button):
            b.setIconSize(QSize(side, side))

    def set_color(self, color: str) -> None:
        """Icons are drawn in the theme's text colour (the stock ones vanish on a dark theme)."""
        self._color = color
        self._paint_icons()

    # ---- internals
    def _paint_icons(self) -> None:
        for b in (self.first_button, self.back_button, self.play_button, self.forward_button, self.last_button):
            b.setIcon(media_icon(b.property("icon_kind"), self._color))

    def _tick(self) -> None:
        if self.step >= self.count - 1:
            self.pause()
            return
        self.go(self.step + 1)

    def _update_interval(self) -> None:
        rate = BASE_STEPS_PER_SECOND * SPEEDS.get(self.speed.currentText(), 1.0)
        self._timer.setInterval(int(1000 / rate))

    def _slider_moved(self, value: int) -> None:
        if value != self.step and self.count:
            self.go(value)

    def _refresh(self) -> None:
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, self.count - 1))
        self.slider.setValue(max(0, self.step))
        self.slider.blockSignals(False)
        kind = "pause" if self.playing else "play"
        if self.play_button.property("icon_kind") != kind:
            self.play_button.setProperty("icon_kind", kind)
            self.play_button.setIcon(media_icon(kind, self._color))
        self.label.setText(f"step {self.step + 1} / {self.count}" if self.count else "no steps")
        self.live.setText("● live" if self.follow and self.count else "")
        for b in (self.first_button, self.back_button, self.play_button, self.forward_button, self.last_button):
            b.setEnabled(self.count > 0)


def media_icon(kind: str, color: str, size: int = 40) -> QIcon:
    """Transport icons drawn as vector shapes (crisp at any scale, in any theme colour)."""
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QColor(color))
    u = size / 10.0

    def tri(x0: float, x1: float) -> None:  # a triangle pointing from x0 towards x1
        p.drawPolygon(QPolygonF([QPointF(x0 * u, 2 * u), QPointF(x0 * u, 8 * u), QPointF(x1 * u, 5 * u)]))

    def bar(x: float) -> None:
        p.drawRect(QRectF(x * u, 2 * u, 1.2 * u, 6 * u))

    if kind == "play":
        tri(3, 8)
    elif kind == "pause":
        bar(3)
        bar(5.8)
    elif kind == "back":
        tri(7, 2.5)
    elif kind == "forward":
        tri(3, 7.5)
    elif kind == "first":
        bar(2)
        tri(8, 3.4)
    elif kind == "last":
        tri(2, 6.6)
        bar(6.8)
    p.end()
    return QIcon(pix)
