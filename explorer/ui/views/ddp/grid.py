"""The ddp view's chunk grid: ranks × chunks, each cell coloured by how many ranks' values that rank's copy of the
chunk holds after the step shown (N: the complete sum), the cells that changed this step outlined."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QGraphicsRectItem, QWidget

from ....distributed import describe
from ....distributed.records import RingFrame
from ...theme import Theme
from .panel import StepPanel


class ChunkGrid(StepPanel):
    def __init__(self, parent: QWidget, titles):
        super().__init__(parent, titles, "ranks summed into each chunk", "chunk")
        self.plot.setLabel("left", "rank")
        self.plot.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)

    def set_theme(self, theme: Theme) -> None:
        super().set_theme(theme)
        base = np.array(pg.mkColor(theme.base).getRgb()[:3], float)
        full = np.array(pg.mkColor(theme.bar).getRgb()[:3], float)
        self.image.setColorMap(pg.ColorMap([0.0, 1.0], [base * 0.8 + full * 0.2, full]))

    def clear(self) -> None:
        super().clear()
        self.image.clear()

    def show(self, f: RingFrame) -> None:
        self.clear()
        self.titles.fit(self.plot, describe.grid_titles(f))
        n = f.step.ranks
        self.image.setImage(f.grid.astype(np.float32), levels=(1, n))
        self.image.setRect(QRectF(-0.5, -0.5, n, n))
        ticks = [[(i, str(i)) for i in range(n)]]
        self.plot.getAxis("bottom").setTicks(ticks)
        self.plot.getAxis("left").setTicks(ticks)
        for r, c, text, received in describe.grid_text(f):
            full = f.grid[r, c] == n
            item = pg.TextItem(text, color=self.theme.accent_text if full else self.theme.text, anchor=(0.5, 0.5))
            item.setPos(c, r)
            self.plot.addItem(item)
            self.items.append(item)
            if received:
                box = QGraphicsRectItem(c - 0.46, r - 0.46, 0.92, 0.92)
                box.setPen(pg.mkPen(describe.chunk_color(c), width=3))
                self.plot.addItem(box)
                self.items.append(box)
        self.plot.setXRange(-0.5, n - 0.5, padding=0.02)
        self.plot.setYRange(-0.5, n - 0.5, padding=0.02)
