"""The generate view's text: the prompt and the tokens so far, the current token marked, scrolled to the end."""

from __future__ import annotations

from PySide6.QtGui import QFont
from PySide6.QtWidgets import QTextBrowser, QWidget


class TokenText(QTextBrowser):
    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth)

    def apply_font(self, font: QFont) -> None:
        """Code reads in a monospace font, a little larger than the interface's."""
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(font.pointSizeF() * 1.15)
        self.setFont(mono)

    def show_html(self, html: str) -> None:
        self.setHtml(html)
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
