"""The first window of a launch: shown as soon as Qt is up, before torch, pyqtgraph and the views are imported
(seconds), where the app's window will open, saying what is being loaded; the app's window replaces it. Imports
only Qt (explorer.ui.window imports torch, pyqtgraph and the first tab's view)."""

from __future__ import annotations

from PySide6.QtCore import QRect, QSettings, QSize, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

from .qapp import ensure_app

DEFAULT_SIZE = QSize(1440, 900)


def screen_key(screen) -> str:
    g = screen.geometry()
    return f"window/{screen.name() or 'screen'}-{g.width()}x{g.height()}"


def fit_rect(wanted: QSize, avail: QRect, frame: QSize | None = None) -> QRect:
    """The window's size, ``wanted`` cut to ``avail`` less the frame the window manager adds (``frame``: the
    decorations' total width and height), at the frame's top-left corner that centres it in ``avail``."""
    frame = frame or QSize(0, 0)
    w = max(1, min(wanted.width(), avail.width() - frame.width()))
    h = max(1, min(wanted.height(), avail.height() - frame.height()))
    x = avail.x() + (avail.width() - frame.width() - w) // 2
    y = avail.y() + (avail.height() - frame.height() - h) // 2
    return QRect(x, y, w, h)


def opening_rect(settings: QSettings, screen) -> QRect:
    """Where the app's window opens on ``screen``: the size last left there (or the default), within its free area."""
    saved = settings.value(f"{screen_key(screen)}/size")
    wanted = saved if isinstance(saved, QSize) and saved.isValid() else DEFAULT_SIZE
    return fit_rect(wanted, screen.availableGeometry())


class LaunchWindow(QMainWindow):
    """Shows "Starting explorer: <what>…" in the middle of an empty window, until the app's window replaces it."""

    def __init__(self):
        super().__init__()
        self.setWindowTitle("explorer")
        self.label = QLabel("Starting explorer…", self)
        self.label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setCentralWidget(self.label)

    def say(self, what: str) -> None:
        self.label.setText(f"Starting explorer: {what}…")
        QApplication.processEvents()  # painted now: the imports that follow hold the event loop


def show_launch_window() -> LaunchWindow:
    app = ensure_app()
    win = LaunchWindow()
    screen = QGuiApplication.primaryScreen()
    win.setGeometry(opening_rect(QSettings("explorer", "explorer"), screen))
    win.show()
    win.say("loading torch and the views")
    app.processEvents()
    return win
