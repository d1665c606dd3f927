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
    """Iterates one job in the worker thread. Every signal carries the job's number, so that whatever an earlier,
    replaced job still had queued is dropped instead of landing in the next job's view."""

    record = Signal(int, object)
    finished = Signal(int, bool)  # (job, cancelled)
    failed = Signal(int, str)

    def __init__(self, job: Callable[[], Iterator[Any]], number: int, cancel: threading.Event, gate: threading.Lock):
        super().__init__()
        self._job, self._number, self._cancel, self._gate = job, number, cancel, gate

    def run(self) -> None:
        try:
            for item in self._job():
                if self._cancel.is_set():
                    break
                with self._gate:  # wait here while the GUI paints a frame (see Worker.gate)
                    pass
                self.record.emit(self._number, item)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a message, never a crash
            self.failed.emit(self._number, describe_error(exc))
        else:
            self.finished.emit(self._number, self._cancel.is_set())


class Worker(QObject):
    """Runs one job at a time. Signals: record(obj), finished(), failed(message), busy(bool).

    After ``finished``, ``cancelled`` says whether the job was cancelled rather than run to its end; ``records``
    counts what the job delivered."""

    record = Signal(object)
    finished = Signal()
    failed = Signal(str)
    busy = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._thread: QThread | None = None
        self._runner: _Runner | None = None
        self._outliving: list[tuple[QThread, _Runner | None]] = []  # threads that outlived a wait, kept alive
        self._cancel = threading.Event()
        self._number = 0  # the current job's number; signals of older jobs are ignored
        self.cancelled = False
        self.records = 0
        # Held by the GUI thread while it paints a live frame: the job pauses between two records instead of
        # competing for the GIL with the painting (pyqtgraph calls into Python hundreds of times per frame).
        self.gate = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self, job: Callable[[], Iterator[Any]], stop: threading.Event | None = None) -> None:
        """Run ``job`` off the GUI thread; ``stop``: the job's own stop event, when it has one (a ddp run's ranks
        end within 0.1 s of it), set by :meth:`cancel` as well."""
        self.cancel_and_wait()
        self._cancel = stop if stop is not None else threading.Event()
        self._number += 1
        self.cancelled, self.records = False, 0
        thread = QThread()
        runner = _Runner(job, self._number, self._cancel, self.gate)
        runner.moveToThread(thread)
        thread.started.connect(runner.run)
        runner.record.connect(self._on_record)
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

    def finish(self, timeout_ms: int = 60000) -> None:
        """Cancel the job and wait for every thread this worker started, also those that outlived an earlier
        wait: before the process leaves (a QThread destroyed while running aborts it)."""
        self.cancel_and_wait(timeout_ms)
        for thread, _ in self._outliving:
            thread.wait(timeout_ms)
        self._outliving.clear()

    def _stop_thread(self, timeout_ms: int = 30000) -> None:
        thread, runner = self._thread, self._runner
        self._thread = self._runner = None
        if thread is not None:
            thread.quit()
            if thread.wait(timeout_ms):
                thread.deleteLater()
                if runner is not None:
                    runner.deleteLater()
            else:  # still inside the job (e.g. a load): kept, not destroyed while running (see finish)
                self._outliving.append((thread, runner))
                thread.finished.connect(thread.deleteLater)
                if runner is not None:
                    thread.finished.connect(runner.deleteLater)
        self.busy.emit(False)

    def _on_record(self, number: int, item: Any) -> None:
        if number == self._number and self._thread is not None:
            self.records += 1
            self.record.emit(item)

    def _on_finished(self, number: int, cancelled: bool) -> None:
        if number != self._number or self._thread is None:
            return  # a replaced job's late word
        self._stop_thread()
        self.cancelled = cancelled
        self.finished.emit()

    def _on_failed(self, number: int, message: str) -> None:
        if number != self._number or self._thread is None:
            return
        self._stop_thread()
        self.failed.emit(message)
