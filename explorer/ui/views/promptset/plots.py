"""The set's plots and summary: tokens per step by category, the draft's calibration and acceptance by draft
position (one colour per configuration, the chosen one stressed), and below them the pooled numbers and details
(:mod:`explorer.speculative.describe_runs`)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QScrollArea, QWidget

from ....speculative import analysis
from ....speculative.describe_runs import detail_html, legend_html, plot_categories
from ....speculative.runs import PromptResult, Run
from ...kit import static_plot
from ...theme import Theme

CONFIG_COLORS = ("#4c78a8", "#e4572e", "#2a9d8f", "#7b61ff", "#f2a541", "#8c564b")


def config_color(i: int) -> str:
    return CONFIG_COLORS[i % len(CONFIG_COLORS)]


class SetPlots(QWidget):
    """The three plots in a row over a summary that scrolls (long summaries would squeeze the plots at 720p)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.category_plot = static_plot(self, "tokens / step by category", "new tokens per target forward")
        self.category_plot.invertY(True)
        self.calibration_plot = static_plot(self, "calibration", "draft confidence q")
        self.calibration_plot.setLabel("left", "accepted share")
        self.calibration_plot.setXRange(0, 1, padding=0.02)
        self.calibration_plot.setYRange(0, 1, padding=0.02)
        self.position_plot = static_plot(self, "α by draft position", "draft position")
        self.position_plot.setYRange(0, 1.05, padding=0)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for col, plot in enumerate(self.plots):
            grid.addWidget(plot, 0, col)
            plot.setMinimumHeight(120)
        scroll = QScrollArea(self)
        scroll.setWidget(self.summary)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        grid.addWidget(scroll, 1, 0, 1, 3)
        for col, stretch in enumerate((4, 3, 3)):
            grid.setColumnStretch(col, stretch)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)

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
        self.category_plot.getAxis("left").setTicks([[(k, c[:14]) for k, c in enumerate(cats)]])
        self.category_plot.setYRange(-0.6, len(cats) - 0.4, padding=0)
        self.category_plot.setXRange(0, max(widest, 1.0) * 1.05, padding=0)

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
