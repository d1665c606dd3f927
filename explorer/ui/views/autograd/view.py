"""View `autograd`: the real backward graph of a decoder layer (or the whole model) of the loaded model — nodes
coloured by kind and sized by the bytes they save, the engine's execution order played on the timeline (one step =
one executed node), the module tree (a module outlines its nodes), memory with autograd / checkpointing / no_grad,
and the in-place trap run live. The run is explorer.autograd.job's; the words are explorer.autograd.describe's."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from ....autograd import describe
from ....autograd.job import AutogradRunMeta
from ....autograd.options import CARDS
from ....autograd.options import VIEW as AUTOGRAD_VIEW
from ....autograd.records import BackwardStep, to_json
from ...theme import Theme
from ..base import View
from .dag import GraphPanel, legend_html
from .details import DetailTabs, ModuleTree
from .plots import MemoryPlot, OrderPlot

ERROR_COLOR, OK_COLOR = "#e4572e", "#2a9d8f"


class AutogradView(View):
    name = "autograd"
    title = "Autograd"
    schema = AUTOGRAD_VIEW
    meta: AutogradRunMeta | None
    focus_help = {"select": "a node of the graph, by its number (#N in its card)"}

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self._axes_on: bool | None = None
        self._graph_shown = None
        self._texts_stale = True
        self._texts_for: tuple[int, int, bool] | None = None
        self.selected_node: int | None = None
        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.header.setMinimumHeight(2 * self.header.fontMetrics().height())
        self.graph_panel = GraphPanel(self, self.titles)
        self.graph_panel.node_clicked.connect(self.select_node)
        self.tree = ModuleTree(self)
        self.tree.module_selected.connect(self._module_selected)
        self.order_plot = OrderPlot(self, self.titles)
        self.memory_plot = MemoryPlot(self, self.titles)
        self.memory_caption = QLabel(self)
        self.memory_caption.setWordWrap(True)
        self.tabs = DetailTabs(self)
        self.legend = QLabel(legend_html(), self)
        graph = QWidget(self)
        gv = QVBoxLayout(graph)
        gv.setContentsMargins(0, 0, 0, 0)
        gv.setSpacing(2)
        gv.addWidget(self.graph_panel.plot, 1)
        gv.addWidget(self.legend)
        memory = QWidget(self)
        mv = QVBoxLayout(memory)
        mv.setContentsMargins(0, 0, 0, 0)
        mv.addWidget(self.memory_plot.plot, 1)
        mv.addWidget(self.memory_caption)
        grid = QGridLayout()
        grid.addWidget(graph, 0, 0, 1, 2)
        grid.addWidget(self.order_plot.plot, 1, 0)
        grid.addWidget(memory, 1, 1)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        # the tree above the tabs, the tabs taller: the in-place cases and a node's saved tensors are tables
        side = QSplitter(Qt.Orientation.Vertical, self)
        side.addWidget(self.tree)
        side.addWidget(self.tabs)
        side.setStretchFactor(0, 2)
        side.setStretchFactor(1, 3)
        side.setChildrenCollapsible(False)
        body = QHBoxLayout()
        body.addLayout(grid, 2)
        body.addWidget(side, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addLayout(body, 1)
        self.finish_init()
        # the Card setting (tours, --set) and a click on a tab stay one choice
        self.card.currentTextChanged.connect(lambda text: self.tabs.setCurrentIndex(CARDS.index(text)))
        self.tabs.currentChanged.connect(lambda i: self.card.setCurrentText(CARDS[i]))

    # ---- theme
    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        return self.graph_panel.plot, self.order_plot.plot, self.memory_plot.plot

    def set_theme(self, theme: Theme) -> None:
        for panel in (self.graph_panel, self.order_plot, self.memory_plot):
            panel.set_theme(theme)
        self._texts_stale = True  # they carry the theme's colours: written again at the next render
        super().set_theme(theme)

    def _show_axes(self, on: bool) -> None:
        if self._axes_on != on:
            self._axes_on = on
            self.order_plot.show_axes(on)
            self.memory_plot.show_axes(on)

    # ---- rendering
    def _show_run(self) -> None:
        """The parts that do not change with the step: the graph, the tree, memory, the trap, functional."""
        meta = self.meta
        self._graph_shown = meta.graph
        self.graph_panel.set_graph(meta.graph)
        self.tree.set_graph(meta.graph)
        self.selected_node = None
        self._write_texts()

    def _run_parts(self) -> tuple[int, int, bool]:
        """What of the run's last parts the metadata holds (they arrive with its last step)."""
        return len(self.meta.memory), len(self.meta.traps), self.meta.functional is not None

    def _write_texts(self) -> None:
        meta = self.meta
        self._texts_stale, self._texts_for = False, self._run_parts()
        self.memory_plot.show(meta.memory)
        self.memory_caption.setText(describe.memory_caption(meta.graph, meta.memory))
        self.tabs.trap_text.setHtml(describe.trap_html(meta.traps, ERROR_COLOR, OK_COLOR) if meta.traps
                                    else describe.LATER)  # fmt: skip
        self.tabs.functional_text.setHtml(describe.functional_html(meta.functional, OK_COLOR, ERROR_COLOR)
                                          if meta.functional is not None else describe.LATER)  # fmt: skip

    def render(self, r: BackwardStep | None) -> None:
        if r is None or self.meta is None or self.meta.graph is None:
            self.header.setText(f"<span style='color:{self.theme.muted}'>{self.empty_hint('run a backward')}</span>")
            self._graph_shown = None
            self.graph_panel.set_graph(None)
            self.tree.set_graph(None)
            self.order_plot.clear()
            self.memory_plot.clear()
            self.memory_caption.setText("")
            for text in (self.tabs.node_text, self.tabs.trap_text, self.tabs.functional_text):
                text.setHtml("")
            self._show_axes(False)
            return
        meta = self.meta
        if self._graph_shown is not meta.graph:
            self._show_run()
        elif self._texts_stale or self._texts_for != self._run_parts():
            self._write_texts()
        self._show_axes(True)
        ran = np.zeros(len(meta.graph.nodes), bool)
        ran[[s.node for s in self.records[: r.order + 1]]] = True
        self.graph_panel.show_step(ran, r.node)
        self.order_plot.show(meta.graph, self.records, r)
        self.header.setText(describe.header_html(meta.graph, r, len(self.records), meta.max_grad_diff,
                                                 meta.order_violations, self.theme.muted,
                                                 seconds=not self.deterministic))  # fmt: skip
        self._show_node(self.selected_node if self.selected_node is not None else r.node)

    def landing_step(self) -> int:
        """A finished run opens on the attention's backward (half the layer run), else on the last step."""
        if self.meta is None or self.meta.graph is None:
            return super().landing_step()
        nodes = self.meta.graph.nodes
        return next((s.order for s in self.records if nodes[s.node].short.startswith("ScaledDotProduct")),
                    super().landing_step())  # fmt: skip

    def _show_node(self, node: int) -> None:
        graph = self.meta.graph
        step = next((s for s in self.records if s.node == node), None)
        if step is not None and self.current >= 0 and step.order > self.current:
            step = None  # not run yet at the step shown
        self.tabs.node_text.setHtml(describe.node_html(graph, graph.nodes[node], step))

    def select_node(self, node: int) -> None:
        """Show node ``node``'s card (a click on the graph, a tour's select)."""
        self.selected_node = node
        self.graph_panel.select([node])
        self.card.setCurrentText(CARDS[0])
        self._show_node(node)

    def _module_selected(self, nodes: list[int]) -> None:
        self.graph_panel.select(nodes)

    # ---- tours
    def caption_fields(self, r: BackwardStep) -> dict:
        node = self.meta.graph.nodes[r.node]
        return {"node": node.short, "module": node.module or "the loss", "norm": f"{r.norm:.3g}",
                "saved": describe.size(node.saved_bytes), "nodes": len(self.meta.graph.nodes)}  # fmt: skip

    def focus_problem(self, record, select: int) -> str | None:
        n = len(self.meta.graph.nodes) if self.meta is not None and self.meta.graph is not None else 0
        return None if 0 <= select < n else f"select must be a node number in 0..{n - 1} (got {select})"

    def set_focus(self, select: int | None = None, zoom: str | None = None) -> None:
        if zoom is not None:
            raise ValueError("the autograd view does not support zoom")
        if select is not None:
            problem = self.focus_problem(None, select)
            if problem:
                raise ValueError(problem)
            self.select_node(select)

    # ---- export
    def export_data(self) -> dict:
        meta = self.meta.to_json() if self.meta is not None else {}
        steps = [{**to_json(s), "step": s.order + 1} for s in self.records]
        return {"view": self.name, **meta, "steps": steps}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = ["step", "node", "kind", "module", "shape", "norm", "seconds"]
        nodes = self.meta.graph.nodes if self.meta is not None and self.meta.graph is not None else []
        rows = [[s.order + 1, s.node, nodes[s.node].kind, nodes[s.node].module, "x".join(map(str, s.shape)), s.norm,
                 s.seconds] for s in self.records]  # fmt: skip
        return header, rows
