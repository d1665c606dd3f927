"""Run model work off the GUI thread.

A job is a plain Python generator function (from the Qt-free core) that yields records. The worker iterates it in
a QThread, hands each record to the GUI thread through a queued signal, and stops between records when cancelled.
The GUI thread never waits on the worker.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from ..errors import ExplorerError


def describe_error(exc: BaseException) -> str:
    """One line a user can act on; a traceback only for genuine bugs (logged to stderr)."""
    if isinstance(exc, ExplorerError):
        return str(exc)
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return "out of memory: try a smaller model, a shorter prompt or a lower-precision dtype"
    traceback.print_exception(exc)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def reserve_gui_core() -> None:
    """Keep the GUI responsive while a model runs: leave one core to the GUI thread and hand the GIL over often."""
    import os
    import sys

    import torch

    sys.setswitchinterval(0.001)
    cores = os.cpu_count() or 1
    if cores > 1 and torch.get_num_threads() >= cores:
        torch.set_num_threads(cores - 1)


class _Runner(QObject):
    record = Signal(object)
    finished = Signal()
    failed = Signal(str)

    def __init__(self, job: Callable[[], Iterator[Any]], cancel: threading.Event, gate: threading.Lock):
        super().__init__()
        self._job, self._cancel, self._gate = job, cancel, gate

    def run(self) -> None:
        try:
            for item in self._job():
                if self._cancel.is_set():
                    break
                with self._gate:  # wait here while the GUI paints a frame (see Worker.gate)
                    pass
                self.record.emit(item)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message, never a crash
            self.failed.emit(describe_error(exc))
        else:
            self.finished.emit()


class Worker(QObject):
    """Runs one job at a time. Signals: record(obj), finished(), failed(message), busy(bool)."""

    record = Signal(object)
    finished = Signal()
    failed = Signal(str)
    busy = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._runner: _Runner | None = None
        self._cancel = threading.Event()
        # Held by the GUI thread while it paints a live frame: the job pauses between two records instead of
        # competing for the GIL with the painting (pyqtgraph calls into Python hundreds of times per frame).
        self.gate = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, job: Callable[[], Iterator[Any]]) -> None:
        self.cancel_and_wait()
        self._cancel = threading.Event()
        thread = QThread()
        runner = _Runner(job, self._cancel, self.gate)
        runner.moveToThread(thread)
        thread.started.connect(runner.run)
        runner.record.connect(self.record)
        runner.finished.connect(self._on_finished)
        runner.failed.connect(self._on_failed)
        self._thread, self._runner = thread, runner
        self.busy.emit(True)
        thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def cancel_and_wait(self, timeout_ms: int = 30000) -> None:
        if self._thread is None:
            return
        self._cancel.set()
        self._stop_thread(timeout_ms)

    def _stop_thread(self, timeout_ms: int = 30000) -> None:
        thread, runner = self._thread, self._runner
        self._thread = self._runner = None
        if thread is not None:
            thread.quit()
            thread.wait(timeout_ms)
            thread.deleteLater()
        if runner is not None:
            runner.deleteLater()
        self.busy.emit(False)

    def _on_finished(self) -> None:
        self._stop_thread()
        self.finished.emit()

    def _on_failed(self, message: str) -> None:
        self._stop_thread()
        self.failed.emit(message)
