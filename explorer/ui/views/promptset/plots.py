"""The set's plots and summary: tokens per step by category, the draft's calibration and acceptance by draft
position (one colour per configuration, the chosen one stressed), and below them the pooled numbers and details
(:mod:`explorer.speculative.describe_runs`)."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QScrollArea, QWidget

from ....speculative import analysis
from ....speculative.describe_runs import (
    CALIBRATION_TITLES,
    CATEGORY_TITLES,
    POSITION_TITLES,
    category_tick_label,
    detail_html,
    legend_html,
    plot_categories,
)
from ....speculative.runs import PromptResult, Run
from ...kit import TitleFitter, static_plot
from ...theme import Theme

CONFIG_COLORS = ("#4c78a8", "#e4572e", "#2a9d8f", "#7b61ff", "#f2a541", "#8c564b")


def config_color(i: int) -> str:
    return CONFIG_COLORS[i % len(CONFIG_COLORS)]


class SetPlots(QWidget):
    """The three plots in a row over a summary that scrolls (long summaries would squeeze the plots at 720p). Their
    titles fit their widths (``titles``), the category names their plot's height (thinned and cut to fit)."""

    def __init__(self, titles: TitleFitter, parent: QWidget | None = None):
        super().__init__(parent)
        self.categories: list[str] = []  # the category plot's rows, top to bottom
        self.category_plot = static_plot(self, CATEGORY_TITLES[0], "tokens / forward")
        self.category_plot.invertY(True)
        self.calibration_plot = static_plot(self, CALIBRATION_TITLES[0], "draft confidence q")
        self.calibration_plot.setLabel("left", "accepted share")
        self.calibration_plot.setXRange(0, 1, padding=0.02)
        self.calibration_plot.setYRange(0, 1, padding=0.02)
        self.position_plot = static_plot(self, POSITION_TITLES[0], "draft position")
        self.position_plot.setYRange(0, 1.05, padding=0)
        shares = [[(v, f"{v:g}") for v in (0, 0.5, 1)]]  # three ticks on the 0..1 axes: never crowded at 720p
        for axis in (self.calibration_plot.getAxis("bottom"), self.calibration_plot.getAxis("left"),
                     self.position_plot.getAxis("left")):  # fmt: skip
            axis.setTicks(shares)
        for plot, variants in zip(self.plots, (CATEGORY_TITLES, CALIBRATION_TITLES, POSITION_TITLES), strict=True):
            titles.fit(plot, variants)
            titles.follow(plot)
        self.category_plot.getViewBox().sigResized.connect(lambda *_: self.fit_category_ticks())
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for col, plot in enumerate(self.plots):
            grid.addWidget(plot, 0, col)
            plot.setMinimumHeight(80)  # presentation mode at 720p: the replayed tree below needs the room
        scroll = QScrollArea(self)
        scroll.setWidget(self.summary)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setMinimumHeight(40)  # it scrolls: two lines are enough when room is short
        grid.addWidget(scroll, 1, 0, 1, 3)
        for col, stretch in enumerate((4, 3, 3)):
            grid.setColumnStretch(col, stretch)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """Short of room (presentation mode's larger text at 720p), the axes drop their names: the bars keep
        room to be seen (the titles and the summary say what they are)."""
        super().resizeEvent(event)
        line = QFontMetrics(self.font()).height()
        named = event.size().height() * 0.6 >= 7 * line  # the plots' row has 3/5 of the height
        for plot in self.plots:
            plot.getAxis("bottom").showLabel(named)
        self.calibration_plot.getAxis("left").showLabel(named)

    @property
    def plots(self) -> tuple[pg.PlotWidget, ...]:
        return self.category_plot, self.calibration_plot, self.position_plot

    def show_run(self, run: Run | None, chosen: int, theme: Theme, deterministic: bool) -> None:
        """Draw ``run``'s results (none: empty plots), stressing configuration ``chosen``; ``deterministic``: a
        recording (no measured speedups)."""
        for plot in self.plots:
            plot.clear()
        if run is None or not run.results:
            self.summary.setText("")
            self.categories = []
            self.fit_category_ticks()
            return
        configs = run.configurations
        groups = [[r for r in run.results if r.config == i] for i in range(len(configs))]
        self._category_bars(groups, plot_categories(run.results))
        diag = pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DashLine))
        self.calibration_plot.addItem(diag)
        legend = []
        for i, results in enumerate(groups):
            cal = analysis.calibration(results)
            self._calibration_line(cal, config_color(i), stressed=i == chosen)
            self._position_bars(results, i, len(groups))
            legend.append(legend_html(config_color(i), configs[i], analysis.counts(results), cal["ece"], deterministic))
        depth = max((len(analysis.per_position(g)["position"]) for g in groups), default=0)
        self.position_plot.setXRange(0.4, max(depth, 1) + 0.6, padding=0)
        self.position_plot.getAxis("bottom").setTicks([[(d, str(d)) for d in range(1, depth + 1)]])
        self.summary.setText("<br>".join(legend) + detail_html(run, chosen, theme))

    def _category_bars(self, groups: list[list[PromptResult]], cats: list[str]) -> None:
        """Tokens per step in each category: one bar per configuration, side by side."""
        height = 0.8 / len(groups)
        widest = 0.0
        for i, results in enumerate(groups):
            per = analysis.categories(results)
            values = [per[c].tokens_per_step if c in per else 0.0 for c in cats]
            widest = max([widest, *values])
            y = np.arange(len(cats)) - 0.4 + height * (i + 0.5)
            bars = pg.BarGraphItem(x0=np.zeros(len(cats)), y=y, height=height * 0.9, width=values,
                                   brush=config_color(i), pen=None)  # fmt: skip
            self.category_plot.addItem(bars)
        self.categories = cats
        self.fit_category_ticks()
        self.category_plot.setYRange(-0.6, len(cats) - 0.4, padding=0)
        self.category_plot.setXRange(0, max(widest, 1.0) * 1.05, padding=0)

    def category_ticks(self) -> list[tuple[int, str]]:
        """The category names the plot's height has room for: every one where a line each fits, else evenly
        thinned (always the first and "all", the last, when two fit); each cut to a few characters."""
        n = len(self.categories)
        font = self.category_plot.getAxis("left").style["tickFont"] or QFont(self.category_plot.font())
        slots = int(self.category_plot.getViewBox().height() // (QFontMetrics(font).height() + 2))
        if slots >= n:
            keep = list(range(n))
        elif slots <= 1:
            keep = [0][:slots]
        else:  # spaced (n - 1) / (slots - 1) rows apart at least: a line apart, as n >= slots
            every = math.ceil((n - 1) / (slots - 1))
            keep = [k for k in range(0, n - 1, every) if n - 1 - k >= every or k == 0] + [n - 1]
        return [(k, category_tick_label(self.categories[k])) for k in keep]

    def fit_category_ticks(self) -> None:
        self.category_plot.getAxis("left").setTicks([self.category_ticks()])

    def _calibration_line(self, cal: dict, color: str, stressed: bool) -> None:
        pts = [(q, a) for q, a in zip(cal["mean_q"], cal["acceptance"], strict=True) if q is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            line = pg.PlotDataItem(xs, ys, pen=pg.mkPen(color, width=3 if stressed else 1.5), symbol="o",
                                   symbolSize=6, symbolBrush=color, symbolPen=None)  # fmt: skip
            self.calibration_plot.addItem(line)

    def _position_bars(self, results: list[PromptResult], i: int, n: int) -> None:
        pos = analysis.per_position(results)
        if pos["position"]:
            w = 0.8 / n
            x = np.asarray(pos["position"], dtype=float) - 0.4 + w * (i + 0.5)
            self.position_plot.addItem(pg.BarGraphItem(x=x, height=pos["rate"], width=w * 0.9, brush=config_color(i),
                                                       pen=None))  # fmt: skip
