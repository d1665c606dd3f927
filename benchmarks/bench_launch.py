"""Time from `explorer` (the desktop app, demo models) to its window on a real X display, as a user sees it.

    DISPLAY=:99 python benchmarks/bench_launch.py [--runs 5] [--cached-bytecode]

Each run starts ``python -m explorer`` in a fresh process (its own settings folder), waits with ``xdotool search
--sync`` until a visible window titled "explorer" is mapped (the first window, which says what is loading; xdotool
looks every half second, so this is an upper bound), then ends the app with SIGTERM (which must exit 143). As many
runs again time, from the interpreter's start, the first window shown, the app's full window and the demo run's
first decoded step on screen (hooks in the process, see FIRST_STEP).
Needs an X server (e.g. ``Xvfb :99 -screen 0 1280x720x24``) and xdotool. Then one in-process run splits the time
into its parts (CLI, the first window, torch, the window's other imports while the models start loading on a thread
of their own, building the app's window (its first view only), showing it, which closes the first, and what is left
of the models' load then). Prints the median and min–max, and the load average, which says how shared the machine
was."""

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
import builtins, time; t0 = time.perf_counter()
plain_import = builtins.__import__
from explorer.cli.main import parse_args
from explorer.cli.gui import plain_imports
t1 = time.perf_counter()
from explorer.ui.launch import show_launch_window
from PySide6.QtWidgets import QApplication
launch = show_launch_window(); t2 = time.perf_counter()
with plain_imports(plain_import):  # as the app imports them (explorer.cli.gui)
    import torch; t3 = time.perf_counter()
    from explorer.ui.app import make_session, start_loading
session = make_session(None, None, None, None, None)
started = start_loading(session)  # as the app does: the models load while the window is imported and built
from explorer.ui.window import MainWindow; t4 = time.perf_counter()
win = MainWindow(session); t5 = time.perf_counter()
win.show_on_screen(); launch.close(); QApplication.processEvents(); t6 = time.perf_counter()
for _ in started[1].follow(): pass
t7 = time.perf_counter()
print(f"{t1-t0:.2f} {t2-t1:.2f} {t3-t2:.2f} {t4-t3:.2f} {t5-t4:.2f} {t6-t5:.2f} {t7-t6:.2f}")
"""


# The app as `explorer` starts it, with three hooks: when the first window is shown (painted: show_launch_window
# returns), when the app's window is up (the event loop starts) and when the first decoded step of the demo run is on
# screen (the view's first live render with a record); then it exits.
FIRST_STEP = r"""
import os, sys, time
t0 = time.perf_counter()
marks = []
import explorer.ui.launch as launch
show_launch = launch.show_launch_window
def show_launch_window():
    shown = show_launch()
    marks.append(time.perf_counter() - t0)
    return shown
launch.show_launch_window = show_launch_window
import explorer.ui.qapp as qapp
exec_loop = qapp.exec_until_signal
def exec_until_signal(app, before_exit):
    marks.append(time.perf_counter() - t0)
    from explorer.ui.window import runs
    render_live = runs.ViewRuns._render_live
    def render(self):
        render_live(self)
        if self._job_view is not None and self._job_view.records:
            print(f"{marks[0]:.3f} {marks[1]:.3f} {time.perf_counter() - t0:.3f}", flush=True)
            os._exit(0)
    runs.ViewRuns._render_live = render
    return exec_loop(app, before_exit)
qapp.exec_until_signal = exec_until_signal
from explorer.cli.main import main
sys.argv = ["explorer"]
main()
"""


def first_step(env: dict) -> tuple[float, float, float]:
    """(seconds to the first window, to the app's window, to its first decoded step on screen), from the
    interpreter's start."""
    out = subprocess.run([sys.executable, "-c", FIRST_STEP], env=env, capture_output=True, text=True, timeout=300)
    first, window, step = out.stdout.split()
    return float(first), float(window), float(step)


def one_launch(env: dict) -> float:
    """Seconds until the app's window is mapped; ends with one line (the app's own last line) where the app exits
    before its window shows, e.g. when Qt's xcb plugin lacks a system library."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        app = subprocess.Popen([sys.executable, "-m", "explorer"], env=env, stdout=subprocess.DEVNULL, stderr=err)
        search = subprocess.Popen(["xdotool", "search", "--sync", "--onlyvisible", "--name", "^explorer$"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            while search.poll() is None and app.poll() is None and time.perf_counter() - t0 < 300:
                time.sleep(0.01)
            shown = time.perf_counter() - t0
            if app.poll() is not None:
                err.seek(0)
                lines = err.read().strip().splitlines() or [f"exit code {app.returncode}"]
                raise SystemExit(f"explorer exited before its window showed: {lines[-1]}")
            if search.returncode is None:
                raise SystemExit("explorer's window did not show within 300 s")
            if search.returncode != 0:
                raise SystemExit(f"xdotool could not search the display (exit {search.returncode})")
        finally:
            if search.poll() is None:
                search.kill()
                search.wait()
            if app.poll() is None:
                app.send_signal(signal.SIGTERM)
                try:
                    app.wait(60)
                except subprocess.TimeoutExpired:
                    app.kill()  # never leave a deaf app behind
                    app.wait()
                    raise SystemExit("explorer did not exit within 60 s of SIGTERM") from None
    if app.returncode != 128 + signal.SIGTERM:
        raise SystemExit(f"explorer exited with {app.returncode} on SIGTERM, not 143")
    return shown


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cached-bytecode", action="store_true",
                    help="time the app as installed, its bytecode compiled (a first, untimed launch writes it to a "
                    "temporary PYTHONPYCACHEPREFIX), even where PYTHONDONTWRITEBYTECODE=1 would compile every "
                    "module of explorer from source at each launch")  # fmt: skip
    args = ap.parse_args()
    if not os.environ.get("DISPLAY") or shutil.which("xdotool") is None:
        raise SystemExit("needs an X display (DISPLAY) and xdotool")
    with tempfile.TemporaryDirectory() as home:
        env = dict(os.environ, QT_QPA_PLATFORM="xcb", HOME=home, XDG_CONFIG_HOME=home)
        if args.cached_bytecode:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(home, "pycache")
            first_step(env)  # writes the bytecode
        times = [one_launch(env) for _ in range(args.runs)]
        steps = [first_step(env) for _ in range(args.runs)]
        parts = subprocess.run([sys.executable, "-c", PARTS], env=env, capture_output=True, text=True, check=True)
    bytecode = "cached" if args.cached_bytecode else "as the environment has it"
    dont_write = os.environ.get("PYTHONDONTWRITEBYTECODE") and not args.cached_bytecode
    print(f"bytecode: {bytecode}" + (" (PYTHONDONTWRITEBYTECODE is set: compiled at each launch)" * bool(dont_write)))
    print(f"time to window (xdotool, which polls every 0.5 s): median {statistics.median(times):.2f} s, "
          f"min {min(times):.2f}, max {max(times):.2f} ({args.runs} launches: {', '.join(f'{t:.2f}' for t in times)})")
    for k, name in enumerate(("the first window (shown)", "the app's full window",
                              "the demo's first decoded step on screen")):  # fmt: skip
        xs = [s[k] for s in steps]
        print(f"time to {name}: median {statistics.median(xs):.2f} s, min {min(xs):.2f}, max {max(xs):.2f}")
    names = ("CLI", "the first window", "import torch", "the window's other imports", "build the window", "show it",
             "then wait for the models")  # fmt: skip
    print("one launch in parts: " + ", ".join(f"{n} {v} s" for n, v in zip(names, parts.stdout.split(), strict=True)))
    print("load average (1, 5, 15 min): " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
