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
        self._labels: list[tuple[pg.TextItem, tuple, tuple, str]] = []  # (item, pos, anchor, whole text)
        self.plot.getViewBox().sigResized.connect(lambda *_: self._fit())

    def clear(self) -> None:
        super().clear()
        self._labels = []
        self.nodes.setData([], [])
        self.chunks.setData([], [])

    def _text(self, text: str, pos, anchor, color: str) -> None:
        item = pg.TextItem(text, color=color, anchor=anchor)
        item.setPos(*pos)
        self.plot.addItem(item)
        self.items.append(item)
        self._labels.append((item, (float(pos[0]), float(pos[1])), anchor, text))

    RING_MIN_PX = 24  # the ring's least radius: below it the labels may overflow rather than the ring vanish
    RING_FULL_PX = 36  # below this radius the labels keep their last line alone (what the rank received)

    def _fit(self) -> None:
        """The ring as large as the panel allows with every label inside it: the labels keep their size in pixels
        (three lines each, and larger in presentation mode) while the ring scales, so a fixed range let them run
        past a small panel's edges. Where whole labels would leave the ring under RING_FULL_PX they keep their last
        line (the rank is the circle's number, its rows are in the header's terms)."""
        vb = self.plot.getViewBox()
        if not self._labels or vb.width() <= 0 or vb.height() <= 0:
            return
        for item, _, _, text in self._labels:
            item.setText(text)
        scale = self._scale()
        if scale < self.RING_FULL_PX:
            for item, _, _, text in self._labels:
                item.setText(text.split("\n")[-1])
            scale = self._scale()
        scale = max(self.RING_MIN_PX, scale)
        half_w, half_h = vb.width() / 2 / scale, vb.height() / 2 / scale
        vb.setRange(xRange=(-half_w, half_w), yRange=(-half_h, half_h), padding=0)

    def _scale(self) -> float:
        """The largest pixels per ring unit (radius 1) at which the rank circles and every label fit the panel."""
        vb = self.plot.getViewBox()
        half_w, half_h = vb.width() / 2, vb.height() / 2
        limits = [min(half_w, half_h) / (1 + NODE_SIZE)]
        for item, (x, y), (ax, ay), _ in self._labels:
            rect = item.textItem.boundingRect()
            w, h = rect.width(), rect.height()
            # pixel extents from the label's point: right/left of it, above/below it (data y points up)
            for coord, half, ahead, behind in ((x, half_w, (1 - ax) * w, ax * w), (y, half_h, ay * h, (1 - ay) * h)):
                if coord > 0:
                    limits.append((half - ahead) / coord)
                elif coord < 0:
                    limits.append((half - behind) / -coord)
        return min(limits)

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
        self._fit()
