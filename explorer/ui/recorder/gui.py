"""In-app recording: a view's records recorded from the window without freezing it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from ...errors import ExplorerError
from ...recording.tour import single_view_tour
from ...recording.video import ThreadedWriter, check_record_output, open_writer
from ...session import Session
from ..views.base import View
from .fonts import prepare_view
from .pipeline import Recorder


class GuiRecording(QObject):
    """Records a view's records from the window without freezing it: frames are drawn and encoded in slices of
    a few tens of milliseconds on a zero-interval timer, so the event loop runs between them. Signals:
    progress(done, total), finished(path), failed(message)."""

    progress = Signal(int, int)
    finished = Signal(str)
    failed = Signal(str)

    SLICE_S = 0.03

    def __init__(
        self,
        view: View,
        out: str | Path,
        size: tuple[int, int],
        fps: float,
        seconds_per_step: float = 1.0,
        first_step: int = 0,
        caption: str | None = None,
        session: Session | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.out = Path(out)
        self.format = check_record_output(out)
        clone = view.clone(setup=prepare_view)
        n = len(clone.records)
        if n == 0:
            clone.deleteLater()
            raise ExplorerError(f"the {view.name} view has no steps to record yet: run it first")
        tour = single_view_tour(view.name, None, seconds_per_step)
        tour.scenes[0].steps = (min(max(first_step, 0), n - 1) + 1, n)
        if caption is not None:
            tour.scenes[0].caption = caption
        sessions = {0: session} if session is not None else None
        self.recorder = Recorder(tour, size, fps, theme=view.theme.name, views={0: clone}, sessions=sessions)
        try:
            self.recorder.plan()  # captions with their live fields: a bad one is refused before anything is written
        except BaseException:
            clone.deleteLater()
            raise
        self.total = self.recorder.total_frames
        self.done = 0
        self._writer = None
        self._frames: Iterator[np.ndarray] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._tick)

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def start(self) -> None:
        self._writer = ThreadedWriter(open_writer(self.out, self.recorder.size, self.recorder.fps))
        self._frames = self.recorder.frames()
        self._timer.start()

    def cancel(self) -> None:
        if not self.running:
            return
        self._timer.stop()
        self._cleanup(abort=True)  # half a video is no video: the temporary file goes, a previous `out` stays
        self.failed.emit("recording cancelled")

    def _tick(self) -> None:
        t0 = time.perf_counter()
        try:
            while time.perf_counter() - t0 < self.SLICE_S:
                frame = next(self._frames, None)
                if frame is None:
                    self._timer.stop()
                    self._cleanup(abort=False)
                    self.progress.emit(self.total, self.total)
                    self.finished.emit(str(self.out))
                    return
                self._writer.write(frame)
                self.done += 1
        except Exception as exc:  # noqa: BLE001 - shown in the window, never raised into the event loop
            self._timer.stop()
            self._cleanup(abort=True)
            self.failed.emit(str(exc) if isinstance(exc, ExplorerError | OSError) else f"{type(exc).__name__}: {exc}")
            return
        self.progress.emit(self.done, self.total)

    def _cleanup(self, abort: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort() if abort else writer.close()
        self._frames = None
        for view in self.recorder.views.values():
            view.deleteLater()
        self.recorder.close()
