"""The attention view's header: the step and its tile, what was traced, the kernel's accuracy and HBM traffic."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics, QTextDocument
from PySide6.QtWidgets import QLabel, QWidget


class Header(QLabel):
    """Rich text with a fixed height: that of the longest text any step of the walk can show (``worst``), wrapped
    at the width it is given, so that the plots below never jump while stepping (a word-wrapped label inside
    splitters and stacks gets no height-for-width from the layouts)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.worst: str | None = None

    def show_text(self, text: str, worst: str | None, width: int) -> None:
        self.worst = worst
        self.setText(text)
        self.fit(width)

    def fit(self, width: int) -> None:
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(self.font())
        doc.setHtml(self.worst or self.text())
        if width > 50:
            doc.setTextWidth(width)
        fm = QFontMetrics(self.font())
        need = int(math.ceil(doc.size().height() + 0.3 * fm.lineSpacing())) + 4
        if need != self.minimumHeight() or need != self.maximumHeight():
            self.setFixedHeight(need)
