"""``explorer`` with no subcommand: the desktop app."""

from __future__ import annotations

import argparse
import builtins
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..errors import ExplorerError
from ..interrupt import deferred
from ..ui.xcb_check import check_xcb_libraries
from .common import with_prompt_options


@contextmanager
def plain_imports(plain: Callable) -> Iterator[None]:
    """Within the block ``import`` is ``plain``, Python's own (taken before PySide6 was imported), not the hook
    PySide6 puts in its place: after each import the hook reads the new module's source file for the word "PySide6"
    (its ``__feature__`` switch, ignoring modules that lack it, as it does modules it never saw), some 0.2 s of the
    launch for torch's thousand modules. Only for imports of modules that never use Qt."""
    hook = builtins.__import__
    builtins.__import__ = plain
    try:
        yield
    finally:
        builtins.__import__ = hook


def run(args: argparse.Namespace) -> int:
    headless = not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    if sys.platform.startswith("linux") and headless:
        raise ExplorerError(
            "no display found (DISPLAY is not set); run the app on a desktop, or render views headless with "
            "`explorer screenshot --view generate --out view.png`"
        )
    check_xcb_libraries()  # one line naming the missing X11 libraries, not Qt's abort
    plain_import = builtins.__import__  # Python's own: Qt is not imported yet
    # Ctrl-C or SIGTERM during the seconds of imports only sets a flag, taken (exit 130 / 143) once they are done:
    # raised inside an import it left numpy or PySide half-imported (and inside Qt's event processing PySide
    # swallowed it), so the app failed on an AttributeError or ran on, deaf to the signal.
    with deferred():
        try:
            from ..ui.launch import show_launch_window

            launch = show_launch_window()  # on screen before the seconds of importing torch, pyqtgraph and views
            with plain_imports(plain_import):  # torch and the session's modules: none uses Qt
                from ..ui.app import make_session, run_gui
        except ImportError as exc:
            raise ExplorerError(f"the GUI needs PySide6 and pyqtgraph ({exc})") from None
        launch.say("building the window")
        session = with_prompt_options(make_session(args.model, args.draft, args.prompt, args.device, args.dtype), args)
    return run_gui(session, theme=args.theme or "light", launch=launch)
