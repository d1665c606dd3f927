"""Light and dark themes for widgets and plots, and font scaling for projectors."""

from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication


@dataclass(frozen=True)
class Theme:
    name: str
    window: str
    base: str
    text: str
    muted: str
    accent: str  # the chosen / current thing
    accent_text: str
    bar: str  # ordinary bars
    grid: str
    highlight_bg: str  # background of the current token in text


LIGHT = Theme(
    "light", "#f4f5f7", "#ffffff", "#1d2129", "#6b7280", "#e4572e", "#ffffff", "#4c78a8", "#d0d4da", "#ffd8c9"
)
DARK = Theme("dark", "#1e2127", "#16181d", "#e6e8eb", "#9aa1ab", "#ff7a50", "#16181d", "#6fa8dc", "#3a3f47", "#6b3526")
THEMES = {"light": LIGHT, "dark": DARK}

BASE_POINT_SIZE = 10.0


def apply_theme(app: QApplication, theme: Theme) -> None:
    app.setStyle("Fusion")
    app.setPalette(make_palette(theme))
    pg.setConfigOptions(background=theme.base, foreground=theme.text, antialias=False)


def make_palette(theme: Theme) -> QPalette:
    pal = QPalette()
    pal.setColor(QPalette.ColorRole.Window, QColor(theme.window))
    pal.setColor(QPalette.ColorRole.Base, QColor(theme.base))
    pal.setColor(QPalette.ColorRole.AlternateBase, QColor(theme.window))
    pal.setColor(QPalette.ColorRole.Text, QColor(theme.text))
    pal.setColor(QPalette.ColorRole.WindowText, QColor(theme.text))
    pal.setColor(QPalette.ColorRole.ButtonText, QColor(theme.text))
    pal.setColor(QPalette.ColorRole.Button, QColor(theme.window))
    pal.setColor(QPalette.ColorRole.ToolTipBase, QColor(theme.base))
    pal.setColor(QPalette.ColorRole.ToolTipText, QColor(theme.text))
    pal.setColor(QPalette.ColorRole.PlaceholderText, QColor(theme.muted))
    pal.setColor(QPalette.ColorRole.Highlight, QColor(theme.accent))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor(theme.accent_text))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(theme.muted))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(theme.muted))
    return pal


def set_font_scale(app: QApplication, scale: float) -> None:
    font = QFont(app.font())
    font.setPointSizeF(BASE_POINT_SIZE * scale)
    app.setFont(font)
