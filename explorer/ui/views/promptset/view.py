"""The prompt-set view: a header over the table panel and the set's plots, and below them the speculative view's
panels replaying the chosen prompt's stored steps. Runs computed here stream into a run file; File › Open run…
reopens one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QLineEdit, QSplitter, QVBoxLayout, QWidget

from ....errors import ExplorerError
from ....session import Session
from ....speculative import analysis
from ....speculative.describe_runs import empty_header_html, header_html
from ....speculative.job import replay_meta, resolve_auto
from ....speculative.options import PROMPT_SET_VIEW
from ....speculative.promptsets import Prompt, read_prompt_set
from ....speculative.runs import (
    Configuration,
    PromptResult,
    Run,
    RunWriter,
    check_configurations,
    heads_for_configurations,
    make_header,
    parse_compare,
    read_run,
    run_decoder,
    run_prompt_set,
)
from ...kit import path_row
from ...theme import Theme
from ..base import View
from ..speculative import SpeculativeView
from . import runfiles
from .plots import SetPlots
from .table_panel import TablePanel

PROMPTS_TIP = "Prompt set: text (one prompt a line), JSON lines, or Spec-Bench question.jsonl"
COMPARE_TIP = ("Configurations to compare with the base one, separated by ';' (each KEY=VALUE[,KEY=VALUE] with "
               "speculate's option names)")  # fmt: skip


class PromptSetView(View):
    """Speculative decoding over a whole prompt set: the table (one row per prompt, columns per compared
    configuration), acceptance per category, the draft's calibration and acceptance by draft position; selecting a
    row replays that prompt's stored steps in the speculative panels without recomputing."""

    name = "promptset"
    title = "Prompt set"
    schema = PROMPT_SET_VIEW
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
        self.table_panel = TablePanel(self)
        self.table_panel.prompt_chosen.connect(self.replay_prompt)
        self.table_panel.config_changed.connect(self._on_config)
        self.set_plots = SetPlots(self.titles, self)
        self.replay = SpeculativeView(theme, self)  # the speculative panels, fed with stored records
        # Stored runs carry no cost curve (the header says so in a line), and the table needs the room.
        self.replay.set_costs_visible(False)
        self.replay.step_requested.connect(self._on_replay_step)
        self._alias_widgets()
        self._lay_out()

        # The run's settings: the base configuration from the schema's controls (finish_init), plus the prompt
        # set and the configurations to compare.
        self.prompts_edit = QLineEdit(str(runfiles.DEFAULT_PROMPTS))
        self.prompts_edit.setToolTip(PROMPTS_TIP)
        self.compare_edit = QLineEdit("")
        self.compare_edit.setPlaceholderText("e.g. gamma=2; method=lookup")
        self.compare_edit.setToolTip(COMPARE_TIP)
        self.finish_init()

    def _alias_widgets(self) -> None:
        """The panels' widgets under the names scripts, tests and the app use (view.table, view.summary, ...)."""
        tp, sp = self.table_panel, self.set_plots
        self.model, self.proxy, self.table = tp.model, tp.proxy, tp.table
        self.filter_edit, self.category_combo, self.config_combo = tp.filter_edit, tp.category_combo, tp.config_combo
        self.category_plot, self.calibration_plot, self.position_plot = sp.plots
        self.summary = sp.summary

    def _lay_out(self) -> None:
        upper = QSplitter(Qt.Orientation.Horizontal, self)
        upper.addWidget(self.table_panel)
        upper.addWidget(self.set_plots)
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

    # ---- settings
    def settings_rows(self) -> list[tuple[str, QWidget]]:
        prompts = path_row(self.prompts_edit, self._browse_prompts)
        return [("Prompts", prompts), ("Compare", self.compare_edit), *super().settings_rows()]

    def _browse_prompts(self) -> None:
        path = runfiles.choose_prompt_set(self, self.prompts_edit.text())
        if path:
            self.prompts_edit.setText(path)

    def configurations(self) -> list[Configuration]:
        """The base configuration (this view's settings) and each one of the Compare box (not checked yet)."""
        values = dict(self.settings_values())
        if values["accept"] == "sample" and values["temperature"] <= 0:
            values["temperature"] = 1.0
        values.setdefault("top_k", 0)
        configs = [Configuration("base", values)]
        for text in self.compare_edit.text().split(";"):
            if text.strip():
                configs.append(parse_compare(text.strip(), values, explicit_accept=True))
        return configs

    # ---- computation (Qt-free job)
    def make_job(self, session: Session) -> Callable[[], Iterator[PromptResult]]:
        """Every prompt under every configuration, as ``explorer speculate --prompts`` runs them (the draft heads
        of head methods included), streamed into a new run file in the runs folder and shown as it fills."""
        target, draft = session.target, session.draft
        prompts_file = self.prompts_edit.text().strip()
        prompts = read_prompt_set(prompts_file)
        asked = self.configurations()
        resolved = [resolve_auto(session, c.values) for c in asked]
        configs = [replace(c, values=values) for c, (values, _) in zip(asked, resolved, strict=True)]
        check_configurations([c for c in configs if not c.uses_heads], has_draft=draft is not None)
        lookup_kind = next((kind for _, kind in resolved if kind), None)  # auto: lookup first, with these heads
        heads = heads_for_configurations(session, configs, lookup_kind=lookup_kind)
        check_configurations(configs, has_draft=draft is not None, heads=heads)
        system = session.system or None
        encoding = {"chat": session.chat, "system": system, "ignore_eos": session.ignore_eos}
        header = make_header(prompts, configs, target, draft, configs[0].values["seed"], prompts_file, encoding,
                             heads)  # fmt: skip
        self._close_writer()
        path = runfiles.new_run_path()
        self.writer = writer = RunWriter(path, header, resume=False)
        self.set_run(Run(path, header))  # filled as the results arrive on this thread (the writer has its own)
        self._decoders[str(header["target"]["path"])] = target.decode  # the loaded tokenizer, not a second copy

        def encode(p: Prompt) -> list[int]:
            chat = session.chat or (p.chat and target.prompt_format.chat_template is not None)
            return target.prompt_ids(p.text, chat=chat, system=system if chat else None)

        def job() -> Iterator[PromptResult]:
            try:
                yield from run_prompt_set(target, draft, prompts, configs, writer, encode=encode, heads=heads)
            finally:
                writer.close()

        return job

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # ---- records: prompt results arrive here; self.records are the replayed prompt's steps (the timeline's)
    def add_record(self, record: Any) -> None:
        if not isinstance(record, PromptResult) or self.run is None or self.writer is None:
            return  # results belong to the run this view computes (not to one opened since)
        self.run.results.append(record)
        self.table_panel.add(record)
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
        self.clear()
        self.table_panel.set_run(run)
        self._render_header()
        self._dirty = True
        QTimer.singleShot(0, self._refresh_if_dirty)  # the table first; the plots one event later
        if run.results:
            self.table.selectRow(0)

    # ---- run files
    def open_run(self, path: str | Path) -> Run:
        run = read_run(path)
        self._close_writer()
        self.set_run(run)
        return run

    def open_run_dialog(self, parent: QWidget | None = None) -> bool:
        """File › Open run…: choose a run file and show it (raises ExplorerError on a malformed one)."""
        start = self.run.path.parent if self.run is not None and self.run.path else runfiles.runs_folder()
        path = runfiles.choose_run_to_open(parent or self, start)
        if path:
            self.open_run(path)
        return bool(path)

    def save_run_dialog(self, parent: QWidget | None = None) -> bool:
        """File › Save run…: copy the shown run (its complete results) to a file the user chooses."""
        if self.run is None or self.run.path is None:
            raise ExplorerError("no run to save: open one or run a prompt set first")
        path = runfiles.choose_run_to_save(parent or self, self.run.path.name)
        if path:
            self.save_run(path)
        return bool(path)

    def save_run(self, path: str | Path) -> Path:
        """Copy the run file (complete results only) to ``path``: a temporary name there, renamed when complete."""
        if self.run is None or self.run.path is None:
            raise ExplorerError("no run to save: open one or press Run")
        complete = self.writer.run.complete_bytes if self.writer is not None else self.run.complete_bytes
        return runfiles.copy_complete(self.run.path, path, complete)

    # ---- replay
    def select_prompt(self, prompt_id: str) -> None:
        """Choose ``prompt_id``'s row (replayed even when the filter hides it)."""
        if self.table_panel.has_prompt(prompt_id) and not self.table_panel.choose(prompt_id):
            self.replay_prompt(prompt_id)

    def _on_config(self) -> None:
        self._refresh_plots()
        if self.replayed is not None:
            self.replay_prompt(self.replayed.prompt)

    def replay_prompt(self, prompt_id: str, config: int | None = None) -> None:
        """Feed the speculative panels with the stored steps of ``prompt_id`` (under the chosen configuration)."""
        if self.run is None:
            return
        config = self.table_panel.chosen_config if config is None else max(config, 0)
        result = next((r for r in self.run.results if r.prompt == prompt_id and r.config == config), None)
        if result is None:
            return
        steps = self.run.load_steps(result)
        self.replayed = result
        self.replay.clear()
        self.replay.meta = replay_meta(self.run, result, self._decoder(result))
        for s in steps:
            self.replay.add_record(s)
        self.records = list(steps)
        self.current = -1
        # Show the last step that drafted something (the very last one often only adds the final token).
        shown = max((s.step for s in steps if len(s.tree.tokens)), default=len(steps) - 1)
        self.steps_changed.emit(len(self.records), shown)  # the window's player takes the count and the step
        if self.current != shown:  # no window listening: show it here
            self.show_step(shown)
        self._render_header()

    def _decoder(self, result: PromptResult) -> Callable[[list[int]], str]:
        key = str((self.run.header.get("target") or {}).get("path"))
        if key not in self._decoders:
            self._decoders[key] = run_decoder(self.run.header, result.texts)
        return self._decoders[key]

    def _on_replay_step(self, step: int) -> None:
        """A click in the replayed panels asks for a step: the window's player goes there."""
        self.step_requested.emit(step)
        if self.current != step:  # no window listening: show it here
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
            self.header.setText(empty_header_html(self.theme))

    def _render_header(self) -> None:
        if self.run is None:
            return self.render(None)
        self.header.setText(header_html(self.run, self.theme, self.replayed, len(self.records)))

    def _refresh_if_dirty(self) -> None:
        if self._dirty:
            self._refresh_plots()
            self._render_header()

    def _refresh_plots(self) -> None:
        self._dirty = False
        self.set_plots.show_run(self.run, self.table_panel.chosen_config, self.theme, self.deterministic)

    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        return self.set_plots.plots

    def set_theme(self, theme: Theme) -> None:
        self.replay.set_theme(theme)
        super().set_theme(theme)
        self._dirty = True
        self._refresh_if_dirty()

    def apply_font(self, font: QFont) -> None:
        self.replay.apply_font(font)
        super().apply_font(font)
        self.table_panel.fit_columns()  # the cells' text grew or shrank with the font: no "0.…" cells
        QTimer.singleShot(0, self.table_panel.fit_columns)  # again once the table's own font has changed

    # The replayed tree's least share of the view's height (presentation mode's larger text would otherwise
    # squeeze it to a sliver between the header and the panels below it).
    TREE_SHARE = 0.22

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.replay.tree_plot.setMinimumHeight(int(self.TREE_SHARE * event.size().height()))
        super().resizeEvent(event)

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
        columns = self.model.columns
        return [c.title for c in columns], [[c.value(r) for c in columns] for r in self.model.rows]
