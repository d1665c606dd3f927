"""The table's side of the prompt-set view: the filter box, the category and configuration boxes, and the table."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QVBoxLayout, QWidget

from ....speculative.describe_runs import config_label
from ....speculative.runs import PromptResult, Run
from .table import RunFilter, RunTable, RunTableModel

ALL_CATEGORIES = "all categories"


class TablePanel(QWidget):
    """One row per prompt, sorted and filtered here; choosing a row (a click, Up / Down) announces its prompt, the
    configuration box which configuration the plots stress and the replay uses."""

    prompt_chosen = Signal(str)  # the prompt id of the row chosen
    config_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("filter: id, category or prompt text")
        self.filter_edit.setClearButtonEnabled(True)
        self.category_combo = QComboBox(self)
        self.category_combo.addItem(ALL_CATEGORIES, "")
        self.config_combo = QComboBox(self)
        self.config_combo.setToolTip("The configuration the plots show and the replay uses")
        self.model = RunTableModel(self)
        self.proxy = RunFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = RunTable(self.proxy, self)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        bar.addWidget(self.filter_edit, 2)
        bar.addWidget(self.category_combo, 1)
        bar.addWidget(QLabel("plots / replay:"))
        bar.addWidget(self.config_combo, 1)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)

        self.filter_edit.textChanged.connect(self._apply_filter)
        self.category_combo.currentIndexChanged.connect(self._apply_filter)
        self.config_combo.currentIndexChanged.connect(lambda *_: self.config_changed.emit())

    @property
    def chosen_config(self) -> int:
        """The configuration chosen in the box (0, the base one, while the box is empty)."""
        return max(self.config_combo.currentIndex(), 0)

    def set_run(self, run: Run) -> None:
        """The table, the configurations and the categories of ``run``, the first row chosen."""
        self.model.reset(run)
        self.config_combo.blockSignals(True)
        self.config_combo.clear()
        for c in run.configurations:
            self.config_combo.addItem(config_label(c))
        self.config_combo.blockSignals(False)
        self.category_combo.blockSignals(True)
        self.category_combo.clear()
        self.category_combo.addItem(ALL_CATEGORIES, "")
        self.category_combo.blockSignals(False)
        for r in run.results:
            self.add_category(r.category)
        self.fit_columns()

    def fit_columns(self) -> None:
        """Every column as wide as its title and its cells (measured on the first rows only: see the header's
        precision), never an elided number."""
        self.table.resizeColumnsToContents()

    def add(self, result: PromptResult) -> None:
        """A result computed just now: its row, and its category in the category box; the columns are sized again
        while the first rows arrive (a run starts with none to measure)."""
        self.model.add(result)
        self.add_category(result.category)
        if self.model.rowCount() <= 2 * self.table.horizontalHeader().resizeContentsPrecision():
            self.fit_columns()

    def add_category(self, category: str) -> None:
        if self.category_combo.findData(category) < 0:
            self.category_combo.addItem(category or "(none)", category)

    def choose(self, prompt_id: str) -> bool:
        """Select the row of ``prompt_id``; False when it is filtered out or has no row (nothing announced)."""
        row = self.model.row_of.get(prompt_id)
        if row is None:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if not index.isValid():
            return False
        self.table.selectRow(index.row())
        return True

    def has_prompt(self, prompt_id: str) -> bool:
        return prompt_id in self.model.row_of

    def _apply_filter(self) -> None:
        self.proxy.set_filter(self.filter_edit.text(), self.category_combo.currentData() or "")

    def _on_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            self.prompt_chosen.emit(self.model.rows[self.proxy.mapToSource(current).row()].id)
