"""Recording's pinned fonts (the same glyphs on every run) and the recording mode a view is drawn in."""

from __future__ import annotations

from PySide6.QtGui import QFont, QFontDatabase
from PySide6.QtWidgets import QApplication

from ..views.base import View

FONT_FAMILY = "DejaVu Sans"  # pinned (when installed): the same glyphs on every run
UI_POINT_SIZE = 10.0  # the views' text, as in the window at 100%


def family() -> str:
    return FONT_FAMILY if FONT_FAMILY in QFontDatabase.families() else QApplication.font().family()


def pixel_font(px: float, bold: bool = False) -> QFont:
    font = QFont(family())
    font.setPixelSize(max(6, round(px)))
    font.setBold(bold)
    return font


def ui_font() -> QFont:
    font = QFont(family())
    font.setPointSizeF(UI_POINT_SIZE)
    return font


def prepare_view(view: View) -> None:
    """Recording mode for a fresh view, before its records arrive (a view's apply_font redraws its empty state):
    no wall-clock numbers, the pinned font."""
    view.deterministic = True
    font = ui_font()
    view.setFont(font)
    view.apply_font(font)
