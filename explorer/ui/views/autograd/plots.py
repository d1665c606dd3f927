"""The autograd view's two plots: the gradient each executed node produced, in the engine's order (the timeline's
steps), and the memory of the same forward with autograd, under checkpointing and under no_grad."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from ....autograd.describe import kind_group
from ....autograd.records import AutogradGraph, BackwardStep, MemoryMode
from ...kit import TitleFitter, show_axes, static_plot
from ...theme import Theme
from .dag import GROUP_COLORS


class OrderPlot:
    """log10 ‖gradient‖ of every node in execution order, coloured by kind; run steps filled, a line at the step.
    One faint and one solid scatter per kind, each with a single brush: a step only re-slices the solid ones (a
    brush per point would render every symbol again, ~35 ms a step for a whole model)."""

    def __init__(self, parent: QWidget, titles: TitleFitter):
        self.titles = titles
        self.plot = static_plot(parent, "‖gradient‖ per node", "backward step")
        titles.follow(self.plot)
        self.plot.setLabel("left", "log10 ‖g‖")
        self.faint: dict[str, pg.ScatterPlotItem] = {}
        self.solid: dict[str, pg.ScatterPlotItem] = {}
        for group, color in GROUP_COLORS.items():
            dim = pg.mkColor(color)
            dim.setAlpha(50)
            self.faint[group] = pg.ScatterPlotItem(pxMode=True, size=6, brush=pg.mkBrush(dim), pen=None)
            self.solid[group] = pg.ScatterPlotItem(pxMode=True, size=6, brush=pg.mkBrush(color), pen=None)
            self.plot.addItem(self.faint[group])
            self.plot.addItem(self.solid[group])
        self.step_line = pg.InfiniteLine(angle=90, movable=False)
        self.plot.addItem(self.step_line)
        self._points: dict[str, tuple[np.ndarray, np.ndarray]] | None = None  # per kind: steps (from 1), log10 ‖g‖
        self._count = -1

    def set_theme(self, theme: Theme) -> None:
        self.step_line.setPen(pg.mkPen(theme.accent, style=Qt.PenStyle.DashLine, width=2))
        variants = ["‖gradient‖ each node produced, in the engine's order", "‖gradient‖ per node, in order",
                    "‖gradient‖ per node"]  # fmt: skip
        self.titles.fit(self.plot, variants)

    def show_axes(self, on: bool) -> None:
        show_axes(self.plot, on)

    def clear(self) -> None:
        for item in (*self.faint.values(), *self.solid.values()):
            item.setData([], [])
        self.step_line.hide()
        self._points, self._count = None, -1

    def show(self, graph: AutogradGraph, steps: Sequence[BackwardStep], step: BackwardStep) -> None:
        if self._points is None or self._count != len(steps):
            x = np.arange(1, len(steps) + 1, dtype=float)
            y = np.log10(np.maximum([s.norm for s in steps], 1e-30))
            groups = np.array([kind_group(graph.nodes[s.node].short) for s in steps])
            self._points = {g: (x[groups == g], y[groups == g]) for g in GROUP_COLORS}
            self._count = len(steps)
            for g, (gx, gy) in self._points.items():
                self.faint[g].setData(gx, gy)
            finite = y[np.isfinite(y)]
            lo, hi = float(finite.min(initial=-1)), float(finite.max(initial=1))
            self.plot.setXRange(0.5, len(steps) + 0.5, padding=0)
            self.plot.setYRange(lo - 0.3, hi + 0.3, padding=0)
        for g, (gx, gy) in self._points.items():
            k = int(np.searchsorted(gx, step.order + 1, side="right"))
            self.solid[g].setData(gx[:k], gy[:k])
        self.step_line.setValue(step.order + 1)
        self.step_line.show()


class MemoryPlot:
    """Per way of running: bytes kept after the forward (for the backward) and the forward's peak, measured; the
    figures are in the caption under it (labels over bars this narrow would cover the neighbours)."""

    def __init__(self, parent: QWidget, titles: TitleFitter):
        self.titles = titles
        self.plot = static_plot(parent, "memory")
        titles.follow(self.plot)
        self.plot.setLabel("left", "MiB")
        self.kept = pg.BarGraphItem(x=[], height=[], width=0.38)
        self.peak = pg.BarGraphItem(x=[], height=[], width=0.38)
        self.plot.addItem(self.kept)
        self.plot.addItem(self.peak)

    def set_theme(self, theme: Theme) -> None:
        self.kept.setOpts(brush=pg.mkBrush(theme.accent), pen=pg.mkPen(None))
        self.peak.setOpts(brush=pg.mkBrush(theme.bar), pen=pg.mkPen(None))
        kept, peak = (f"<span style='color:{c}'>■</span>" for c in (theme.accent, theme.bar))
        variants = [f"memory, measured: {kept} kept after the forward {peak} forward peak",
                    f"{kept} kept after forward {peak} forward peak", f"{kept} kept {peak} peak"]  # fmt: skip
        self.titles.fit(self.plot, variants)

    def show_axes(self, on: bool) -> None:
        show_axes(self.plot, on)

    def clear(self) -> None:
        self.kept.setOpts(x=[], height=[])
        self.peak.setOpts(x=[], height=[])

    def show(self, modes: Sequence[MemoryMode]) -> None:
        self.clear()
        if not modes:
            return
        x = np.arange(len(modes), dtype=float)
        kept = np.array([m.kept_bytes for m in modes], float) / 2**20
        peak = np.array([m.forward_peak_bytes for m in modes], float) / 2**20
        self.kept.setOpts(x=x - 0.2, height=kept)
        self.peak.setOpts(x=x + 0.2, height=peak)
        top = float(max(peak.max(), kept.max(), 1e-3))
        self.plot.setXRange(-0.6, len(modes) - 0.4, padding=0)
        self.plot.setYRange(0, top * 1.1, padding=0)
        self.plot.getAxis("bottom").setTicks([[(i, m.mode.replace("_", "-")) for i, m in enumerate(modes)]])
