"""The ddp view's ring: N ranks around a circle, each sending one chunk to its right neighbour at the step shown
(an arrow in the chunk's colour, the chunk drawn half-way along it), each rank labelled with its shard and the
chunk it received."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from ....distributed import describe
from ....distributed.records import RingFrame
from .panel import StepPanel

NODE_SIZE = 0.36  # a rank's circle, in the ring's units (radius 1): it shrinks with the panel, never overlaps


class RingPanel(StepPanel):
    def __init__(self, parent: QWidget, titles):
        super().__init__(parent, titles, "the ring")  # its items: the step's arrows and labels
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plot.setAspectLocked(True)
        self.nodes = pg.ScatterPlotItem(pxMode=False)
        self.chunks = pg.ScatterPlotItem(symbol="s", pxMode=False)
        self.plot.addItem(self.nodes)
        self.plot.addItem(self.chunks)

    def clear(self) -> None:
        super().clear()
        self.nodes.setData([], [])
        self.chunks.setData([], [])

    def _text(self, text: str, pos, anchor, color: str) -> None:
        item = pg.TextItem(text, color=color, anchor=anchor)
        item.setPos(*pos)
        self.plot.addItem(item)
        self.items.append(item)

    def show(self, f: RingFrame) -> None:
        self.clear()
        self.titles.fit(self.plot, describe.ring_titles(f))
        theme = self.theme
        n = f.step.ranks
        pos = describe.ring_positions(n)
        size = min(NODE_SIZE, 1.1 * np.sin(np.pi / n))  # at most about half the distance between two ranks
        self.nodes.setData(pos[:, 0], pos[:, 1], size=size, brush=pg.mkBrush(theme.base),
                           pen=pg.mkPen(theme.text, width=2))  # fmt: skip
        for r in range(n):
            self._text(str(r), pos[r], (0.5, 0.5), theme.text)
            # away from the ring: above the top rank, below the bottom one, beside the others
            x, y = pos[r]
            if abs(x) < 0.3:
                out, anchor = (x, y + (0.3 if y > 0 else -0.3)), (0.5, 1.0 if y > 0 else 0.0)
            else:
                out, anchor = pos[r] * 1.2, (0.0 if x > 0 else 1.0, 0.5)
            self._text(describe.node_label(f, r), out, anchor, theme.muted)
        cx, cy, brushes = [], [], []
        for m in describe.moves(f):
            a, b = pos[m.src], pos[m.dst]
            # a chord shortened at both ends so that it meets the rank circles, bent outward a little
            mid = (a + b) / 2 * 1.12
            color = describe.chunk_color(m.chunk)
            curve = pg.PlotCurveItem(*np.stack([a + (mid - a) * 0.22, mid, b + (mid - b) * 0.22]).T,
                                     pen=pg.mkPen(color, width=3))  # fmt: skip
            self.plot.addItem(curve)
            self.items.append(curve)
            tip = b + (mid - b) * 0.22
            angle = np.degrees(np.arctan2(tip[1] - mid[1], tip[0] - mid[0]))
            arrow = pg.ArrowItem(pos=tuple(tip), angle=180 - angle, headLen=14, brush=color, pen=pg.mkPen(color))
            self.plot.addItem(arrow)
            self.items.append(arrow)
            cx.append(mid[0])
            cy.append(mid[1])
            brushes.append(pg.mkBrush(color))
            self._text(m.label, mid * 0.7, (0.5, 0.5), color)  # inside the ring, beside its chunk
        self.chunks.setData(cx, cy, size=size * 0.5, brush=brushes, pen=pg.mkPen(theme.text))
        self.plot.setXRange(-2.1, 2.1, padding=0)
        self.plot.setYRange(-2.4, 2.4, padding=0)
