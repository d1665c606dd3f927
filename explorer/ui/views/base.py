"""The contract every view follows: take records from a Qt-free job, keep them, render any step on demand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QFormLayout, QGridLayout, QVBoxLayout, QWidget

from ...errors import ExplorerError
from ...options import Schema
from ...session import Session
from ..kit import TitleFitter, font_plot, spin_box, static_plot, theme_plot
from ..theme import Theme
from .controls import CheckBox, changed_signal, control, control_value

__all__ = ["View", "font_plot", "spin_box", "static_plot", "theme_plot"]  # the kit's, for older imports


class View(QWidget):
    """A view renders step i of a list of records. It never computes: ``make_job`` returns a Qt-free generator
    factory that the worker runs off the GUI thread; its records arrive through ``add_record``."""

    name = "view"
    title = "View"
    # The view's settings (explorer.options): the panel's controls are built from it and tours, --set and
    # screenshots are checked by it. Display settings change only the drawing (a tour may change them within a
    # scene).
    schema: Schema = Schema("view", [])
    uses_draft = False  # whether make_job uses the session's draft model
    # What set_focus understands, for the docs and for tour errors: {"select": "...", "zoom": "..."}.
    focus_help: dict[str, str] = {}

    # Records changed outside a run (a saved run's prompt replayed): (step count, step to show). The window
    # hands it to the player when this view is the active one; a view never reaches into its window.
    steps_changed = Signal(int, int)
    # A step asked for from within the view (a click on a token jumps to the step that produced it): the window
    # has the player go there when this view is the active one.
    step_requested = Signal(int)

    def __init__(self, theme: Theme, parent: QWidget | None = None):
        super().__init__(parent)
        self.theme = theme
        self.records: list[Any] = []
        self.current = -1
        # The run's typed metadata (the runner's Job.meta: explorer.speculative.job.SpecRunMeta, ...), None
        # before a run.
        self.meta: Any = None
        self.titles = TitleFitter(theme.text)
        self._settings_form: QWidget | None = None  # built on first request (settings_widget)
        # Recording: draw nothing measured with the wall clock (tokens/s, ms), so that the same records give
        # the same pixels on every run. Views consult it when they render.
        self.deterministic = False
        # Set by the window once models are loaded: an empty view then asks only for Run (see empty_hint).
        self.models_loaded = False
        # Set by the window while models load (their names, "SmolLM2-135M + …"): an empty view says so.
        self.loading: str | None = None

    @property
    def display_settings(self) -> tuple[str, ...]:
        return self.schema.display_names

    def build_controls(self) -> None:
        """One control per schema option, as an attribute of the same name (self.gamma, ...); display settings
        redraw the step shown when they change."""
        for option in self.schema.panel():
            w = control(option)
            setattr(self, option.name, w)
            if option.display:
                changed_signal(w).connect(lambda *_: self.show_step(self.current))

    def settings_rows(self) -> list[tuple[str, QWidget]]:
        """(label, widget) pairs: the controls of this view's settings, in the schema's order."""
        return [("" if o.kind is bool else o.label, getattr(self, o.name)) for o in self.schema.panel()]

    def settings_widget(self) -> QWidget | None:
        """Controls for this view's computation (shown in the side panel), built once from settings_rows()."""
        if self._settings_form is None:
            rows = self.settings_rows()
            if not rows:
                return None
            w = QWidget()
            form = QFormLayout(w)
            form.setContentsMargins(0, 0, 0, 0)
            for label, widget in rows:
                form.addRow(label, widget)
            self._settings_form = w
        return self._settings_form

    def empty_hint(self, action: str) -> str:
        """What an empty view says: "Load a model and press Run to <action>.", "Loading <models>…" while they
        load, and once models are loaded only "Press Run to <action>." """
        if self.loading:
            return f"Loading {self.loading}…"
        return f"Press Run to {action}." if self.models_loaded else f"Load a model and press Run to {action}."

    def job_values(self) -> dict[str, Any]:
        """The computation's settings (display settings left out): the values this view's runner takes."""
        return {k: v for k, v in self.settings_values().items() if k not in self.display_settings}

    def make_job(self, session: Session) -> Callable[[], Iterator[Any]]:
        """The runner of this view's engine (explorer.jobs) on the current settings; its metadata is kept."""
        from ...jobs import run_job

        job = run_job(self.name, session, self.job_values(), deterministic=self.deterministic)
        self.meta = job.meta
        return job.records

    def models_ready(self, session: Session) -> None:
        """The window has loaded models into ``session``: views whose settings depend on them (which drafting
        methods can run) adapt here."""

    def themed_plots(self) -> tuple[pg.PlotWidget, ...]:
        """The view's plots, themed and fonted by the shared set_theme and apply_font."""
        return ()

    def lay_out_under_header(self, rows: list[list[QWidget]], stretches: tuple[int, ...]) -> QGridLayout:
        """The usual page: ``self.header`` on top, then ``rows`` of plots in a grid, row r stretched by
        ``stretches[r]``."""
        grid = QGridLayout()
        for r, row in enumerate(rows):
            for c, widget in enumerate(row):
                grid.addWidget(widget, r, c)
        for r, stretch in enumerate(stretches):
            grid.setRowStretch(r, stretch)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.addWidget(self.header)
        lay.addLayout(grid, 1)
        return grid

    def finish_init(self) -> None:
        """The constructor's tail, the same in every view: controls from the schema, then the theme."""
        self.build_controls()
        self.set_theme(self.theme)

    def render(self, record: Any | None) -> None:
        raise NotImplementedError

    def export_data(self) -> dict:
        raise NotImplementedError

    def export_rows(self) -> tuple[list[str], list[list[Any]]]:
        raise NotImplementedError

    def caption_fields(self, record: Any) -> dict[str, Any]:
        """Live numbers of ``record`` that a tour caption may name as {field} (besides {step} and {steps})."""
        return {}

    def focus_problem(self, record: Any, select: int) -> str | None:
        """Why ``select`` names nothing at ``record`` (None when it exists)."""
        return None

    def set_focus(self, select: int | None = None, zoom: str | None = None) -> None:
        """Select something of the step shown (a tree node, a query row) or zoom; raises ValueError when this
        view cannot or the value does not exist at this step. Called after show_step."""
        if select is not None or zoom is not None:
            what = "select" if select is not None else "zoom"
            raise ValueError(f"the {self.name} view does not support {what}")

    # ---- shared behaviour
    def apply_settings(self, values: dict[str, Any]) -> None:
        """Set controls by attribute name (scripts, screenshots, tours): spin boxes, combo boxes, check boxes."""
        for key, value in values.items():
            widget = self.setting_widgets().get(key)
            if widget is None:
                raise ExplorerError(self.check_setting(key, None) or f"the {self.name} view has no setting {key!r}")
            if hasattr(widget, "setCurrentText"):
                widget.setCurrentText(str(value))
            elif isinstance(widget, CheckBox):
                widget.setChecked(bool(value))
            else:
                widget.setValue(value)

    def setting_widgets(self) -> dict[str, QWidget]:
        """The controls by setting name (the names tours, scripts and screenshots use)."""
        return {o.name: getattr(self, o.name) for o in self.schema.panel()}

    def settings_values(self) -> dict[str, Any]:
        return {key: control_value(w) for key, w in self.setting_widgets().items()}

    def check_setting(self, key: str, value: Any) -> str | None:
        """Why ``value`` is not acceptable for setting ``key`` (None when it is), in the schema's words. Stricter
        than apply_settings, which clamps (tours and the command line are refused instead)."""
        return self.schema.problem(key, value, where=f"the {self.name} view")

    def clone(self, setup: Callable[[View], None] | None = None) -> View:
        """A second view of the same class showing the same records with the same settings (a recording draws
        this one offscreen while the window keeps its own); ``setup`` runs on it before the records arrive."""
        other = type(self)(self.theme)
        other.models_loaded, other.loading = self.models_loaded, self.loading
        if setup is not None:
            setup(other)
        other.apply_settings(self.settings_values())
        other.meta = self.meta
        for r in self.records:
            other.add_record(r)
        return other

    def clear(self) -> None:
        self.records = []
        self.current = -1
        self.render(None)

    def add_record(self, record: Any) -> None:
        self.records.append(record)

    def landing_step(self) -> int:
        """The step a finished run opens on when the timeline followed it live: the newest one by default."""
        return len(self.records) - 1

    def show_step(self, step: int) -> None:
        self.current = step
        self.render(self.records[step] if 0 <= step < len(self.records) else None)

    def set_theme(self, theme: Theme) -> None:
        """Plots and titles in the theme's colours, then the step shown again (views add their own pens)."""
        self.theme = theme
        self.titles.color = theme.text
        for plot in self.themed_plots():
            theme_plot(plot, theme)
        self.show_step(self.current)

    def apply_font(self, font: QFont) -> None:
        for plot in self.themed_plots():
            font_plot(plot, font)
        self.show_step(self.current)
