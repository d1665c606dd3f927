"""View `attention`: step through the FlashAttention kernel's walk over one head of a real model, tile by tile.

Left, the score matrix s = q·kᵀ/√D with the kernel's tile grid over it: tiles done, the current one (accent
outline), pending, never visited (above the causal diagonal: skipped by the loop bounds, hatched) and masked
entries (grey). Right, for the current Q block: the kernel's running max m per row, l and alpha on a log scale,
and how far each row's partial output acc / l still is from the final O. The header gives the shapes, the
backend, the error against a float64 reference with Tri Dao's criterion, tiles visited / skipped and the bytes
naive attention vs FlashAttention moves through HBM. All numbers come from the Qt-free
:mod:`explorer.attention.walk`; this module only draws.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterator

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QImage, QPainterPath, QPen, QTextDocument
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QLabel,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ...attention.options import VIEW as ATTENTION_VIEW
from ...attention.walk import LOG2E, AttentionWalk, TileStep, attention_walk
from ...models.text import visible_token
from ...session import Session
from ..theme import Theme
from .base import View, theme_plot

TOKEN_LABEL_MIN_PX = 1.15  # token texts on the query axis when a row is at least this many font heights tall
DEFAULT_LAYER, DEFAULT_HEAD = 3, 1  # on the demo target: sharp scores, big jumps of the running max
DEFAULT_LENGTH = 128  # the demo prompt alone is a handful of tokens (one tile); continued to 128: a 4×4 grid
# Overlay codes of the score matrix.
DONE, CURRENT, PENDING, NEVER_A, NEVER_B, MASKED, OVERFLOW = range(7)


def _rgba(color: str, alpha: int = 255) -> tuple[int, int, int, int]:
    c = QColor(color)
    return (c.red(), c.green(), c.blue(), alpha)


def _rich_width(rich: str, font: QFont) -> float:
    """Width of a rich-text snippet as a label lays it out (glyphs from fallback fonts, sub/superscripts)."""
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    doc.setDefaultFont(font)
    doc.setHtml(rich)
    return doc.idealWidth()


def _fmt_bytes(n: float) -> str:
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= k:
            return f"{n / k:.3g} {unit}"
    return f"{n:.0f} B"


def _sci(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2g}" if x == 0 or 1e-3 <= abs(x) < 1e4 else f"{x:.1e}"


def _step_lines(values: np.ndarray, n_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Step lines for every row: ``values`` [n_kv, rows]; row r holds values[j, r] over x in [j − ½, j + ½] for the
    first ``n_tiles`` tiles, rows separated by NaN (one item draws them all, connect='finite')."""
    v = values[:n_tiles].T  # [rows, J]
    rows = v.shape[0]
    edges = np.arange(n_tiles, dtype=float)
    x = np.stack([edges - 0.5, edges + 0.5], 1).reshape(-1)
    xs = np.concatenate([np.tile(x, (rows, 1)), np.full((rows, 1), np.nan)], 1)
    ys = np.concatenate([np.repeat(v, 2, axis=1), np.full((rows, 1), np.nan)], 1)
    return xs.reshape(-1), ys.reshape(-1).astype(float)


def _point_lines(values: np.ndarray, n_tiles: int) -> tuple[np.ndarray, np.ndarray]:
    """Polylines through tile centres for every row (values [n_kv, rows]), rows separated by NaN."""
    v = values[:n_tiles].T
    rows = v.shape[0]
    xs = np.concatenate([np.tile(np.arange(n_tiles, dtype=float), (rows, 1)), np.full((rows, 1), np.nan)], 1)
    ys = np.concatenate([v, np.full((rows, 1), np.nan)], 1)
    return xs.reshape(-1), ys.reshape(-1).astype(float)


def _plot(parent: QWidget, bottom: str) -> pg.PlotWidget:
    p = pg.PlotWidget(parent)
    p.setMenuEnabled(False)
    p.setMouseEnabled(False, False)
    p.hideButtons()
    p.setLabel("bottom", bottom)
    return p


class _PaintReadyImage(pg.ImageItem):
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

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.walk: AttentionWalk | None = None
        self._palette = np.zeros((7, 4), np.uint8)
        self._title_pt = 10.0
        self._font = QFont()
        self._tick_key: tuple | None = None
        self._shown: dict[str, object] = {}
        self._titles: dict[int, tuple[str, ...]] = {}
        self._select_row: int | None = None  # a query row chosen by a tour (else the block's busiest row)
        self._zoom: str | None = None  # "tile", "block", "all" (tours) or None: the whole matrix, set per walk

        self.header = QLabel(self)
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)

        # -- the score matrix with the tile grid
        self.matrix = _plot(self, "key j")
        self.matrix.setLabel("left", "query i")
        self.matrix.invertY(True)
        self.matrix.setAspectLocked(True)
        self.scores_img = _PaintReadyImage(axisOrder="row-major")
        # Two overlays, so that a step repaints only a small image: the tiles' states at one pixel per tile
        # (clipped to the matrix: the last tiles may be partial), and per-entry marks that no step changes
        # (masked entries, fp16 overflow), rebuilt only with the walk, the theme or the unsafe toggle.
        self.overlay_clip = QGraphicsRectItem()
        self.overlay_clip.setPen(QPen(Qt.PenStyle.NoPen))
        self.overlay_clip.setFlag(QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape)
        self.overlay_img = _PaintReadyImage(axisOrder="row-major")
        self.overlay_img.setParentItem(self.overlay_clip)
        self.marks_img = _PaintReadyImage(axisOrder="row-major")
        self._marks_key: tuple | None = None
        self.matrix.addItem(self.scores_img)
        self.matrix.addItem(self.overlay_clip)
        self.matrix.addItem(self.marks_img)
        self.cmap = pg.colormap.get("viridis")
        self.colorbar = pg.ColorBarItem(
            values=(0, 1), colorMap=self.cmap, interactive=False, width=14, colorMapMenu=False
        )
        self.colorbar.setImageItem(self.scores_img, insert_in=self.matrix.getPlotItem())
        self.grid = pg.PlotCurveItem(connect="pairs")
        self.block_box = pg.PlotCurveItem()
        self.tile_box = pg.PlotCurveItem()
        self.never_hatch = QGraphicsPathItem()
        self.never_hatch.setPen(QPen(Qt.PenStyle.NoPen))
        for item in (self.never_hatch, self.grid, self.block_box, self.tile_box):
            self.matrix.addItem(item)
        self.matrix.getViewBox().sigResized.connect(self._update_matrix_ticks)
        self.matrix.getViewBox().sigRangeChanged.connect(self._update_matrix_ticks)  # zoom: rows get taller
        self.legend = QLabel(self)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setAlignment(Qt.AlignmentFlag.AlignCenter)

        # -- the current Q block's online-softmax state over its KV tiles
        self.m_plot = _plot(self, "KV tile")
        self.m_rows = self.m_plot.plot([], [], connect="finite")
        self.m_fa4 = self.m_plot.plot([], [], connect="finite")
        self.m_row = self.m_plot.plot([], [], connect="finite")
        self.m_tilemax = pg.ScatterPlotItem(size=7, symbol="o")
        self.m_plot.addItem(self.m_tilemax)

        self.l_plot = _plot(self, "KV tile")
        self.l_plot.setLogMode(x=False, y=True)
        self.l_plot.setLabel("left", "l, α (log)")  # short axis labels: they must fit short plots at large text
        self.one_line = pg.InfiniteLine(pos=0.0, angle=0, movable=False)  # log10(1)
        self.l_plot.addItem(self.one_line)
        self.l_rows = self.l_plot.plot([], [], connect="finite")
        self.l_row = self.l_plot.plot([], [], connect="finite", symbol="o", symbolSize=5)
        self.alpha_pts = self.l_plot.plot([], [], pen=None, symbol="o", symbolSize=4)
        self.alpha_row = self.l_plot.plot([], [], pen=None, symbol="d", symbolSize=10)

        self.d_plot = _plot(self, "KV tile")
        self.d_plot.setLabel("left", "‖acc/l − O‖")
        self.d_rows = self.d_plot.plot([], [], connect="finite")
        self.d_mean = self.d_plot.plot([], [], connect="finite", symbol="o", symbolSize=6)
        self.d_row = self.d_plot.plot([], [], connect="finite")

        self.plots = (self.matrix, self.m_plot, self.l_plot, self.d_plot)
        for plot in self.plots:
            plot.getViewBox().sigResized.connect(lambda *_, p=plot: self._apply_title(p))
        self.tile_lines = [pg.InfiniteLine(angle=90, movable=False) for _ in range(3)]
        for plot, line in zip((self.m_plot, self.l_plot, self.d_plot), self.tile_lines, strict=True):
            line.setZValue(-10)
            plot.addItem(line, ignoreBounds=True)
        left = QWidget(self)
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.setSpacing(2)
        lv.addWidget(self.matrix, 1)
        lv.addWidget(self.legend)
        right = QSplitter(Qt.Orientation.Vertical, self)
        for p in (self.m_plot, self.l_plot, self.d_plot):
            right.addWidget(p)
        right.setSizes([340, 340, 300])
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([560, 440])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addWidget(split, 1)

        self.build_controls()
        self.set_theme(theme)

    # ---- computation (Qt-free job)
    def make_job(self, session: Session) -> Callable[[], Iterator[TileStep]]:
        lm, prompt_ids = session.target, session.prompt_ids()
        cfg = lm.config
        for spin, count, what in ((self.layer, cfg.num_layers, "layers"), (self.head, cfg.num_heads, "heads")):
            if spin.value() >= count:  # out of range for this model: its last one
                spin.setValue(count - 1)
            spin.setToolTip(f"{lm.name} has {count} {what}: 0 .. {count - 1}")
        args = (
            self.layer.value(),
            self.head.value(),
            self.block_m.value(),
            self.block_n.value(),
            self.causal.isChecked(),
            self.dtype.value(),
            self.backend.value(),
            self.length.value(),
        )
        return lambda: attention_walk(lm, prompt_ids, *args)

    def add_record(self, record: TileStep) -> None:
        if record.walk is not self.walk:
            self.walk = record.walk
            self._new_walk()
        super().add_record(record)

    def clear(self) -> None:
        self.walk = None
        super().clear()

    # ---- theme and fonts
    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self._shown = {}
        dark = theme.name == "dark"
        self._alpha_color = "#8cd17d" if dark else "#3a9a3a"
        pal = np.zeros((7, 4), np.uint8)
        pal[PENDING] = _rgba(theme.base, 190)
        pal[NEVER_A] = _rgba("#25282e" if dark else "#eceef1")
        pal[NEVER_B] = _rgba("#4a4f58" if dark else "#b9bec6")  # the hatch lines
        pal[MASKED] = _rgba("#5d636c" if dark else "#a3a9b1")
        pal[OVERFLOW] = _rgba("#ff4df5" if dark else "#d400c8")  # magenta: apart from the accent and viridis
        self._palette = pal
        for plot in self.plots:
            theme_plot(plot, theme)
        self.colorbar.axis.setPen(theme.muted)
        self.colorbar.axis.setTextPen(theme.text)
        self.colorbar.axis.setLabel("score s", color=theme.text)
        current = QColor(theme.accent)
        current.setAlpha(70)
        for line in self.tile_lines:
            line.setPen(pg.mkPen(current, width=10))
        self._set_grid_pen()
        self.never_hatch.setBrush(
            QBrush(QColor(pal[NEVER_B][0], pal[NEVER_B][1], pal[NEVER_B][2]), Qt.BrushStyle.BDiagPattern)
        )
        self.block_box.setPen(pg.mkPen(theme.accent, width=1.5, style=Qt.PenStyle.DashLine))
        self.tile_box.setPen(pg.mkPen(theme.accent, width=3.5))
        faint = QColor(theme.muted)
        faint.setAlpha(90)
        self.m_rows.setPen(pg.mkPen(faint, width=1))
        self.m_row.setPen(pg.mkPen(theme.accent, width=2.5))
        self.m_fa4.setPen(pg.mkPen(theme.text, width=1.5, style=Qt.PenStyle.DashLine))
        self.m_tilemax.setPen(pg.mkPen(theme.bar, width=1.5))
        self.m_tilemax.setBrush(None)
        bar_faint = QColor(theme.bar)
        bar_faint.setAlpha(80)
        self.l_rows.setPen(pg.mkPen(bar_faint, width=1))
        self.l_row.setPen(pg.mkPen(theme.bar, width=2.5))
        self.l_row.setSymbolBrush(theme.bar)
        self.l_row.setSymbolPen(None)
        alpha_faint = QColor(self._alpha_color)
        alpha_faint.setAlpha(110)
        self.alpha_pts.setSymbolPen(None)
        self.alpha_pts.setSymbolBrush(alpha_faint)
        self.alpha_row.setSymbolPen(pg.mkPen(theme.base, width=1))
        self.alpha_row.setSymbolBrush(self._alpha_color)
        self.one_line.setPen(pg.mkPen(theme.muted, width=1, style=Qt.PenStyle.DotLine))
        self.d_rows.setPen(pg.mkPen(faint, width=1))
        self.d_mean.setPen(pg.mkPen(theme.bar, width=2.5))
        self.d_mean.setSymbolBrush(theme.bar)
        self.d_mean.setSymbolPen(None)
        self.d_row.setPen(pg.mkPen(theme.accent, width=2))
        self._update_legend()
        super().set_theme(theme)

    def _set_grid_pen(self) -> None:
        """Tile boundaries: crisp for a few tiles, fainter as the grid gets dense (the scores stay readable)."""
        tiles = max(self.walk.trace.tile_state.shape) if self.walk is not None else 1
        color = QColor(self.theme.text if self.theme.name == "dark" else "#ffffff")
        color.setAlpha(255 if tiles <= 12 else 150 if tiles <= 24 else 100)
        self.grid.setPen(pg.mkPen(color, width=1))

    def apply_font(self, font: QFont) -> None:
        """Plots do not inherit the application font: push it (font scaling, presentation mode)."""
        self._font = QFont(font)
        self._shown = {}
        self._title_pt = font.pointSizeF()
        small = QFont(font)
        small.setPointSizeF(font.pointSizeF() * 0.9)
        for plot in self.plots:
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setStyle(tickFont=small)
                plot.getAxis(axis).label.setFont(font)
        fm = QFontMetrics(small)
        width = fm.horizontalAdvance("0.0001") + QFontMetrics(font).height() + 14
        for plot in (self.m_plot, self.l_plot, self.d_plot):  # one width: the three KV-tile axes line up
            plot.getAxis("left").setWidth(width)
        self.colorbar.axis.setStyle(tickFont=small)
        self.colorbar.axis.label.setFont(font)
        self.legend.setFont(font)
        self._tick_key = None
        self.show_step(self.current)

    def _once(self, key: str, value, fn: Callable[[], None]) -> None:
        """Call ``fn`` only when ``value`` changed since the last call for ``key``: stepping touches only what
        changes (fast, and few calls into Qt). The memo is forgotten on theme, font and trace changes."""
        if self._shown.get(key, self) != value:
            fn()
            self._shown[key] = value

    def _set_title(self, plot: pg.PlotWidget, *variants: str) -> None:
        """Show the first of ``variants`` (rich text, longest first) that fits the plot's width, now and whenever
        the plot is resized (titles do not wrap)."""
        self._titles[id(plot)] = variants
        self._apply_title(plot)

    def _apply_title(self, plot: pg.PlotWidget) -> None:
        variants = self._titles.get(id(plot))
        if not variants:
            return
        font = QFont(self._font)
        font.setPointSizeF(self._title_pt)
        vb_width = plot.getViewBox().width()  # the title sits over the view box's column, not the axes'
        room = vb_width - 8 if vb_width > 50 else plot.width() - 24 - plot.getAxis("left").width()
        text = variants[-1]
        for v in variants:
            if _rich_width(v, font) <= room:
                text = v
                break
        self._once(
            f"title{id(plot)}",
            text,
            lambda: plot.getPlotItem().setTitle(text, size=f"{self._title_pt:.0f}pt", color=self.theme.text),
        )

    def _update_legend(self) -> None:
        th, pal = self.theme, self._palette

        def sq(rgba, glyph: str = "■") -> str:
            r, g, b, _ = (int(x) for x in rgba)
            return f"<span style='color:rgb({r},{g},{b}); font-size:130%'>{glyph}</span>"

        mid = self.cmap.map(0.6, mode="byte")
        pending = tuple(int(0.75 * p + 0.25 * c) for p, c in zip(_rgba(th.base), mid, strict=False))
        items = [
            (sq(mid), "done"),
            (f"<span style='color:{th.accent}; font-size:130%'>□</span>", "current tile"),
            (f"<span style='color:{th.accent}'>┅</span>", "its Q block"),
            (sq(pending), "pending"),
            (sq(pal[NEVER_B], "▨"), "never visited (loop bounds)"),
            (sq(pal[MASKED]), "masked (−∞)"),
        ]
        if self.unsafe.isChecked():
            items.append((sq(pal[OVERFLOW]), "exp(s) = inf in fp16"))
        text = " &nbsp;&nbsp; ".join(f"{g}&nbsp;{t}" for g, t in items)
        self._once("legend", text, lambda: self.legend.setText(text))

    # ---- per-walk preparation (once per trace)
    def _new_walk(self) -> None:
        w = self.walk
        self._shown = {}
        tr = w.trace
        n, bm, bn = tr.n, tr.block_m, tr.block_n
        vals = w.scores[w.allowed]
        lo, hi = np.percentile(vals, [1, 99.5]) if vals.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        self._levels = (float(lo), float(hi))
        img = np.where(w.allowed, w.scores, lo).astype(np.float32)
        self.scores_img.setImage(np.ascontiguousarray(img), autoLevels=False, levels=self._levels)
        self.scores_img.setRect(0, 0, n, n)
        nq, nk = tr.tile_state.shape
        self.overlay_img.setImage(np.zeros((nq, nk, 4), np.uint8), autoLevels=False, levels=(0, 255))
        self.overlay_img.setRect(0, 0, nk * bn, nq * bm)  # after an image of the right size: setRect scales by it
        self.overlay_clip.setRect(0, 0, n, n)
        self.marks_img.setImage(np.zeros((n, n, 4), np.uint8), autoLevels=False, levels=(0, 255))
        self.marks_img.setRect(0, 0, n, n)
        self._marks_key = None
        self.colorbar.setLevels(self._levels)
        self._row_block = np.arange(n) // bm
        self._col_block = np.arange(n) // bn
        never = QPainterPath()  # tiles the kernel never visits: hatched by a vector brush, crisp at any size
        for i, j in zip(*np.nonzero(tr.tile_state == 0), strict=True):
            never.addRect(QRectF(j * bn, i * bm, min(bn, n - j * bn), min(bm, n - i * bm)))
        self.never_hatch.setPath(never)
        self._masked = ~w.allowed
        self._overflow = w.allowed & (w.scores.astype(np.float64) > w.unsafe["fp16_threshold"])
        self._step_index = np.full(tr.tile_state.shape, -1, np.int64)  # walk step of each tile, -1 never visited
        for s, (i, j) in enumerate(w.order):
            self._step_index[i, j] = s
        # grid lines at tile boundaries (and the border)
        xs, ys = [], []
        for y in sorted(set(range(0, n, bm)) | {n}):
            xs += [0, n]
            ys += [y, y]
        for x in sorted(set(range(0, n, bn)) | {n}):
            xs += [x, x]
            ys += [0, n]
        self.grid.setData(np.array(xs, float), np.array(ys, float))
        self._set_grid_pen()
        self.matrix.setRange(xRange=(0, n), yRange=(0, n), padding=0.01)
        nkv = tr.tile_state.shape[1]
        for plot in (self.m_plot, self.l_plot, self.d_plot):
            plot.setXRange(-0.6, nkv - 0.4, padding=0)
            ticks = [(j, str(j)) for j in range(0, nkv, max(1, math.ceil(nkv / 16)))]
            plot.getAxis("bottom").setTicks([ticks, []])
        self._block_cache: dict[int, dict] = {}
        self._tick_key = None

    def _block(self, qb: int) -> dict:
        """What the right-hand plots need for Q block ``qb`` (fixed axis ranges for the whole block)."""
        if qb in self._block_cache:
            return self._block_cache[qb]
        w = self.walk
        tr = w.trace
        r0 = qb * tr.block_m
        rows = min(tr.block_m, tr.n - r0)
        m = tr.m[qb, :, :rows]
        tmax = w.tile_rowmax[qb, :, :rows]
        lv = tr.l[qb, :, :rows]
        alpha = tr.alpha[qb, :, :rows]
        dist = w.distance[qb, :, :rows]
        rescales = w.fa2_rescale[qb, :, :rows].sum(0)
        hi_row = int(np.flatnonzero(rescales == rescales.max())[-1])  # the row that rescaled most (last on ties)
        both = np.concatenate([m[~np.isnan(m)], tmax[~np.isnan(tmax)]])
        a_pos = alpha[(alpha > 0) & ~np.isnan(alpha)]
        l_ok = lv[~np.isnan(lv)]
        d_ok = dist[~np.isnan(dist)]
        info = {
            "rows": rows,
            "row": hi_row,
            "m": m,
            "tmax": tmax,
            "l": lv,
            "alpha": np.where(alpha > 0, alpha, np.nan),
            "dist": dist,
            "fa4": w.fa4_max[qb, :, :rows],
            "m_range": (float(both.min()), float(both.max())) if both.size else (0.0, 1.0),
            "l_range": (
                float(min(l_ok.min(), a_pos.min() if a_pos.size else 1.0, 1.0)) if l_ok.size else 0.1,
                float(max(l_ok.max(), 1.0)) if l_ok.size else 10.0,
            ),
            "d_max": float(d_ok.max()) if d_ok.size else 1.0,
        }
        self._block_cache[qb] = info
        return info

    def _update_matrix_ticks(self) -> None:
        """Level of detail: token texts on the query axis when rows are tall enough, else tile boundaries."""
        w = self.walk
        if w is None:
            return
        tr = w.trace
        n = tr.n
        try:
            px = 1.0 / max(self.matrix.getViewBox().viewPixelSize()[1], 1e-9)  # screen pixels per row / key
        except Exception:  # noqa: BLE001 - no geometry yet
            px = 1.0
        small = QFont(self._font)
        small.setPointSizeF(self._font.pointSizeF() * 0.9)
        line = QFontMetrics(small).height()
        tokens = px >= TOKEN_LABEL_MIN_PX * line and len(tr.meta.get("tokens", [])) == n

        def boundaries(block: int, with_n: bool) -> list[tuple[float, str]]:
            every = max(1, math.ceil(3.5 * line / max(px * block, 1e-9)))  # labels at least ~3.5 lines apart
            marks = list(range(0, n, block * every))
            tail = [(float(n), str(n))] if with_n and (n - marks[-1]) * px > 2.5 * line else []
            return [(float(x), str(x)) for x in marks] + tail

        bottom = boundaries(tr.block_n, False)  # N itself at the right end would run under the colour bar
        left = [(i + 0.5, visible_token(t, 12)) for i, t in enumerate(tr.meta["tokens"])] if tokens else None
        key = (tokens, tuple(bottom), self._font.pointSizeF())
        if key == self._tick_key:
            return
        self._tick_key = key
        self.matrix.getAxis("bottom").setTicks([bottom, []])
        if left is not None:
            mono = QFont("DejaVu Sans Mono")
            mono.setStyleHint(QFont.StyleHint.Monospace)
            mono.setPointSizeF(small.pointSizeF())
            self.matrix.getAxis("left").setStyle(tickFont=mono)
            self.matrix.getAxis("left").setTicks([left, []])
            self.matrix.setLabel("left", "query i (token)")
        else:
            self.matrix.getAxis("left").setStyle(tickFont=small)
            self.matrix.getAxis("left").setTicks([boundaries(tr.block_m, True), []])
            self.matrix.setLabel("left", "query i")

    # ---- rendering one step
    def render(self, r: TileStep | None) -> None:
        th = self.theme
        self._update_legend()
        if r is None or self.walk is None:
            self._header_worst = None
            self.header.setText(
                f"<span style='color:{th.muted}'>"
                f"{self.empty_hint('trace one attention head through the FlashAttention kernel')}</span>"
            )
            self.scores_img.clear()
            self.never_hatch.setPath(QPainterPath())
            self.overlay_img.clear()
            self.marks_img.clear()
            self._marks_key = None
            for item in (self.grid, self.block_box, self.tile_box):
                item.setData([], [])
            for item in (self.m_rows, self.m_row, self.m_fa4, self.l_rows, self.l_row, self.d_rows, self.d_mean):
                item.setData([], [])
            for item in (self.d_row, self.m_tilemax, self.alpha_pts, self.alpha_row):
                item.setData([], [])
            for line in self.tile_lines:
                line.hide()
            for plot, title in (
                (self.matrix, "scores s = q·kᵀ/√D"),
                (self.m_plot, "running max m per row"),
                (self.l_plot, "l and α per row"),
                (self.d_plot, "‖O_partial − O‖ per row"),
            ):
                self._set_title(plot, f"<span style='color:{th.muted}'>{title}</span>")
            self._shown = {}
            self._show_axes(False)
            self._fit_header()
            return
        self._show_axes(True)
        self._update_matrix_ticks()
        self._render_header(r)
        self._render_matrix(r)
        self._render_block(r)

    def _show_axes(self, on: bool) -> None:
        """Axes only with data: empty plots would show pyqtgraph's default range (−600..600, "(x0.001)")."""

        def apply() -> None:
            for plot in self.plots:
                for axis in ("left", "bottom"):
                    plot.getPlotItem().showAxis(axis, on)
            self.colorbar.setVisible(on)
            self.legend.setVisible(on)

        self._once("axes", on, apply)

    def _render_header(self, r: TileStep) -> None:
        self._header_worst = self._header_html(r, worst=True)
        self.header.setText(self._header_html(r))
        self._fit_header()

    def _header_html(self, r: TileStep, worst: bool = False) -> str:
        """The header's rich text; ``worst`` gives the longest text any step of this walk can have (the tile note
        of a masked last tile), whose height the header keeps so that the plots below never jump while stepping."""
        th, w = self.theme, r.walk
        meta = w.meta
        n, d = meta["n"], meta["head_dim"]
        nq, nkv = w.trace.tile_state.shape
        masked, last = (True, True) if worst else (r.masked, r.last_in_block)
        q_block, kv_block, rows, keys = r.q_block, r.kv_block, r.rows, r.keys
        if worst:  # the widest numbers: the last tile's
            bm, bn = w.trace.block_m, w.trace.block_n
            q_block, kv_block, rows, keys = nq - 1, nkv - 1, ((nq - 1) * bm, n), ((nkv - 1) * bn, n)
        where = "diagonal tile: entries above the diagonal masked to −∞" if masked else "full tile: no mask needed"
        if last:
            where += " · last tile of this Q block: O = acc / l, LSE = m + log l written"
        gen = n - w.n_prompt
        n_text = f"N = {n}" + (f" ({w.n_prompt} prompt + {gen} generated)" if gen > 0 else "")
        ok = meta["within_2x_sdpa"]
        ratio = meta["error_ratio"]
        ratio_text = "–" if ratio is None else f"{ratio:.2f}"
        verdict = (
            f"<b style='color:{'#2e9e44' if th.name == 'light' else '#7ddc8a'}'>pass</b>"
            if ok
            else f"<b style='color:{th.accent}'>fail</b>"
        )
        hbm = w.hbm
        traffic = f"HBM traffic: naive {_fmt_bytes(hbm['naive_bytes'])} vs tiled {_fmt_bytes(hbm['flash_bytes'])} "
        if hbm["ratio"] >= 1.05:
            traffic += f"(<b>{hbm['ratio']:.1f}×</b> less)"
        else:  # small Q blocks: K and V are read once per Q block, as often as naive attention reads them
            traffic += (
                f"<span style='color:{th.muted}'>(K, V re-read once per Q block: a larger Block M saves more)</span>"
            )
        step = len(self.records)
        lines = [
            f"<b style='font-size:125%'>step {(step if worst else r.step + 1)} of {step}</b> &nbsp; "
            f"Q block <b>{q_block}</b> (rows {rows[0]}–{rows[1] - 1}) × KV tile <b>{kv_block}</b> "
            f"(keys {keys[0]}–{keys[1] - 1}) &nbsp; <span style='color:{th.muted}'>{where}</span>",
            f"layer {meta['layer']} · head {meta['head']} (kv head {meta['kv_head']}) · {n_text} · D = {d} · "
            f"blocks {meta['block_m']}×{meta['block_n']} → {nq}×{nkv} tiles · {meta['dtype']} · "
            f"<b>{html.escape(w.backend_label)}</b> · tiles visited {meta['tiles_visited']}, "
            f"skipped {meta['tiles_skipped']}",
            f"max |O − O<sub>float64</sub>|: kernel {_sci(meta['max_abs_error'])}, torch SDPA in {meta['dtype']} "
            f"{_sci(meta['sdpa_max_abs_error'])} → ratio {ratio_text} (Tri Dao: ≤ 2×) {verdict} &nbsp;·&nbsp; "
            + traffic,
        ]
        if self.unsafe.isChecked():
            u = w.unsafe
            lines.append(
                f"unsafe softmax (exp(s) without max subtraction) in fp16: <b>{u['fp16_inf']}</b> of {u['scores']} "
                f"terms → inf (s > {u['fp16_threshold']:.2f}, max s = {_sci(u['max_score'])}), "
                f"{u['fp16_nan_rows']} of {u['rows']} rows NaN"
            )
        if self.fa4.isChecked():
            lines.append(
                f"FA-4 conditional rescaling (τ = 8 in log2 units): <b>{int(w.fa4_rescale.sum())}</b> rescales "
                f"instead of FA2's {int(w.fa2_rescale.sum())} (α &lt; 1) over "
                f"{int((~np.isnan(w.tile_rowmax)).sum())} row·tile updates"
            )
        return "<br>".join(lines)

    def _fit_header(self) -> None:
        """A fixed height for the header: that of the longest text any step of the walk can show, wrapped at the
        view's current width (a word-wrapped label inside splitters and stacks gets no height-for-width from the
        layouts, and a height that followed each step's text would make the plots jump)."""
        margins = self.layout().contentsMargins()
        width = self.width() - margins.left() - margins.right()
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(self.header.font())
        doc.setHtml(getattr(self, "_header_worst", None) or self.header.text())
        if width > 50:
            doc.setTextWidth(width)
        fm = QFontMetrics(self.header.font())
        need = int(math.ceil(doc.size().height() + 0.3 * fm.lineSpacing())) + 4
        if need != self.header.minimumHeight() or need != self.header.maximumHeight():
            self.header.setFixedHeight(need)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_header()

    def _render_matrix(self, r: TileStep) -> None:
        w = self.walk
        tr = w.trace
        n, bm, bn = tr.n, tr.block_m, tr.block_n
        idx = self._step_index
        code = np.where(idx < 0, NEVER_A, np.where(idx < r.step, DONE, np.where(idx == r.step, CURRENT, PENDING)))
        self.overlay_img.setImage(self._palette[code.astype(np.uint8)], autoLevels=False, levels=(0, 255))
        self._render_marks()
        r0, r1 = r.rows
        c0, c1 = r.keys
        self.tile_box.setData([c0, c1, c1, c0, c0], [r0, r0, r1, r1, r0])
        x1 = min((int(np.flatnonzero(idx[r.q_block] >= 0).max()) + 1) * bn, n)  # the block's last visited tile
        self.block_box.setData([0, x1, x1, 0, 0], [r0, r0, r1, r1, r0])
        muted = self.theme.muted
        self._set_title(
            self.matrix,
            f"scores s = q·kᵀ/√D &nbsp;<span style='color:{muted}'>"
            f"({bm}×{bn} tiles, one program per Q block walks its row left to right)</span>",
            f"scores s = q·kᵀ/√D &nbsp;<span style='color:{muted}'>({bm}×{bn} tiles)</span>",
            "scores s = q·kᵀ/√D",
        )
        if self._zoom is not None:
            if self._zoom == "tile":
                mx, my = bn / 2, bm / 2
                rng = ((max(c0 - mx, 0), min(c1 + mx, n)), (max(r0 - my, 0), min(r1 + my, n)))
            elif self._zoom == "block":
                rng = ((0, x1), (r0, r1))
            else:
                rng = ((0, n), (0, n))
            self._once("zoom", rng, lambda: self.matrix.setRange(xRange=rng[0], yRange=rng[1], padding=0.02))

    def _render_marks(self) -> None:
        """Masked entries (over every tile the kernel visits) and, with the unsafe toggle, the fp16 overflows:
        the same at every step, so drawn once per walk, theme and toggle."""
        unsafe = self.unsafe.isChecked()
        key = (id(self.walk), unsafe, self._palette.tobytes())
        if key == self._marks_key:
            return
        self._marks_key = key
        visited = (self._step_index >= 0)[self._row_block[:, None], self._col_block[None, :]]
        marks = np.zeros((*self._masked.shape, 4), np.uint8)
        marks[self._masked & visited] = self._palette[MASKED]
        if unsafe:
            marks[self._overflow] = self._palette[OVERFLOW]
        self.marks_img.setImage(marks, autoLevels=False, levels=(0, 255))

    def _render_block(self, r: TileStep) -> None:
        th, b = self.theme, self._block(r.q_block)
        J = r.kv_block + 1
        row = b["row"]
        if self._select_row is not None and r.rows[0] <= self._select_row < r.rows[1]:
            row = self._select_row - r.rows[0]

        def move_lines() -> None:
            for line in self.tile_lines:
                line.setValue(r.kv_block)
                line.show()

        self._once("tile_lines", r.kv_block, move_lines)
        row_label = f"row {r.rows[0] + row}"
        tokens = self.walk.meta.get("tokens") or []
        if r.rows[0] + row < len(tokens):
            row_label += f" “{html.escape(visible_token(tokens[r.rows[0] + row], 10))}”"
        row_short = f"row {r.rows[0] + row}"
        base2 = self.units.value() == "base 2"
        f = LOG2E if base2 else 1.0
        unit = "log₂ units (s·log₂e, as the kernel's exp2)" if base2 else "natural-log units"

        # m: step lines for all rows, the highlighted row, this tile's own row max
        self.m_rows.setData(*_step_lines(b["m"] * f, J))
        self.m_row.setData(*_step_lines(b["m"][:, row : row + 1] * f, J))
        tm = b["tmax"][r.kv_block] * f
        ok = ~np.isnan(tm)
        self.m_tilemax.setData(np.full(int(ok.sum()), float(r.kv_block)), tm[ok])
        if self.fa4.isChecked():
            self.m_fa4.setData(*_step_lines(b["fa4"][:, row : row + 1] * f, J))
        else:
            self.m_fa4.setData([], [])
        lo, hi = b["m_range"]
        pad = 0.06 * (hi - lo or 1.0)
        m_range = ((lo - pad) * f, (hi + pad) * f)
        self._once("m_range", m_range, lambda: self.m_plot.setYRange(*m_range, padding=0))
        short = "log₂" if base2 else "nat"
        self._once("m_label", unit, lambda: self.m_plot.setLabel("left", f"m ({short})"))
        fa4_note = f" &nbsp;<span style='color:{th.text}'>┅ FA-4</span>" if self.fa4.isChecked() else ""
        self._set_title(
            self.m_plot,
            f"running max m, Q block {r.q_block}: &nbsp;<span style='color:{th.accent}'>━ {row_label}</span> &nbsp;"
            f"<span style='color:{th.muted}'>━ all {b['rows']} rows</span> &nbsp;"
            f"<span style='color:{th.bar}'>○ rowmax(s) of this tile</span>{fa4_note}",
            f"m: &nbsp;<span style='color:{th.accent}'>━ {row_short}</span> &nbsp;"
            f"<span style='color:{th.muted}'>━ rows</span> &nbsp;"
            f"<span style='color:{th.bar}'>○ tile rowmax</span>{fa4_note}",
            f"m: &nbsp;<span style='color:{th.accent}'>━ {row_short}</span> &nbsp;"
            f"<span style='color:{th.bar}'>○ max</span>",
        )

        # l and alpha, log scale (alpha = 0 on a row's first tile: nothing to rescale yet, not drawn)
        def set_dots(dots: str | None) -> None:  # a single tile: points, not lines
            for item in (self.l_rows, self.d_rows):
                item.setSymbol(dots)
                item.setSymbolSize(4)
                item.setSymbolPen(None)
                item.setSymbolBrush(item.opts["pen"].color())

        self._once("dots", J == 1, lambda: set_dots("o" if J == 1 else None))
        self.l_rows.setData(*_point_lines(b["l"], J))
        self.l_row.setData(*_point_lines(b["l"][:, row : row + 1], J))
        a = b["alpha"][:J]
        jj = np.repeat(np.arange(J, dtype=float)[:, None], a.shape[1], 1)
        ok = ~np.isnan(a)
        self.alpha_pts.setData(jj[ok], a[ok].astype(float))
        ar = a[:, row]
        ok = ~np.isnan(ar)
        self.alpha_row.setData(np.arange(J, dtype=float)[ok], ar[ok].astype(float))
        lo, hi = b["l_range"]
        l_range = (math.log10(lo) - 0.15, math.log10(hi) + 0.15)
        self._once("l_range", l_range, lambda: self.l_plot.setYRange(*l_range, padding=0))
        self._set_title(
            self.l_plot,
            f"<span style='color:{th.bar}'>━ l = Σ exp(s − m)</span> &nbsp;"
            f"<span style='color:{self._alpha_color}'>◆ α = exp(m<sub>old</sub> − m<sub>new</sub>)</span> &nbsp;"
            f"bold: {row_label}",
            f"<span style='color:{th.bar}'>━ l</span> &nbsp;<span style='color:{self._alpha_color}'>◆ α</span> "
            f"&nbsp;bold: {row_short}",
        )

        # distance of the partial output acc / l from the final O
        self.d_rows.setData(*_point_lines(b["dist"], J))
        mean = np.nanmean(b["dist"][:J], axis=1, keepdims=True) if b["rows"] else np.zeros((J, 1))
        self.d_mean.setData(*_point_lines(mean, J))
        self.d_row.setData(*_point_lines(b["dist"][:, row : row + 1], J))
        d_top = b["d_max"] * 1.06 or 1.0
        self._once("d_range", d_top, lambda: self.d_plot.setYRange(0, d_top, padding=0))
        final = f" → {_sci(r.max_distance)} at the last tile" if r.last_in_block else ""
        self._set_title(
            self.d_plot,
            f"‖acc/l − O<sub>final</sub>‖: &nbsp;<span style='color:{th.bar}'>━ mean</span> &nbsp;"
            f"<span style='color:{th.accent}'>━ {row_label}</span> &nbsp;"
            f"<span style='color:{th.muted}'>━ each row</span>{final}",
            f"‖acc/l − O‖: &nbsp;<span style='color:{th.bar}'>━ mean</span> &nbsp;"
            f"<span style='color:{th.accent}'>━ {row_short}</span>",
        )

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
        w = r.walk
        meta = w.meta
        nan = float("nan")
        b = self._block(r.q_block) if self.walk is w else None
        row = b["row"] if b is not None else 0
        if self._select_row is not None and r.rows[0] <= self._select_row < r.rows[1]:
            row = self._select_row - r.rows[0]
        return {
            "q_block": r.q_block,
            "kv_block": r.kv_block,
            "rows": f"{r.rows[0]}–{r.rows[1] - 1}",
            "keys": f"{r.keys[0]}–{r.keys[1] - 1}",
            "row": r.rows[0] + row,
            "tile": "diagonal (masked)" if r.masked else "full",
            "rescales": r.rescales,
            "fa4_rescales": r.fa4_rescales,
            "min_alpha": nan if r.min_alpha is None else r.min_alpha,
            "mean_distance": nan if r.mean_distance is None else r.mean_distance,
            "max_distance": nan if r.max_distance is None else r.max_distance,
            "n": meta["n"],
            "tiles_visited": meta["tiles_visited"],
            "tiles_skipped": meta["tiles_skipped"],
            "tiles_total": meta["tiles_visited"] + meta["tiles_skipped"],
            "hbm_ratio": w.hbm["ratio"],
            "error_ratio": nan if meta["error_ratio"] is None else meta["error_ratio"],
            "fa2_total": int(w.fa2_rescale.sum()),
            "fa4_total": int(w.fa4_rescale.sum()),
        }

    # ---- export
    def export_data(self) -> dict:
        summary = self.walk.summary() if self.walk is not None else {}
        return {"view": self.name, **summary, "steps": [r.as_dict() for r in self.records]}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = [
            "step",
            "q_block",
            "kv_block",
            "state",
            "row_start",
            "row_end",
            "key_start",
            "key_end",
            "mean_m",
            "mean_l",
            "min_alpha",
            "mean_distance",
            "max_distance",
            "rescales",
            "fa4_rescales",
        ]
        rows = []
        for r in self.records:
            d = r.as_dict()
            rows.append(
                [
                    r.step,
                    r.q_block,
                    r.kv_block,
                    d["state"],
                    r.rows[0],
                    r.rows[1],
                    r.keys[0],
                    r.keys[1],
                    r.mean_m,
                    r.mean_l,
                    r.min_alpha,
                    r.mean_distance,
                    r.max_distance,
                    r.rescales,
                    r.fa4_rescales,
                ]
            )
        return header, rows
