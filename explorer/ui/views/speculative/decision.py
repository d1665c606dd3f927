"""The decision panel: for the selected tree node, the target's p against the draft's q over the top tokens, and
the caption that says what the acceptance rule did with the node (or why the walk never decided on it)."""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QLabel, QWidget

from ....speculative import describe
from ....speculative.records import Decision, StepRecord
from ...kit import TitleFitter, static_plot
from ...theme import Theme


def shown_tokens(decision: Decision, limit: int = 6) -> list[int]:
    """The tokens the bars compare: the top 4 of p then of q (at most ``limit``, 6 where there is room), the
    decided token always among them."""
    ids: list[int] = []
    for arr in (decision.p_top_ids, decision.q_top_ids):
        if arr is not None:
            ids += [int(i) for i in arr[:4] if int(i) not in ids]
    ids = ids[: max(limit, 1)]
    if decision.token not in ids:
        ids[-1:] = [decision.token]
    return ids


def rows_that_fit(height_px: float, line_px: int) -> int:
    """How many token rows a plot ``height_px`` high can label without two labels overlapping (1 to 6: at least
    the decided token's p against q)."""
    return int(np.clip(height_px // max(line_px, 1), 1, 6))


def _as_map(ids: np.ndarray | None, probs: np.ndarray | None) -> dict[int, float]:
    if ids is None or probs is None:
        return {}
    return {int(i): float(p) for i, p in zip(ids, probs, strict=True)}


class DecisionPanel:
    def __init__(self, parent: QWidget, titles: TitleFitter):
        self.titles = titles
        self.plot = static_plot(parent, "decision")
        self.plot.setLabel("bottom", "probability")
        self.plot.invertY(True)
        self.p_bars = pg.BarGraphItem(x0=[], y=[], height=0.36, width=[])
        self.q_bars = pg.BarGraphItem(x0=[], y=[], height=0.36, width=[])
        self.plot.addItem(self.p_bars)
        self.plot.addItem(self.q_bars)
        self.plot.addLegend(offset=(-10, 10))
        self.caption = QLabel(parent)
        self.caption.setWordWrap(True)
        self._last: tuple | None = None  # the last render's arguments: a resize shows as many rows as then fit
        self._rows = 6
        self.plot.getViewBox().sigResized.connect(self._on_resize)

    def _on_resize(self, *_) -> None:
        if self._last is not None and self._fitting_rows(self._last[-1]) != self._rows:
            self.render(*self._last)

    def _fitting_rows(self, font: QFont) -> int:
        left = self.plot.getAxis("left")
        return rows_that_fit(self.plot.getViewBox().height(), QFontMetrics(left.style["tickFont"] or font).height())

    def set_theme(self, theme: Theme) -> None:
        self.p_bars.setOpts(brush=theme.bar, pen=None)
        self.q_bars.setOpts(brush=theme.accent, pen=None)

    def clear(self) -> None:
        """No run: no bars, no token labels, the plain title."""
        self.plot.getAxis("left").setTicks([[], []])
        self.titles.fit(self.plot, ["decision"])
        self.caption.setText("")
        self._last = None
        self._no_bars()

    def _no_bars(self) -> None:
        self.p_bars.setOpts(x0=[], y=[], width=[])
        self.q_bars.setOpts(x0=[], y=[], width=[])

    def render(self, r: StepRecord, selected: int | None, accept: str, decode, theme: Theme, font: QFont) -> None:
        """The decision on node ``selected`` of step ``r`` under rule ``accept``; ``font``: the view's, for tick
        labels when the axis has none of its own."""
        decision = next((d for d in r.decisions if d.node == selected), None)
        self._last = None
        if decision is None:
            self._undecided(r, selected)
            return
        self._last = (r, selected, accept, decode, theme, font)
        self._rows = self._fitting_rows(font)
        self.plot.showAxis("left", True)
        self.plot.showAxis("bottom", True)
        decode = decode or (lambda ids: str(ids))
        ids = shown_tokens(decision, self._rows)  # a short plot compares fewer tokens, each one labelled
        p_map = _as_map(decision.p_top_ids, decision.p_top_probs)
        q_map = _as_map(decision.q_top_ids, decision.q_top_probs)
        y = np.arange(len(ids), dtype=float)
        self.p_bars.setOpts(x0=np.zeros(len(ids)), y=y - 0.19, width=[p_map.get(i, 0.0) for i in ids])
        self.q_bars.setOpts(x0=np.zeros(len(ids)), y=y + 0.19, width=[q_map.get(i, 0.0) for i in ids])
        widest = max([p_map.get(i, 0.0) for i in ids] + [q_map.get(i, 0.0) for i in ids] + [1e-3])
        self.plot.setXRange(0, widest * 1.05, padding=0)
        self.plot.setYRange(-0.6, len(ids) - 0.4, padding=0)
        labels = describe.decision_labels(ids, decision.token, decode)
        left = self.plot.getAxis("left")
        left.setTicks([list(enumerate(labels))])
        metrics = QFontMetrics(left.style["tickFont"] or font)
        left.setWidth(max(metrics.horizontalAdvance(t) for t in labels) + 16)
        self.titles.fit(self.plot, describe.decision_titles(decision, theme))
        self.caption.setText(describe.decision_html(r, decision, accept, decode, theme))

    def _undecided(self, r: StepRecord, selected: int | None) -> None:
        """No decision on the selected node (or nothing drafted): no bars, no stale token labels, and why."""
        self._no_bars()
        self.plot.getAxis("left").setTicks([[], []])
        self.plot.showAxis("left", False)
        self.plot.showAxis("bottom", False)
        self.titles.fit(self.plot, describe.no_decision_titles(r, selected))
        if selected is None or not len(r.tree.tokens):
            self.caption.setText("")
        else:
            self.caption.setText(html.escape(describe.why_undecided(r, selected)))
