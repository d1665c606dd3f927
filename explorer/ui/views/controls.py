"""Panel controls built from an options schema (explorer.options): the schema decides type, range, choices, unit,
label and help; every control answers value() / setValue() so that tours, screenshots and scripts set any of them
the same way."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtGui import QValidator, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QSpinBox,
    QWidget,
)

from ...options import Option


class WheelWhenFocused:
    """Mixin for value controls in a scrolling panel: the mouse wheel changes the value only once the control has
    focus (a click or Tab); over an unfocused control it scrolls the panel instead of silently editing a setting."""

    def _wheel_needs_focus(self) -> None:
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)  # the default WheelFocus would take focus on the wheel

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt override
        if self.hasFocus():
            super().wheelEvent(event)
            return
        area = self.parentWidget()
        while area is not None and not isinstance(area, QAbstractScrollArea):
            area = area.parentWidget()
        if area is None:
            event.ignore()  # goes on to the parent
        else:
            QApplication.sendEvent(area.verticalScrollBar(), event.clone())  # scroll the panel
            event.accept()


class SpinBox(WheelWhenFocused, QSpinBox):
    def __init__(self):
        super().__init__()
        self._wheel_needs_focus()


class DoubleSpinBox(WheelWhenFocused, QDoubleSpinBox):
    def __init__(self):
        super().__init__()
        self._wheel_needs_focus()


class Pow2SpinBox(SpinBox):
    """A spin box over powers of two: the arrows double and halve, typed values snap."""

    def __init__(self, lo: int = 16, hi: int = 128, value: int = 32):
        super().__init__()
        self.setRange(lo, hi)
        self.setValue(value)

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt override
        self.setValue(int(self.value() * 2.0**steps))

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt name
        value = max(self.minimum(), min(self.maximum(), int(value)))
        super().setValue(1 << round(math.log2(value)))

    def validate(self, text: str, pos: int):
        ok, _, _ = super().validate(text, pos)
        if ok == QValidator.State.Acceptable and int(text) & (int(text) - 1):
            return QValidator.State.Intermediate, text, pos
        return ok, text, pos

    def fixup(self, text: str) -> str:
        try:
            v = max(self.minimum(), min(self.maximum(), int(text)))
        except ValueError:
            return str(self.value())
        return str(1 << round(math.log2(v)))


class CheckBox(QCheckBox):
    """A check box that also answers setValue / value."""

    def setValue(self, on: bool) -> None:  # noqa: N802 - Qt name
        self.setChecked(bool(on))

    def value(self) -> bool:
        return self.isChecked()


class ChoiceBox(WheelWhenFocused, QComboBox):
    """A combo box that also answers setValue / value (by item text)."""

    def __init__(self, items: list[str], value: str):
        super().__init__()
        self._wheel_needs_focus()
        self.addItems(items)
        self.setCurrentText(value)

    def setValue(self, text: str) -> None:  # noqa: N802 - Qt name
        if self.findText(str(text)) < 0:
            raise ValueError(f"{text!r} is not one of {[self.itemText(i) for i in range(self.count())]}")
        self.setCurrentText(str(text))

    def value(self) -> str:
        return self.currentText()


def control(option: Option) -> QWidget:
    """The panel control of one option, set to its default."""
    o = option
    if o.choices is not None:
        w: QWidget = ChoiceBox(list(o.choices), o.default)
    elif o.kind is bool:
        w = CheckBox(o.label or o.name)
        w.setChecked(bool(o.default))
    elif o.kind is int and o.power_of_two:
        w = Pow2SpinBox(int(o.lo), int(o.hi), int(o.default))
    elif o.kind is int:
        w = SpinBox()
        w.setRange(int(o.lo if o.lo is not None else -(2**31)), int(o.hi if o.hi is not None else 2**31 - 1))
        w.setValue(int(o.default if o.default is not None else w.minimum()))
    elif o.kind is float:
        w = DoubleSpinBox()
        w.setRange(float(o.lo if o.lo is not None else -1e300), float(o.hi if o.hi is not None else 1e300))
        if o.decimals is not None:
            w.setDecimals(o.decimals)
        if o.step is not None:
            w.setSingleStep(o.step)
        w.setValue(float(o.default if o.default is not None else w.minimum()))
    else:
        raise TypeError(f"no panel control for option {o.name} of type {o.kind.__name__}")
    if o.special and isinstance(w, (QSpinBox, QDoubleSpinBox)):
        w.setSpecialValueText(o.special)
    if o.unit and isinstance(w, (QSpinBox, QDoubleSpinBox)):
        w.setSuffix(f" {o.unit}")
    w.setToolTip(o.help[:1].upper() + o.help[1:])
    return w


def control_value(w: QWidget):
    if isinstance(w, QCheckBox):
        return w.isChecked()
    if isinstance(w, QComboBox):
        return w.currentText()
    return w.value()


def changed_signal(w: QWidget):
    if isinstance(w, QCheckBox):
        return w.toggled
    if isinstance(w, QComboBox):
        return w.currentTextChanged
    return w.valueChanged
