"""The amp view's scale timeline: log2 of the loss scale per step with skipped (✕) and grown (▲) steps, the loss on
its own axis at the right, and a line at the step shown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from ....amp.records import StepRecord
from ...kit import show_axes, static_plot
from ...theme import Theme

SKIP_COLOR, GROWTH_COLOR = "#e4572e", "#2a9d8f"  # the overflow and normal bands' colours


class ScaleTimeline:
    """The loss scale S (log2) and the loss over the steps so far, the x axis spanning the whole run."""

    def __init__(self, parent: QWidget):
        self.plot = static_plot(parent, "loss scale S (log2) and loss", "step")
        self.scale_curve = self.plot.plot([], [], stepMode=None, name="log2 S")
        self.skip_points = pg.ScatterPlotItem(symbol="x", size=12)
        self.growth_points = pg.ScatterPlotItem(symbol="t1", size=12)
        self.plot.addItem(self.skip_points)
        self.plot.addItem(self.growth_points)
        self.plot.setLabel("left", "log2 S")
        # the loss lives on its own axis on the right, in a view box linked to the plot's x axis
        item = self.plot.getPlotItem()
        self.loss_box = pg.ViewBox(enableMouse=False)
        item.showAxis("right")
        item.scene().addItem(self.loss_box)
        item.getAxis("right").linkToView(self.loss_box)
        item.getAxis("right").setLabel("loss")
        self.loss_box.setXLink(item)
        item.vb.sigResized.connect(lambda: self.loss_box.setGeometry(item.vb.sceneBoundingRect()))
        self.loss_curve = pg.PlotCurveItem()
        self.loss_box.addItem(self.loss_curve)
        self.step_line = pg.InfiniteLine(angle=90, movable=False)
        self.plot.addItem(self.step_line)

    def set_theme(self, theme: Theme) -> None:
        self.scale_curve.setPen(pg.mkPen(theme.bar, width=2))
        self.loss_curve.setPen(pg.mkPen(theme.muted, width=1.5))
        self.skip_points.setBrush(pg.mkBrush(SKIP_COLOR))
        self.skip_points.setPen(pg.mkPen(SKIP_COLOR, width=2))
        self.growth_points.setBrush(pg.mkBrush(GROWTH_COLOR))
        self.step_line.setPen(pg.mkPen(theme.muted, style=Qt.PenStyle.DashLine))

    def show_axes(self, on: bool) -> None:
        show_axes(self.plot, on, ("left", "bottom", "right"))

    def clear(self) -> None:
        self.scale_curve.setData([], [])
        self.loss_curve.setData([], [])
        self.skip_points.setData([], [])
        self.growth_points.setData([], [])
        self.step_line.hide()

    def show(self, records: Sequence[StepRecord], r: StepRecord) -> None:
        """Steps up to ``r`` drawn, the axis spanning all ``records`` (the loss's range too). Steps count from 1 on
        the x axis, as the header, the player and the heatmaps count them."""
        self.step_line.show()
        upto = records[: r.step + 1]
        steps = np.array([x.step + 1 for x in upto], dtype=float)
        self.scale_curve.setData(steps, np.log2([x.scale for x in upto]))
        self.loss_curve.setData(steps, np.array([x.loss for x in upto]))
        skipped = [x for x in upto if x.skipped]
        grown = [x for x in upto if x.event == "growth"]
        self.skip_points.setData([x.step + 1 for x in skipped], [np.log2(x.scale) for x in skipped])
        self.growth_points.setData([x.step + 1 for x in grown], [np.log2(x.next_scale) for x in grown])
        n = max(len(records), 2)
        self.plot.setXRange(0.5, n + 0.5, padding=0)
        self.plot.getAxis("bottom").setTickSpacing(*((1, 1) if n <= 12 else ()))  # whole steps
        self.step_line.setValue(r.step + 1)
        losses = [x.loss for x in records if np.isfinite(x.loss)]
        if losses:
            self.loss_box.setYRange(min(losses) * 0.95, max(losses) * 1.05, padding=0)
