"""The stage: an offscreen widget that holds the view being recorded at exactly the frame's view area, settled
as a paint would leave it, but never painted itself (frames are rendered into images)."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QEvent, Qt
from PySide6.QtWidgets import QVBoxLayout, QWidget

from ..theme import Theme, make_palette
from ..views.base import View


class Stage(QWidget):
    """An offscreen top-level widget that holds the view being recorded at exactly the frame's view area."""

    def __init__(self, size: tuple[int, int], theme: Theme):
        super().__init__(None)
        self.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
        self.setAutoFillBackground(True)
        self.setPalette(make_palette(theme))
        self.setFixedSize(*size)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.view: View | None = None
        self._plots: list = []
        self._plot_items: list = []

    def set_view(self, view: View) -> None:
        if self.view is view:
            return
        if self.view is not None:
            self.layout().removeWidget(self.view)
            self.view.hide()
            self.view.setParent(None)
        self.view = view
        view.setParent(self)
        self.layout().addWidget(view)
        view.show()
        self._plots = view.findChildren(pg.GraphicsView)
        self._plot_items = [
            item for v in self._plots for item in v.scene().items() if isinstance(item, pg.AxisItem | pg.ViewBox)
        ]
        self.settle()

    def settle(self) -> None:
        """Bring the view to the state a paint would leave it in, without painting: plots update their ranges
        (pyqtgraph does that when painted, and axes that change width then ask for a new layout), layouts follow
        (labels that grew, plots that resized). A frame is then the same whatever was drawn before it."""
        if not self.isVisible():
            self.show()
        for _ in range(3):
            for v in self._plots:
                v.scene().prepareForPaint()
            QCoreApplication.sendPostedEvents(None, 0)

    def layout_signature(self) -> tuple:
        """Where the plots' axes and view boxes are. Painting an axis measures its tick labels and may widen it
        (pyqtgraph), which moves its plot: a frame whose signature changed while it was drawn is drawn again."""
        return tuple(item.geometry().getRect() for item in self._plot_items)

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.UpdateRequest:
            return True  # never paint the stage's own backing store: frames are rendered into images
        return super().event(e)
