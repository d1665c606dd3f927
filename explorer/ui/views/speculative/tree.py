"""The draft tree panel: nodes by depth with elbow edges, the accepted path and the rejected node in their origin
colours, the rest faded; labels where they fit (the most important first), every node's full text on hover."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QWidget

from ....speculative import describe
from ....speculative.describe import ORIGIN_COLORS
from ....speculative.records import StepRecord
from ...kit import TitleFitter, static_plot
from ...theme import Theme

NODE_PX = 14  # tree node size in pixels
TRUNK = 0.14  # elbow edges turn this far (in depth units) left of the children's column; labels stop before it


def layout_tree(r: StepRecord) -> tuple[np.ndarray, np.ndarray]:
    """x = depth, y = leaf order (parents centred over their children); entry 0 is the root."""
    n = len(r.tree.tokens)
    children: dict[int, list[int]] = {i: [] for i in range(-1, n)}
    for i, p in enumerate(r.tree.parent):
        children[int(p)].append(i)
    ys = np.zeros(n + 1)
    next_leaf = [0.0]

    def place(node: int) -> float:
        kids = children[node]
        if not kids:
            y = next_leaf[0]
            next_leaf[0] += 1
        else:
            y = float(np.mean([place(k) for k in kids]))
        ys[node + 1] = y
        return y

    place(-1)
    xs = np.concatenate([[0], r.tree.depth]).astype(float)
    return xs, ys


@dataclass
class Frame:
    """Where the tree sits in the plot: the view ranges and what one depth, one row and one label measure."""

    x_lo: float
    x_hi: float
    depth_max: int
    lines: int  # lines per node label: 2 (token, then q and p) when the rows are tall enough
    depth_px: float
    row_px: float
    label_rows: float  # a label's height in rows: it sits just above its row
    node_px: float


class TreePanel:
    """The tree plot and its items; ``on_select(node)`` is called when a node is clicked, ``on_resize()`` when the
    plot's size changes (the labels are placed for its size)."""

    def __init__(self, parent: QWidget, titles: TitleFitter, on_select: Callable[[int], None],
                 on_resize: Callable[[], None]):  # fmt: skip
        self.titles = titles
        self.on_select = on_select
        self.plot = static_plot(parent, describe.TREE_TITLE)
        self.plot.hideAxis("left")
        self.plot.setLabel("bottom", "depth")
        self.plot.invertY(True)
        self.edges = pg.PlotDataItem(connect="pairs")
        self.nodes = pg.ScatterPlotItem(symbol="s", size=NODE_PX, pxMode=True, hoverable=True, tip=self.node_tip)
        self.nodes.sigClicked.connect(self._on_node_clicked)
        self.tips: dict[int, str] = {}  # node (-1: the root) -> its full description, shown on hover
        self.font = QFont()
        self.plot.getViewBox().sigResized.connect(lambda *_: on_resize())
        self.plot.addItem(self.edges)
        self.plot.addItem(self.nodes)
        self.texts: list[pg.TextItem] = []

    def set_theme(self, theme: Theme) -> None:
        self.edges.setPen(pg.mkPen(theme.muted, width=1.5))

    def set_font(self, font: QFont) -> None:
        self.font = QFont(font)
        for t in self.texts:
            t.setFont(font)

    def clear(self) -> None:
        self.edges.setData([], [])
        self.nodes.setData([], [])
        for t in self.texts:
            t.setText("")

    def node_tip(self, x=None, y=None, data=None) -> str:
        return self.tips.get(int(data), "") if data is not None else ""

    def _on_node_clicked(self, _item, points, _ev=None) -> None:
        if len(points):
            node = points[0].data()
            if node is not None and node >= 0:
                self.on_select(int(node))

    def render(self, r: StepRecord, selected: int | None, root: tuple[str, str], decode, theme: Theme) -> None:
        """Step ``r``'s tree; ``root``: the root's (label, exact token) from describe.root_text."""
        xs, ys = layout_tree(r)
        has_children = self._draw_edges(r, xs, ys)
        self._draw_nodes(r, xs, ys, selected, theme)
        fm = QFontMetrics(self.font)
        vb = self.plot.getViewBox()
        w_px, h_px = max(vb.width(), 120.0), max(vb.height(), 40.0)  # floors for a plot not laid out yet
        root_text = fm.elidedText(describe.root_label(root[0]), Qt.TextElideMode.ElideLeft, int(w_px / 4))
        frame = self._frame(xs, ys, fm, fm.horizontalAdvance(root_text), w_px, h_px)
        self.nodes.setSize(frame.node_px)
        self.tips = {-1: describe.root_tip(r, root[1])}
        self.tips.update({i: describe.node_tip(r, i, decode) for i in range(len(r.tree.tokens))})
        texts = self._place_labels(r, xs, ys, has_children, selected, frame, fm)
        texts[0] = root_text
        self._draw_labels(r, xs, ys, texts, frame, theme)
        n = len(r.tree.tokens)
        self.titles.fit(self.plot, describe.tree_titles(n, n + 1 - len(texts)))

    def _draw_edges(self, r: StepRecord, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Elbow edges: parent → trunk just left of the child's column → child. Returns which nodes have
        children (entry 0: the root)."""
        has_children = np.zeros(len(r.tree.tokens) + 1, bool)
        ex, ey = [], []
        for i, p in enumerate(r.tree.parent):
            px_, py_, cx, cy = xs[p + 1], ys[p + 1], xs[i + 1], ys[i + 1]
            trunk = cx - TRUNK
            ex += [px_, trunk, trunk, trunk, trunk, cx]
            ey += [py_, py_, py_, cy, cy, cy]
            has_children[p + 1] = True
        self.edges.setData(ex, ey)
        return has_children

    def _draw_nodes(self, r: StepRecord, xs: np.ndarray, ys: np.ndarray, selected: int | None, theme: Theme) -> None:
        accepted = set(r.accepted)
        brushes, pens = [pg.mkBrush(theme.text)], [pg.mkPen(theme.accent if selected == -1 else theme.text)]
        for i in range(len(r.tree.tokens)):
            if i in accepted:
                color = ORIGIN_COLORS["accepted"]
            elif i == r.rejected:
                color = ORIGIN_COLORS["corrected"]
            else:
                color = theme.grid
            brushes.append(pg.mkBrush(color))
            pens.append(pg.mkPen(theme.accent if i == selected else color, width=3 if i == selected else 1))
        self.nodes.setData(xs, ys, brush=brushes, pen=pens, data=list(range(-1, len(r.tree.tokens))))

    def _frame(self, xs, ys, fm: QFontMetrics, root_px: int, w_px: float, h_px: float) -> Frame:
        """Ranges with room above the first row for its label, left of the root for the root's label (its edges
        leave to the right) and right of the deepest column for its labels; the ranges are set on the plot."""
        line = fm.height()
        depth_max = int(max(xs.max(), 1))
        left_px = root_px + NODE_PX / 2 + 12
        x_hi = depth_max + 1.0
        x_lo = -left_px * (x_hi + 0.1) / max(w_px - left_px, 1.0) - 0.1
        rows = float(ys.max())
        est_row_px = (h_px - line) / (rows + 1.2)
        lines = 2 if est_row_px >= 2.4 * line else 1
        top_px = lines * line + 2
        row_px = (h_px - top_px) / (rows + 0.7)
        y_lo, y_hi = -top_px / max(row_px, 1e-6) - 0.05, rows + 0.6
        self.plot.setXRange(x_lo, x_hi, padding=0)
        self.plot.setYRange(y_lo, y_hi, padding=0)
        self.plot.getAxis("bottom").setTicks([[(d, str(d)) for d in range(depth_max + 1)]])
        return Frame(
            x_lo=x_lo, x_hi=x_hi, depth_max=depth_max, lines=lines, depth_px=w_px / (x_hi - x_lo), row_px=row_px,
            label_rows=(lines * line + 1) / max(row_px, 1e-6),
            node_px=float(np.clip(0.8 * row_px, 4, NODE_PX)),  # dense trees: smaller squares that do not overlap
        )  # fmt: skip

    def _place_labels(self, r: StepRecord, xs, ys, has_children, selected: int | None, frame: Frame,
                      fm: QFontMetrics) -> dict[int, str]:  # fmt: skip
        """Node labels that fit, by priority (the accepted path, the rejected and the selected node first, then by
        q): none over another label's band, an edge leaving its column or too little room. Entry k: node k − 1."""
        accepted = set(r.accepted)
        items = []  # (priority, k, one-line text, two-line text, width in px)
        for k in range(1, len(r.tree.tokens) + 1):
            i = k - 1
            full, two = describe.node_labels(r, i)
            important = i in accepted or i == r.rejected or i == selected
            prio = (0 if important else 1, -float(r.tree.q[i]))
            room = (frame.x_hi - xs[k] if xs[k] >= frame.depth_max else 1.0 - TRUNK) * frame.depth_px
            items.append((prio, k, full, two, room - frame.node_px / 2 - 10))
        placed: dict[float, list[tuple[float, float]]] = {}  # depth -> label bands (rows) already taken
        crossings: dict[float, list[float]] = {}  # depth -> rows of horizontal edges leaving that column
        for k in range(len(r.tree.tokens) + 1):
            if has_children[k]:
                crossings.setdefault(xs[k], []).append(ys[k])
        texts: dict[int, str] = {}
        for _prio, k, full, two, room in sorted(items):
            lo, hi = ys[k] - frame.label_rows, ys[k]
            if any(a < hi and lo < b for a, b in placed.get(xs[k], [])):
                continue  # another label holds this band: hover shows this node's text
            if any(lo < y < hi - 1e-9 for y in crossings.get(xs[k], []) if y != ys[k]):
                continue  # an edge crosses the band
            if room < fm.horizontalAdvance("…") * 3:
                continue
            text = two if frame.lines == 2 else full
            if frame.lines == 1 and fm.horizontalAdvance(full) > room:
                text = describe.token_only(full)  # the token alone; q and p on hover
            text = "\n".join(fm.elidedText(part, Qt.TextElideMode.ElideRight, int(room)) for part in text.split("\n"))
            texts[k] = text
            placed.setdefault(xs[k], []).append((lo, hi))
        return texts

    def _draw_labels(self, r: StepRecord, xs, ys, texts: dict[int, str], frame: Frame, theme: Theme) -> None:
        """The placed labels: the root's left of it, on its row; the others right of their node, above its row."""
        while len(self.texts) < len(r.tree.tokens) + 1:
            t = pg.TextItem(anchor=(0, 1))
            t.textItem.document().setDocumentMargin(0)  # the label is as high as the lines _frame makes room for
            t.setFont(self.font)
            self.plot.addItem(t)
            self.texts.append(t)
        accepted = set(r.accepted)
        for k, t in enumerate(self.texts):
            if k not in texts:
                t.setText("")
                continue
            faded = k > 0 and (k - 1) not in accepted and (k - 1) != r.rejected
            t.setColor(theme.muted if faded else theme.text)
            t.setText(texts[k])
            if k == 0:
                t.setAnchor((1, 0.5))
                t.setPos(xs[k] - (frame.node_px / 2 + 1) / frame.depth_px, ys[k])
                continue
            t.setAnchor((0, 1))
            t.setPos(xs[k] + (frame.node_px / 2 + 1) / frame.depth_px, ys[k])
