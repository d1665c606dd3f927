"""View `attention`: step through the FlashAttention kernel's walk over one head of a real model, tile by tile.

Left, the score matrix with the kernel's tile grid over it (:mod:`.matrix`); right, the current Q block's
running max m, l and α, and the partial output's distance from the final O (:mod:`.block_plots`); above, the
header (:mod:`.header`). All numbers come from the Qt-free :mod:`explorer.attention.walk` and all words from
:mod:`explorer.attention.describe`; this package only draws.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from ....attention import describe
from ....attention.job import AttentionRun, follow_model
from ....attention.options import VIEW as ATTENTION_VIEW
from ....attention.walk import AttentionWalk, TileStep
from ....session import Session
from ...theme import BASE_POINT_SIZE, Theme
from ..base import View
from .block_plots import BlockPlots
from .drawing import DocumentTitles, Memo, ink
from .header import Header
from .matrix import ScoreMatrix


class AttentionView(View):
    name = "attention"
    title = "Attention"
    schema = ATTENTION_VIEW
    focus_help = {
        "select": "a query row i (0-based, as on the score matrix's axis): drawn bold in the m, l and distance "
        "plots while the walk is in its Q block (else the row that rescaled most)",
        "zoom": '"tile" (the current tile and half a tile around it), "block" (the current Q block\'s band of '
        'rows up to its last visited key) or "all" (the whole matrix), following the walk step by step',
    }
    meta: AttentionRun | None

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.walk: AttentionWalk | None = None
        self.memo = Memo()
        self.titles = DocumentTitles(theme.text)
        self._select_row: int | None = None  # a query row chosen by a tour (else the block's busiest row)
        self._zoom: str | None = None  # "tile", "block", "all" (tours) or None: the whole matrix, set per walk
        self.header = Header(self)
        self.scores = ScoreMatrix(self.memo, self.titles, self)
        self.blocks = BlockPlots(self.memo, self.titles, self)
        self.matrix, (self.m_plot, self.l_plot, self.d_plot) = self.scores.plot, self.blocks.plots
        for plot in self.themed_plots():
            self.titles.follow(plot)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.scores)
        split.addWidget(self.blocks)
        split.setSizes([560, 440])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addWidget(split, 1)
        self._set_title_size(BASE_POINT_SIZE)  # until the window applies its font
        self.finish_init()

    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        return (self.matrix, self.m_plot, self.l_plot, self.d_plot)

    # ---- computation: the attention runner (explorer.attention.job) on these settings
    def make_job(self, session: Session) -> Callable[[], Iterator[TileStep]]:
        """The layer and head settings follow the loaded model (out of range: its last one), then the runner."""
        lm = session.target
        if lm is not None:
            cfg, fitted = lm.config, follow_model(self.job_values(), lm.config)
            self.layer.setValue(fitted["layer"])
            self.head.setValue(fitted["head"])
            for spin, count, what in ((self.layer, cfg.num_layers, "layers"), (self.head, cfg.num_heads, "heads")):
                spin.setToolTip(describe.range_tip(lm.name, count, what))
        return super().make_job(session)

    def add_record(self, record: TileStep) -> None:
        if record.walk is not self.walk:
            self.walk = record.walk
            self.memo.forget()
            self.scores.new_walk(record.walk)
            self.blocks.new_walk(record.walk)
        super().add_record(record)

    def clear(self) -> None:
        self.walk = None
        super().clear()

    # ---- theme and fonts
    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.memo.forget()
        self.scores.set_theme(theme, self.unsafe.isChecked())
        self.blocks.set_theme(theme)
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        """Ticks a little smaller than the text, axis labels and titles at its size (font scaling, presentation
        mode); the three KV-tile axes one width so that they line up."""
        self.memo.forget()
        small = QFont(font)
        small.setPointSizeF(font.pointSizeF() * 0.9)
        self.scores.apply_font(font, small)
        self.blocks.apply_font(font, small)
        self.titles.font = QFont(font)
        self._set_title_size(font.pointSizeF())
        self.show_step(self.current)

    def _set_title_size(self, points: float) -> None:
        self.titles.points = points
        for plot in self.themed_plots():
            plot.getPlotItem().titleLabel.setAttr("size", f"{points:.0f}pt")

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self.header.fit(self._header_width())

    def _header_width(self) -> int:
        margins = self.layout().contentsMargins()
        return self.width() - margins.left() - margins.right()

    # ---- rendering one step
    def render(self, r: TileStep | None) -> None:
        unsafe = self.unsafe.isChecked()
        self.scores.update_legend(unsafe)
        if r is None or self.walk is None:
            self._render_empty()
            return
        self._show_axes(True)
        self.scores.update_ticks()
        ink_ = ink(self.theme)
        fa4 = self.fa4.isChecked()
        text = describe.header_html(r, len(self.records), ink_, unsafe=unsafe, fa4=fa4)
        worst = describe.header_html(r, len(self.records), ink_, unsafe=unsafe, fa4=fa4, worst=True)
        self.header.show_text(text, worst, self._header_width())
        self.scores.render(r, unsafe, self._zoom)
        row = self.walk.shown_row(r, self._select_row)
        self.blocks.render(r, row, base2=self.units.value() == "base 2", fa4=fa4)

    def _render_empty(self) -> None:
        ink_ = ink(self.theme)
        hint = self.empty_hint("trace one attention head through the FlashAttention kernel")
        self.header.show_text(describe.muted(hint, ink_), None, self._header_width())
        self.scores.clear()
        self.blocks.clear()
        for plot, title in zip(self.themed_plots(), describe.EMPTY_TITLES, strict=True):
            self.titles.fit(plot, [describe.muted(title, ink_)])
        self.memo.forget()
        self._show_axes(False)

    def _show_axes(self, on: bool) -> None:
        """Axes only with data: empty plots would show pyqtgraph's default range (−600..600, "(x0.001)")."""

        def apply() -> None:
            for plot in self.themed_plots():
                for axis in ("left", "bottom"):
                    plot.getPlotItem().showAxis(axis, on)
            self.scores.show_axes(on)

        self.memo.once("axes", on, apply)

    # ---- tours
    def focus_problem(self, r: TileStep, select: int) -> str | None:
        n = r.walk.trace.n
        return None if 0 <= select < n else f"query row {select} does not exist (rows 0..{n - 1})"

    def set_focus(self, select: int | None = None, zoom: str | None = None) -> None:
        if select is not None and self.current >= 0:
            problem = self.focus_problem(self.records[self.current], select)
            if problem:
                raise ValueError(problem)
        if zoom is not None and zoom not in ("tile", "block", "all"):
            raise ValueError(f"zoom must be tile, block or all, not {zoom!r}")
        if (select, zoom) != (self._select_row, self._zoom):
            self._select_row, self._zoom = select, zoom
            self.show_step(self.current)

    def caption_fields(self, r: TileStep) -> dict:
        row = r.walk.shown_row(r, self._select_row)
        return describe.caption_fields(r, row)

    # ---- export
    def export_data(self) -> dict:
        summary = self.walk.summary() if self.walk is not None else {}
        # steps count from 1 here as on screen (the header, the player); record.step counts from 0
        return {"view": self.name, **summary, "steps": [{**r.as_dict(), "step": r.step + 1} for r in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        return describe.export_table(self.records)
