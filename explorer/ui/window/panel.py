"""The model panel (the dock on the left): models, prompt and the active view's settings scroll; Run / Cancel and
the progress line below them stay put. The panel and the session are synced both ways."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ...attention.backends import available_backends
from ...models.checkpoint import DTYPES
from ..kit import ElidedLabel, path_row
from ..views import view_schema
from ..views.controls import ChoiceBox
from .lazy_views import stand_in_page

PANEL_MAX_SHARE = 0.38  # of the window's width


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class ModelPanel:
    """Builds the panel and syncs it with the session (a MainWindow mixin: uses views, worker, session, load_models,
    run_view and open_model_dialog)."""

    def _build_panel(self) -> None:
        content = QWidget()
        v = QVBoxLayout(content)
        v.setContentsMargins(6, 4, 6, 4)
        v.addWidget(self._models_group())
        v.addWidget(self._prompt_group())
        v.addWidget(self._settings_group())
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
        outer.addWidget(self._panel_footer())

        self.dock = QDockWidget("Model", self)
        self.dock.setObjectName("model-panel")
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.dock.setWidget(panel)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)

    def _models_group(self) -> QGroupBox:
        models = QGroupBox("Models")
        form = QFormLayout(models)
        self.target_edit = QLineEdit()
        self.draft_edit = QLineEdit()
        self.draft_edit.setPlaceholderText("none")
        for role, edit in (("target", self.target_edit), ("draft", self.draft_edit)):
            browse = partial(self.open_model_dialog, role)
            form.addRow(role.capitalize(), path_row(edit, browse, f"Choose the {role} model directory"))
        self.device_combo = ChoiceBox(["cpu"] + (["cuda"] if cuda_available() else []), "cpu")
        self.dtype_combo = ChoiceBox(["auto", *DTYPES], "auto")
        self.attention_combo = ChoiceBox(available_backends(), available_backends()[0])
        self.attention_combo.setToolTip("How the model computes attention (triton: the FlashAttention kernel)")
        form.addRow("Device", self.device_combo)
        form.addRow("Dtype", self.dtype_combo)
        form.addRow("Attention", self.attention_combo)
        self.load_button = QPushButton("Load models")
        self.load_button.clicked.connect(self.load_models)
        form.addRow(self.load_button)
        return models

    def _prompt_group(self) -> QGroupBox:
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
        return prompt_box

    def _settings_group(self) -> QGroupBox:
        """One page of controls per view; the active view's page is shown. A view not built yet has a stand-in
        page of its schema's controls (see lazy_views), replaced by its own when it is built."""
        self.settings_box = QGroupBox("Settings")
        sv = QVBoxLayout(self.settings_box)
        self.settings_stack = QStackedWidget()
        for name in self.views:
            self.settings_stack.addWidget(stand_in_page(view_schema(name)))
        sv.addWidget(self.settings_stack)
        return self.settings_box

    def _panel_footer(self) -> QWidget:
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
        return footer

    def _fit_panel(self) -> None:
        """Make the panel as wide as its widest settings at the current text size, but never wider than
        PANEL_MAX_SHARE of the window (the views come first; beyond that the panel scrolls sideways too). Not while
        presenting: the panel is hidden then, and a width fitted to the presentation's larger text would stay."""
        if self.presenting:
            return
        content = self.panel_scroll.widget()
        content.adjustSize()
        bar = self.panel_scroll.verticalScrollBar().sizeHint().width()
        width = max(content.minimumSizeHint().width(), self.fontMetrics().averageCharWidth() * 30) + bar + 4
        width = min(width, int(self.width() * PANEL_MAX_SHARE))
        self.panel_scroll.setMinimumWidth(width)
        self.resizeDocks([self.dock], [width], Qt.Orientation.Horizontal)  # narrower again after Ctrl 0

    # ---- the panel and the session
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
