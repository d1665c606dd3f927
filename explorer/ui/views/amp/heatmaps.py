"""The amp view's per-layer heatmaps: which layer groups overflow, and which lose values to zero without scaling,
step by step (rows: layer groups, columns: steps)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QGraphicsRectItem, QWidget

from ....amp.describe import FIRST_TINT, group_label, nice_top, thinned_rows, visible_cells
from ...kit import fitting_axis, show_axes, static_plot
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
            fitting_axis(bar.axis)  # at 720 lines in presentation mode its 0.2-steps overlapped
            self.colorbars.append(bar)
            plot.getViewBox().sigResized.connect(self.thin_rows)
        # the cell of the layer group where the step shown first overflowed, outlined on the overflow heatmap
        self.overflow_cell = QGraphicsRectItem()
        self.overflow_cell.setZValue(10)
        self.overflow_cell.hide()
        self.over_plot.addItem(self.overflow_cell)
        self.rows: list[str] = []  # the layer groups, one per row
        self._row_ticks: dict[int, list[str]] = {}  # the row labels each heatmap shows (set again only on change)

    def pairs(self) -> tuple[tuple[pg.PlotWidget, pg.ImageItem], ...]:
        return (self.over_plot, self.over_image), (self.flush_plot, self.flush_image)

    def set_theme(self, theme: Theme) -> None:
        base = np.array(pg.mkColor(theme.base).getRgb()[:3], float)
        hot = np.array(HOT, float)
        # 0 is the background; anything above it is drawn at least at a visible tint (visible_cells), so that one
        # inf among millions of values still shows
        cmap = pg.ColorMap([0.0, FIRST_TINT, 1.0], [base, base * 0.55 + hot * 0.45, hot])
        for bar in self.colorbars:
            bar.setColorMap(cmap)
            bar.axis.setPen(theme.muted)
            bar.axis.setTextPen(theme.text)
        pen = pg.mkPen(theme.text, width=2)
        pen.setCosmetic(True)
        self.overflow_cell.setPen(pen)
        self.overflow_cell.setBrush(Qt.BrushStyle.NoBrush)

    def apply_font(self, font: QFont) -> None:
        for bar in self.colorbars:
            bar.axis.setStyle(tickFont=font)
        self._row_ticks = {}

    def show_axes(self, on: bool) -> None:
        for plot, _ in self.pairs():
            show_axes(plot, on)
        for bar in self.colorbars:
            bar.setVisible(on)

    def clear(self) -> None:
        self.over_image.clear()
        self.flush_image.clear()
        self.overflow_cell.hide()

    def show(self, over: np.ndarray, flushed: np.ndarray, rows: list[str], step: int, overflow_row: int | None) -> None:
        """Cells in percent ([rows, steps], the colour scale topped at a round number), the rows' groups, the step
        shown (counted from 1, as the header and the timeline count) and the row where it first overflowed."""
        n = over.shape[1]
        for (_, image), img, bar in zip(self.pairs(), (over, flushed), self.colorbars, strict=True):
            top = nice_top(float(img.max()))
            image.setImage(visible_cells(img, top), autoLevels=False)
            image.setRect(QRectF(0.5, 0, n, len(rows)))  # step k (from 1) is the cell [k - 0.5, k + 0.5]
            bar.setLevels((0.0, top))
        self.rows = rows
        self.thin_rows()
        for plot, _ in self.pairs():
            plot.setXRange(0.5, n + 0.5, padding=0)
            plot.setYRange(0, len(rows), padding=0)
            every = max(1, math.ceil(n / 12))
            plot.getAxis("bottom").setTicks([[(k, str(k)) for k in range(1, n + 1) if (k - 1) % every == 0]])
        if overflow_row is None:
            self.overflow_cell.hide()
        else:
            self.overflow_cell.setRect(QRectF(step - 0.5, overflow_row, 1, 1))
            self.overflow_cell.show()

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
