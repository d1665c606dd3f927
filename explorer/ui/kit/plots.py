"""Plots for showing, not exploring: built, themed, fonted and titled one way in every view."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QWidget

from ..theme import Theme


def static_plot(parent: QWidget, title: str, bottom: str | None = None) -> pg.PlotWidget:
    """A plot for showing, not exploring: no mouse zoom, no context menu, no SI prefixes; its title is kept so
    that a theme change can recolour it."""
    plot = pg.PlotWidget(parent)
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
    """Plots do not inherit the application font: push it to the ticks and axis labels."""
    for axis in ("left", "bottom", "right"):
        plot.getAxis(axis).setStyle(tickFont=font)
        plot.getAxis(axis).label.setFont(font)


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
        # The title is centred over the view box's column, which is the plot less its left axis (not the view
        # box's own width: a long title widens that column, pushing the plot past its cell).
        left = plot.getAxis("left")
        room = plot.width() - (left.width() if left.isVisible() else 0) - 8
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
        return title

    def refit(self, plot: pg.PlotWidget) -> None:
        variants = self._variants.get(plot)
        if variants is not None:
            self.fit(plot, variants)
