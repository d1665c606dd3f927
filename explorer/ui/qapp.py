"""The one QApplication, created on first use (the window, headless screenshots and recordings share it)."""

from __future__ import annotations

import os
import sys


def ensure_app(offscreen: bool = False):
    """The one QApplication (created on first use). ``offscreen`` forces Qt's offscreen platform: no display needed."""
    if offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(sys.argv[:1])
        app.setApplicationName("explorer")
        app.setOrganizationName("explorer")
    return app
