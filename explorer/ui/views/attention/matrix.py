"""The score matrix s = q·kᵀ/√D with the kernel's tile grid over it: tiles done, the current one (accent
outline), pending, never visited (above the causal diagonal: skipped by the loop bounds, hatched) and masked
entries (grey); its legend below it."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QGraphicsRectItem, QLabel, QVBoxLayout, QWidget

from ....attention import describe
from ....attention.walk import AttentionWalk, TileStep
from ....models.text import visible_token
from ...kit import TitleFitter
from ...theme import Theme
from .drawing import Memo, PaintReadyImage, ink, rgba, si_plot

TOKEN_LABEL_MIN_PX = 1.15  # token texts on the query axis when a row is at least this many font heights tall
# Overlay codes of the score matrix.
DONE, CURRENT, PENDING, NEVER_A, NEVER_B, MASKED, OVERFLOW = range(7)


def tile_palette(theme: Theme) -> np.ndarray:
    """uint8 [7, 4]: the RGBA of each overlay code (DONE and CURRENT transparent: the scores show through)."""
    dark = theme.name == "dark"
    pal = np.zeros((7, 4), np.uint8)
    pal[PENDING] = rgba(theme.base, 190)
    pal[NEVER_A] = rgba("#25282e" if dark else "#eceef1")
    pal[NEVER_B] = rgba("#4a4f58" if dark else "#b9bec6")  # the hatch lines
    pal[MASKED] = rgba("#5d636c" if dark else "#a3a9b1")
    pal[OVERFLOW] = rgba("#ff4df5" if dark else "#d400c8")  # magenta: apart from the accent and viridis
    return pal


class ScoreMatrix(QWidget):
    """The score matrix plot and its legend. Two overlays, so that a step repaints only a small image: the tiles'
    states at one pixel per tile (clipped to the matrix: the last tiles may be partial), and per-entry marks that
    no step changes (masked entries, fp16 overflow), rebuilt only with the walk, the theme or the unsafe toggle."""

    def __init__(self, memo: Memo, titles: TitleFitter, parent: QWidget | None = None):
        super().__init__(parent)
        self.memo, self.titles = memo, titles
        self.walk: AttentionWalk | None = None
        self._cleared = False
        self.palette = np.zeros((7, 4), np.uint8)
        self.font_ = QFont()
        self._tick_key: tuple | None = None
        self._marks_key: tuple | None = None
        self.plot = si_plot(self, describe.SCORES_TITLE, "key j")
        self.plot.setLabel("left", "query i")
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self._build_items()
        self.legend = QLabel(self)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.plot, 1)
        lay.addWidget(self.legend)

    def _build_items(self) -> None:
        self.scores_img = PaintReadyImage(axisOrder="row-major")
        self.overlay_clip = QGraphicsRectItem()
        self.overlay_clip.setPen(QPen(Qt.PenStyle.NoPen))
        self.overlay_clip.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape)
        self.overlay_img = PaintReadyImage(axisOrder="row-major")
        self.overlay_img.setParentItem(self.overlay_clip)
        self.marks_img = PaintReadyImage(axisOrder="row-major")
        for item in (self.scores_img, self.overlay_clip, self.marks_img):
            self.plot.addItem(item)
        self.cmap = pg.colormap.get("viridis")
        self.colorbar = pg.ColorBarItem(
            values=(0, 1), colorMap=self.cmap, interactive=False, width=14, colorMapMenu=False
        )
        self.colorbar.setImageItem(self.scores_img, insert_in=self.plot.getPlotItem())
        self.grid = pg.PlotCurveItem(connect="pairs")
        self.block_box = pg.PlotCurveItem()
        self.tile_box = pg.PlotCurveItem()
        self.never_hatch = QGraphicsPathItem()
        self.never_hatch.setPen(QPen(Qt.PenStyle.NoPen))
        for item in (self.never_hatch, self.grid, self.block_box, self.tile_box):
            self.plot.addItem(item)
        self.plot.getViewBox().sigResized.connect(self.update_ticks)
        self.plot.getViewBox().sigRangeChanged.connect(self.update_ticks)  # zoom: rows get taller

    # ---- theme and fonts
    def set_theme(self, theme: Theme, unsafe: bool) -> None:
        self.theme = theme
        self.palette = pal = tile_palette(theme)
        self.colorbar.axis.setPen(theme.muted)
        self.colorbar.axis.setTextPen(theme.text)
        self.colorbar.axis.setLabel("score s", color=theme.text)
        self.set_grid_pen()
        self.never_hatch.setBrush(
            QBrush(QColor(pal[NEVER_B][0], pal[NEVER_B][1], pal[NEVER_B][2]), Qt.BrushStyle.BDiagPattern)
        )
        self.block_box.setPen(pg.mkPen(theme.accent, width=1.5, style=Qt.PenStyle.DashLine))
        self.tile_box.setPen(pg.mkPen(theme.accent, width=3.5))
        self.update_legend(unsafe)

    def set_grid_pen(self) -> None:
        """Tile boundaries: crisp for a few tiles, fainter as the grid gets dense (the scores stay readable)."""
        tiles = max(self.walk.trace.tile_state.shape) if self.walk is not None else 1
        color = QColor(self.theme.text if self.theme.name == "dark" else "#ffffff")
        color.setAlpha(255 if tiles <= 12 else 150 if tiles <= 24 else 100)
        self.grid.setPen(pg.mkPen(color, width=1))

    def apply_font(self, font: QFont, small: QFont) -> None:
        self.font_ = QFont(font)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setStyle(tickFont=small)
            self.plot.getAxis(axis).label.setFont(font)
        self.colorbar.axis.setStyle(tickFont=small)
        self.colorbar.axis.label.setFont(font)
        self.legend.setFont(font)
        self._tick_key = None

    def update_legend(self, unsafe: bool) -> None:
        th, pal = self.theme, self.palette
        mid = self.cmap.map(0.6, mode="byte")
        colors = {
            "done": mid,
            "pending": tuple(int(0.75 * p + 0.25 * c) for p, c in zip(rgba(th.base), mid, strict=False)),
            "never": pal[NEVER_B],
            "masked": pal[MASKED],
            "overflow": pal[OVERFLOW],
        }
        text = describe.legend_html(colors, ink(th), unsafe)
        self.memo.once("legend", text, lambda: self.legend.setText(text))

    # ---- per-walk preparation (once per trace)
    def new_walk(self, w: AttentionWalk) -> None:
        self.walk = w
        self._cleared = False
        tr = w.trace
        n, bm, bn = tr.n, tr.block_m, tr.block_n
        self.scores_img.setImage(w.score_image(), autoLevels=False, levels=w.score_levels)
        self.scores_img.setRect(0, 0, n, n)
        nq, nk = tr.tile_state.shape
        self.overlay_img.setImage(np.zeros((nq, nk, 4), np.uint8), autoLevels=False, levels=(0, 255))
        self.overlay_img.setRect(0, 0, nk * bn, nq * bm)  # after an image of the right size: setRect scales by it
        self.overlay_clip.setRect(0, 0, n, n)
        self.marks_img.setImage(np.zeros((n, n, 4), np.uint8), autoLevels=False, levels=(0, 255))
        self.marks_img.setRect(0, 0, n, n)
        self._marks_key = None
        self.colorbar.setLevels(w.score_levels)
        never = QPainterPath()  # tiles the kernel never visits: hatched by a vector brush, crisp at any size
        for i, j in zip(*np.nonzero(tr.tile_state == 0), strict=True):
            never.addRect(QRectF(j * bn, i * bm, min(bn, n - j * bn), min(bm, n - i * bm)))
        self.never_hatch.setPath(never)
        xs, ys = [], []  # grid lines at tile boundaries (and the border)
        for y in sorted(set(range(0, n, bm)) | {n}):
            xs += [0, n]
            ys += [y, y]
        for x in sorted(set(range(0, n, bn)) | {n}):
            xs += [x, x]
            ys += [0, n]
        self.grid.setData(np.array(xs, float), np.array(ys, float))
        self.set_grid_pen()
        self.plot.setRange(xRange=(0, n), yRange=(0, n), padding=0.01)
        self._tick_key = None

    # ---- one step
    def render(self, r: TileStep, unsafe: bool, zoom: str | None) -> None:
        if self._cleared:  # an empty step was shown since the walk arrived
            self.new_walk(self.walk)
        w = self.walk
        tr = w.trace
        n, bm, bn = tr.n, tr.block_m, tr.block_n
        idx = w.step_index
        code = np.where(idx < 0, NEVER_A, np.where(idx < r.step, DONE, np.where(idx == r.step, CURRENT, PENDING)))
        self.overlay_img.setImage(self.palette[code.astype(np.uint8)], autoLevels=False, levels=(0, 255))
        self.render_marks(unsafe)
        r0, r1 = r.rows
        c0, c1 = r.keys
        self.tile_box.setData([c0, c1, c1, c0, c0], [r0, r0, r1, r1, r0])
        x1 = w.block_key_end(r.q_block)
        self.block_box.setData([0, x1, x1, 0, 0], [r0, r0, r1, r1, r0])
        self.titles.fit(self.plot, list(describe.matrix_titles(r, ink(self.theme))))
        if zoom is not None:
            if zoom == "tile":
                mx, my = bn / 2, bm / 2
                rng = ((max(c0 - mx, 0), min(c1 + mx, n)), (max(r0 - my, 0), min(r1 + my, n)))
            elif zoom == "block":
                rng = ((0, x1), (r0, r1))
            else:
                rng = ((0, n), (0, n))
            self.memo.once("zoom", rng, lambda: self.plot.setRange(xRange=rng[0], yRange=rng[1], padding=0.02))

    def render_marks(self, unsafe: bool) -> None:
        """Masked entries (over every tile the kernel visits) and, with the unsafe toggle, the fp16 overflows:
        the same at every step, so drawn once per walk, theme and toggle."""
        w = self.walk
        key = (id(w), unsafe, self.palette.tobytes())
        if key == self._marks_key:
            return
        self._marks_key = key
        tr = w.trace
        rows, cols = np.arange(tr.n) // tr.block_m, np.arange(tr.n) // tr.block_n
        visited = (w.step_index >= 0)[rows[:, None], cols[None, :]]
        marks = np.zeros((*w.allowed.shape, 4), np.uint8)
        marks[~w.allowed & visited] = self.palette[MASKED]
        if unsafe:
            marks[w.fp16_overflow] = self.palette[OVERFLOW]
        self.marks_img.setImage(marks, autoLevels=False, levels=(0, 255))

    def clear(self) -> None:
        """Empty the matrix; the walk is kept, and its images come back with the next step rendered."""
        self._cleared = True
        self.scores_img.clear()
        self.never_hatch.setPath(QPainterPath())
        self.overlay_img.clear()
        self.marks_img.clear()
        self._marks_key = None
        for item in (self.grid, self.block_box, self.tile_box):
            item.setData([], [])

    def show_axes(self, on: bool) -> None:
        self.colorbar.setVisible(on)
        self.legend.setVisible(on)

    def update_ticks(self) -> None:
        """Level of detail: token texts on the query axis when rows are tall enough, else tile boundaries."""
        w = self.walk
        if w is None:
            return
        tr = w.trace
        n = tr.n
        try:
            px = 1.0 / max(self.plot.getViewBox().viewPixelSize()[1], 1e-9)  # screen pixels per row / key
        except Exception:  # noqa: BLE001 - no geometry yet
            px = 1.0
        small = QFont(self.font_)
        small.setPointSizeF(self.font_.pointSizeF() * 0.9)
        line = QFontMetrics(small).height()
        tokens = tr.meta.tokens
        by_token = px >= TOKEN_LABEL_MIN_PX * line and len(tokens) == n

        def boundaries(block: int, with_n: bool) -> list[tuple[float, str]]:
            every = max(1, math.ceil(3.5 * line / max(px * block, 1e-9)))  # labels at least ~3.5 lines apart
            marks = list(range(0, n, block * every))
            tail = [(float(n), str(n))] if with_n and (n - marks[-1]) * px > 2.5 * line else []
            return [(float(x), str(x)) for x in marks] + tail

        bottom = boundaries(tr.block_n, False)  # N itself at the right end would run under the colour bar
        key = (by_token, tuple(bottom), self.font_.pointSizeF())
        if key == self._tick_key:
            return
        self._tick_key = key
        self.plot.getAxis("bottom").setTicks([bottom, []])
        left = self.plot.getAxis("left")
        if by_token:
            mono = QFont("DejaVu Sans Mono")
            mono.setStyleHint(QFont.StyleHint.Monospace)
            mono.setPointSizeF(small.pointSizeF())
            left.setStyle(tickFont=mono)
            left.setTicks([[(i + 0.5, visible_token(t, 12)) for i, t in enumerate(tokens)], []])
            self.plot.setLabel("left", "query i (token)")
        else:
            left.setStyle(tickFont=small)
            left.setTicks([boundaries(tr.block_m, True), []])
            self.plot.setLabel("left", "query i")

