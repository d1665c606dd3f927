"""App shell speed: time to the first painted window, and render time per frame during playback at 1920x1080.

Required (issue 3): first window < 3 s after the imports; frame render < 16 ms median.

    python benchmarks/bench_app.py [--steps 48]

Runs on Qt's offscreen platform so it works headless; a frame is one player step: the view updates to the new
record and the whole window is painted into a 1920x1080 image (QWidget.grab), which is what recording will do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

STARTUP = r"""
import time
t0 = time.perf_counter()
import os
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6.QtCore import QEvent, QObject
from explorer.ui.app import ensure_app
from explorer.ui.main_window import MainWindow
from explorer.session import Session
t_imports = time.perf_counter()
app = ensure_app()

class FirstPaint(QObject):
    t = None
    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Type.Paint and FirstPaint.t is None:
            FirstPaint.t = time.perf_counter()
        return False

win = MainWindow(Session())
spy = FirstPaint()
win.installEventFilter(spy)
win.resize(1440, 900)
win.show()
while FirstPaint.t is None:
    app.processEvents()
print(f"{t_imports - t0:.4f} {FirstPaint.t - t_imports:.4f}")
"""


def startup_times(runs: int = 3) -> tuple[float, float]:
    imports, windows = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, text=True, check=True).stdout
        a, b = (float(x) for x in out.split()[-2:])
        imports.append(a)
        windows.append(b)
    return statistics.median(imports), statistics.median(windows)


def frame_times(steps: int) -> list[float]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from explorer.session import Session
    from explorer.ui.app import render_view

    win = render_view(Session(), "generate", (1920, 1080), settings={"max_new": steps})
    n = len(win.views["generate"].records)
    times = []
    for _ in range(2):
        for step in range(n):
            t0 = time.perf_counter()
            win.player.go(step)
            image = win.grab()
            times.append(time.perf_counter() - t0)
        assert image.width() == 1920 and image.height() == 1080
    win.close()
    return times[n:]  # second pass: warm caches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=48)
    args = ap.parse_args()
    t_imports, t_window = startup_times()
    frames = sorted(frame_times(args.steps))
    median = statistics.median(frames) * 1000
    p95 = frames[int(0.95 * (len(frames) - 1))] * 1000
    print("| measurement | value | required |")
    print("|---|---:|---:|")
    print(f"| imports (python -c, median of 3) | {t_imports:.2f} s | |")
    print(f"| first painted window after the imports | {t_window:.2f} s | < 3 s |")
    print(f"| frame render at 1920×1080, median ({len(frames)} frames) | {median:.1f} ms | < 16 ms |")
    print(f"| frame render at 1920×1080, 95th percentile | {p95:.1f} ms | |")


if __name__ == "__main__":
    main()
