"""The running statistics panels: steps by accepted drafts, and the acceptance rate by draft position (vLLM's
per-position rate; not α, which the header names; with drafting heads, each head's acceptance beside its
position). The figures are ``stats.compute_stats``'s, over the steps so far."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from ....speculative import describe
from ....speculative.describe import ORIGIN_COLORS
from ...kit import TitleFitter, static_plot
from ...theme import Theme


class StatsPanel:
    def __init__(self, parent: QWidget, titles: TitleFitter):
        self.titles = titles
        self.hist_plot = static_plot(parent, "accepted per step")
        self.hist_plot.setLabel("bottom", "accepted drafts")
        self.hist_bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.hist_plot.addItem(self.hist_bars)
        self.pos_plot = static_plot(parent, describe.POSITION_TITLES[0])
        self.pos_plot.setLabel("bottom", "draft position")
        self.pos_plot.setYRange(0, 1.05, padding=0)
        self.pos_bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.pos_plot.addItem(self.pos_bars)
        self.head_bars = pg.BarGraphItem(x=[], height=[], width=0.35)  # drafting heads: acceptance per head
        self.pos_plot.addItem(self.head_bars)

    def set_theme(self, theme: Theme) -> None:
        self.hist_bars.setOpts(brush=theme.bar, pen=None)
        self.pos_bars.setOpts(brush=theme.bar, pen=None)
        self.head_bars.setOpts(brush=ORIGIN_COLORS["accepted"], pen=None)

    def clear(self) -> None:
        self.hist_bars.setOpts(x=[], height=[])
        self.pos_bars.setOpts(x=[], height=[])
        self.head_bars.setOpts(x=[], height=[])

    def render(self, stats: dict, theme: Theme) -> None:
        """``stats``: describe.progress() over the steps up to the one shown."""
        self._render_histogram(describe.accepted_histogram(stats))
        depth = stats["depth"]
        rates, per_head = stats["per_position_acceptance"], stats["per_head_acceptance"]
        if per_head:  # head k proposes position k + 1: its bar stands next to that position's
            self.pos_bars.setOpts(x=np.arange(1, depth + 1) - 0.18, height=rates, width=0.35)
            self.head_bars.setOpts(x=np.arange(1, len(per_head) + 1) + 0.18, height=per_head, width=0.35)
            depth = max(depth, len(per_head))
            self.titles.fit(self.pos_plot, describe.position_head_titles(theme))
        else:
            self.pos_bars.setOpts(x=np.arange(1, depth + 1), height=rates, width=0.7)
            self.head_bars.setOpts(x=[], height=[])
            self.titles.fit(self.pos_plot, describe.POSITION_TITLES)
        self.pos_plot.setXRange(0.4, max(depth, 1) + 0.6, padding=0)
        self.titles.fit(self.hist_plot, describe.HIST_TITLES)
        self.pos_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(1, depth + 1)]])

    def _render_histogram(self, counts: list[int]) -> None:
        hist = np.array(counts)
        self.hist_bars.setOpts(x=np.arange(len(hist)), height=hist)
        self.hist_plot.setXRange(-0.6, max(len(hist), 2) - 0.4, padding=0)
        self.hist_plot.getAxis("bottom").setTicks([[(i, str(i)) for i in range(len(hist))]])
        top = max(int(hist.max()), 1)
        self.hist_plot.setYRange(0, top * 1.1, padding=0)
        left = self.hist_plot.getAxis("left")
        left.setTickSpacing(*((1, 1) if top <= 8 else ()))  # counts: whole numbers while they are few
