"""View `generate`: step through decoding — the text so far with the current token marked, the top-k next-token
distribution with the chosen token highlighted, and entropy / chosen probability over all steps. The run is
explorer.models.job's, the words explorer.models.describe's; the view lays out its panels."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QSplitter, QVBoxLayout, QWidget

from ....models import describe
from ....models.generate import GenerateRecord
from ....models.job import GenerationRunMeta
from ....models.options import GENERATE
from ...kit import show_axes
from ...theme import Theme
from ..base import View
from .bars import NextTokenBars
from .text import TokenText
from .trend import EntropyTrend


class GenerateView(View):
    name = "generate"
    title = "Generate"
    schema = GENERATE
    meta: GenerationRunMeta | None

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.header = QLabel(self)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.text = TokenText(self)
        self.bars = NextTokenBars(self)
        self.trend = EntropyTrend(self)

        right = QSplitter(Qt.Orientation.Vertical, self)
        right.addWidget(self.bars.plot)
        right.addWidget(self.trend.plot)
        right.setSizes([640, 300])
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(self.text)
        split.addWidget(right)
        split.setSizes([450, 550])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addWidget(split, 1)
        self.finish_init()

    # ---- theme and font
    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        return self.bars.plot, self.trend.plot

    def set_theme(self, theme: Theme) -> None:
        self.trend.set_theme(theme)
        self.bars.set_theme(theme)
        super().set_theme(theme)

    def apply_font(self, font: QFont) -> None:
        """Plots do not inherit the application font: push it (font scaling, presentation mode)."""
        self.text.apply_font(font)
        super().apply_font(font)
        self.trend.title_pt = font.pointSizeF()
        self.trend.set_title(self.theme)
        self.bars.apply_font(font)
        self.show_step(self.current)

    # ---- rendering
    def render(self, r: GenerateRecord | None) -> None:
        th = self.theme
        for plot in self.themed_plots():
            show_axes(plot, r is not None)
        show_axes(self.trend.plot, r is not None, ("right",))
        if r is None:
            self.header.setText(f"<span style='color:{th.muted}'>{self.empty_hint('decode')}</span>")
            self.text.setHtml("")
            self.bars.clear()
            self.trend.clear()
            return
        self.header.setText(describe.header_html(r, len(self.records), accent=th.accent, muted=th.muted,
                                                 seconds=not self.deterministic))  # fmt: skip
        self.text.show_html(self._text_html(r))
        self.bars.show(r, th)
        self.trend.show(self.records, r)

    def _text_html(self, r: GenerateRecord) -> str:
        decode = self.meta.decode if self.meta is not None and self.meta.decode is not None else (lambda ids: "")
        th = self.theme
        return describe.text_html(decode(r.context_ids[: r.n_prompt]), decode(r.context_ids[r.n_prompt :]),
                                  r.token_text, muted=th.muted, text=th.text, highlight_bg=th.highlight_bg)  # fmt: skip

    # ---- tours
    def caption_fields(self, r: GenerateRecord) -> dict:
        return describe.caption_fields(r)

    # ---- export
    def export_data(self) -> dict:
        meta = self.meta.to_json() if self.meta is not None else {}
        # steps count from 1 here as on screen (the header, the player, the trend's x axis); record.step counts from 0
        return {"view": self.name, **meta, "steps": [{**r.as_dict(), "step": r.step + 1} for r in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = ["step", "token_id", "token_text", "chosen_prob", "chosen_rank", "entropy_bits", "top1_text",
                  "top1_prob", "seconds"]  # fmt: skip
        rows = [self._row(r) for r in self.records]
        return header, rows

    @staticmethod
    def _row(r: GenerateRecord) -> list:
        return [r.step + 1, r.token_id, r.token_text, r.chosen_prob, r.chosen_rank + 1, r.entropy_bits, r.top_texts[0],
                float(r.top_probs[0]), r.seconds]  # fmt: skip
