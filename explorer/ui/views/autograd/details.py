"""The autograd view's text panels: the module tree (selecting a module outlines the nodes it created) and the tabs
that read a node's card, the in-place trap run live, and nn against functional."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTabWidget, QTextBrowser, QTreeWidget, QTreeWidgetItem, QWidget

from ....autograd.describe import count
from ....autograd.records import AutogradGraph

ROLE = Qt.ItemDataRole.UserRole


class ModuleTree(QTreeWidget):
    """nn.Module hierarchy: name, class, parameters, nodes; ``module_selected(nodes)`` with the nodes the module and
    its children created."""

    module_selected = Signal(list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setColumnCount(3)
        self.setHeaderLabels(["module", "params", "nodes"])
        self.setRootIsDecorated(True)
        self.setUniformRowHeights(True)
        self.header().setStretchLastSection(False)
        self.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in (1, 2):
            self.header().setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.itemSelectionChanged.connect(self._selected)
        self.graph: AutogradGraph | None = None

    def set_graph(self, graph: AutogradGraph | None) -> None:
        self.clear()
        self.graph = graph
        if graph is None:
            return
        items: dict[str, QTreeWidgetItem] = {}
        for m in graph.modules:
            own = [n for n in graph.modules if n.name == m.name or n.name.startswith(m.name + ".") or not m.name]
            nodes = sorted({i for n in own for i in n.nodes})
            params = sum(n.parameters for n in own)
            item = QTreeWidgetItem([m.name.rpartition(".")[2] or "model", count(params), str(len(nodes))])
            item.setData(0, ROLE, nodes)
            tip = (f"{m.name or 'the model'}: {m.kind}; {m.parameters:,} parameters and {m.buffers:,} buffer values "
                   f"of its own; {m.hooks} hooks; created {len(m.nodes)} nodes itself")  # fmt: skip
            item.setToolTip(0, tip)
            parent = items.get(m.name.rpartition(".")[0]) if m.name else None
            if parent is not None:
                parent.addChild(item)
            else:
                self.addTopLevelItem(item)
            items[m.name] = item
        depth = 3 if graph.scope.startswith("layer") else 2  # one layer: down to its children; a model: its layers
        for m in graph.modules:
            if m.name.count(".") < depth and items[m.name].text(2) != "0":
                items[m.name].setExpanded(True)

    def select_module(self, name: str) -> bool:
        """Select the module called ``name`` (as nn.Module.named_modules spells it); False when there is none."""
        for item in self._items():
            if self._name(item) == name:
                self.setCurrentItem(item)
                return True
        return False

    def _items(self):
        stack = [self.topLevelItem(i) for i in range(self.topLevelItemCount())]
        while stack:
            item = stack.pop()
            yield item
            stack.extend(item.child(i) for i in range(item.childCount()))

    @staticmethod
    def _name(item: QTreeWidgetItem) -> str:
        parts = []
        while item is not None and item.parent() is not None:
            parts.append(item.text(0))
            item = item.parent()
        return ".".join(reversed(parts))

    def _selected(self) -> None:
        items = self.selectedItems()
        self.module_selected.emit(list(items[0].data(0, ROLE)) if items else [])


class DetailTabs(QTabWidget):
    """Node · In-place trap · nn vs functional, each a text browser."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.node_text, self.trap_text, self.functional_text = QTextBrowser(), QTextBrowser(), QTextBrowser()
        for text, title in ((self.node_text, "Node"), (self.trap_text, "In-place trap"),
                            (self.functional_text, "nn vs functional")):  # fmt: skip
            text.setOpenLinks(False)
            text.document().setIndentWidth(14)  # lists of tensors, not indented by Qt's 40 px in a narrow column
            self.addTab(text, title)
