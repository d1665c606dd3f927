"""The autograd view's graph panel: the backward graph as a DAG, boxes coloured by what the node does and sized by
the bytes it saves, the loss at the right; nodes the engine has run are filled, the one of the step shown is ringed.
A whole model's layers are one box each: a click on one opens it (and closes the one open before)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget

from ....autograd.describe import GROUPS, kind_group, label, size
from ....autograd.layout import Layout, lay_out
from ....autograd.records import AutogradGraph
from ...kit import TitleFitter, static_plot
from ...theme import Theme

GROUP_COLORS = {"matmul": "#4c78a8", "elementwise": "#2a9d8f", "reduction": "#9467bd", "view": "#9aa1ab",
                "loss": "#e4572e", "leaf": "#f2c14e", "layer": "#6f8fb5"}  # fmt: skip
MIN_PX, MAX_PX = 7.0, 26.0
FILL_LEVELS = 4  # a collapsed layer fills in quarters as the engine runs its nodes


def legend_html() -> str:
    """The kinds' colours, one line: the graph's legend."""
    return " &nbsp;".join(f"<span style='color:{GROUP_COLORS[g]}'>■</span> {g}" for g in GROUPS)


def title_variants() -> list[str]:
    return ["backward graph: the loss at the right, the engine runs leftwards; size: bytes saved",
            "backward graph, loss at the right (size: bytes saved)", "backward graph (size: bytes saved)",
            "backward graph"]  # fmt: skip


class GraphPanel(QObject):
    """The DAG; ``node_clicked(graph node)`` when a node's box is clicked (a closed layer opens instead)."""

    node_clicked = Signal(int)

    def __init__(self, parent: QWidget, titles: TitleFitter):
        super().__init__(parent)
        self.titles = titles
        self.plot = static_plot(parent, "backward graph")
        item = self.plot.getPlotItem()
        item.hideAxis("left")
        item.hideAxis("bottom")
        titles.follow(self.plot)
        self.plot.getViewBox().sigResized.connect(lambda *_: self.redraw())
        self.edges = pg.PlotCurveItem(connect="pairs")
        self.plot.addItem(self.edges)
        self.boxes = pg.ScatterPlotItem(pxMode=True, hoverable=True, tip=self._tip)
        self.boxes.sigClicked.connect(self._clicked)
        self.plot.addItem(self.boxes)
        self.marked = pg.ScatterPlotItem(pxMode=True, symbol="s", brush=None)  # the selected module's nodes
        self.plot.addItem(self.marked)
        self.ring = pg.ScatterPlotItem(pxMode=True, brush=None)
        self.plot.addItem(self.ring)
        self.label = pg.TextItem(anchor=(0.5, 1.3))
        self.plot.addItem(self.label)
        self.layer_labels: list[pg.TextItem] = []
        self.graph: AutogradGraph | None = None
        self.layout: Layout | None = None
        self.expanded: set[int] = set()
        self.ran = np.zeros(0, bool)  # per graph node: has the engine run it at the step shown
        self.current = -1
        self.selection: list[int] = []
        self.theme: Theme | None = None
        self._styles: dict[tuple[str, int], object] = {}

    # ---- state
    def set_graph(self, graph: AutogradGraph | None) -> None:
        self.graph, self.expanded, self.selection = graph, set(), []
        self.relayout()

    def collapsing(self) -> bool:
        return self.graph is not None and self.graph.scope == "model"

    def relayout(self) -> None:
        g = self.graph
        self.layout = lay_out(g, self.expanded, collapse=self.collapsing()) if g is not None else None
        for text in self.layer_labels:
            self.plot.removeItem(text)
        self.layer_labels = []
        if self.layout is None:
            self.edges.setData([], [])
            self.boxes.setData([])
            return
        lay = self.layout
        xs = lay.x[lay.edges].reshape(-1)
        ys = lay.y[lay.edges].reshape(-1)
        self.edges.setData(xs, ys)
        for i, layer in enumerate(lay.layer):
            if layer >= 0:
                text = pg.TextItem(f"L{layer}", anchor=(0.5, -0.4))
                text.setPos(lay.x[i], lay.y[i])
                self.plot.addItem(text)
                self.layer_labels.append(text)
        self.plot.setXRange(-1, float(lay.x.max(initial=0)) + 1, padding=0.02)
        self.plot.setYRange(float(lay.y.min(initial=0)) - 1, float(lay.y.max(initial=0)) + 1, padding=0.02)
        self.redraw()

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.edges.setPen(pg.mkPen(theme.grid, width=1))
        self.ring.setPen(pg.mkPen(theme.accent, width=3))
        self.marked.setPen(pg.mkPen(theme.text, width=2))
        self.label.setColor(theme.text)
        self.titles.fit(self.plot, title_variants())
        self.redraw()

    def show_step(self, ran: np.ndarray, current: int) -> None:
        """``ran``: per graph node, whether the engine has run it; ``current``: the node of the step shown."""
        self.ran, self.current = ran, current
        self.redraw()

    def select(self, nodes: list[int]) -> None:
        """Outline these graph nodes (a module's): a closed layer holding them all opens; nodes of several layers
        (the model, its layer list) close every layer, each box outlined whole."""
        self.selection = list(nodes)
        if self.graph is not None and self.collapsing():
            layers = {self.graph.nodes[i].layer for i in nodes} - {-1}
            wanted = layers if len(layers) == 1 else set()
            if (wanted and not wanted <= self.expanded) or (len(layers) > 1 and self.expanded):
                self.expanded = wanted
                self.relayout()
                return
        self.redraw()

    # ---- drawing
    def redraw(self) -> None:
        lay, theme = self.layout, self.theme
        if lay is None or theme is None:
            return
        n = len(lay.labels)
        ran = self.ran if len(self.ran) == len(self.graph.nodes) else np.zeros(len(self.graph.nodes), bool)
        done = np.array([ran[m].mean() for m in (np.asarray(x) for x in lay.members)]) if n else np.zeros(0)
        top = max(float(lay.saved_bytes.max(initial=0)), 1.0)
        sizes = MIN_PX + (MAX_PX - MIN_PX) * np.sqrt(lay.saved_bytes / top)
        column = self.plot.getViewBox().width() / (float(lay.x.max(initial=0)) + 2)  # pixels between columns
        sizes = np.minimum(sizes, max(0.8 * column, 5.0))  # neighbours never overlap, even with 30 layers at 720p
        groups = [kind_group(label) for label in lay.labels]
        levels = np.rint(done * FILL_LEVELS).astype(int)
        brushes = [self._style(g, int(level)) for g, level in zip(groups, levels, strict=True)]
        pens = [self._style(g, -1) for g in groups]
        symbols = ["s" if layer >= 0 else "o" for layer in lay.layer]
        self.boxes.setData(x=lay.x, y=lay.y, size=sizes, brush=brushes, pen=pens, symbol=symbols, data=np.arange(n))
        marked = sorted({int(lay.box_of[i]) for i in self.selection})
        self.marked.setData(x=lay.x[marked], y=lay.y[marked], size=sizes[marked] + 6)
        if 0 <= self.current < len(lay.box_of):
            box = int(lay.box_of[self.current])
            self.ring.setData(x=[lay.x[box]], y=[lay.y[box]], size=[sizes[box] + 10])
            self.label.setText(label(self.graph.nodes[self.current].short))
            self.label.setPos(lay.x[box], lay.y[box])
            span = max(float(lay.x.max(initial=0)), 1.0)
            self.label.setAnchor((min(max(lay.x[box] / span, 0.0), 1.0), 1.3))  # stays inside the plot at its ends
        else:
            self.ring.setData([], [])
            self.label.setText("")
        for text in self.layer_labels:
            text.setColor(theme.muted)

    def _style(self, group: str, level: int):
        """The pen (level -1) or the brush filled to ``level`` of FILL_LEVELS of a kind, made once: pyqtgraph
        caches each drawn symbol by its pen and brush objects, so new ones would draw every box again."""
        key = (group, level)
        if key not in self._styles:
            color = pg.mkColor(GROUP_COLORS[group])
            if level < 0:
                self._styles[key] = pg.mkPen(color, width=1.5)
            else:
                color.setAlpha(int(40 + 215 * level / FILL_LEVELS))
                self._styles[key] = pg.mkBrush(color)
        return self._styles[key]

    def _tip(self, x, y, data) -> str:
        lay = self.layout
        if lay is None:
            return ""
        members = lay.members[int(data)]
        if lay.layer[int(data)] >= 0:
            return f"layer {lay.layer[int(data)]}: {len(members)} nodes, {size(int(lay.saved_bytes[int(data)]))} saved"
        node = self.graph.nodes[members[0]]
        return f"#{node.index} {node.kind}\n{node.module}\n{size(node.saved_bytes)} saved"

    def _clicked(self, _item, points, _event=None) -> None:
        if self.layout is None or not len(points):
            return
        box = int(points[0].data())
        layer = self.layout.layer[box]
        if layer >= 0:
            self.expanded = {layer}
            self.relayout()
            return
        self.node_clicked.emit(self.layout.members[box][0])
