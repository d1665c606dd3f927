"""The where-it-pays panel: this machine's cost of verifying n tokens (chain or tree) in one-token target steps, the
step's cost with this run's drafting and bookkeeping added, and the run's measured tokens per step against it:
above the line, speculation pays. Cost (left axis) and tokens per step (right axis) share one scale: a step that
yields k tokens saves k target steps. A legend above the plot names the curves and the points; break-even is a
dashed line across it. When the shape was chosen (auto), a star marks the choice at its node count and expected
tokens per step, diamonds its neighbours (deeper, wider, chain), and the caption says why."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget

from ....speculative import describe
from ....speculative.describe import ORIGIN_COLORS
from ...kit import TitleFitter, static_plot
from ...theme import Theme


class CostsPanel:
    def __init__(self, parent: QWidget, titles: TitleFitter):
        self.titles = titles
        self.plot = static_plot(parent, "where it pays", bottom="tokens verified per step")
        self.plot.setLabel("left", describe.COSTS_AXIS_LEFT)
        self.plot.setLabel("right", describe.COSTS_AXIS_RIGHT)  # the same scale as the left: the run's dot reads here
        self.plot.getAxis("right").enableAutoSIPrefix(False)
        self.legend = QLabel(parent)  # above the plot: in it, it would hide the curves of a small panel
        self.legend.setWordWrap(True)
        self.verify = pg.PlotDataItem()
        self.step = pg.PlotDataItem()
        self.need = pg.ScatterPlotItem(symbol="o", size=9, pxMode=True)
        self.run = pg.ScatterPlotItem(symbol="o", size=11, pxMode=True)
        self.choice = pg.ScatterPlotItem(symbol="star", size=16, pxMode=True)  # auto's shape (expected)
        self.others = pg.ScatterPlotItem(symbol="d", size=9, pxMode=True)  # its neighbours (expected)
        for item in (self.verify, self.step, self.need, self.run, self.others, self.choice):
            self.plot.addItem(item)
        self.break_even = pg.InfiniteLine(angle=0, movable=False, label="break-even {value:.2f}",
                                          labelOpts={"position": 0.98, "anchors": [(1, 1), (1, 1)]})  # fmt: skip
        self.break_even.setVisible(False)
        self.plot.addItem(self.break_even)
        self.caption = QLabel(parent)
        self.caption.setWordWrap(True)
        self._texts: list[tuple[str, str]] = []  # (legend, caption): in full, then in short words (fit)

    def render(self, costs: dict | None, note: str, theme: Theme, shape: dict | None = None, choice: str = "") -> None:
        """``costs``: explorer.speculative.costs.where_it_pays of the run (None: none to show, and ``note`` says
        why); ``shape``: the shape chooser's report (None: a fixed shape), ``choice`` its sentence."""
        for item in (self.verify, self.step):
            item.setData([], [])
        for item in (self.need, self.run, self.choice, self.others):
            item.setData([], [])
        for axis in ("left", "bottom", "right"):
            self.plot.showAxis(axis, costs is not None)
        self.legend.setText("")
        self.caption.setToolTip("")
        self._texts = []
        self.break_even.setVisible(costs is not None)
        if costs is None:
            self.titles.fit(self.plot, describe.COSTS_EMPTY_TITLES)
            self.caption.setText(describe.span(theme.muted, note))
            return
        tree = costs["tree"]  # verified with a tree mask: the tree curve (SpecRunMeta reads older runs by method)
        curve = costs["verify_cost_curve"]
        base_ms = curve["base_ms"]
        sizes = np.array([0, *curve["sizes"]], dtype=float)
        verify = np.array([base_ms, *curve["tree_ms" if tree else "chain_ms"]]) / base_ms
        extra = costs["bookkeeping_ms_per_step"] / base_ms
        step = verify + sizes * costs["draft_cost_per_token"] + extra
        nodes, need = costs["nodes_per_step"], costs["break_even_tokens_per_step"]
        have = costs["measured_tokens_per_step"]
        x_hi = float(np.clip(2 * nodes + 2, 8, sizes[-1]))
        shown = sizes <= x_hi
        self.verify.setData(sizes[shown], verify[shown], pen=pg.mkPen(theme.bar, width=2))
        self.step.setData(sizes[shown], step[shown], pen=pg.mkPen(theme.accent, width=2))
        self.need.setData([nodes], [need], brush=pg.mkBrush(theme.base), pen=pg.mkPen(theme.accent, width=2))
        color = ORIGIN_COLORS["accepted"] if have >= need else ORIGIN_COLORS["corrected"]
        self.run.setData([nodes], [have], brush=pg.mkBrush(color), pen=pg.mkPen(color))
        self.break_even.setPen(pg.mkPen(theme.accent, width=1, style=Qt.PenStyle.DashLine))
        self.break_even.setPos(need)
        self.break_even.label.setColor(theme.accent)
        marks = describe.choice_marks(shape)
        if marks:
            (cx, cy), near = marks[0], marks[1:]
            self.choice.setData([cx], [cy], brush=pg.mkBrush(theme.accent), pen=pg.mkPen(theme.text))
            self.others.setData([x for x, _ in near], [y for _, y in near], brush=pg.mkBrush(theme.base),
                                pen=pg.mkPen(theme.accent, width=1.5))  # fmt: skip
            x_hi = float(min(max(x_hi, max(x for x, _ in marks) + 1), sizes[-1]))
            have = max(have, max(y for _, y in marks))
        self.plot.setXRange(0, x_hi, padding=0.02)
        self.plot.setYRange(0, max(float(step[sizes <= x_hi].max()), have, need) * 1.15, padding=0)
        self.titles.fit(self.plot, describe.COSTS_TITLES)
        full = describe.costs_caption(costs, tree, extra, theme) + (f"<br>{choice}" if choice else "")
        brief = describe.choice_caption(shape, brief=True)
        self._texts = [
            (describe.costs_legend_html(theme, color, chosen=bool(marks)), full),
            (describe.costs_legend_html(theme, color, chosen=bool(marks), short=True),
             describe.costs_caption_short(costs, theme) + (f"<br>{brief}" if brief else "")),
        ]  # fmt: skip
        self.caption.setToolTip(full)  # the whole sentence, whichever one the panel has room for
        self.fit()

    PLOT_MIN_LINES = 9  # the plot's least height in text lines before legend and caption take their short words

    def fit(self) -> None:
        """The legend and caption in full where the plot keeps PLOT_MIN_LINES lines of height beside them, in short
        words where it would not (at 1280x720 the full words took all but 40 px of the plot's cell)."""
        cell = self.plot.parentWidget()
        if not self._texts or cell is None:
            return
        width, spacing = cell.width(), cell.layout().spacing() if cell.layout() else 0
        line = self.caption.fontMetrics().lineSpacing()
        for legend, caption in self._texts:
            self.legend.setText(legend)
            self.caption.setText(caption)
            texts = self.legend.heightForWidth(width) + max(self.caption.minimumHeight(),
                                                             self.caption.heightForWidth(width))  # fmt: skip
            if cell.height() - texts - 2 * spacing >= self.PLOT_MIN_LINES * line:
                return
