"""Recording from the window: the active view's steps to a video, offscreen, while the window keeps running; the
status bar shows "● REC n/N" and a Stop button meanwhile."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QDialog

from ...errors import ExplorerError

if TYPE_CHECKING:
    from ..recorder.gui import GuiRecording


class Recording:
    """The window's recording commands (a MainWindow mixin: uses active_view, session, the status bar's
    status_rec / rec_stop, the File menu's record actions, progress_label and _show_error; recording is the one
    running)."""

    def start_recording(
        self,
        path: str | Path,
        size: tuple[int, int] = (1280, 720),
        fps: float = 30.0,
        seconds_per_step: float = 1.0,
        from_current: bool = False,
        caption: str | None = None,
    ) -> GuiRecording:
        """Record the active view's steps (all, or from the current one) to ``path`` (MP4, GIF or a directory of
        PNGs) at exactly ``size``, offscreen, while the window keeps running; raises ExplorerError on bad input."""
        if self.recording is not None and self.recording.running:
            raise ExplorerError("a recording is already running: stop it first")
        from ..recorder.gui import GuiRecording  # here: the recorder's modules are not needed to open the window

        view = self.active_view
        first = max(view.current, 0) if from_current else 0
        rec = GuiRecording(view, path, size, fps, seconds_per_step, first, caption, self.session, parent=self)
        rec.progress.connect(self._on_record_progress)
        rec.finished.connect(self._on_record_finished)
        rec.failed.connect(self._on_record_failed)
        self.recording = rec
        self.record_action.setEnabled(False)
        self.stop_record_action.setEnabled(True)
        self.status_rec.setVisible(True)
        self.rec_stop.setVisible(True)
        self._on_record_progress(0, rec.total)
        rec.start()
        return rec

    def stop_recording(self) -> None:
        if self.recording is not None:
            self.recording.cancel()

    def _on_record_progress(self, done: int, total: int) -> None:
        self.status_rec.setText(f"● REC {done}/{total}")

    def _record_ended(self) -> None:
        self.status_rec.setVisible(False)
        self.rec_stop.setVisible(False)
        self.record_action.setEnabled(True)
        self.stop_record_action.setEnabled(False)
        if self.recording is not None:
            self.recording.deleteLater()
        self.recording = None

    def _on_record_finished(self, path: str) -> None:
        total = self.recording.total if self.recording is not None else 0
        self._record_ended()
        self.progress_label.setText(f"recorded {total} frames to {path}")
        self.statusBar().showMessage(f"recorded {total} frames to {path}", 8000)

    def _on_record_failed(self, message: str) -> None:
        self._record_ended()
        self.progress_label.setText(message)
        if message != "recording cancelled":
            self._show_error(f"recording failed: {message}")

    def _record_dialog(self) -> None:
        view = self.active_view
        if not view.records:
            self._show_error(f"the {view.name} view has no steps to record yet: press Run first")
            return
        from .record_dialog import RecordDialog

        dialog = RecordDialog(self, f"{view.name}.mp4", 0 < view.current < len(view.records) - 1)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        try:
            self.start_recording(**dialog.values())
        except (ExplorerError, OSError) as exc:
            self._show_error(str(exc))
