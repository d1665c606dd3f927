"""The generate view's next-token distribution: the top candidates as horizontal bars, the chosen one in the
accent colour, each labelled with its token and probability."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QWidget

from ....models.describe import bar_label
from ....models.generate import GenerateRecord
from ....models.job import SHOW_TOP
from ....models.text import visible_token
from ...kit import static_plot
from ...theme import Theme


class NextTokenBars:
    def __init__(self, parent: QWidget):
        self.font_source = parent  # whose font sizes the token axis until the view's font is applied
        self.plot = static_plot(parent, f"next-token distribution (top {SHOW_TOP})", "probability")
        self.plot.invertY(True)
        self.plot.setXRange(0, 1.0, padding=0.02)
        self.plot.setYRange(-0.6, SHOW_TOP - 0.4, padding=0)
        self.bars = pg.BarGraphItem(x0=np.zeros(0), y=np.zeros(0), height=0.72, width=np.zeros(0))
        self.plot.addItem(self.bars)
        self.texts = [pg.TextItem(anchor=(0, 0.5)) for _ in range(SHOW_TOP)]
        for t in self.texts:
            self.plot.addItem(t)

    def set_theme(self, theme: Theme) -> None:
        for t in self.texts:
            t.setColor(theme.text)

    def apply_font(self, font: QFont) -> None:
        """Tokens on the axis in a monospace font (after the shared font_plot); probabilities in the view's."""
        tick_font = QFont("DejaVu Sans Mono")
        tick_font.setStyleHint(QFont.StyleHint.Monospace)
        tick_font.setPointSizeF(font.pointSizeF())
        self.plot.getAxis("left").setStyle(tickFont=tick_font)
        for t in self.texts:
            t.setFont(QFont(font))

    def clear(self) -> None:
        self.bars.setOpts(x0=np.zeros(0), y=np.zeros(0), width=np.zeros(0), brushes=[])
        for t in self.texts:
            t.setText("")
        self.plot.getAxis("left").setTicks([[]])

    def show(self, r: GenerateRecord, theme: Theme) -> None:
        k = len(r.top_ids)
        chosen = r.top_ids == r.token_id
        brushes = [pg.mkBrush(theme.accent if c else theme.bar) for c in chosen]
        self.bars.setOpts(x0=np.zeros(k), y=np.arange(k, dtype=float), width=r.top_probs.astype(float),
                          brushes=brushes, pens=[None] * k)  # fmt: skip
        labels = [visible_token(t) for t in r.top_texts]
        left = self.plot.getAxis("left")
        left.setTicks([list(enumerate(labels))])
        # pyqtgraph drops tick labels wider than the axis: size the axis for the longest token.
        metrics = QFontMetrics(left.style["tickFont"] or self.font_source.font())
        left.setWidth(max(metrics.horizontalAdvance(t) for t in labels) + 18)
        for i, t in enumerate(self.texts):
            if i < k:
                p = float(r.top_probs[i])
                text, inside = bar_label(p)
                t.setText(text)
                t.setAnchor((1.05, 0.5) if inside else (-0.05, 0.5))
                t.setColor(theme.accent_text if inside else theme.text)
                t.setPos(p, i)
            else:
                t.setText("")
