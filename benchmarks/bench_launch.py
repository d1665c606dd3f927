"""Time from `explorer` (the desktop app, demo models) to its window on a real X display, as a user sees it.

    DISPLAY=:99 python benchmarks/bench_launch.py [--runs 5]

Each run starts ``python -m explorer`` in a fresh process (its own settings folder), waits with ``xdotool search
--sync`` until a visible window titled "explorer" is mapped (the first window, which says what is loading), then
ends the app with SIGTERM (which must exit 143).
Needs an X server (e.g. ``Xvfb :99 -screen 0 1280x720x24``) and xdotool. Then one in-process run splits the time
into its parts (CLI, the first window, torch, the window's other imports, building the app's window, showing it,
which closes the first). Prints
the median and min–max, and the load average, which says how shared the machine was."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PARTS = r"""
import time; t0 = time.perf_counter()
from explorer.cli.main import parse_args
t1 = time.perf_counter()
from explorer.ui.launch import show_launch_window
from PySide6.QtWidgets import QApplication
launch = show_launch_window(); t2 = time.perf_counter()
import torch; t3 = time.perf_counter()
from explorer.ui.window import MainWindow; t4 = time.perf_counter()
from explorer.ui.app import make_session
win = MainWindow(make_session(None, None, None, None, None)); t5 = time.perf_counter()
win.show_on_screen(); launch.close(); QApplication.processEvents(); t6 = time.perf_counter()
print(f"{t1-t0:.2f} {t2-t1:.2f} {t3-t2:.2f} {t4-t3:.2f} {t5-t4:.2f} {t6-t5:.2f}")
"""


def one_launch(env: dict) -> float:
    t0 = time.perf_counter()
    app = subprocess.Popen([sys.executable, "-m", "explorer"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^explorer$"],
                       env=env, capture_output=True, timeout=300, check=True)  # fmt: skip
        shown = time.perf_counter() - t0
    finally:
        app.send_signal(signal.SIGTERM)
        code = app.wait(60)
    if code != 128 + signal.SIGTERM:
        raise SystemExit(f"explorer exited with {code} on SIGTERM, not 143")
    return shown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if not os.environ.get("DISPLAY") or shutil.which("xdotool") is None:
        raise SystemExit("needs an X display (DISPLAY) and xdotool")
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", HOME=home, XDG_CONFIG_HOME=home)
        times = [one_launch(env) for _ in range(args.runs)]
        parts = subprocess.run([sys.executable, "-c", PARTS], env=env, capture_output=True, text=True, check=True)
    print(f"time to window: median {statistics.median(times):.2f} s, min {min(times):.2f}, max {max(times):.2f} "
          f"({args.runs} launches: {', '.join(f'{t:.2f}' for t in times)})")  # fmt: skip
    names = ("CLI", "the first window", "import torch", "the window's other imports", "build the window", "show it")
    print("one launch in parts: " + ", ".join(f"{n} {v} s" for n, v in zip(names, parts.stdout.split(), strict=True)))
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
