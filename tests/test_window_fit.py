"""The window opens within the screen's free area, at the size the user last left it on that screen (issue 23.1).

Each case starts a fresh process on Qt's offscreen platform with a screen of a given size (the offscreen plugin's
``configfile``), as a small laptop or a 720p screencast would have."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("PySide6")

SCRIPT = r"""
import json, sys
from PySide6.QtCore import QSettings
from explorer.session import Session
from explorer.ui.app import ensure_app
from explorer.ui.window import MainWindow

app = ensure_app()
win = MainWindow(Session(), settings=QSettings(sys.argv[1], QSettings.Format.IniFormat))
win.show_on_screen()
import time
end = time.monotonic() + 0.6  # the frame check runs 200 ms after showing
while time.monotonic() < end:
    app.processEvents()
    time.sleep(0.02)
avail = win.screen().availableGeometry()
run = win.run_button.mapTo(win, win.run_button.rect().bottomRight())
print(json.dumps({"avail": [avail.x(), avail.y(), avail.width(), avail.height()],
                  "geometry": list(win.geometry().getRect()),
                  "frame": list(win.frameGeometry().getRect()),
                  "run_bottom": run.y(), "status_bottom": win.statusBar().geometry().bottom(),
                  "player_bottom": win.player.mapTo(win, win.player.rect().bottomLeft()).y()}))
if len(sys.argv) > 2:  # the user resizes the window, then closes it
    w, h = map(int, sys.argv[2].split("x"))
    win.resize(w, h)
    app.processEvents()
win.close()
"""


def open_window(tmp_path, screen: tuple[int, int], resize_to: str | None = None) -> dict:
    config = tmp_path / f"screen-{screen[0]}x{screen[1]}.json"
    config.write_text(json.dumps({"screens": [
        {"name": "test", "x": 0, "y": 0, "width": screen[0], "height": screen[1], "logicalDpi": 96, "dpr": 1}
    ]}))  # fmt: skip
    env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={config}")
    args = [sys.executable, "-c", SCRIPT, str(tmp_path / "settings.ini")] + ([resize_to] if resize_to else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_window_fits_a_720p_screen_with_run_player_and_status_bar_on_it(tmp_path):
    shown = open_window(tmp_path, (1280, 720))
    x, y, w, h = shown["geometry"]
    fx, fy, fw, fh = shown["frame"]  # the offscreen platform draws a thin frame, as a window manager would
    assert shown["avail"] == [0, 0, 1280, 720]
    assert (fx, fy, fw, fh) == (0, 0, 1280, 720)  # the default 1440x900 with its frame, cut to the screen
    assert w >= 1260 and h >= 700
    assert shown["run_bottom"] < h and shown["player_bottom"] < h and shown["status_bottom"] < h


def test_window_opens_at_its_default_size_on_a_large_screen_centred(tmp_path):
    shown = open_window(tmp_path, (1920, 1080))
    x, y, w, h = shown["geometry"]
    assert (w, h) == (1440, 900) and abs(x - (1920 - 1440) // 2) < 8 and abs(y - (1080 - 900) // 2) < 8


def test_the_users_size_is_remembered_per_screen(tmp_path):
    open_window(tmp_path, (1280, 720), resize_to="1000x650")
    assert open_window(tmp_path, (1280, 720))["geometry"][2:] == [1000, 650]  # the size left on this screen
    assert open_window(tmp_path, (1920, 1080))["geometry"][2:] == [1440, 900]  # another screen: its own


LAUNCH = r"""
import json, sys
from explorer.ui.launch import show_launch_window
win = show_launch_window()
print(json.dumps({"torch": "torch" in sys.modules, "pyqtgraph": "pyqtgraph" in sys.modules,
                  "visible": win.isVisible(), "frame": list(win.frameGeometry().getRect()), "text": win.label.text()}))
"""


def test_the_first_window_shows_before_torch_within_the_screen(tmp_path):
    """Issue 23.18: the launch shows a window saying what loads before the seconds of importing torch."""
    config = tmp_path / "screen.json"
    config.write_text(json.dumps({"screens": [{"name": "t", "x": 0, "y": 0, "width": 1280, "height": 720}]}))
    env = dict(os.environ, QT_QPA_PLATFORM=f"offscreen:configfile={config}", XDG_CONFIG_HOME=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", LAUNCH], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout.strip().splitlines()[-1])
    assert shown["visible"] and not shown["torch"] and not shown["pyqtgraph"]
    assert shown["text"] == "Starting explorer: loading torch and the views…"
    fx, fy, fw, fh = shown["frame"]
    assert fw <= 1280 + 4 and fh <= 720 + 4  # the size the app's window will have (its frame checked once shown)
