"""The ddp view's per-rank timeline: forward, backward (until the rank's last gradient was ready) and each DDP
bucket's all-reduce (start: its gradients ready and the comm hook called; end: its future done), one row per rank.
In a recording (no clock) it shows the step's buckets instead: their bytes in DDP's order against the cap."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from ....distributed import describe
from ....distributed.records import DdpStep
from .panel import StepPanel


class RankTimeline(StepPanel):
    def __init__(self, parent: QWidget, titles):
        super().__init__(parent, titles, "backward vs bucket all-reduce per rank", "ms from the first forward")
        self.plot.invertY(True)

    def _bars(self, x0, x1, y, height, color) -> None:
        if not x0:
            return
        widths = [max(b - a, 1e-3) for a, b in zip(x0, x1, strict=True)]
        item = pg.BarGraphItem(x0=x0, width=widths, y=y, height=height, brush=color, pen=pg.mkPen(None))
        self.plot.addItem(item)
        self.items.append(item)

    def show(self, s: DdpStep, cap_mb: float, clock: bool) -> None:
        self.clear()
        self.plot.invertY(clock)
        if not clock:
            self._show_buckets(s, cap_mb)
            return
        self.titles.fit(self.plot, describe.timeline_titles(s))
        bars = describe.timeline_bars(s)
        for kind, offset, height, color in (("forward", 0.0, 0.5, self.theme.grid),
                                            ("backward", -0.14, 0.28, self.theme.muted)):  # fmt: skip
            sel = [b for b in bars if b.kind == kind]
            self._bars([b.start for b in sel], [b.end for b in sel], [b.rank + offset for b in sel], height, color)
        for index in sorted({b.bucket for b in bars if b.kind == "bucket"}):
            sel = [b for b in bars if b.bucket == index]
            self._bars([b.start for b in sel], [b.end for b in sel], [b.rank + 0.16 for b in sel], 0.26,
                       describe.chunk_color(index))  # fmt: skip
        ticks = [[(r, f"rank {r}") for r in range(s.ranks)]]
        self.plot.getAxis("left").setTicks(ticks)
        self.plot.getAxis("bottom").setTicks(None)
        self.plot.setLabel("left", "")
        self.plot.setLabel("bottom", "ms (grey: backward, colours: buckets)")
        self.plot.setYRange(-0.6, s.ranks - 0.4, padding=0)
        self.plot.setXRange(0, max(b.end for b in bars) * 1.02, padding=0)

    def _show_buckets(self, s: DdpStep, cap_mb: float) -> None:
        index, mib = describe.bucket_sizes(s)
        self.titles.fit(self.plot, describe.bucket_titles(s, cap_mb))
        item = pg.BarGraphItem(x=list(range(len(mib))), height=mib, width=0.7,
                               brushes=[describe.chunk_color(i) for i in index])  # fmt: skip
        self.plot.addItem(item)
        self.items.append(item)
        line = pg.InfiniteLine(pos=cap_mb, angle=0, pen=pg.mkPen(self.theme.muted, width=1))
        self.plot.addItem(line)
        self.items.append(line)
        self.plot.getAxis("left").setTicks(None)
        self.plot.getAxis("bottom").setTicks([[(i, str(b)) for i, b in enumerate(index)]])
        self.plot.setLabel("bottom", "bucket")
        self.plot.setLabel("left", "MiB")
        self.plot.enableAutoRange("xy", True)
