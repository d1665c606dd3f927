"""The ddp view's cost panel: the α–β model of ring, tree and direct all-reduce at this N over message sizes
(log–log), the measured ring and dist.all_reduce times of this run's sweep as points, the ring bucket's size
marked. In a recording (no clock) the model's other half: bytes through the busiest link."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from ....distributed import describe
from .panel import StepPanel

SIZES = np.logspace(10, 25, 46, base=2.0)  # 1 KiB .. 32 MiB
STYLES = {"ring": Qt.PenStyle.SolidLine, "tree": Qt.PenStyle.DashLine, "direct": Qt.PenStyle.DotLine}


class CostPanel(StepPanel):
    def __init__(self, parent: QWidget, titles):
        super().__init__(parent, titles, "α–β model", "message bytes")
        self.plot.setLogMode(True, True)
        self.legend = self.plot.addLegend(offset=(8, 8))  # top left: the curves rise to the right, small sizes sit low

    def clear(self) -> None:
        super().clear()
        self.legend.clear()

    def _curve(self, x, y, name: str | None, **kw) -> None:
        item = self.plot.plot(x, y, name=name, **kw)
        self.items.append(item)

    def show(self, meta, n: int, bucket_bytes: float, clock: bool) -> None:
        self.clear()
        theme = self.theme
        fitted = meta.fitted if meta is not None else None
        colors = {"ring": theme.bar, "tree": theme.accent, "direct": theme.muted}
        if not clock or fitted is None:
            for name in describe.ALGORITHMS:
                y = [describe.link_bytes(n, float(s))[name] for s in SIZES]
                self._curve(SIZES, y, name, pen=pg.mkPen(colors[name], width=2, style=STYLES[name]))
            self.titles.fit(self.plot, describe.link_titles(n, clock))
            tops = [describe.link_bytes(n, float(SIZES[-1]))[a] for a in describe.ALGORITHMS]
            self.plot.setYRange(np.log10(SIZES[0] * 0.5), np.log10(max(tops) * 2), padding=0)
            self.plot.setLabel("left", "bytes")
        else:
            curves = describe.model_curves(fitted, n, SIZES)
            for name in describe.ALGORITHMS:
                label = "ring (model; measured: ● ring ▼ all_reduce)" if name == "ring" else f"{name} (model)"
                self._curve(SIZES, curves[name] * 1e3, label, pen=pg.mkPen(colors[name], width=2, style=STYLES[name]))
            c = meta.cost
            self._curve(c["sizes"], np.array(c["ring"]) * 1e3, None, pen=None, symbol="o",
                        symbolBrush=theme.bar, symbolPen=theme.text, symbolSize=8)  # fmt: skip
            self._curve(c["sizes"], np.array(c["all_reduce"]) * 1e3, None, pen=None,
                        symbol="t", symbolBrush=theme.accent, symbolPen=theme.text, symbolSize=8)  # fmt: skip
            self.titles.fit(self.plot, describe.cost_titles(fitted, n, bucket_bytes))
            values = [*c["ring"], *c["all_reduce"], *(v for a in curves.values() for v in a)]
            lo, hi = min(v for v in values if v > 0) * 1e3, max(values) * 1e3
            top = np.log10(hi * 40)  # room above the curves for the legend; at least two decades (minor log labels)
            self.plot.setYRange(min(np.log10(lo * 0.5), top - 2), top, padding=0)
            self.plot.setLabel("left", "ms")  # ▼ in the legend's first row (a short axis cut "ms (▼ dist.all_reduce)")
        line = pg.InfiniteLine(pos=np.log10(max(bucket_bytes, 1.0)), angle=90,
                               pen=pg.mkPen(theme.muted, style=Qt.PenStyle.DashLine))  # fmt: skip
        self.plot.addItem(line)
        self.items.append(line)
