"""View `promptset`: speculative decoding over a whole prompt set — a sortable, filterable table (one row per prompt,
columns per compared configuration), acceptance per category, the draft's calibration and acceptance by draft
position over the set; selecting a row replays that prompt's stored steps in the speculative view's panels (tree,
decision, mask) without recomputing. Runs stream into a run file; File › Open run… reopens one."""

from __future__ import annotations

import datetime
import html
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QSortFilterProxyModel, QStandardPaths, Qt, QTimer
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QScrollArea,
    QSplitter,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ...errors import ExplorerError
from ...models.checkpoint import default_model_dirs
from ...session import Session
from ...speculative import analysis
from ...speculative.options import VIEW as SPECULATIVE_VIEW
from ...speculative.promptsets import read_prompt_set
from ...speculative.runs import (
    Configuration,
    PromptResult,
    Run,
    RunWriter,
    check_configurations,
    make_header,
    parse_compare,
    read_run,
    run_decoder,
    run_prompt_set,
)
from ..theme import Theme
from .base import View, font_plot, static_plot, theme_plot
from .speculative import SpeculativeView

CONFIG_COLORS = ("#4c78a8", "#e4572e", "#2a9d8f", "#7b61ff", "#f2a541", "#8c564b")
DEFAULT_PROMPTS = Path(default_model_dirs()["target"]).parent.parent / "prompts" / "code.jsonl"
SORT_ROLE = Qt.ItemDataRole.UserRole
PER_CONFIG = (("α", "alpha", "{:.2f}"), ("tok/step", "tokens_per_step", "{:.2f}"), ("speedup", "speedup", "{:.2f}×"))


def runs_folder() -> Path:
    """Where the app streams the runs it computes (never lost: File › Save run… copies one elsewhere)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".explorer") / "runs"


class RunTableModel(QAbstractTableModel):
    """One row per prompt that has a result; columns: id, category, then α / tokens per step / speedup per
    configuration, the first divergence from plain greedy, and Δ tokens per step of each compared configuration."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.run: Run | None = None
        self.columns: list[tuple[str, Callable[[dict], Any], str]] = []
        self.rows: list[dict] = []  # {"id", "category", "text", "cells": {config: prompt_row}}
        self.row_of: dict[str, int] = {}

    def reset(self, run: Run | None) -> None:
        self.beginResetModel()
        self.run = run
        self.rows, self.row_of = [], {}
        self.texts = {p["id"]: p["text"] for p in run.header["prompts"]} if run is not None else {}
        configs = run.configurations if run is not None else []
        cols: list[tuple[str, Callable[[dict], Any], str]] = [
            ("prompt", lambda r: r["id"], "{}"), ("category", lambda r: r["category"], "{}"),
        ]  # fmt: skip
        multi = len(configs) > 1
        for i, c in enumerate(configs):
            for label, key, fmt in PER_CONFIG:
                name = f"{label} {c.key}" if multi else label
                cols.append((name, lambda r, i=i, key=key: r["cells"].get(i, {}).get(key), fmt))
        cols.append(("1st div.", lambda r: r["cells"].get(0, {}).get("first_divergence"), "{}"))
        for i, c in enumerate(configs[1:], 1):
            cols.append((f"Δ tok/step {c.key}", lambda r, i=i: _delta(r, i), "{:+.2f}"))
        self.columns = cols
        if run is not None:
            for r in run.results:
                self._put(r, signal=False)
        self.endResetModel()

    def add(self, result: PromptResult) -> None:
        self._put(result, signal=True)

    def _put(self, result: PromptResult, signal: bool) -> None:
        row = self.row_of.get(result.prompt)
        if row is None:
            row = len(self.rows)
            text = self.texts.get(result.prompt, "")
            if signal:
                self.beginInsertRows(QModelIndex(), row, row)
            self.rows.append({"id": result.prompt, "category": result.category, "text": text, "cells": {}})
            self.row_of[result.prompt] = row
            self.rows[row]["cells"][result.config] = analysis.prompt_row(result)
            if signal:
                self.endInsertRows()
            return
        self.rows[row]["cells"][result.config] = analysis.prompt_row(result)
        if signal:
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.columns) - 1))

    # ---- Qt model
    def rowCount(self, parent=None) -> int:  # noqa: N802 - Qt override
        return 0 if parent is not None and parent.isValid() else len(self.rows)

    def columnCount(self, parent=None) -> int:  # noqa: N802 - Qt override
        return 0 if parent is not None and parent.isValid() else len(self.columns)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):  # noqa: N802 - Qt override
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.columns[section][0]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        _, get, fmt = self.columns[index.column()]
        value = get(row)
        if role == SORT_ROLE:
            return _sort_key(value)
        if role == Qt.ItemDataRole.DisplayRole:
            return "–" if value is None else fmt.format(value)
        if role == Qt.ItemDataRole.ToolTipRole and index.column() < 2:
            return row["text"][:400]
        if role == Qt.ItemDataRole.TextAlignmentRole and index.column() >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and fmt.startswith("{:+") and value:
            return QColor("#2a9d8f" if value > 0 else "#e4572e")
        return None


def _delta(row: dict, i: int) -> float | None:
    a, b = row["cells"].get(0), row["cells"].get(i)
    return None if a is None or b is None else b["tokens_per_step"] - a["tokens_per_step"]


def _sort_key(value: Any):
    if value is None:
        return float("-inf")
    if isinstance(value, str):
        return float(value) if value.isdigit() else value.lower()  # ids 1, 2, 10 in numeric order
    return float(value)


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
        if self.category and row["category"] != self.category:
            return False
        t = self.text
        return not t or t in row["id"].lower() or t in row["category"].lower() or t in row["text"].lower()

    def lessThan(self, left, right) -> bool:  # noqa: N802 - Qt override
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if isinstance(a, str) != isinstance(b, str):
            return isinstance(a, str) < isinstance(b, str)
        return a < b


class RunTable(QTableView):
    """Up / Down (and clicks) choose the prompt; ← → Home End and Space stay the timeline's, stepping through the
    replayed prompt as in every other view."""

    TIMELINE_KEYS = (Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_Space)

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


class PromptSetView(View):
    name = "promptset"
    title = "Prompt set"
    schema = SPECULATIVE_VIEW.only(list(SPECULATIVE_VIEW.options), "prompt-set view", max_new=64)
    uses_draft = True

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(theme, parent)
        self.run: Run | None = None
        self.writer: RunWriter | None = None
        self.replayed: PromptResult | None = None
        self._decoders: dict[str, Callable] = {}
        self._dirty = False
        self._plot_timer = QTimer(self)
        self._plot_timer.setSingleShot(True)
        self._plot_timer.setInterval(250)
        self._plot_timer.timeout.connect(self._refresh_if_dirty)

        self.header = QLabel(self)
        self.header.setWordWrap(True)
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("filter: id, category or prompt text")
        self.filter_edit.setClearButtonEnabled(True)
        self.category_combo = QComboBox(self)
        self.category_combo.addItem("all categories", "")
        self.config_combo = QComboBox(self)
        self.config_combo.setToolTip("The configuration the plots show and the replay uses")

        self.model = RunTableModel(self)
        self.proxy = RunFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = RunTable(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # file order until a click
        self.proxy.sort(-1)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.horizontalHeader().setResizeContentsPrecision(40)  # size columns by 40 rows, not 1,000
        self.table.setAlternatingRowColors(True)
        self.table.selectionModel().currentRowChanged.connect(self._on_row)

        self.category_plot = static_plot(self, "tokens / step by category")
        self.category_plot.invertY(True)
        self.category_plot.setLabel("bottom", "new tokens per target forward")
        self.calibration_plot = static_plot(self, "calibration")
        self.calibration_plot.setLabel("bottom", "draft confidence q")
        self.calibration_plot.setLabel("left", "accepted share")
        self.calibration_plot.setXRange(0, 1, padding=0.02)
        self.calibration_plot.setYRange(0, 1, padding=0.02)
        self.position_plot = static_plot(self, "α by draft position")
        self.position_plot.setLabel("bottom", "draft position")
        self.position_plot.setYRange(0, 1.05, padding=0)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.summary.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)

        self.replay = SpeculativeView(theme, self)  # the speculative panels, fed with stored records
        self.replay.set_costs_visible(False)  # stored runs carry no cost curve, and the table needs the room
        self.replay.step_requested.connect(self._on_replay_step)

        top = QWidget(self)
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        bar = QHBoxLayout()
        bar.addWidget(self.filter_edit, 2)
        bar.addWidget(self.category_combo, 1)
        bar.addWidget(QLabel("plots / replay:"))
        bar.addWidget(self.config_combo, 1)
        tl.addLayout(bar)
        tl.addWidget(self.table, 1)
        plots = QWidget(self)
        grid = QGridLayout(plots)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.category_plot, 0, 0)
        grid.addWidget(self.calibration_plot, 0, 1)
        grid.addWidget(self.position_plot, 0, 2)
        summary = QScrollArea(self)  # long summaries scroll instead of squeezing the plots at 720p
        summary.setWidget(self.summary)
        summary.setWidgetResizable(True)
        summary.setFrameShape(QFrame.Shape.NoFrame)
        grid.addWidget(summary, 1, 0, 1, 3)
        for plot in (self.category_plot, self.calibration_plot, self.position_plot):
            plot.setMinimumHeight(120)
        for col, stretch in enumerate((4, 3, 3)):
            grid.setColumnStretch(col, stretch)
        grid.setRowStretch(0, 3)
        grid.setRowStretch(1, 2)
        upper = QSplitter(Qt.Orientation.Horizontal, self)
        upper.addWidget(top)
        upper.addWidget(plots)
        upper.setStretchFactor(0, 1)
        upper.setStretchFactor(1, 1)
        upper.setSizes([900, 1100])  # proportions: the plots and their summary need a little more
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(upper)
        self.splitter.addWidget(self.replay)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addWidget(self.splitter, 1)

        self.filter_edit.textChanged.connect(self._apply_filter)
        self.category_combo.currentIndexChanged.connect(self._apply_filter)
        self.config_combo.currentIndexChanged.connect(self._on_config)

        # The run's settings: the base configuration from the schema's controls, plus the prompt set and the
        # configurations to compare.
        self.build_controls()
        self.prompts_edit = QLineEdit(str(DEFAULT_PROMPTS))
        self.prompts_edit.setToolTip("Prompt set: text (one prompt a line), JSON lines, or Spec-Bench question.jsonl")
        self.compare_edit = QLineEdit("")
        self.compare_edit.setPlaceholderText("e.g. gamma=2; method=lookup")
        self.compare_edit.setToolTip("Configurations to compare with the base one, separated by ';' "
                                     "(each KEY=VALUE[,KEY=VALUE] with speculate's option names)")  # fmt: skip
        self.set_theme(theme)
        self.render(None)

    # ---- settings
    def settings_rows(self) -> list[tuple[str, QWidget]]:
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse_prompts)
        w = QWidget()
        h = QHBoxLayout(w)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(self.prompts_edit, 1)
        h.addWidget(browse)
        return [("Prompts", w), ("Compare", self.compare_edit), *super().settings_rows()]

    def _browse_prompts(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Prompt set", self.prompts_edit.text(),
                                              "Prompt sets (*.jsonl *.json *.txt);;All files (*)")  # fmt: skip
        if path:
            self.prompts_edit.setText(path)

    def configurations(self, has_draft: bool) -> list[Configuration]:
        values = dict(self.settings_values())
        if values.get("accept") == "sample" and values.get("temperature", 0) <= 0:
            values["temperature"] = 1.0
        values.setdefault("top_k", 0)
        configs = [Configuration("base", values)]
        for text in self.compare_edit.text().split(";"):
            if text.strip():
                configs.append(parse_compare(text.strip(), values, explicit_accept=True))
        check_configurations(configs, has_draft)
        return configs

    # ---- computation (Qt-free job)
    def make_job(self, session: Session) -> Callable[[], Iterator[PromptResult]]:
        target, draft = session.target, session.draft
        prompts_file = self.prompts_edit.text().strip()
        prompts = read_prompt_set(prompts_file)
        configs = self.configurations(draft is not None)
        if draft is None and any(c.uses_draft for c in configs):
            raise ExplorerError("a configuration drafts with a model, but no draft model is loaded")
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = runs_folder() / f"run-{stamp}.jsonl"
        chat_all, system = bool(getattr(session, "chat", False)), getattr(session, "system", None) or None
        encoding = {"chat": chat_all, "system": system, "ignore_eos": bool(getattr(session, "ignore_eos", False))}
        header = make_header(prompts, configs, target, draft, configs[0].values["seed"], prompts_file, encoding)
        self._close_writer()
        self.writer = writer = RunWriter(path, header, resume=False)
        self.set_run(Run(path, header))  # filled as the results arrive on this thread (the writer has its own)
        self._decoders[str(header["target"]["path"])] = target.decode  # the loaded tokenizer, not a second copy

        def encode(p) -> list[int]:
            chat = chat_all or (p.chat and target.prompt_format.chat_template is not None)
            return target.prompt_ids(p.text, chat=chat, system=system if chat else None)

        def job() -> Iterator[PromptResult]:
            try:
                yield from run_prompt_set(target, draft, prompts, configs, writer, encode=encode)
            finally:
                writer.close()

        return job

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _complete_bytes(self) -> int:
        return self.writer.run.complete_bytes if self.writer is not None else self.run.complete_bytes

    # ---- records: prompt results arrive here; self.records are the replayed prompt's steps (the timeline's)
    def add_record(self, record: Any) -> None:
        if not isinstance(record, PromptResult) or self.run is None or self.writer is None:
            return  # results belong to the run this view computes (not to one opened since)
        self.run.results.append(record)
        self.model.add(record)
        self._add_category(record.category)
        if self.replayed is None and record.config == self.config_combo.currentIndex():
            self.select_prompt(record.prompt)
        self._schedule_plots()

    def clear(self) -> None:
        self.replayed = None
        self.records = []
        self.current = -1
        self.replay.clear()

    def set_run(self, run: Run) -> None:
        """Show ``run`` (opened from a file, or one starting to compute)."""
        self.run = run
        self.replayed = None
        self.records, self.current = [], -1
        self.replay.clear()
        self.model.reset(run)
        self.config_combo.blockSignals(True)
        self.config_combo.clear()
        for c in run.configurations:
            self.config_combo.addItem(f"{c.key}: {c.describe()}")
        self.config_combo.blockSignals(False)
        self.category_combo.blockSignals(True)
        self.category_combo.clear()
        self.category_combo.addItem("all categories", "")
        self.category_combo.blockSignals(False)
        for r in run.results:
            self._add_category(r.category)
        self.table.resizeColumnsToContents()  # measured on the first rows only (see the header's precision)
        self._render_header()
        self._dirty = True
        QTimer.singleShot(0, self._refresh_if_dirty)  # the table first; the plots one event later
        if run.results:
            self.table.selectRow(0)

    def open_run(self, path: str | Path) -> Run:
        run = read_run(path)
        self._close_writer()
        self.set_run(run)
        return run

    def open_run_dialog(self, parent: QWidget | None = None) -> bool:
        """File › Open run…: choose a run file and show it (raises ExplorerError on a malformed one)."""
        start = str(self.run.path.parent if self.run is not None and self.run.path else runs_folder())
        path, _ = QFileDialog.getOpenFileName(parent or self, "Open run", start, "Runs (*.jsonl);;All files (*)")
        if not path:
            return False
        self.open_run(path)
        return True

    def save_run_dialog(self, parent: QWidget | None = None) -> bool:
        """File › Save run…: copy the shown run (its complete results) to a file the user chooses."""
        if self.run is None or self.run.path is None:
            raise ExplorerError("no run to save: open one or run a prompt set first")
        path, _ = QFileDialog.getSaveFileName(parent or self, "Save run", str(Path.home() / self.run.path.name),
                                              "Runs (*.jsonl)")  # fmt: skip
        if not path:
            return False
        self.save_run(path)
        return True

    def save_run(self, path: str | Path) -> Path:
        """Copy the run file (complete results only) to ``path``: a temporary name there, renamed when complete."""
        from ...atomic import atomic_path

        if self.run is None or self.run.path is None:
            raise ExplorerError("no run to save: open one or press Run")
        path = Path(path)
        with self.run.path.open("rb") as src, atomic_path(path) as tmp:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
                dst.truncate(self._complete_bytes())
        return path

    def _add_category(self, category: str) -> None:
        name = category or "(none)"
        if self.category_combo.findData(category) < 0:
            self.category_combo.addItem(name, category)

    def _apply_filter(self) -> None:
        self.proxy.set_filter(self.filter_edit.text(), self.category_combo.currentData() or "")

    # ---- replay
    def select_prompt(self, prompt_id: str) -> None:
        row = self.model.row_of.get(prompt_id)
        if row is None:
            return
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if index.isValid():
            self.table.selectRow(index.row())
        else:
            self.replay_prompt(prompt_id)

    def _on_row(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            row = self.proxy.mapToSource(current).row()
            self.replay_prompt(self.model.rows[row]["id"])

    def _on_config(self) -> None:
        self._refresh_plots()
        if self.replayed is not None:
            self.replay_prompt(self.replayed.prompt)

    def replay_prompt(self, prompt_id: str, config: int | None = None) -> None:
        """Feed the speculative panels with the stored steps of ``prompt_id`` (under the chosen configuration)."""
        if self.run is None:
            return
        config = self.config_combo.currentIndex() if config is None else config
        result = next((r for r in self.run.results if r.prompt == prompt_id and r.config == max(config, 0)), None)
        if result is None:
            return
        steps = self.run.load_steps(result)
        c = self.run.configurations[result.config]
        prompt = next((p for p in self.run.header["prompts"] if p["id"] == prompt_id), {"text": ""})
        self.replayed = result
        self.replay.clear()
        self.replay.meta = {
            "target": (self.run.header.get("target") or {}).get("path"),
            "draft": (self.run.header.get("draft") or {}).get("path"),
            "prompt": prompt["text"],
            "prompt_ids": result.prompt_ids,
            "options": dict(c.options().__dict__),
            "decode": self._decoder(result),
            "target_only": result.target_only if result.target_only.get("tokens") is not None else None,
        }
        for s in steps:
            self.replay.add_record(s)
        self.records = list(steps)
        self.current = -1
        # Show the last step that drafted something (the very last one often only adds the final token).
        shown = max((s.step for s in steps if len(s.tree.tokens)), default=len(steps) - 1)
        player = getattr(self.window(), "player", None)
        if player is not None and getattr(self.window(), "active_view", None) is self:
            player.set_count(len(self.records))
            player.go(shown)
            if self.current != player.step:  # the player was already there: it did not announce the step
                self.show_step(player.step)
        else:
            self.show_step(shown)
        self._render_header()

    def _decoder(self, result: PromptResult) -> Callable[[list[int]], str]:
        key = str((self.run.header.get("target") or {}).get("path"))
        if key not in self._decoders:
            self._decoders[key] = run_decoder(self.run.header, result.texts)
        return self._decoders[key]

    def _on_replay_step(self, step: int) -> None:
        player = getattr(self.window(), "player", None)
        if player is not None and getattr(self.window(), "active_view", None) is self:
            player.go(step)
        else:
            self.show_step(step)

    # ---- rendering
    def show_step(self, step: int) -> None:
        self.current = step
        self.replay.show_step(step)

    def _schedule_plots(self) -> None:
        """Redraw the set's plots soon, at most a few times a second while results stream in."""
        self._dirty = True
        if not self._plot_timer.isActive():
            self._plot_timer.start()

    def render(self, record: Any | None) -> None:
        if record is None and self.run is None:
            self.header.setText(
                f"<span style='color:{self.theme.muted}'>Choose a prompt set and press Run, or File › Open run… "
                "(explorer open RUN.jsonl).</span>"
            )

    def _render_header(self) -> None:
        if self.run is None:
            return self.render(None)
        h = self.run.header
        th = self.theme
        n_prompts, configs = len(h["prompts"]), self.run.configurations
        done = len(self.run.results)
        total = n_prompts * len(configs)
        models = (h.get("target") or {}).get("name", "?")
        if h.get("draft"):
            models += f" + draft {h['draft']['name']}"
        where = html.escape(str(self.run.path.name if self.run.path else "(not saved)"))
        progress = "" if done == total else f" <span style='color:{th.accent}'>● {done} of {total}</span>"
        replay = ""
        if self.replayed is not None:
            replay = (f"<br><span style='color:{th.muted}'>replaying prompt <b>{html.escape(self.replayed.prompt)}"
                      f"</b> ({html.escape(self.replayed.category or 'no category')}) under "
                      f"{html.escape(configs[self.replayed.config].key)}: ←/→ step through its "
                      f"{len(self.records)} steps</span>")  # fmt: skip
        self.header.setText(
            f"<b style='font-size:120%'>{n_prompts} prompts × {len(configs)} configuration"
            f"{'s' if len(configs) > 1 else ''}</b>{progress} &nbsp; {html.escape(models)} &nbsp; "
            f"seed {h['seed']} &nbsp; <span style='color:{th.muted}'>{where}</span>{replay}"
        )

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self._refresh_plots()
            self._render_header()

    def _config_results(self, i: int) -> list[PromptResult]:
        return [r for r in self.run.results if r.config == i] if self.run is not None else []

    def _refresh_plots(self) -> None:
        self._dirty = False
        for plot in (self.category_plot, self.calibration_plot, self.position_plot):
            plot.clear()
        if self.run is None or not self.run.results:
            self.summary.setText("")
            return
        configs = self.run.configurations
        chosen = max(self.config_combo.currentIndex(), 0)
        groups = [self._config_results(i) for i in range(len(configs))]
        cats = [c for c in analysis.categories(self.run.results) if c != "all"]
        if len(cats) > 1:
            cats.append("all")
        n = len(configs)
        height = 0.8 / n
        widest = 0.0
        for i, results in enumerate(groups):
            per = analysis.categories(results)
            values = [per[c].tokens_per_step if c in per else 0.0 for c in cats]
            widest = max([widest, *values])
            y = np.arange(len(cats)) - 0.4 + height * (i + 0.5)
            bars = pg.BarGraphItem(x0=np.zeros(len(cats)), y=y, height=height * 0.9, width=values,
                                   brush=CONFIG_COLORS[i % len(CONFIG_COLORS)], pen=None)  # fmt: skip
            self.category_plot.addItem(bars)
        left = self.category_plot.getAxis("left")
        left.setTicks([[(k, c[:14]) for k, c in enumerate(cats)]])
        self.category_plot.setYRange(-0.6, len(cats) - 0.4, padding=0)
        self.category_plot.setXRange(0, max(widest, 1.0) * 1.05, padding=0)

        diag = pg.PlotDataItem([0, 1], [0, 1], pen=pg.mkPen(self.theme.muted, width=1, style=Qt.PenStyle.DashLine))
        self.calibration_plot.addItem(diag)
        legend_rows = []
        for i, results in enumerate(groups):
            color = CONFIG_COLORS[i % len(CONFIG_COLORS)]
            cal = analysis.calibration(results)
            pts = [(q, a) for q, a in zip(cal["mean_q"], cal["acceptance"], strict=True) if q is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                width = 3 if i == chosen else 1.5
                line = pg.PlotDataItem(xs, ys, pen=pg.mkPen(color, width=width), symbol="o", symbolSize=6,
                                       symbolBrush=color, symbolPen=None)  # fmt: skip
                self.calibration_plot.addItem(line)
            pos = analysis.per_position(results)
            if pos["position"]:
                w = 0.8 / n
                x = np.asarray(pos["position"], dtype=float) - 0.4 + w * (i + 0.5)
                self.position_plot.addItem(pg.BarGraphItem(x=x, height=pos["rate"], width=w * 0.9, brush=color,
                                                           pen=None))  # fmt: skip
            c = analysis.counts(results)
            sp = "–" if c.speedup is None or self.deterministic else f"{c.speedup:.2f}×"
            legend_rows.append(
                f"<span style='color:{color}'>■</span> <b>{html.escape(configs[i].key)}</b> "
                f"({html.escape(configs[i].describe())}): α {c.alpha:.2f}, accepted {c.mean_accepted:.2f} "
                f"(+bonus {c.mean_with_bonus:.2f}), {c.tokens_per_step:.2f} tok/step, speedup {sp}, "
                f"ECE {cal['ece']:.2f}"
            )
        depth = max((len(analysis.per_position(g)["position"]) for g in groups), default=0)
        self.position_plot.setXRange(0.4, max(depth, 1) + 0.6, padding=0)
        self.position_plot.getAxis("bottom").setTicks([[(d, str(d)) for d in range(1, depth + 1)]])
        self.summary.setText("<br>".join(legend_rows) + self._detail_html(groups[chosen], configs, chosen))

    def _detail_html(self, results: list[PromptResult], configs: list[Configuration], chosen: int) -> str:
        th = self.theme
        classes = analysis.by_token_class(results)
        parts = [f"{name} {d['acceptance']:.0%} ({d['decisions']})" for name, d in classes.items()
                 if d["acceptance"] is not None]  # fmt: skip
        out = f"<br><br><b>acceptance by token class</b> ({html.escape(configs[chosen].key)}): " + ", ".join(parts)
        rejected = analysis.rejected_tokens(results, top=4)
        if rejected:
            from ...models.text import visible_token

            items = []
            for r in rejected:
                instead = ", ".join(f"{html.escape(visible_token(x['text'], 8))}×{x['count']}" for x in r["instead"])
                items.append(f"{html.escape(visible_token(r['text'], 10))} {r['rejected']}/{r['decisions']}"
                             f" <span style='color:{th.muted}'>→ {instead}</span>")  # fmt: skip
            out += "<br><b>most rejected</b> (rejected/decided → target's token): " + "; ".join(items)
        if chosen > 0 or len(configs) > 1:
            other = chosen if chosen > 0 else 1
            diff = analysis.differences(self.run, other)
            top = ", ".join(f"{html.escape(d['prompt'])} {d['tokens_per_step']:+.2f}" for d in diff["most_changed"][:5])
            out += (f"<br><b>{html.escape(configs[other].key)} vs base</b>: better on {diff['better']}, worse on "
                    f"{diff['worse']} prompts; most changed (Δ tok/step): {top}")  # fmt: skip
        return out

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        for plot in (self.category_plot, self.calibration_plot, self.position_plot):
            theme_plot(plot, theme)
        if hasattr(self, "replay"):
            self.replay.set_theme(theme)
        self._dirty = True
        if self.run is not None:
            self._refresh_plots()
            self._render_header()

    def apply_font(self, font: QFont) -> None:
        for plot in (self.category_plot, self.calibration_plot, self.position_plot):
            font_plot(plot, font)
        self.replay.apply_font(font)

    def clone(self, setup=None) -> View:
        """Recording this view records the replayed prompt's steps in the speculative panels."""
        return self.replay.clone(setup)

    def caption_fields(self, record: Any) -> dict:
        return self.replay.caption_fields(record)

    # ---- export
    def export_data(self) -> dict:
        if self.run is None:
            return {"view": self.name}
        return {"view": self.name, "header": self.run.header, **analysis.analyse(self.run)}

    def export_rows(self) -> tuple[list[str], list[list]]:
        header = [c[0] for c in self.model.columns]
        rows = [[get(r) for _, get, _ in self.model.columns] for r in self.model.rows]
        return header, rows
