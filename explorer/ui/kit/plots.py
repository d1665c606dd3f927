"""Plots for showing, not exploring: built, themed, fonted and titled one way in every view."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QWidget

from ..theme import Theme


def _line_height(axis: pg.AxisItem) -> int:
    return QFontMetrics(axis.style["tickFont"] or axis.font()).height()


def _fitting_spacing(axis: pg.AxisItem, spacing, min_val, max_val, size):
    """pyqtgraph's tick levels, the major spacing grown (×2, ×5, ×10, …) until its labels fit one under another:
    pyqtgraph always draws its major level, however short the plot (presentation mode at 720 lines stacked
    "1.0 0.8 0.6 …" into one blot)."""
    levels = spacing(min_val, max_val, size)
    if not levels or not max_val > min_val:
        return levels
    line = _line_height(axis)

    def fits(step: float) -> bool:
        return ((max_val - min_val) / step + 1) * line <= size

    if fits(levels[0][0]):
        return levels
    major = levels[0][0]
    return [(next((major * f for f in (2, 5, 10, 20, 50, 100, 200, 500) if fits(major * f)), major * 1000), 0)]


def _fitting_specs(axis: pg.AxisItem, specs, p):
    """Explicit ticks too: those closer than a text line to the one kept before are left out of this drawing
    (the ticks set stay as set)."""
    levels = axis._tickLevels
    if levels is None or not axis.range[1] > axis.range[0]:
        return specs(p)
    line = _line_height(axis)
    px_per_unit = axis.size().height() / (axis.range[1] - axis.range[0])
    thinned = []
    for level in levels:
        kept: list = []
        for value, text in sorted(level, key=lambda tick: tick[0]):
            if not kept or (value - kept[-1][0]) * px_per_unit >= line:
                kept.append((value, text))
        thinned.append(kept)
    axis._tickLevels = thinned
    try:
        return specs(p)
    finally:
        axis._tickLevels = levels


def fitting_axis(axis: pg.AxisItem) -> pg.AxisItem:
    """A vertical axis whose tick labels never overlap (a plot's, a colour bar's): automatic ticks grow their
    spacing, explicit ones are thinned as drawn. Set on the instance, over pyqtgraph's own methods."""
    if axis.orientation in ("left", "right"):
        spacing, specs = axis.tickSpacing, axis.generateDrawSpecs
        axis.tickSpacing = lambda lo, hi, size: _fitting_spacing(axis, spacing, lo, hi, size)
        axis.generateDrawSpecs = lambda p: _fitting_specs(axis, specs, p)
        axis.picture = None  # drawn again with the rule
    return axis


def static_plot(parent: QWidget, title: str, bottom: str | None = None) -> pg.PlotWidget:
    """A plot for showing, not exploring: no mouse zoom, no context menu, no SI prefixes, vertical tick labels that
    never overlap; its title is kept so that a theme change can recolour it."""
    plot = pg.PlotWidget(parent)
    for side in ("left", "right"):
        fitting_axis(plot.getAxis(side))
    plot.setMenuEnabled(False)
    plot.setMouseEnabled(False, False)
    plot.hideButtons()
    plot.setProperty("title", title)
    plot.setTitle(title)
    if bottom:
        plot.setLabel("bottom", bottom)
    for axis in ("left", "bottom"):
        plot.getAxis(axis).enableAutoSIPrefix(False)
    return plot


def theme_plot(plot: pg.PlotWidget, theme: Theme) -> None:
    """Background, axes and title in the theme's colours."""
    plot.setBackground(theme.base)
    for axis in ("left", "bottom", "right"):
        ax = plot.getAxis(axis)
        ax.setPen(theme.muted)
        ax.setTextPen(theme.text)
    title = plot.property("title")
    if title:
        plot.setTitle(title, color=theme.text)
    else:
        plot.getPlotItem().titleLabel.setAttr("color", theme.text)


def font_plot(plot: pg.PlotWidget, font: QFont) -> None:
    """Plots do not inherit the application font: push it to the ticks, axis labels and title (pyqtgraph's title
    stays 11 pt otherwise: small beside presentation mode's text)."""
    for axis in ("left", "bottom", "right"):
        plot.getAxis(axis).setStyle(tickFont=font)
        plot.getAxis(axis).label.setFont(font)
    bottom = plot.getAxis("bottom")  # a line of text high: pyqtgraph measures a label's ink, cutting "g" and "p"
    bottom.textHeight = QFontMetrics(font).height()
    bottom._updateHeight()
    title = plot.getPlotItem().titleLabel
    title.setText(title.text, size=f"{font.pointSizeF():.0f}pt")  # kept by later setText / setTitle calls


def show_axes(plot: pg.PlotWidget, on: bool, axes: tuple[str, ...] = ("left", "bottom")) -> None:
    """Axes only with data: an empty plot would show pyqtgraph's default range (−600..600, "(x0.001)")."""
    for axis in axes:
        plot.getPlotItem().showAxis(axis, on)


class TitleFitter:
    """Plot titles that fit: each plot gets a list of variants, longest first, and shows the first one whose
    drawn width fits the plot (a pyqtgraph title never wraps, and its minimum width would push a grid past the
    window's edge). Titles are chosen again whenever a plot's view box is resized."""

    def __init__(self, color: str):
        self.color = color  # the theme's text colour; set it again on a theme change
        self._variants: dict[pg.PlotWidget, list[str]] = {}

    def follow(self, plot: pg.PlotWidget) -> None:
        """Refit ``plot``'s title when its size changes (the first render may come before the final layout)."""
        plot.getViewBox().sigResized.connect(lambda *_: self.refit(plot))

    def fit(self, plot: pg.PlotWidget, variants: list[str]) -> str:
        """Show the first (rich-text) title of ``variants`` that fits ``plot``; returns the one shown."""
        # The title is centred over the view box's column, which is the plot less its side axes (not the view
        # box's own width: a long title widens that column, pushing the plot and its right axis past its cell).
        sides = (plot.getAxis(side) for side in ("left", "right"))
        room = plot.width() - sum(axis.width() for axis in sides if axis.isVisible()) - 3  # the layout's own 2 px
        label = plot.getPlotItem().titleLabel
        title = variants[-1]
        for variant in variants:  # measured as drawn (its HTML sets its own size), not estimated
            label.setText(variant, color=self.color)
            if label.item.boundingRect().width() <= room:
                title = variant
                break
        plot.setProperty("title", title)
        plot.setTitle(title, color=self.color)
        self._variants[plot] = variants
        item = plot.getPlotItem()
        if item.geometry().width() > plot.width():  # grown to a longer title's minimum once: back to the plot's size
            item.setGeometry(QRectF(0, 0, plot.width(), plot.height()))
        return title

    def refit(self, plot: pg.PlotWidget) -> None:
        variants = self._variants.get(plot)
        if variants is not None:
            self.fit(plot, variants)
