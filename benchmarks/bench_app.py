"""App shell speed: time to the first painted window, and render time per frame during playback at 1920x1080.

Required (issue 3): first window < 3 s after the imports; frame render < 16 ms median. Required (issue 15): the
attention view at N = 2048 with 64×64 tiles stays interactive, frame render < 16 ms median at 1080p.

    python benchmarks/bench_app.py [--steps 48]
    python benchmarks/bench_app.py --attention-n 2048   # + the attention view on SmolLM2 at N = 2048, 64x64 tiles

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
from explorer.ui.window import MainWindow
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
    return timed_steps(win, range(len(win.views["generate"].records)))


def timed_steps(win, steps) -> list[float]:
    """Seconds to show each step and paint the whole window into an image, second pass (warm caches)."""
    steps = list(steps)
    times = []
    for _ in range(2):
        for step in steps:
            t0 = time.perf_counter()
            win.player.go(step)
            image = win.grab()
            times.append(time.perf_counter() - t0)
        assert image.width() == 1920 and image.height() == 1080
    win.close()
    return times[len(steps) :]


def attention_frame_times(n: int, block: int = 64, every: int = 4) -> tuple[int, int, list[float]]:
    """The attention view traced at N = ``n`` (SmolLM2-135M-Instruct: the demo models' context is 512 tokens) with
    ``block``×``block`` tiles; render time of every ``every``-th walk step, second pass. Returns (N, steps, times)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from pathlib import Path

    from explorer.models.smollm import fetch_smollm
    from explorer.session import Session
    from explorer.ui.app import render_view

    session = Session(target_dir=fetch_smollm(), draft_dir=None)
    session.load()
    text = Path(__file__).resolve().parents[1] / "assets" / "text" / "amp_default.txt"
    ids = session.target.encode(text.read_text() * (1 + n // 1000))[:n]
    session.prompt = session.target.decode(ids)
    settings = {"block_m": block, "block_n": block, "length": 0}
    win = render_view(session, "attention", (1920, 1080), settings=settings)
    n_traced, n_steps = win.views["attention"].walk.trace.n, len(win.views["attention"].records)
    return n_traced, n_steps, timed_steps(win, range(0, n_steps, every))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--attention-n", type=int, default=0, help="also time the attention view at this N (SmolLM2)")
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
    if args.attention_n:
        n, walk_steps, times = attention_frame_times(args.attention_n)
        times.sort()
        median = statistics.median(times) * 1000
        p95 = times[int(0.95 * (len(times) - 1))] * 1000
        label = f"attention view, N = {n}, 64×64 tiles ({walk_steps} steps)"
        print(f"| {label}: frame render at 1920×1080, median ({len(times)} frames) | {median:.1f} ms | < 16 ms |")
        print(f"| {label}: frame render, 95th percentile | {p95:.1f} ms | |")


if __name__ == "__main__":
    main()
