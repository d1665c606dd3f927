"""Frame drawing: a title card, or the stage's view above a caption strip, into an image of exactly the asked size
(the same picture at 720p, 1080p and 2160p, only sharper)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QImage, QPainter, QTextOption

from ..theme import Theme
from .fonts import pixel_font, ui_font
from .stage import Stage

BASE_HEIGHT = 720  # frames are laid out on a 720-line canvas and drawn scaled to the asked size
CAPTION_PX = 26.0  # caption text on that canvas: 3.6% of the frame height (26 px at 720p, 39 px at 1080p)
CAPTION_MAX_LINES = 3
TITLE_PX = 52.0
SUBTITLE_PX = 27.0
FOOTER_PX = 17.0
STRIP_BG = {"light": "#1d2129", "dark": "#0b0c0f"}
STRIP_TEXT = {"light": "#f4f5f7", "dark": "#e6e8eb"}


class FrameRenderer:
    """Draws frames of exactly ``size``: a title card, or the stage's view above a caption strip.

    Everything is laid out on a canvas ``BASE_HEIGHT`` (720) lines high and as wide as the frame's aspect asks
    (1280 for 16:9), then drawn into the frame scaled by height / 720: a recording looks the same at 720p, 1080p
    and 2160p, only sharper, and its captions are 3.6% of the frame height. The frame buffer is a numpy array
    that the ``QImage`` paints into (device-pixel ratio 1); the array handed to writers is a view of it.
    """

    def __init__(self, size: tuple[int, int], theme: Theme, captions: list[str]):
        self.size = size
        self.theme = theme
        w, h = size
        self.canvas = (max(1, round(w * BASE_HEIGHT / h)), BASE_HEIGHT)
        self.scale = (w / self.canvas[0], h / BASE_HEIGHT)
        self.caption_font = pixel_font(CAPTION_PX)
        self.strip_h = self._strip_height(captions)
        self.stage = Stage((self.canvas[0], BASE_HEIGHT - self.strip_h), theme)
        self.ui_font = ui_font()
        self.stage.setFont(self.ui_font)
        self._stride = (w * 3 + 3) // 4 * 4

    # ---- geometry (canvas units)
    def _caption_lines(self, text: str, font: QFont) -> int:
        cw = self.canvas[0]
        fm = QFontMetricsF(font)
        rect = fm.boundingRect(QRectF(0, 0, cw * 0.94, 1e6), int(Qt.TextFlag.TextWordWrap), text)
        return max(1, round(rect.height() / fm.lineSpacing()))

    def _strip_height(self, captions: list[str]) -> int:
        lines = max([self._caption_lines(c, self.caption_font) for c in captions if c] or [1])
        lines = min(lines, CAPTION_MAX_LINES)
        fm = QFontMetricsF(self.caption_font)
        return int(round(lines * fm.lineSpacing() + 0.9 * fm.height()))

    # ---- drawing
    def _begin(self, background: str) -> tuple[np.ndarray, QImage, QPainter]:
        w, h = self.size
        buf = np.empty((h, self._stride), np.uint8)
        image = QImage(buf.data, w, h, self._stride, QImage.Format.Format_RGB888)
        image.fill(QColor(background))
        p = QPainter(image)
        p.scale(*self.scale)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        return buf, image, p

    def _frame(self, buf: np.ndarray) -> np.ndarray:
        w, h = self.size
        return buf[:, : w * 3].reshape(h, w, 3)

    def view_frame(self, caption: str, progress: float) -> np.ndarray:
        buf, _image, p = self._begin(self.theme.window)
        self.stage.render(p, QPoint(0, 0))
        self._draw_strip(p, caption, progress)
        p.end()
        return self._frame(buf)

    def _draw_strip(self, p: QPainter, caption: str, progress: float) -> None:
        cw, ch = self.canvas
        top = ch - self.strip_h
        p.fillRect(QRectF(0, top, cw, self.strip_h), QColor(STRIP_BG[self.theme.name]))
        bar = 3.0
        p.fillRect(QRectF(0, top, cw * min(max(progress, 0.0), 1.0), bar), QColor(self.theme.accent))
        if not caption:
            return
        font = QFont(self.caption_font)
        fm = QFontMetricsF(font)
        room = max(1, int((self.strip_h - 0.9 * fm.height()) // fm.lineSpacing()))
        while self._caption_lines(caption, font) > room and font.pixelSize() > 8:
            font.setPixelSize(font.pixelSize() - 1)  # a caption too long for the strip: smaller, never cut
        p.setFont(font)
        p.setPen(QColor(STRIP_TEXT[self.theme.name]))
        option = QTextOption(Qt.AlignmentFlag.AlignCenter)
        option.setWrapMode(QTextOption.WrapMode.WordWrap)
        p.drawText(QRectF(cw * 0.03, top + bar, cw * 0.94, self.strip_h - bar), caption, option)

    def card_frame(self, title: str, subtitle: str, footer: str) -> np.ndarray:
        cw, ch = self.canvas
        buf, _image, p = self._begin(self.theme.base)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        mid = 0.47 * ch
        option = QTextOption(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom)
        option.setWrapMode(QTextOption.WrapMode.WordWrap)
        p.setFont(pixel_font(TITLE_PX, bold=True))
        p.setPen(QColor(self.theme.text))
        p.drawText(QRectF(0.08 * cw, 0.05 * ch, 0.84 * cw, mid - 0.05 * ch), title, option)
        rule = 0.09 * cw
        p.fillRect(QRectF((cw - rule) / 2, mid + 0.025 * ch, rule, 4.0), QColor(self.theme.accent))
        if subtitle:
            option = QTextOption(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            option.setWrapMode(QTextOption.WrapMode.WordWrap)
            p.setFont(pixel_font(SUBTITLE_PX))
            p.drawText(QRectF(0.12 * cw, mid + 0.07 * ch, 0.76 * cw, 0.36 * ch), subtitle, option)
        if footer:
            option = QTextOption(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom)
            p.setFont(pixel_font(FOOTER_PX))
            p.setPen(QColor(self.theme.muted))
            p.drawText(QRectF(0, 0, cw, ch - 0.04 * ch), footer, option)
        p.end()
        return self._frame(buf)

    def close(self) -> None:
        if self.stage.view is not None:
            self.stage.view.setParent(None)
            self.stage.view = None
        self.stage.close()
        self.stage.deleteLater()
