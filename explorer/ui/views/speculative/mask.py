"""The tree attention mask panel: which of [root, nodes...] each one saw during verification (a causal triangle for
a chain), with the position ids and the KV slots kept as its caption."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QLabel, QWidget

from ....speculative import describe
from ....speculative.records import StepRecord
from ...kit import TitleFitter, static_plot
from ...theme import Theme


class MaskPanel:
    def __init__(self, parent: QWidget, titles: TitleFitter):
        self.titles = titles
        self.font = QFont()
        self.n = 0  # cells a side of the mask shown (0: none)
        self.plot = static_plot(parent, describe.MASK_TITLES[0])
        self.plot.invertY(True)
        self.plot.setAspectLocked(True)
        self.plot.getViewBox().sigResized.connect(lambda *_: self.ticks())
        self.image = pg.ImageItem(axisOrder="row-major")
        self.plot.addItem(self.image)
        self.caption = QLabel(parent)
        self.caption.setWordWrap(True)

    def set_theme(self, theme: Theme) -> None:
        colors = [pg.mkColor(theme.window).getRgb()[:3], pg.mkColor(theme.bar).getRgb()[:3]]
        self.image.setLookupTable(np.array(colors, dtype=np.uint8))

    def clear(self) -> None:
        self.image.clear()
        self.caption.setText("")

    def render(self, r: StepRecord) -> None:
        n = len(r.tree.tokens) + 1
        mask = r.mask if r.mask is not None else np.tril(np.ones((n, n), dtype=bool))
        self.image.setImage(np.ascontiguousarray(mask.astype(np.uint8)), levels=(0, 1), autoLevels=False)
        self.image.setRect(0, 0, n, n)
        pad = max(0.04 * n, 0.15)  # the border cells whole, not cut by the frame
        self.plot.setRange(xRange=(-pad, n + pad), yRange=(-pad, n + pad), padding=0)
        self.n = n
        self.ticks()
        self.caption.setText(describe.mask_caption(r))

    def fit_title(self) -> None:
        self.titles.fit(self.plot, describe.MASK_TITLES)

    def ticks(self) -> None:
        """Cell i spans [i, i + 1]: its whole-number label in the middle (0 = the root), thinned to fit."""
        n = self.n
        if not n:
            return
        vb = self.plot.getViewBox()
        side = max(min(vb.width(), vb.height()), 40.0)
        every = max(1, int(np.ceil(n * 1.6 * QFontMetrics(self.font).horizontalAdvance("00") / side)))
        every = next(e for e in (1, 2, 5, 10, 20, 50, 100) if e >= every)
        ticks = [(i + 0.5, str(i)) for i in range(0, n, every)]
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setTicks([ticks, []])
