"""The prompt-set table: its model (one row per prompt, columns per configuration), the proxy that sorts by value
and filters by text and category, and the table view that leaves the timeline's keys to the window."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from ....speculative import analysis
from ....speculative.describe_runs import Column, TableRow, sort_key, table_columns
from ....speculative.runs import PromptResult, Run

SORT_ROLE = Qt.ItemDataRole.UserRole
GAIN, LOSS = "#2a9d8f", "#e4572e"  # a signed difference's colours (the same in both themes)


class RunTableModel(QAbstractTableModel):
    """One row per prompt that has a result; columns: :func:`~explorer.speculative.describe_runs.table_columns`."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.run: Run | None = None
        self.columns: list[Column] = []
        self.rows: list[TableRow] = []
        self.row_of: dict[str, int] = {}
        self.texts: dict[str, str] = {}

    def reset(self, run: Run | None) -> None:
        self.beginResetModel()
        self.run = run
        self.rows, self.row_of = [], {}
        self.texts = {p["id"]: p["text"] for p in run.header["prompts"]} if run is not None else {}
        self.columns = table_columns(run.configurations if run is not None else [])
        for r in run.results if run is not None else []:
            self._put(r, signal=False)
        self.endResetModel()

    def add(self, result: PromptResult) -> None:
        self._put(result, signal=True)

    def _put(self, result: PromptResult, signal: bool) -> None:
        row = self.row_of.get(result.prompt)
        if row is None:
            row = len(self.rows)
            if signal:
                self.beginInsertRows(QModelIndex(), row, row)
            self.rows.append(TableRow(result.prompt, result.category, self.texts.get(result.prompt, "")))
            self.row_of[result.prompt] = row
            self.rows[row].cells[result.config] = analysis.prompt_row(result)
            if signal:
                self.endInsertRows()
            return
        self.rows[row].cells[result.config] = analysis.prompt_row(result)
        if signal:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.columns) - 1))

    # ---- Qt model
    def rowCount(self, parent=None) -> int:  # noqa: N802 - Qt override
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent=None) -> int:  # noqa: N802 - Qt override
        return 0 if parent is not None and parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt override
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section].title
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        column = self.columns[index.column()]
        if role == SORT_ROLE:
            return sort_key(column.value(row))
        if role == Qt.ItemDataRole.DisplayRole:
            return column.text(row)
        if role == Qt.ItemDataRole.ToolTipRole and index.column() < 2:
            return row.text[:400]
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and column.signed:
            value = column.value(row)
            return QColor(GAIN if value > 0 else LOSS) if value else None
        return None


class RunFilter(QSortFilterProxyModel):
    """Sorts by the cells' values (not their text); keeps rows whose id, category or prompt contains the filter
    text, in the chosen category."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.category = ""
        self.setSortRole(SORT_ROLE)

    def set_filter(self, text: str, category: str) -> None:
        self.beginFilterChange()
        self.text, self.category = text.lower(), category
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row, source_parent) -> bool:  # noqa: N802 - Qt override
        row = self.sourceModel().rows[source_row]
        return (not self.category or row.category == self.category) and row.matches(self.text)

    def lessThan(self, left, right) -> bool:  # noqa: N802 - Qt override
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if isinstance(a, str) != isinstance(b, str):
            return isinstance(a, str) < isinstance(b, str)
        return a < b


class RunTable(QTableView):
    """Up / Down (and clicks) choose the prompt; ← → Home End and Space stay the timeline's, stepping through the
    replayed prompt as in every other view."""

    TIMELINE_KEYS = (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_Space)

    def __init__(self, proxy: RunFilter, parent: QWidget | None = None):
        super().__init__(parent)
        self.setModel(proxy)
        self.setSortingEnabled(True)
        self.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # file order until a click
        proxy.sort(-1)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(22)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        header.setResizeContentsPrecision(40)  # size columns by 40 rows, not 1,000
        self.setAlternatingRowColors(True)

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.ShortcutOverride and e.key() in self.TIMELINE_KEYS and not e.modifiers():
            e.ignore()  # let the window's shortcut have it
            return False
        return super().event(e)

    def keyPressEvent(self, e) -> None:  # noqa: N802 - Qt override
        if e.key() in self.TIMELINE_KEYS and not e.modifiers():
            e.ignore()
            return
        super().keyPressEvent(e)
