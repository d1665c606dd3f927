"""File › Record view…: where and how to record the active view; the window starts the recording it describes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QWidget,
)

from ...errors import ExplorerError
from ...recording.tour import DEFAULT_CAPTION
from ...recording.video import output_format, parse_size
from ..kit import path_row


def videos_dir() -> Path:
    """The user's videos folder when it exists (a recording does not belong in whatever folder the app started in)."""
    videos = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation)
    return Path(videos) if videos and Path(videos).is_dir() else Path.home()


def _spin(lo: float, hi: float, value: float, decimals: int = 2, suffix: str = "") -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


class RecordDialog(QDialog):
    """Where and how to record the active view: file (MP4, GIF, or a directory for PNGs), size, fps, pace."""

    SIZES = ("1280x720", "1920x1080", "3840x2160")

    def __init__(self, parent: QWidget, default_name: str, has_current: bool):
        super().__init__(parent)
        self.setWindowTitle("Record view")
        form = QFormLayout(self)
        self.path = QLineEdit(str(videos_dir() / default_name))
        form.addRow("File", path_row(self.path, self._browse))
        form.addRow("", QLabel("FILE.mp4 (H.264), FILE.gif (loops), or a directory for numbered PNGs"))
        self.size = QComboBox()
        self.size.setEditable(True)
        self.size.addItems(self.SIZES)
        form.addRow("Size", self.size)
        self.fps = _spin(1, 120, 30)
        form.addRow("Frames per second", self.fps)
        self.pace = _spin(0.05, 60, 1.0, suffix=" s per step")
        form.addRow("Pace", self.pace)
        self.start = QComboBox()
        self.start.addItems(["all steps", "from the current step"])
        self.start.setCurrentIndex(1 if has_current else 0)
        form.addRow("Steps", self.start)
        self.caption = QLineEdit(DEFAULT_CAPTION)
        self.caption.setToolTip("{step}, {steps}, {title}, {models} and the view's live fields; empty: no caption")
        form.addRow("Caption", self.caption)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Record")
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.error = QLabel("")
        self.error.setStyleSheet("color: #d62828")
        self.error.setWordWrap(True)
        form.addRow(self.error)

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Record to", self.path.text(), "MP4 video (*.mp4);;GIF (*.gif);;PNG frames (directory) (*)"
        )
        if path:
            self.path.setText(path)

    def _accept(self) -> None:
        try:
            parse_size(self.size.currentText())
            output_format(self.path.text())
        except ExplorerError as exc:
            self.error.setText(str(exc))
            return
        self.accept()

    def values(self) -> dict:
        """The keyword arguments of MainWindow.start_recording."""
        return {
            "path": self.path.text(),
            "size": parse_size(self.size.currentText()),
            "fps": self.fps.value(),
            "seconds_per_step": self.pace.value(),
            "from_current": self.start.currentIndex() == 1,
            "caption": self.caption.text(),
        }
