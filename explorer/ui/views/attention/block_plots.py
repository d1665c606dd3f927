"""The current Q block's online-softmax state over its KV tiles: the kernel's running max m per row, l and α on a
log scale, and how far each row's partial output acc / l still is from the final O. The series come from
:meth:`explorer.attention.walk.AttentionWalk.block`; this module only draws them."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QSplitter, QWidget

from ....attention import describe
from ....attention.walk import LOG2E, AttentionWalk, TileStep
from ...kit import TitleFitter
from ...theme import Theme
from .drawing import Memo, faint, ink, point_lines, si_plot, step_lines

EMPTY_M, EMPTY_L, EMPTY_D = describe.EMPTY_TITLES[1:]


class BlockPlots(QSplitter):
    """Three plots stacked over one KV-tile axis, with the current tile marked in each."""

    def __init__(self, memo: Memo, titles: TitleFitter, parent: QWidget | None = None):
        super().__init__(Qt.Orientation.Vertical, parent)
        self.memo, self.titles = memo, titles
        self.m_plot = si_plot(self, EMPTY_M, "KV tile")
        self.m_rows = self.m_plot.plot([], [], connect="finite")
        self.m_fa4 = self.m_plot.plot([], [], connect="finite")
        self.m_row = self.m_plot.plot([], [], connect="finite")
        self.m_tilemax = pg.ScatterPlotItem(size=7, symbol="o")
        self.m_plot.addItem(self.m_tilemax)

        self.l_plot = si_plot(self, EMPTY_L, "KV tile")
        self.l_plot.setLogMode(x=False, y=True)
        self.l_plot.setLabel("left", "l, α (log)")  # short axis labels: they must fit short plots at large text
        self.one_line = pg.InfiniteLine(pos=0.0, angle=0, movable=False)  # log10(1)
        self.l_plot.addItem(self.one_line)
        self.l_rows = self.l_plot.plot([], [], connect="finite")
        self.l_row = self.l_plot.plot([], [], connect="finite", symbol="o", symbolSize=5)
        self.alpha_pts = self.l_plot.plot([], [], pen=None, symbol="o", symbolSize=4)
        self.alpha_row = self.l_plot.plot([], [], pen=None, symbol="d", symbolSize=10)

        self.d_plot = si_plot(self, EMPTY_D, "KV tile")
        self.d_plot.setLabel("left", "‖acc/l − O‖")
        self.d_rows = self.d_plot.plot([], [], connect="finite")
        self.d_mean = self.d_plot.plot([], [], connect="finite", symbol="o", symbolSize=6)
        self.d_row = self.d_plot.plot([], [], connect="finite")
        self.tile_lines = [pg.InfiniteLine(angle=90, movable=False) for _ in range(3)]
        for plot, line in zip(self.plots, self.tile_lines, strict=True):
            line.setZValue(-10)
            plot.addItem(line, ignoreBounds=True)
        for plot in self.plots:
            self.addWidget(plot)
        self.setSizes([340, 340, 300])

    @property
    def plots(self) -> tuple[pg.PlotWidget, pg.PlotWidget, pg.PlotWidget]:
        return (self.m_plot, self.l_plot, self.d_plot)

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        alpha = ink(theme).alpha
        current = faint(theme.accent, 70)
        for line in self.tile_lines:
            line.setPen(pg.mkPen(current, width=10))
        muted = faint(theme.muted, 90)
        self.m_rows.setPen(pg.mkPen(muted, width=1))
        self.m_row.setPen(pg.mkPen(theme.accent, width=2.5))
        self.m_fa4.setPen(pg.mkPen(theme.text, width=1.5, style=Qt.PenStyle.DashLine))
        self.m_tilemax.setPen(pg.mkPen(theme.bar, width=1.5))
        self.m_tilemax.setBrush(None)
        self.l_rows.setPen(pg.mkPen(faint(theme.bar, 80), width=1))
        self.l_row.setPen(pg.mkPen(theme.bar, width=2.5))
        self.l_row.setSymbolBrush(theme.bar)
        self.l_row.setSymbolPen(None)
        self.alpha_pts.setSymbolPen(None)
        self.alpha_pts.setSymbolBrush(faint(alpha, 110))
        self.alpha_row.setSymbolPen(pg.mkPen(theme.base, width=1))
        self.alpha_row.setSymbolBrush(alpha)
        self.one_line.setPen(pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DotLine))
        self.d_rows.setPen(pg.mkPen(muted, width=1))
        self.d_mean.setPen(pg.mkPen(theme.bar, width=2.5))
        self.d_mean.setSymbolBrush(theme.bar)
        self.d_mean.setSymbolPen(None)
        self.d_row.setPen(pg.mkPen(theme.accent, width=2))

    def apply_font(self, font: QFont, small: QFont) -> None:
        for plot in self.plots:
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setStyle(tickFont=small)
                plot.getAxis(axis).label.setFont(font)
        width = QFontMetrics(small).horizontalAdvance("0.0001") + QFontMetrics(font).height() + 14
        for plot in self.plots:  # one width: the three KV-tile axes line up
            plot.getAxis("left").setWidth(width)

    def new_walk(self, w: AttentionWalk) -> None:
        nkv = w.trace.tile_state.shape[1]
        for plot in self.plots:
            plot.setXRange(-0.6, nkv - 0.4, padding=0)
            ticks = [(j, str(j)) for j in range(0, nkv, max(1, math.ceil(nkv / 16)))]
            plot.getAxis("bottom").setTicks([ticks, []])

    def clear(self) -> None:
        for item in (self.m_rows, self.m_row, self.m_fa4, self.l_rows, self.l_row, self.d_rows, self.d_mean):
            item.setData([], [])
        for item in (self.d_row, self.m_tilemax, self.alpha_pts, self.alpha_row):
            item.setData([], [])
        for line in self.tile_lines:
            line.hide()

    def render(self, r: TileStep, row: int, base2: bool, fa4: bool) -> None:
        """Step ``r`` with row ``row`` of its block singled out; m in log2 units when ``base2``; FA-4's stale max
        when ``fa4``."""

        def move_lines() -> None:
            for line in self.tile_lines:
                line.setValue(r.kv_block)
                line.show()

        self.memo.once("tile_lines", r.kv_block, move_lines)
        self._render_m(r, row, base2, fa4)
        self._render_l(r, row)
        self._render_distance(r, row)

    def _render_m(self, r: TileStep, row: int, base2: bool, fa4: bool) -> None:
        """m: step lines for all rows, the highlighted row, this tile's own row max."""
        b, J = r.walk.block(r.q_block), r.kv_block + 1
        f = LOG2E if base2 else 1.0
        self.m_rows.setData(*step_lines(b.m * f, J))
        self.m_row.setData(*step_lines(b.m[:, row : row + 1] * f, J))
        tm = b.tile_max[r.kv_block] * f
        ok = ~np.isnan(tm)
        self.m_tilemax.setData(np.full(int(ok.sum()), float(r.kv_block)), tm[ok])
        if fa4:
            self.m_fa4.setData(*step_lines(b.fa4_max[:, row : row + 1] * f, J))
        else:
            self.m_fa4.setData([], [])
        lo, hi = b.m_range
        pad = 0.06 * (hi - lo or 1.0)
        m_range = ((lo - pad) * f, (hi + pad) * f)
        self.memo.once("m_range", m_range, lambda: self.m_plot.setYRange(*m_range, padding=0))
        label = describe.m_axis_label(base2)
        self.memo.once("m_label", label, lambda: self.m_plot.setLabel("left", label))
        self.titles.fit(self.m_plot, list(describe.m_titles(r, row, ink(self.theme), fa4)))

    def _render_l(self, r: TileStep, row: int) -> None:
        """l and α, log scale (α = 0 on a row's first tile: nothing to rescale yet, not drawn)."""
        b, J = r.walk.block(r.q_block), r.kv_block + 1

        def set_dots(dots: str | None) -> None:  # a single tile: points, not lines
            for item in (self.l_rows, self.d_rows):
                item.setSymbol(dots)
                item.setSymbolSize(4)
                item.setSymbolPen(None)
                item.setSymbolBrush(item.opts["pen"].color())

        self.memo.once("dots", J == 1, lambda: set_dots("o" if J == 1 else None))
        self.l_rows.setData(*point_lines(b.l, J))
        self.l_row.setData(*point_lines(b.l[:, row : row + 1], J))
        a = b.alpha[:J]
        jj = np.repeat(np.arange(J, dtype=float)[:, None], a.shape[1], 1)
        ok = ~np.isnan(a)
        self.alpha_pts.setData(jj[ok], a[ok].astype(float))
        ar = a[:, row]
        ok = ~np.isnan(ar)
        self.alpha_row.setData(np.arange(J, dtype=float)[ok], ar[ok].astype(float))
        lo, hi = b.l_range
        l_range = (math.log10(lo) - 0.15, math.log10(hi) + 0.15)
        self.memo.once("l_range", l_range, lambda: self.l_plot.setYRange(*l_range, padding=0))
        self.titles.fit(self.l_plot, list(describe.l_titles(r, row, ink(self.theme))))

    def _render_distance(self, r: TileStep, row: int) -> None:
        """The distance of the partial output acc / l from the final O."""
        b, J = r.walk.block(r.q_block), r.kv_block + 1
        self.d_rows.setData(*point_lines(b.distance, J))
        mean = np.nanmean(b.distance[:J], axis=1, keepdims=True) if b.rows else np.zeros((J, 1))
        self.d_mean.setData(*point_lines(mean, J))
        self.d_row.setData(*point_lines(b.distance[:, row : row + 1], J))
        d_top = b.d_max * 1.06 or 1.0
        self.memo.once("d_range", d_top, lambda: self.d_plot.setYRange(0, d_top, padding=0))
        self.titles.fit(self.d_plot, list(describe.distance_titles(r, row, ink(self.theme))))

