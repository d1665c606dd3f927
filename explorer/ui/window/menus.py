"""Menus and keys: File, View and Run, and the player's keys (Space, ←, →, Home, End), which work in every mode
whatever has focus."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence, QShortcut

from ..theme import THEMES


class Menus:
    """Builds the window's menus and shortcuts (a MainWindow mixin: the slots are the window's commands)."""

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
        self._build_file_menu(bar.addMenu("&File"))
        self._build_view_menu(bar.addMenu("&View"))
        run = bar.addMenu("&Run")
        self.run_action = self._shortcut_action(run, "Run view", ["Ctrl+R"], self.run_view)
        self.cancel_action = self._shortcut_action(run, "Cancel (or leave presentation mode)", ["Esc"], self.escape)

    def _build_file_menu(self, file) -> None:
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

    def _build_view_menu(self, view) -> None:
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
