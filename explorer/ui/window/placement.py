"""Where the window opens: never larger than the screen's free area (the part panels and docks leave), at the size
the user last left it on that screen (remembered per screen and resolution), centred there."""

from __future__ import annotations

from PySide6.QtCore import QSize, QTimer
from PySide6.QtGui import QGuiApplication

from ..launch import fit_rect, opening_rect, screen_key


class Placement:
    """Opening on screen and remembering the size (a MainWindow mixin: uses settings and presenting)."""

    _placed = False  # set by show_on_screen: only a window the user sized is remembered on close

    def show_on_screen(self) -> None:
        screen = self.screen() or QGuiApplication.primaryScreen()
        key = screen_key(screen)
        self.setGeometry(opening_rect(self.settings, screen))
        self._placed = True
        if self.settings.value(f"{key}/maximized") in (True, "true"):
            self.showMaximized()
        else:
            self.show()
        QTimer.singleShot(200, self._keep_frame_on_screen)  # the window manager's frame is known once shown

    def _keep_frame_on_screen(self) -> None:
        """Decorations may push a window that fits off screen: shrink and move it so the frame fits too."""
        if self.isMaximized() or self.isFullScreen():
            return
        screen = self.screen() or QGuiApplication.primaryScreen()
        avail, frame = screen.availableGeometry(), self.frameGeometry()
        if avail.contains(frame):
            return
        extra = QSize(frame.width() - self.width(), frame.height() - self.height())
        rect = fit_rect(self.size(), avail, extra)
        self.resize(rect.size())
        self.move(rect.topLeft())  # a window's position is its frame's

    def remember_size(self) -> None:
        """On close: this screen's size for next time (the normal size when maximized; nothing in presentation)."""
        if not self._placed or self.presenting or self.isFullScreen():
            return
        key = screen_key(self.screen() or QGuiApplication.primaryScreen())
        self.settings.setValue(f"{key}/maximized", self.isMaximized())
        self.settings.setValue(f"{key}/size", self.normalGeometry().size() if self.isMaximized() else self.size())
