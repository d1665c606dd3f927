"""The amp view's left column: log2 |g| against the FP16 bands (unscaled, scaled, the fp32 reference) and the band
counts under it."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from ....amp.bands import HIST_MAX, HIST_MIN
from ....amp.describe import HIST_EDGES, STOP_COLOR, Gradients, band_html, hist_title_variants, nonfinite_note
from ...kit import TitleFitter, show_axes, static_plot
from ...theme import Theme

TITLE = "log2 |gradient| against the FP16 range"
# log2|g| edges of the FP16 bands: flushed below 2^-25 (rounds to 0), subnormal [2^-24, 2^-14), normal up to 65504
BAND_SPANS = (("flushed to 0", HIST_MIN - 1, -25, "#9aa1ab"), ("subnormal", -24, -14, "#f2c14e"),
              ("normal", -14, 16, "#2a9d8f"), ("overflow", 16, HIST_MAX + 2, "#e4572e"))  # fmt: skip


class GradientHistogram(QWidget):
    """The histogram over all layer groups with the FP16 bands shaded behind it (its legend is its title), and the
    band counts below it."""

    def __init__(self, parent: QWidget, titles: TitleFitter):
        super().__init__(parent)
        self.titles = titles
        self.plot = static_plot(self, TITLE, "log2 |g|")
        self.regions = []
        for label, lo, hi, color in BAND_SPANS:
            c = pg.mkColor(color)
            c.setAlpha(45)
            region = pg.LinearRegionItem((lo, hi), movable=False, brush=c, pen=pg.mkPen(None))
            region.setZValue(-10)
            self.plot.addItem(region)
            text = pg.TextItem(label, anchor=(0.5, 0), color=color)
            self.plot.addItem(text)
            self.regions.append((region, text, lo, hi))
        # the fp32 reference first, under the fp16 curves: it shows where it runs on below them (under 2^-24)
        self.reference_curve = self.plot.plot([], [], stepMode="center")
        self.unscaled_curve = self.plot.plot([], [], stepMode="center")
        self.scaled_curve = self.plot.plot([], [], stepMode="center")
        self.titles.follow(self.plot)
        self.nonfinite_text = pg.TextItem(anchor=(1, 0))  # "86% inf/NaN (not drawn)": the bins hold finite values
        self.plot.addItem(self.nonfinite_text, ignoreBounds=True)
        self.band_text = QLabel(self)
        self.band_text.setWordWrap(True)
        self.band_text.setMinimumHeight(4 * self.band_text.fontMetrics().height())
        lv = QVBoxLayout(self)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.plot, 1)
        lv.addWidget(self.band_text)

    def set_theme(self, theme: Theme) -> None:
        self.unscaled_curve.setPen(pg.mkPen(theme.bar, width=2))
        self.scaled_curve.setPen(pg.mkPen(theme.accent, width=2))
        self.reference_curve.setPen(pg.mkPen(theme.muted, width=3, style=Qt.PenStyle.DotLine))
        self.nonfinite_text.setColor(STOP_COLOR)

    def apply_font(self, font: QFont) -> None:
        for text in (self.nonfinite_text, *(t for _, t, _, _ in self.regions)):
            text.setFont(font)

    def fit_title(self, theme: Theme, reference: bool | None) -> None:
        """The legend as the title, in the longest wording that fits (``reference``: None with no step shown)."""
        variants = [TITLE] if reference is None else hist_title_variants(reference, theme.bar, theme.accent,
                                                                         theme.muted)  # fmt: skip
        self.titles.fit(self.plot, variants)

    def show_axes(self, on: bool) -> None:
        show_axes(self.plot, on)
        for region, text, _, _ in self.regions:
            region.setVisible(on)
            text.setVisible(on)

    def clear(self) -> None:
        for c in (self.unscaled_curve, self.scaled_curve, self.reference_curve):
            c.setData([], [])
        self.nonfinite_text.setText("")
        self.band_text.setText("")

    def show(self, g: Gradients, scale: float, accent: str) -> None:
        h_un, h_sc = g.hist_unscaled.sum(0).astype(float), g.hist_scaled.sum(0).astype(float)
        self.unscaled_curve.setData(HIST_EDGES, h_un)
        self.scaled_curve.setData(HIST_EDGES, h_sc)
        tops = [float(h_un.max()), float(h_sc.max()), 1.0]
        if g.lost is not None:
            h_ref = g.hist_reference.sum(0).astype(float)
            self.reference_curve.setData(HIST_EDGES, h_ref)
            tops.append(float(h_ref.max()))
        else:
            self.reference_curve.setData([], [])
        top = max(tops)
        self.plot.setXRange(HIST_MIN - 1, HIST_MAX + 2, padding=0)
        self.plot.setYRange(0, top * 1.15, padding=0)
        for _region, text, lo, hi in self.regions:
            if hi > HIST_MAX + 1:  # the overflow band: most of it is off the axis, its label sits at the right edge
                text.setAnchor((1, 0))
                text.setPos(HIST_MAX + 2, top * 1.14)
            else:
                text.setPos((max(lo, HIST_MIN - 1) + min(hi, HIST_MAX + 2)) / 2, top * 1.14)
        note = nonfinite_note(g)
        self.nonfinite_text.setText(note)
        if note:
            self.nonfinite_text.setPos(HIST_MAX + 1.6, top * 0.9)
        self.band_text.setText(band_html(g, scale, accent))
