"""Before the first QApplication on a Linux desktop: are the system libraries Qt's xcb platform plugin links against
there? Without them Qt prints "Could not load the Qt platform plugin "xcb"" and aborts; this names what is missing
and the apt line that installs it, as one ``explorer: error:`` line. Imports no Qt (it must run before Qt loads)."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys

from ..errors import ExplorerError

# What `ldd` reports for PySide6/Qt/plugins/platforms/libqxcb.so and Qt/lib/libQt6XcbQpa.so.6 (PySide6 6.11), less
# what every desktop has (libc, libX11, libxcb, glib...); the apt line is docs/app.md's "Desktop libraries".
XCB_LIBRARIES = (
    "libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-image.so.0", "libxcb-randr.so.0",
    "libxcb-render-util.so.0", "libxcb-shape.so.0", "libxcb-sync.so.1", "libxcb-util.so.1", "libxcb-xfixes.so.0",
    "libxcb-xkb.so.1", "libxkbcommon-x11.so.0", "libX11-xcb.so.1", "libEGL.so.1", "libGL.so.1", "libfontconfig.so.1",
    "libdbus-1.so.3",
)  # fmt: skip
APT_LINE = (
    "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 libxcb-render-util0 "
    "libxcb-shape0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1 libegl1 libgl1 "
    "libfontconfig1 libdbus-1-3"
)


def load_library(name: str) -> None:
    ctypes.CDLL(name)  # OSError when the dynamic loader cannot find it


def xcb_will_load() -> bool:
    """Whether Qt will pick its xcb plugin: Linux, an X display, and no other platform asked for (nor a Wayland
    session, where Qt tries its wayland plugin first)."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if not sys.platform.startswith("linux") or not os.environ.get("DISPLAY"):
        return False
    if platform:
        return platform.startswith("xcb")
    return os.environ.get("XDG_SESSION_TYPE", "") != "wayland"


def missing_xcb_libraries() -> list[str]:
    missing = []
    for name in XCB_LIBRARIES:
        try:
            load_library(name)
        except OSError:
            missing.append(name)
    return missing


def check_xcb_libraries() -> None:
    """Raise ExplorerError naming the missing libraries when Qt would abort loading its xcb plugin; else nothing."""
    if not xcb_will_load() or importlib.util.find_spec("PySide6") is None:
        return
    missing = missing_xcb_libraries()
    if missing:
        raise ExplorerError(
            f"Qt's xcb platform plugin needs system libraries that are missing ({', '.join(missing)}); "
            f"install them with: {APT_LINE}"
        )
