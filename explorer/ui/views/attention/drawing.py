"""Small drawing helpers of the attention view's panels: a memo that skips unchanged Qt calls, an image item Qt
paints without converting, colours as RGBA, and per-row series as one NaN-separated polyline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QImage, QTextDocument

from ....attention.describe import Ink
from ...kit import TitleFitter, static_plot
from ...theme import BASE_POINT_SIZE, Theme


class Memo:
    """Call a function only when its value changed since the last call under the same key: stepping touches only
    what changes (fast, and few calls into Qt). Forgotten on theme, font and trace changes."""

    def __init__(self) -> None:
        self._shown: dict[str, Any] = {}

    def once(self, key: str, value: Any, fn: Callable[[], None]) -> None:
        if key not in self._shown or self._shown[key] != value:
            fn()
            self._shown[key] = value

    def forget(self) -> None:
        self._shown = {}


LABEL_MARGIN = 4  # QGraphicsTextItem's document margin: a plot title's text sits this far inside its label


class DocumentTitles(TitleFitter):
    """The kit's title fitting with this view's measure: a variant's rich text laid out as a document in the view's
    font at the title's size, against the width of the plot's view box. (The kit's measure, the drawn label against
    the plot less its left axis, picks other variants in this view's plots: the shipped tour would change.)"""

    def __init__(self, color: str):
        super().__init__(color)
        self.font = QFont()
        self.points = BASE_POINT_SIZE  # the titles' size: the application font's, set by the view's apply_font
        self._fitted: dict[pg.PlotWidget, list[str]] = {}

    def fit(self, plot: pg.PlotWidget, variants: list[str]) -> str:
        font = QFont(self.font)
        font.setPointSizeF(self.points)
        # The title sits over the view box's column: the plot less its left axis. Not the view box's own width: a
        # title too long widens that column (a label's minimum width is its text's), so the view box's width then
        # says it fits while the plot is pushed past the window's edge ("row 95 “·if” ━" and no more, at 1280x720).
        left = plot.getAxis("left")
        room = plot.width() - (left.width() if left.isVisible() else 0) - 8
        # the label draws the text inside its document's margin on each side
        title = next((v for v in variants if _rich_width(v, font) + 2 * LABEL_MARGIN <= room), variants[-1])
        plot.setProperty("title", title)
        plot.setTitle(title, color=self.color)
        self._fitted[plot] = variants
        return title

    def refit(self, plot: pg.PlotWidget) -> None:
        if plot in self._fitted:
            self.fit(plot, self._fitted[plot])


def _rich_width(rich: str, font: QFont) -> float:
    """Width of a rich-text snippet as a label lays it out (glyphs from fallback fonts, sub/superscripts)."""
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    doc.setDefaultFont(font)
    doc.setHtml(rich)
    return doc.idealWidth()


def si_plot(parent, title: str, bottom: str) -> pg.PlotWidget:
    """The kit's static plot with pyqtgraph's SI prefixes on its axes, as this view has always drawn them (a small
    distance axis reads "(x1e-06)")."""
    p = static_plot(parent, title, bottom)
    for axis in ("left", "bottom"):
        p.getAxis(axis).enableAutoSIPrefix(True)
    return p


class PaintReadyImage(pg.ImageItem):
    """An ImageItem whose rendered image is in a format Qt paints without converting. pyqtgraph keeps a colormapped
    image as an indexed QImage and an RGBA one as non-premultiplied ARGB, and Qt converted the 2048×2048 score
    matrix on every paint (10 of 34 ms per frame); converted once per render instead."""

    FAST = {
        QImage.Format.Format_Indexed8: QImage.Format.Format_ARGB32_Premultiplied,
        QImage.Format.Format_ARGB32: QImage.Format.Format_ARGB32_Premultiplied,
    }

    def render(self) -> None:
        super().render()
        if self.qimage is not None and self.qimage.format() in self.FAST:
            self.qimage = self.qimage.convertToFormat(self.FAST[self.qimage.format()])


def ink(theme: Theme) -> Ink:
    """The colours the attention view's texts are written in, for ``theme``."""
    dark = theme.name == "dark"
    return Ink(
        text=theme.text,
        muted=theme.muted,
        accent=theme.accent,
        bar=theme.bar,
        alpha="#8cd17d" if dark else "#3a9a3a",
        ok="#7ddc8a" if dark else "#2e9e44",
    )


def rgba(color: str, alpha: int = 255) -> tuple[int, int, int, int]:
    c = QColor(color)
    return (c.red(), c.green(), c.blue(), alpha)


def faint(color: str, alpha: int) -> QColor:
    c = QColor(color)
    c.setAlpha(alpha)
    return c


def step_lines(values: np.ndarray, n_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Step lines for every row: ``values`` [n_kv, rows]; row r holds values[j, r] over x in [j − ½, j + ½] for the
    first ``n_tiles`` tiles, rows separated by NaN (one item draws them all, connect='finite')."""
    v = values[:n_tiles].T  # [rows, J]
    rows = v.shape[0]
    edges = np.arange(n_tiles, dtype=float)
    x = np.stack([edges - 0.5, edges + 0.5], 1).reshape(-1)
    xs = np.concatenate([np.tile(x, (rows, 1)), np.full((rows, 1), np.nan)], 1)
    ys = np.concatenate([np.repeat(v, 2, axis=1), np.full((rows, 1), np.nan)], 1)
    return xs.reshape(-1), ys.reshape(-1).astype(float)


def point_lines(values: np.ndarray, n_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Polylines through tile centres for every row (values [n_kv, rows]), rows separated by NaN."""
    v = values[:n_tiles].T
    rows = v.shape[0]
    xs = np.concatenate([np.tile(np.arange(n_tiles, dtype=float), (rows, 1)), np.full((rows, 1), np.nan)], 1)
    ys = np.concatenate([v, np.full((rows, 1), np.nan)], 1)
    return xs.reshape(-1), ys.reshape(-1).astype(float)
