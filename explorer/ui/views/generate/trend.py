"""The generate view's trend: the entropy of each step's distribution and the chosen token's probability (on its
own 0..1 axis at the right), with a line at the step shown."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from ....models.describe import trend_title
from ....models.generate import GenerateRecord
from ...kit import show_axes, static_plot
from ...theme import Theme


class EntropyTrend:
    def __init__(self, parent: QWidget):
        self.plot = static_plot(parent, "", "step")
        self.plot.setLabel("left", "entropy (bits)")
        self.entropy_curve = self.plot.plot([], [])  # its legend is the title: a legend box covered the curves
        # p(chosen) lives on its own 0..1 axis on the right, in a view box linked to the plot's x axis.
        item = self.plot.getPlotItem()
        self.prob_box = pg.ViewBox(enableMouse=False)
        item.showAxis("right")
        item.scene().addItem(self.prob_box)
        item.getAxis("right").linkToView(self.prob_box)
        item.getAxis("right").setLabel("p")  # short: the title names it p(chosen); a long label clips at 1.5x text
        self.prob_box.setXLink(item)
        self.prob_box.setYRange(0, 1.02, padding=0)
        item.vb.sigResized.connect(lambda: self.prob_box.setGeometry(item.vb.sceneBoundingRect()))
        self.chosen_curve = pg.PlotCurveItem()
        self.prob_box.addItem(self.chosen_curve)
        self.step_line = pg.InfiniteLine(angle=90, movable=False)
        self.plot.addItem(self.step_line)
        self.title_pt = 10.0  # the title's size: the view's font's

    def set_theme(self, theme: Theme) -> None:
        self.entropy_curve.setPen(pg.mkPen(theme.bar, width=2))
        self.chosen_curve.setPen(pg.mkPen(theme.accent, width=2))
        for curve in (self.entropy_curve.curve, self.chosen_curve):
            curve.setSegmentedLineMode("on")  # thick lines as segments: far cheaper to paint than one long path
        self.step_line.setPen(pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DashLine))
        self.set_title(theme)

    def set_title(self, theme: Theme) -> None:
        title = trend_title(theme.bar, theme.accent)
        self.plot.setProperty("title", title)  # what the shared theme_plot sets again
        self.plot.getPlotItem().setTitle(title, size=f"{self.title_pt:.0f}pt", color=theme.text)

    def show_axes(self, on: bool) -> None:
        show_axes(self.plot, on, ("left", "bottom", "right"))

    def clear(self) -> None:
        self.entropy_curve.setData([], [])
        self.chosen_curve.setData([], [])

    def show(self, records: Sequence[GenerateRecord], r: GenerateRecord) -> None:
        """Steps up to ``r`` drawn (numbered from 1), the axis spanning all ``records``."""
        steps = np.arange(1, r.step + 2, dtype=float)
        upto = records[: r.step + 1]
        self.entropy_curve.setData(steps, np.array([x.entropy_bits for x in upto]))
        self.chosen_curve.setData(steps, np.array([x.chosen_prob for x in upto]))
        self.plot.setXRange(0.5, max(len(records), 2) + 0.5, padding=0)
        self.step_line.setValue(r.step + 1)
