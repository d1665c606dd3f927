"""The main window: model panel, view switcher, the shared player, status bar, menus.

All model work goes through one :class:`Worker`; records stream into the view that asked for them and the player
follows the newest step unless the user has scrubbed back.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QSettings, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QStackedWidget,
    QTabBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..atomic import atomic_path, write_text_atomic
from ..attention.backends import available_backends, describe_backend, use_backend
from ..errors import ExplorerError
from ..models.checkpoint import DTYPES, default_dtype
from ..recording.tour import DEFAULT_CAPTION
from ..recording.video import parse_size
from ..session import Session
from .player import Player
from .recorder import GuiRecording
from .theme import THEMES, apply_theme, set_font_scale
from .views import VIEWS
from .views.controls import ChoiceBox
from .worker import Worker, reserve_gui_core

MAX_RECENT = 8
PRESENTATION_SCALE = 1.6
PRESENTATION_HINT = "F11 or Esc to leave presentation mode"
PRESENTATION_HINT_MS = 3000
PANEL_MAX_SHARE = 0.38  # of the window's width


class ModelsLoaded:
    """What the loading job yields: the loaded pair (plain data, handed to the GUI thread)."""

    def __init__(self, target, draft):
        self.target, self.draft = target, draft


class ElidedLabel(QLabel):
    """One line that never wraps or widens its parent: text too long for the space ends in "…", and the whole
    text is in the tooltip. text() answers the whole text."""

    def __init__(self, text: str = "", parent: QWidget | None = None):
        super().__init__(parent)
        self._full = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt name
        self._full = text
        self._elide()

    def text(self) -> str:
        return self._full

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(self.fontMetrics().horizontalAdvance(self._full) + 4, super().sizeHint().height())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(0, super().minimumSizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._elide()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self._elide()

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideRight, max(0, self.width()))
        super().setText(shown)
        self.setToolTip(self._full if shown != self._full else "")


class MainWindow(QMainWindow):
    def __init__(self, session: Session | None = None, theme: str = "light", settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("explorer")
        self.setMinimumSize(640, 420)
        self.session = session or Session()
        self.settings = settings or QSettings("explorer", "explorer")
        self.theme = THEMES[theme]
        self.font_scale = 1.0
        self.presenting = False
        self.error_box: QMessageBox | None = None
        self.last_error: str | None = None
        self._job_view = None
        self._pending_run = False
        self._loaded_fields: tuple[str, str, str, str] | None = None  # the model fields of the loaded pair
        self._loading_fields = self._loaded_fields
        self._stale_empty: set = set()  # empty views still saying "load a model" after models loaded
        self.recording: GuiRecording | None = None

        reserve_gui_core()
        self.worker = Worker(self)
        self.worker.record.connect(self._on_record)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.busy.connect(self._on_busy)

        self.views = {name: cls(self.theme) for name, cls in VIEWS.items()}
        self.tabs = QTabBar(self)
        self.tabs.setExpanding(False)
        self.stack = QStackedWidget(self)
        for view in self.views.values():
            self.tabs.addTab(view.title)
            self.stack.addWidget(view)
        self.tabs.currentChanged.connect(self._on_tab)
        self.player = Player(self)
        self.player.step_changed.connect(self._on_step)
        for view in self.views.values():
            if hasattr(view, "step_requested"):  # e.g. a click on a token jumps to the step that produced it
                view.step_requested.connect(self.player.go)
        # Records can arrive faster than a view can paint them: while streaming, render the newest step at most
        # 20 times a second instead of once per record, so the GUI thread never falls behind.
        self._live_render = QTimer(self)
        self._live_render.setSingleShot(True)
        self._live_render.setInterval(50)
        self._live_render.timeout.connect(self._render_live)

        central = QWidget(self)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 4, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.tabs)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.player)
        self.setCentralWidget(central)

        self._build_panel()
        self._build_status()
        self._build_menus()
        self._build_shortcuts()
        apply_theme(QApplication.instance(), self.theme)
        self.player.set_color(self.theme.text)
        self._apply_font()
        self._sync_panel_from_session()
        self._update_status()

    # ------------------------------------------------------------------ building
    def _build_panel(self) -> None:
        """Models, prompt and the view's settings scroll; Run / Cancel and the progress line below them stay put."""
        content = QWidget()
        v = QVBoxLayout(content)
        v.setContentsMargins(6, 4, 6, 4)
        models = QGroupBox("Models")
        form = QFormLayout(models)
        self.target_edit = QLineEdit()
        self.draft_edit = QLineEdit()
        self.draft_edit.setPlaceholderText("none")
        form.addRow("Target", self._with_browse(self.target_edit, "target"))
        form.addRow("Draft", self._with_browse(self.draft_edit, "draft"))
        self.device_combo = ChoiceBox(["cpu"] + (["cuda"] if _cuda_available() else []), "cpu")
        self.dtype_combo = ChoiceBox(["auto", *DTYPES], "auto")
        self.attention_combo = ChoiceBox(available_backends(), available_backends()[0])
        self.attention_combo.setToolTip("How the model computes attention (triton: the FlashAttention kernel)")
        form.addRow("Device", self.device_combo)
        form.addRow("Dtype", self.dtype_combo)
        form.addRow("Attention", self.attention_combo)
        self.load_button = QPushButton("Load models")
        self.load_button.clicked.connect(self.load_models)
        form.addRow(self.load_button)
        v.addWidget(models)

        prompt_box = QGroupBox("Prompt")
        pv = QVBoxLayout(prompt_box)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setMaximumHeight(140)
        pv.addWidget(self.prompt_edit)
        self.chat_check = QCheckBox("Chat template")  # the prompt as a user turn in the model's chat template
        self.chat_check.setToolTip("Wrap the prompt in the model's chat template, assistant turn opened (--chat)")
        self.system_edit = QLineEdit()
        self.system_edit.setPlaceholderText("System prompt (chat)")
        self.chat_check.toggled.connect(self.system_edit.setEnabled)
        pv.addWidget(self.chat_check)
        pv.addWidget(self.system_edit)
        v.addWidget(prompt_box)

        self.settings_box = QGroupBox("Settings")
        sv = QVBoxLayout(self.settings_box)
        self.settings_stack = QStackedWidget()
        for view in self.views.values():
            self.settings_stack.addWidget(view.settings_widget() or QWidget())
        sv.addWidget(self.settings_stack)
        v.addWidget(self.settings_box)
        v.addStretch(1)

        self.panel_scroll = QScrollArea()
        self.panel_scroll.setWidgetResizable(True)
        self.panel_scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.panel_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.panel_scroll.setWidget(content)

        panel = QWidget()
        outer = QVBoxLayout(panel)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(self.panel_scroll, 1)
        footer = QWidget()
        fv = QVBoxLayout(footer)
        fv.setContentsMargins(8, 6, 8, 6)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.run_view)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.worker.cancel)
        self.cancel_button.setEnabled(False)
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        fv.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(8)
        self.progress_label = ElidedLabel("")
        fv.addWidget(self.progress)
        fv.addWidget(self.progress_label)
        outer.addWidget(footer)

        self.dock = QDockWidget("Model", self)
        self.dock.setObjectName("model-panel")
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)

    def _with_browse(self, edit: QLineEdit, role: str) -> QWidget:
        w = QWidget()
        h = QHBoxLayout(w)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        b = QToolButton()
        b.setText("…")
        b.setToolTip(f"Choose the {role} model directory")
        b.clicked.connect(lambda: self.open_model_dialog(role))
        h.addWidget(b)
        return w

    def _build_status(self) -> None:
        self.status_models = ElidedLabel()
        self.status_device = ElidedLabel()  # takes its whole width when there is room, elides when there is not
        self.status_device.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.status_rec = QLabel()  # "● REC n/N" while a recording runs
        self.status_rec.setStyleSheet("color: #d62828; font-weight: bold")
        self.status_rec.setVisible(False)
        self.rec_stop = QToolButton()
        self.rec_stop.setText("■ Stop")
        self.rec_stop.setToolTip("Stop recording (the partial video is deleted)")
        self.rec_stop.setAutoRaise(True)
        self.rec_stop.clicked.connect(self.stop_recording)
        self.rec_stop.setVisible(False)
        self.statusBar().addWidget(self.status_models, 1)
        self.statusBar().addPermanentWidget(self.status_rec)
        self.statusBar().addPermanentWidget(self.rec_stop)
        self.statusBar().addPermanentWidget(self.status_device)
        self.statusBar().setSizeGripEnabled(False)
        self.status_device.setContentsMargins(0, 0, 10, 0)
        self.status_models.setContentsMargins(6, 0, 0, 0)

    def _shortcut_action(self, menu, text: str, keys, slot) -> QAction:
        """A menu entry whose shortcut belongs to the window, so that it works when the menu bar is hidden
        (presentation mode hides it)."""
        act = QAction(text, self)
        act.setShortcuts([QKeySequence(k) for k in keys])
        act.triggered.connect(lambda *_: slot())
        menu.addAction(act)
        self.addAction(act)
        return act

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._shortcut_action(
            file, "Open model…", [QKeySequence.StandardKey.Open], lambda: self.open_model_dialog("target")
        )
        file.addAction("Open draft model…", lambda: self.open_model_dialog("draft"))
        self.recent_menu = file.addMenu("Recent models")
        self._rebuild_recent()
        file.addSeparator()
        file.addAction("Open run…", lambda: self._run_file_dialog("open"))  # prompt-set runs (promptset view)
        file.addAction("Save run…", lambda: self._run_file_dialog("save"))
        file.addSeparator()
        self._shortcut_action(file, "Export view as PNG…", ["Ctrl+E"], self._export_png_dialog)
        self._shortcut_action(file, "Export data (JSON/CSV)…", ["Ctrl+Shift+E"], self._export_data_dialog)
        self.record_action = self._shortcut_action(file, "Record view…", ["Ctrl+Shift+R"], self._record_dialog)
        self.stop_record_action = file.addAction("Stop recording", self.stop_recording)
        self.stop_record_action.setEnabled(False)
        file.addSeparator()
        self._shortcut_action(file, "Quit", [QKeySequence.StandardKey.Quit], self.close)

        view = bar.addMenu("&View")
        themes = QActionGroup(self)
        for name in THEMES:
            act = QAction(name.capitalize() + " theme", self, checkable=True)
            act.setChecked(name == self.theme.name)
            act.triggered.connect(lambda _=False, n=name: self.set_theme(n))
            themes.addAction(act)
            view.addAction(act)
        view.addSeparator()
        self._shortcut_action(view, "Larger text", ["Ctrl++", "Ctrl+="], lambda: self.zoom(1.15))
        self._shortcut_action(view, "Smaller text", ["Ctrl+-"], lambda: self.zoom(1 / 1.15))
        self._shortcut_action(view, "Normal text size", ["Ctrl+0"], lambda: self.zoom(None))
        self.present_action = self._shortcut_action(
            view, "Presentation mode", ["F11"], lambda: self.set_presentation(not self.presenting)
        )
        self.present_action.setCheckable(True)

        run = bar.addMenu("&Run")
        self.run_action = self._shortcut_action(run, "Run view", ["Ctrl+R"], self.run_view)
        self.cancel_action = self._shortcut_action(run, "Cancel (or leave presentation mode)", ["Esc"], self.escape)

    def _build_shortcuts(self) -> None:
        for key, slot in (
            (Qt.Key.Key_Space, self.player.toggle_play),
            (Qt.Key.Key_Left, self.player.back),
            (Qt.Key.Key_Right, self.player.forward),
            (Qt.Key.Key_Home, self.player.first),
            (Qt.Key.Key_End, self.player.last),
        ):
            sc = QShortcut(QKeySequence(key), self)  # window-wide: works in every mode, whatever has focus
            sc.activated.connect(slot)
        # The hint shown on entering presentation mode, over the views.
        self.presentation_hint = QLabel(PRESENTATION_HINT, self)
        self.presentation_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.presentation_hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.presentation_hint.setStyleSheet(
            "background: rgba(20, 22, 27, 215); color: #f4f5f7; border-radius: 8px; padding: 10px 22px"
        )
        self.presentation_hint.hide()
        self._hint_timer = QTimer(self)
        self._hint_timer.setSingleShot(True)
        self._hint_timer.setInterval(PRESENTATION_HINT_MS)
        self._hint_timer.timeout.connect(self.presentation_hint.hide)

    # ------------------------------------------------------------------ models
    def _sync_panel_from_session(self) -> None:
        s = self.session
        self.target_edit.setText(str(s.target_dir))
        self.draft_edit.setText(str(s.draft_dir) if s.draft_dir else "")
        self.prompt_edit.setPlainText(s.prompt)
        self.chat_check.setChecked(s.chat)
        self.system_edit.setText(s.system or "")
        self.system_edit.setEnabled(s.chat)
        self.device_combo.setCurrentText(s.device)
        self.dtype_combo.setCurrentText(s.dtype or "auto")
        self.attention_combo.setCurrentText(s.attention_backend)

    def _sync_session_from_panel(self) -> None:
        s = self.session
        s.target_dir = Path(self.target_edit.text().strip()).expanduser()
        draft = self.draft_edit.text().strip()
        s.draft_dir = Path(draft).expanduser() if draft else None
        s.prompt = self.prompt_edit.toPlainText()
        s.chat, s.system = self.chat_check.isChecked(), self.system_edit.text() or None
        s.device = self.device_combo.currentText()
        s.dtype = None if self.dtype_combo.currentText() == "auto" else self.dtype_combo.currentText()
        s.attention_backend = self.attention_combo.currentText()

    def open_model_dialog(self, role: str) -> None:
        start = self.target_edit.text() if role == "target" else self.draft_edit.text()
        path = QFileDialog.getExistingDirectory(self, f"Open {role} model directory", start)
        if path:
            (self.target_edit if role == "target" else self.draft_edit).setText(path)
            self.load_models()

    def _model_fields(self) -> tuple[str, str, str, str]:
        return (
            self.target_edit.text(),
            self.draft_edit.text(),
            self.device_combo.currentText(),
            self.dtype_combo.currentText(),
        )

    def _restore_model_fields(self) -> None:
        """After a failed load: the fields name the models that are loaded again, as the status bar does."""
        if self._loaded_fields is None:
            return  # nothing loaded: leave what the user typed, to be corrected
        target, draft, device, dtype = self._loaded_fields
        self.target_edit.setText(target)
        self.draft_edit.setText(draft)
        self.device_combo.setCurrentText(device)
        self.dtype_combo.setCurrentText(dtype)
        s = self.session
        s.target_dir, s.draft_dir = s.target.path, (s.draft.path if s.draft is not None else None)
        s.device = device
        s.dtype = None if dtype == "auto" else dtype

    def _refuse_while_busy(self) -> bool:
        """Run and load wait for the running job: say so instead of blocking the window on it."""
        if self.worker.running:
            self.statusBar().showMessage("a job is running: Cancel (Esc) it first", 4000)
            return True
        return False

    def load_models(self, then_run: bool = False) -> None:
        """Load target (and draft) in the worker; the GUI keeps running. Optionally run the view afterwards."""
        if self._refuse_while_busy():
            return
        self._sync_session_from_panel()
        wanted = replace(self.session, target=None, draft=None)  # a snapshot: the panel may change meanwhile

        def job():
            yield ModelsLoaded(*wanted.load_pair())

        self._pending_run = then_run
        self._job_view = None
        self._loading_fields = self._model_fields()
        target_dir, draft_dir = wanted.target_dir, wanted.draft_dir
        self.progress_label.setText(f"loading {target_dir.name}" + (f" + {draft_dir.name}" if draft_dir else "") + "…")
        self.worker.start(job)

    def _remember(self, path: Path) -> None:
        recent = [p for p in (self.settings.value("recent_models") or []) if p != str(path)]
        recent.insert(0, str(path))
        self.settings.setValue("recent_models", recent[:MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.value("recent_models") or []
        if isinstance(recent, str):
            recent = [recent]
        for p in recent:
            self.recent_menu.addAction(p, lambda p=p: (self.target_edit.setText(p), self.load_models()))
        self.recent_menu.setEnabled(bool(recent))

    # ------------------------------------------------------------------ running views
    @property
    def active_view(self):
        return self.stack.currentWidget()

    def select_view(self, name: str) -> None:
        self.tabs.setCurrentIndex(list(self.views).index(name))

    def run_view(self) -> None:
        """Run the active view's computation on the loaded models (loading them first if needed)."""
        if self._refuse_while_busy():
            return
        self._sync_session_from_panel()
        if self.session.target is None or self._models_changed():
            self.load_models(then_run=True)
            return
        for lm in (self.session.target, self.session.draft):
            if lm is not None:
                use_backend(lm.model, self.session.attention_backend)  # switching backends needs no reload
        self._update_status()
        view = self.active_view
        try:
            job = view.make_job(self.session)
        except Exception as exc:  # noqa: BLE001 - e.g. prompt too long: shown, never raised
            self._show_error(str(exc))
            return
        view.clear()
        self.player.reset()
        self._job_view = view
        self.progress_label.setText(f"running {view.name}…")
        self.worker.start(job)

    def run_view_blocking(self) -> None:
        """Run the active view's job on this thread, start to end (headless rendering; the GUI uses run_view)."""
        view = self.active_view
        self._update_status()
        view.clear()
        self.player.reset()
        self._job_view = view
        for record in view.make_job(self.session)():
            self._on_record(record)
        self._on_finished()  # as when a worker finishes: render the newest step now

    def _models_changed(self) -> bool:
        s = self.session
        loaded_dtype = str(s.target.dtype).removeprefix("torch.")
        want_dtype = s.dtype or str(default_dtype(s.device)).removeprefix("torch.")
        draft_path = s.draft.path if s.draft is not None else None
        return (
            s.target.path != s.target_dir
            or draft_path != s.draft_dir
            or s.target.device.type != s.device
            or loaded_dtype != want_dtype
        )

    def _on_record(self, rec: Any) -> None:
        if isinstance(rec, ModelsLoaded):
            self.session.target, self.session.draft = rec.target, rec.draft
            self._loaded_fields = self._loading_fields
            self._remember(rec.target.path)
            self._update_status()
            for view in self.views.values():
                view.models_loaded = True  # an empty view now says "press Run", not "load a model"...
            self._stale_empty = {v for v in self.views.values() if not v.records}
            self._refresh_if_stale(self.active_view)  # ...the others when they are shown (each costs a render)
            return
        view = self._job_view
        if view is None:
            return
        view.add_record(rec)
        if view is self.active_view:
            self.player.blockSignals(True)
            self.player.set_count(len(view.records))
            self.player.blockSignals(False)
        if not self._live_render.isActive():
            self._live_render.start()

    def _render_live(self) -> None:
        view = self._job_view
        if view is None:
            return
        if view is self.active_view:
            with self.worker.gate:  # the job waits while this frame is drawn
                view.show_step(self.player.step)
                view.repaint()
        self.progress_label.setText(f"{view.name}: {len(view.records)} steps")

    def _on_finished(self) -> None:
        if self._live_render.isActive():
            self._live_render.stop()
        if self._job_view is not None and self._job_view is self.active_view:
            self.active_view.show_step(self.player.step)  # the final state, without waiting for the timer
        if self.worker.cancelled:
            self._pending_run = False
            if self._job_view is None:
                self._restore_model_fields()
                self.progress_label.setText("loading cancelled")
            else:
                n = len(self._job_view.records)
                self.progress_label.setText(f"{self._job_view.name}: cancelled after {n} step{'s' * (n != 1)}")
        elif self._job_view is None:
            self.progress_label.setText("models loaded")
            if self._pending_run:
                self._pending_run = False
                self.run_view()
        else:
            self.progress_label.setText(f"{self._job_view.name}: done, {len(self._job_view.records)} steps")

    def _on_failed(self, message: str) -> None:
        self._pending_run = False
        if self._job_view is None:
            self._restore_model_fields()
            self.progress_label.setText(f"loading failed: {message}")
        else:
            n = len(self._job_view.records)
            self.progress_label.setText(f"{self._job_view.name}: failed after {n} step{'s' * (n != 1)}: {message}")
        self._update_status()
        self._show_error(message)

    def _show_error(self, message: str) -> None:
        """A non-blocking dialog: the app keeps running."""
        self.last_error = message
        box = QMessageBox(QMessageBox.Icon.Warning, "explorer", message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda *_: self._forget_error_box(box))  # closed boxes are deleted: drop the handle
        box.open()
        self.error_box = box

    def _forget_error_box(self, box: QMessageBox) -> None:
        if self.error_box is box:
            self.error_box = None

    def _on_busy(self, busy: bool) -> None:
        self.progress.setRange(0, 0 if busy else 1)
        self.cancel_button.setEnabled(busy)
        self.run_button.setEnabled(not busy)
        self.load_button.setEnabled(not busy)
        self.run_action.setEnabled(not busy)

    def _refresh_if_stale(self, view) -> None:
        if view in self._stale_empty:
            self._stale_empty.discard(view)
            if not view.records:
                view.show_step(-1)

    def _on_tab(self, index: int) -> None:
        self.stack.setCurrentIndex(index)
        self.settings_stack.setCurrentIndex(index)
        view = self.active_view
        self._refresh_if_stale(view)
        self.player.pause()
        self.player.count = len(view.records)
        self.player.step = -1
        self.player.go(view.current if view.current >= 0 else len(view.records) - 1)

    def _on_step(self, step: int) -> None:
        self.active_view.show_step(step)

    def _update_status(self) -> None:
        s = self.session
        if s.target is None:
            self.status_models.setText("no model loaded")
            device, dtype = s.device, s.dtype or str(default_dtype(s.device)).removeprefix("torch.")
        else:
            names = s.target.name + (f"  ·  draft {s.draft.name}" if s.draft else "")
            self.status_models.setText(f"target {names}")
            device, dtype = str(s.target.device), str(s.target.dtype).removeprefix("torch.")
        text = f"device {device}  ·  {dtype}  ·  attention {describe_backend(s.attention_backend, device)}"
        self.status_device.setText(text)

    # ------------------------------------------------------------------ comfort
    def set_theme(self, name: str) -> None:
        self.theme = THEMES[name]
        apply_theme(QApplication.instance(), self.theme)
        self.player.set_color(self.theme.text)
        for view in self.views.values():
            view.set_theme(self.theme)

    def zoom(self, factor: float | None) -> None:
        self.font_scale = 1.0 if factor is None else max(0.6, min(3.0, self.font_scale * factor))
        self._apply_font()

    def escape(self) -> None:
        """Esc leaves presentation mode first; otherwise it cancels the running job."""
        if self.presenting:
            self.set_presentation(False)
        else:
            self.worker.cancel()

    def set_presentation(self, on: bool) -> None:
        """Projector mode: bigger text, no chrome, full screen; F11 or Esc leaves it (a hint says so)."""
        self.presenting = on
        self.present_action.setChecked(on)
        for w in (self.dock, self.statusBar()):
            w.setVisible(not on)
        self.menuBar().setVisible(not on)
        self._apply_font()
        if on and QApplication.platformName() != "offscreen":
            self.showFullScreen()
        elif not on and self.isFullScreen():
            self.showNormal()
        if on:
            focus = QApplication.focusWidget()
            if focus is None or not focus.isVisible():
                self.tabs.setFocus()  # the panel's field had focus: keys go to the window again
            self._show_presentation_hint()
        else:
            self._hint_timer.stop()
            self.presentation_hint.hide()

    def _show_presentation_hint(self) -> None:
        self.presentation_hint.setFont(QApplication.font())  # the presentation's larger text
        self.presentation_hint.adjustSize()
        self._place_presentation_hint()
        self.presentation_hint.show()
        self.presentation_hint.raise_()
        self._hint_timer.start()

    def _place_presentation_hint(self) -> None:
        hint = self.presentation_hint
        hint.move((self.width() - hint.width()) // 2, (self.height() - hint.height()) * 2 // 5)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        if event.size().width() != event.oldSize().width():
            self._fit_panel()
        if self.presentation_hint.isVisible():
            self._place_presentation_hint()

    def _apply_font(self) -> None:
        app = QApplication.instance()
        scale = self.font_scale * (PRESENTATION_SCALE if self.presenting else 1.0)
        set_font_scale(app, scale)
        self.player.set_icon_scale(scale)
        font = app.font()
        for view in self.views.values():
            if hasattr(view, "apply_font"):
                view.apply_font(font)
        self._fit_panel()
        QTimer.singleShot(0, self._fit_panel)  # again once the new font's layout requests are processed
        self._update_status()

    def _fit_panel(self) -> None:
        """Make the panel as wide as its widest settings at the current text size, but never wider than
        PANEL_MAX_SHARE of the window (the views come first; beyond that the panel scrolls sideways too)."""
        content = self.panel_scroll.widget()
        content.adjustSize()
        bar = self.panel_scroll.verticalScrollBar().sizeHint().width()
        width = max(content.minimumSizeHint().width(), self.fontMetrics().averageCharWidth() * 30) + bar + 4
        width = min(width, int(self.width() * PANEL_MAX_SHARE))
        self.panel_scroll.setMinimumWidth(width)
        self.resizeDocks([self.dock], [width], Qt.Orientation.Horizontal)  # narrower again after Ctrl 0

    # ------------------------------------------------------------------ export
    def export_png(self, path: str | Path) -> Path:
        """The active view as a PNG, written to a temporary name and renamed (a failed save keeps the old file)."""
        path = Path(path)
        with atomic_path(path) as tmp:
            if not self.active_view.grab().save(str(tmp), "PNG"):
                raise OSError(f"could not write {path}")
        return path

    def export_data(self, path: str | Path) -> Path:
        """The active view's data as CSV (by suffix) or JSON, all or nothing."""
        path = Path(path)
        view = self.active_view
        if path.suffix.lower() == ".csv":
            header, rows = view.export_rows()
            with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
        else:
            write_text_atomic(path, json.dumps(view.export_data(), indent=1))
        return path

    def _export_png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export view", f"{self.active_view.name}.png", "PNG (*.png)")
        if path:
            self._guard(lambda: self.export_png(path))

    def _export_data_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export data", f"{self.active_view.name}.json", "JSON (*.json);;CSV (*.csv)"
        )
        if path:
            self._guard(lambda: self.export_data(path))

    # ------------------------------------------------------------------ recording
    def start_recording(
        self,
        path: str | Path,
        size: tuple[int, int] = (1280, 720),
        fps: float = 30.0,
        seconds_per_step: float = 1.0,
        from_current: bool = False,
        caption: str | None = None,
    ) -> GuiRecording:
        """Record the active view's steps (all, or from the current one) to ``path`` (MP4, GIF or a directory of
        PNGs) at exactly ``size``, offscreen, while the window keeps running; raises ExplorerError on bad input."""
        if self.recording is not None and self.recording.running:
            raise ExplorerError("a recording is already running: stop it first")
        view = self.active_view
        first = max(view.current, 0) if from_current else 0
        rec = GuiRecording(view, path, size, fps, seconds_per_step, first, caption, self.session, parent=self)
        rec.progress.connect(self._on_record_progress)
        rec.finished.connect(self._on_record_finished)
        rec.failed.connect(self._on_record_failed)
        self.recording = rec
        self.record_action.setEnabled(False)
        self.stop_record_action.setEnabled(True)
        self.status_rec.setVisible(True)
        self.rec_stop.setVisible(True)
        self._on_record_progress(0, rec.total)
        rec.start()
        return rec

    def stop_recording(self) -> None:
        if self.recording is not None:
            self.recording.cancel()

    def _on_record_progress(self, done: int, total: int) -> None:
        self.status_rec.setText(f"● REC {done}/{total}")

    def _record_ended(self) -> None:
        self.status_rec.setVisible(False)
        self.rec_stop.setVisible(False)
        self.record_action.setEnabled(True)
        self.stop_record_action.setEnabled(False)
        if self.recording is not None:
            self.recording.deleteLater()
        self.recording = None

    def _on_record_finished(self, path: str) -> None:
        total = self.recording.total if self.recording is not None else 0
        self._record_ended()
        self.progress_label.setText(f"recorded {total} frames to {path}")
        self.statusBar().showMessage(f"recorded {total} frames to {path}", 8000)

    def _on_record_failed(self, message: str) -> None:
        self._record_ended()
        self.progress_label.setText(message)
        if message != "recording cancelled":
            self._show_error(f"recording failed: {message}")

    def _record_dialog(self) -> None:
        view = self.active_view
        if not view.records:
            self._show_error(f"the {view.name} view has no steps to record yet: press Run first")
            return
        dialog = RecordDialog(self, f"{view.name}.mp4", 0 < view.current < len(view.records) - 1)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        try:
            self.start_recording(**dialog.values())
        except (ExplorerError, OSError) as exc:
            self._show_error(str(exc))

    def _run_file_dialog(self, what: str) -> None:
        """File › Open run… / Save run…: prompt-set run files; the promptset view reads and writes them."""
        view = self.views["promptset"]
        try:
            if what == "open" and view.open_run_dialog(self):
                if self._job_view is view:
                    self.worker.cancel()  # the set it was computing is no longer shown
                self.select_view("promptset")
            elif what == "save":
                view.save_run_dialog(self)
        except ExplorerError as exc:
            self._show_error(str(exc))

    def _guard(self, fn) -> None:
        try:
            fn()
        except OSError as exc:
            self._show_error(f"export failed: {exc}")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.stop_recording()
        self.worker.cancel_and_wait(5000)
        super().closeEvent(event)


def _videos_dir() -> Path:
    """The user's videos folder when it exists (a recording does not belong in whatever folder the app started in)."""
    from PySide6.QtCore import QStandardPaths

    videos = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
    return Path(videos) if videos and Path(videos).is_dir() else Path.home()


class RecordDialog(QDialog):
    """Where and how to record the active view: file (MP4, GIF, or a directory for PNGs), size, fps, pace."""

    SIZES = ("1280x720", "1920x1080", "3840x2160")

    def __init__(self, parent: QWidget, default_name: str, has_current: bool):
        super().__init__(parent)
        self.setWindowTitle("Record view")
        form = QFormLayout(self)
        self.path = QLineEdit(str(_videos_dir() / default_name))
        browse = QToolButton()
        browse.setText("…")
        browse.clicked.connect(self._browse)
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(self.path, 1)
        h.addWidget(browse)
        form.addRow("File", row)
        form.addRow("", QLabel("FILE.mp4 (H.264), FILE.gif (loops), or a directory for numbered PNGs"))
        self.size = QComboBox()
        self.size.setEditable(True)
        self.size.addItems(self.SIZES)
        form.addRow("Size", self.size)
        self.fps = QDoubleSpinBox()
        self.fps.setRange(1, 120)
        self.fps.setDecimals(2)
        self.fps.setValue(30)
        form.addRow("Frames per second", self.fps)
        self.pace = QDoubleSpinBox()
        self.pace.setRange(0.05, 60)
        self.pace.setValue(1.0)
        self.pace.setSuffix(" s per step")
        form.addRow("Pace", self.pace)
        self.start = QComboBox()
        self.start.addItems(["all steps", "from the current step"])
        self.start.setCurrentIndex(1 if has_current else 0)
        form.addRow("Steps", self.start)
        self.caption = QLineEdit(DEFAULT_CAPTION)
        self.caption.setToolTip("{step}, {steps}, {title}, {models} and the view's live fields; empty: no caption")
        form.addRow("Caption", self.caption)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Record")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d62828")
        self.error.setWordWrap(True)
        form.addRow(self.error)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Record to", self.path.text(), "MP4 video (*.mp4);;GIF (*.gif);;PNG frames (directory) (*)"
        )
        if path:
            self.path.setText(path)

    def _accept(self) -> None:
        try:
            from ..recording.video import output_format

            parse_size(self.size.currentText())
            output_format(self.path.text())
        except ExplorerError as exc:
            self.error.setText(str(exc))
            return
        self.accept()

    def values(self) -> dict:
        return {
            "path": self.path.text(),
            "size": parse_size(self.size.currentText()),
            "fps": self.fps.value(),
            "seconds_per_step": self.pace.value(),
            "from_current": self.start.currentIndex() == 1,
            "caption": self.caption.text(),
        }


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
