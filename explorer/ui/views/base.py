"""The contract every view follows: take records from a Qt-free job, keep them, render any step on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyqtgraph as pg
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFormLayout, QSpinBox, QWidget

from ...errors import ExplorerError
from ...session import Session
from ..theme import Theme


class View(QWidget):
    """A view renders step i of a list of records. It never computes: ``make_job`` returns a Qt-free generator
    factory that the worker runs off the GUI thread; its records arrive through ``add_record``."""

    name = "view"
    title = "View"

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.records: list[Any] = []
        self.current = -1

    # ---- to implement
    def settings_rows(self) -> list[tuple[str, QWidget]]:
        """(label, widget) pairs: the controls of this view's computation."""
        return []

    def settings_widget(self) -> QWidget | None:
        """Controls for this view's computation (shown in the side panel), built once from settings_rows()."""
        if getattr(self, "_settings_form", None) is None:
            rows = self.settings_rows()
            if not rows:
                return None
            w = QWidget()
            form = QFormLayout(w)
            form.setContentsMargins(0, 0, 0, 0)
            for label, widget in rows:
                form.addRow(label, widget)
            self._settings_form = w
        return self._settings_form

    def make_job(self, session: Session) -> Callable[[], Iterator[Any]]:
        raise NotImplementedError

    def render(self, record: Any | None) -> None:
        raise NotImplementedError

    def export_data(self) -> dict:
        raise NotImplementedError

    def export_rows(self) -> tuple[list[str], list[list[Any]]]:
        raise NotImplementedError

    # ---- shared behaviour
    def apply_settings(self, values: dict[str, Any]) -> None:
        """Set controls by attribute name (scripts, screenshots, tours): spin boxes, combo boxes, check boxes."""
        for key, value in values.items():
            widget = getattr(self, key, None)
            if widget is None:
                raise ExplorerError(f"view {self.name!r} has no setting {key!r}")
            if hasattr(widget, "setCurrentText"):
                widget.setCurrentText(str(value))
            elif hasattr(widget, "setChecked") and isinstance(value, bool):
                widget.setChecked(value)
            else:
                widget.setValue(value)

    def clear(self) -> None:
        self.records = []
        self.current = -1
        self.render(None)

    def add_record(self, record: Any) -> None:
        self.records.append(record)

    def show_step(self, step: int) -> None:
        self.current = step
        self.render(self.records[step] if 0 <= step < len(self.records) else None)

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.show_step(self.current)


def static_plot(parent: QWidget, title: str, bottom: str | None = None) -> pg.PlotWidget:
    """A plot for showing, not exploring: no mouse zoom, no context menu, no SI prefixes; its title is kept so
    that a theme change can recolour it."""
    plot = pg.PlotWidget(parent)
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(False, False)
    plot.hideButtons()
    plot.setProperty("title", title)
    plot.setTitle(title)
    if bottom:
        plot.setLabel("bottom", bottom)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)
    return plot


def theme_plot(plot: pg.PlotWidget, theme: Theme) -> None:
    """Background, axes and title in the theme's colours."""
    plot.setBackground(theme.base)
    for axis in ("left", "bottom", "right"):
        ax = plot.getAxis(axis)
        ax.setPen(theme.muted)
        ax.setTextPen(theme.text)
    title = plot.property("title")
    if title:
        plot.setTitle(title, color=theme.text)
    else:
        plot.getPlotItem().titleLabel.setAttr("color", theme.text)


def font_plot(plot: pg.PlotWidget, font: QFont) -> None:
    """Plots do not inherit the application font: push it to the ticks and axis labels."""
    for axis in ("left", "bottom", "right"):
        plot.getAxis(axis).setStyle(tickFont=font)
        plot.getAxis(axis).label.setFont(font)


def spin_box(lo: int, hi: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    return box
