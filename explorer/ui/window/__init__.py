"""The main window, one module per room: the window itself (views, player, the signals that drive it), the model
panel, the status bar, menus and keys, running views, exports (PNG, CSV, JSON), recording and its dialog, comfort
(theme, text size, presentation mode)."""

from .main import MainWindow

__all__ = ["MainWindow"]
