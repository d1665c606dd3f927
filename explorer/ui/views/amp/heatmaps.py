"""The amp view's per-layer heatmaps: which layer groups overflow, and which lose values to zero without scaling,
step by step (rows: layer groups, columns: steps)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QWidget

from ....amp.describe import group_label, nice_top, thinned_rows
from ...kit import static_plot
from ...theme import Theme

HOT = (228, 87, 46)  # the overflow band's red, the top of both colour scales


class LayerHeatmaps:
    """Two heatmaps side by side, each with its colour bar; the rows are labelled with as many layer names as fit."""

    def __init__(self, parent: QWidget):
        self.font_source = parent  # whose font labels the rows until the view's font is applied
        self.over_plot = static_plot(parent, "overflow per layer (% inf/NaN or > 65504)", "step")
        self.flush_plot = static_plot(parent, "lost to zero per layer without scaling (%)", "step")
        self.over_image = pg.ImageItem(axisOrder="row-major")
        self.flush_image = pg.ImageItem(axisOrder="row-major")
        self.over_plot.addItem(self.over_image)
        self.flush_plot.addItem(self.flush_image)
        self.colorbars = []
        for plot, image in self.pairs():
            plot.invertY(True)
            bar = pg.ColorBarItem(values=(0, 1), interactive=False, width=12, colorMapMenu=False)
            bar.setImageItem(image, insert_in=plot.getPlotItem())
            self.colorbars.append(bar)
            plot.getViewBox().sigResized.connect(self.thin_rows)
        self.rows: list[str] = []  # the layer groups, one per row
        self._row_ticks: dict[int, list[str]] = {}  # the row labels each heatmap shows (set again only on change)

    def pairs(self) -> tuple[tuple[pg.PlotWidget, pg.ImageItem], ...]:
        return (self.over_plot, self.over_image), (self.flush_plot, self.flush_image)

    def set_theme(self, theme: Theme) -> None:
        base = np.array(pg.mkColor(theme.base).getRgb()[:3], float)
        hot = np.array(HOT, float)
        # 0 is the background; anything above it starts at a visible tint (a few values in a layer still show)
        cmap = pg.ColorMap([0.0, 0.004, 1.0], [base, base * 0.85 + hot * 0.15, hot])
        for bar in self.colorbars:
            bar.setColorMap(cmap)
            bar.axis.setPen(theme.muted)
            bar.axis.setTextPen(theme.text)

    def apply_font(self, font: QFont) -> None:
        for bar in self.colorbars:
            bar.axis.setStyle(tickFont=font)
        self._row_ticks = {}

    def show_axes(self, on: bool) -> None:
        for plot, _ in self.pairs():
            for axis in ("left", "bottom"):
                plot.getPlotItem().showAxis(axis, on)
        for bar in self.colorbars:
            bar.setVisible(on)

    def clear(self) -> None:
        self.over_image.clear()
        self.flush_image.clear()

    def show(self, over: np.ndarray, flushed: np.ndarray, rows: list[str]) -> None:
        """Cells in percent ([rows, steps], the colour scale topped at a round number) and the rows' groups."""
        for (_, image), img, bar in zip(self.pairs(), (over, flushed), self.colorbars, strict=True):
            image.setImage(np.ascontiguousarray(img), autoLevels=False)
            bar.setLevels((0.0, nice_top(float(img.max()))))
        self.rows = rows
        self.thin_rows()
        n = over.shape[1]
        for plot, _ in self.pairs():
            plot.setXRange(0, n, padding=0)
            plot.setYRange(0, len(rows), padding=0)
            every = max(1, math.ceil(n / 12))  # step i is the cell [i, i + 1]: its label sits in the middle
            plot.getAxis("bottom").setTicks([[(i + 0.5, str(i)) for i in range(0, n, every)]])

    def relabel(self, rows: list[str]) -> None:
        """Label the rows as ``rows`` now (a model with more layers), forgetting the labels shown."""
        self.rows = rows
        self._row_ticks = {}
        self.thin_rows()

    def thin_rows(self) -> None:
        """Layer names on the heatmaps' rows, as many as fit: every k-th one at least a line apart (30-layer
        models), the first and last always."""
        groups = self.rows
        for i, (plot, _) in enumerate(self.pairs()):
            left = plot.getAxis("left")
            font = left.style["tickFont"] or self.font_source.font()
            line = QFontMetrics(font).height()
            rows = max(len(groups), 1)
            px = plot.getViewBox().height() / rows if plot.getViewBox().height() > 0 else line
            every = max(1, math.ceil(1.05 * line / max(px, 1e-6)))
            ticks = [(j + 0.5, group_label(groups[j])) for j in thinned_rows(len(groups), every)]
            if [t for _, t in ticks] == self._row_ticks.get(i):
                continue
            left.setTicks([ticks, []])
            self._row_ticks[i] = [t for _, t in ticks]
            if ticks:
                left.setWidth(max(QFontMetrics(font).horizontalAdvance(t) for _, t in ticks) + 18)
