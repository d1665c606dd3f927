"""PNG files from Qt images, written the explorer's way: encoded in memory, then written to a temporary name and
renamed (explorer/atomic.py). Qt's own file writer would let libpng print its "libpng error: Write Error" line on
a full disk before the explorer's one-line error; in memory libpng never sees the disk."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice
from PySide6.QtGui import QImage, QPixmap

from ...atomic import write_bytes_atomic
from ...errors import ExplorerError


def png_bytes(image: QImage | QPixmap) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    ok = image.save(buffer, "PNG")
    buffer.close()
    if not ok:
        raise ExplorerError(f"could not encode a {image.width()}x{image.height()} image as PNG")
    return bytes(data.data())


def save_png(image: QImage | QPixmap, path: str | Path) -> Path:
    """``image`` as a PNG at ``path``, all or nothing; a full disk or a read-only folder is one
    :class:`ExplorerError` line ("cannot write x.png: no space left on device")."""
    return write_bytes_atomic(path, png_bytes(image))
