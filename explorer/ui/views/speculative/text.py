"""The header and the text panels: the step's summary lines, and the decoded text coloured by where each token
came from (each token a link to the step that produced it)."""

from __future__ import annotations

from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QLabel, QTextBrowser, QWidget


class Header(QLabel):
    """Three lines: the step and its outcome (larger), the figures so far, the step's cost."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setWordWrap(True)

    def fit_height(self, font: QFont) -> None:
        """Room for the three lines (the first one larger) at this font."""
        self.setMinimumHeight(int(3.6 * QFontMetrics(font).lineSpacing()))


class TokenText(QTextBrowser):
    """The prompt and the new tokens so far (describe.text_html), in a monospace font, scrolled to the end; its
    links ("step:N") are the view's to follow."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setOpenLinks(False)

    def show_html(self, text: str) -> None:
        self.setHtml(text)
        self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())

    def apply_font(self, font: QFont) -> None:
        mono = QFont("DejaVu Sans Mono")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        mono.setPointSizeF(font.pointSizeF() * 1.1)
        self.setFont(mono)
