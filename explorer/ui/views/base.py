"""The contract every view follows: take records from a Qt-free job, keep them, render any step on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtWidgets import QWidget

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
    def settings_widget(self) -> QWidget | None:
        """Controls for this view's computation (shown in the side panel)."""
        return None

    def make_job(self, session: Session) -> Callable[[], Iterator[Any]]:
        raise NotImplementedError

    def render(self, record: Any | None) -> None:
        raise NotImplementedError

    def export_data(self) -> dict:
        raise NotImplementedError

    def export_rows(self) -> tuple[list[str], list[list[Any]]]:
        raise NotImplementedError

    # ---- shared behaviour
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
