"""The one QApplication, created on first use (the window, headless screenshots and recordings share it)."""

from __future__ import annotations

import os
import sys


def ensure_app(offscreen: bool = False):
    """The one QApplication (created on first use). ``offscreen`` forces Qt's offscreen platform: no display needed."""
    if offscreen:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication(sys.argv[:1])
        app.setApplicationName("explorer")
        app.setOrganizationName("explorer")
    return app


def exec_until_signal(app, before_exit) -> int:
    """``app.exec()`` that Ctrl-C and SIGTERM end cleanly: the signal only wakes the event loop (a wake-up fd
    watched by a socket notifier), which then calls ``before_exit`` (close the window: the worker is cancelled, a
    recording's partial file removed) and leaves with 128 + the signal (130 for Ctrl-C, 143 for SIGTERM). A Python
    exception raised by a signal inside a Qt override would be printed and swallowed by PySide instead. Called
    inside :func:`explorer.interrupt.deferred`, a signal the block held is taken as the loop's first wake."""
    import signal
    import socket

    from PySide6.QtCore import QSocketNotifier

    from ..interrupt import take_pending

    wake_read, wake_write = socket.socketpair()
    for s in (wake_read, wake_write):
        s.setblocking(False)
    notifier = QSocketNotifier(wake_read.fileno(), QSocketNotifier.Type.Read)
    received: list[int] = []

    def on_wake() -> None:
        try:
            data = wake_read.recv(64)
        except OSError:
            return
        if received or not data:
            return  # already leaving (a second Ctrl-C while the window closes)
        received.append(data[0])
        before_exit()
        app.exit(128 + data[0])

    notifier.activated.connect(on_wake)
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda *_: None) for s in signals}  # the C handler writes to the wake-up fd
    previous_fd = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    held = take_pending()
    if held is not None:
        wake_write.send(bytes([held]))
    try:
        return app.exec()
    finally:
        signal.set_wakeup_fd(previous_fd)
        for s, h in previous.items():
            signal.signal(s, h)
        notifier.setEnabled(False)
        wake_read.close()
        wake_write.close()
