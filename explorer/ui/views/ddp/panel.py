"""What the ddp view's panels share: a titled plot whose items are drawn anew for each step shown (arrows, labels,
bars), kept so that the next step removes them, and the theme they are drawn in."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from ...kit import static_plot
from ...theme import Theme


class StepPanel:
    def __init__(self, parent: QWidget, titles, title: str, bottom: str | None = None):
        self.titles = titles
        self.plot = static_plot(parent, title, bottom)
        titles.follow(self.plot)
        self.items: list = []  # what the step shown added to the plot
        self.theme: Theme | None = None

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme

    def clear(self) -> None:
        for item in self.items:
            self.plot.removeItem(item)
        self.items = []
