"""Comfort: theme, text size (Ctrl +/-/0) and presentation mode (projector: larger text, no chrome, full screen)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QLabel

from ..theme import THEMES, apply_theme, set_font_scale

PRESENTATION_SCALE = 1.6
PRESENTATION_HINT = "F11 or Esc to leave presentation mode"
PRESENTATION_HINT_MS = 3000


class Comfort:
    """Theme, text size and presentation mode (a MainWindow mixin: uses views, player, dock, tabs, worker,
    present_action, _fit_panel and _update_status; font_scale and presenting are its state)."""

    def _build_presentation_hint(self) -> None:
        """The hint shown on entering presentation mode, over the views."""
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

    def set_theme(self, name: str) -> None:
        self.theme = THEMES[name]
        apply_theme(QApplication.instance(), self.theme)
        self.player.set_color(self.theme.text)
        for view in self.views.built():  # a view built later is built in the window's theme
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
            # The panel comes back laid out for the presentation's larger text: settle the layouts at the normal
            # text size, then fit it (as wide as before F11, not the ~40% wider presentation width).
            QApplication.sendPostedEvents()
            self.layout().activate()
            self._fit_panel()

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

    def _apply_font(self) -> None:
        app = QApplication.instance()
        scale = self.font_scale * (PRESENTATION_SCALE if self.presenting else 1.0)
        set_font_scale(app, scale)
        self.player.set_icon_scale(scale)
        font = app.font()
        for view in self.views.built():  # a view built later takes the font as it is built
            view.apply_font(font)
        self._fit_panel()
        QTimer.singleShot(0, self._fit_panel)  # again once the new font's layout requests are processed
        self._update_status()
