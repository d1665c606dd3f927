"""The shared timeline: one player (play, pause, step, scrub, speed) that drives the active view's step."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QSlider, QStyle, QToolButton, QWidget

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

        icon = self.style().standardIcon
        self._play_icon = icon(QStyle.StandardPixmap.SP_MediaPlay)
        self._pause_icon = icon(QStyle.StandardPixmap.SP_MediaPause)

        def button(pixmap: QStyle.StandardPixmap, tip: str, slot) -> QToolButton:
            b = QToolButton(self)
            b.setIcon(icon(pixmap))
            b.setToolTip(tip)
            b.setAutoRaise(True)
            b.clicked.connect(slot)
            return b

        sp = QStyle.StandardPixmap
        self.first_button = button(sp.SP_MediaSkipBackward, "First step (Home)", self.first)
        self.back_button = button(sp.SP_MediaSeekBackward, "Step back (←)", self.back)
        self.play_button = button(sp.SP_MediaPlay, "Play / pause (Space)", self.toggle_play)
        self.forward_button = button(sp.SP_MediaSeekForward, "Step forward (→)", self.forward)
        self.last_button = button(sp.SP_MediaSkipForward, "Newest step (End): follow live", self.last)
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

    # ---- internals
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
        self.play_button.setIcon(self._pause_icon if self.playing else self._play_icon)
        self.label.setText(f"step {self.step + 1} / {self.count}" if self.count else "no steps")
        self.live.setText("● live" if self.follow and self.count else "")
        for b in (self.first_button, self.back_button, self.play_button, self.forward_button, self.last_button):
            b.setEnabled(self.count > 0)
