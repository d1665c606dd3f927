"""Missing X11 libraries: one ``explorer: error:`` line with the apt line, exit 2, instead of Qt's xcb abort."""

import pytest

from explorer.cli.main import main
from explorer.errors import ExplorerError
from explorer.ui import xcb_check


@pytest.fixture
def x11_desktop(monkeypatch):
    """A Linux X11 desktop whose loader lacks libxcb-icccm.so.4 (as a bare Debian 12 with libxcb-cursor0)."""
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(xcb_check.sys, "platform", "linux")
    loaded = []

    def load(name):
        loaded.append(name)
        if name == "libxcb-icccm.so.4":
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(xcb_check, "load_library", load)
    return loaded


def test_missing_library_is_named_with_the_apt_line(x11_desktop):
    with pytest.raises(ExplorerError) as exc:
        xcb_check.check_xcb_libraries()
    message = str(exc.value)
    assert "(libxcb-icccm.so.4)" in message
    assert "sudo apt install " in message and " libxcb-icccm4 " in message
    assert "\n" not in message


def test_offscreen_is_not_checked(x11_desktop, monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    xcb_check.check_xcb_libraries()
    assert x11_desktop == []  # nothing even tried


def test_all_present_passes(x11_desktop, monkeypatch):
    monkeypatch.setattr(xcb_check, "load_library", lambda name: None)
    xcb_check.check_xcb_libraries()


def test_explicit_xcb_is_checked_and_wayland_session_is_not(x11_desktop, monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    with pytest.raises(ExplorerError):
        xcb_check.check_xcb_libraries()
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.setenv("XDG_SESSION_TYPE", "wayland")  # Qt tries its wayland plugin first
    xcb_check.check_xcb_libraries()


def plugin_dependencies() -> dict[str, bool]:
    """What ``ldd`` says the xcb plugin needs: soname -> whether this machine's loader resolves it."""
    import shutil
    import subprocess
    from pathlib import Path

    pyside = pytest.importorskip("PySide6")
    plugin = Path(pyside.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
    if shutil.which("ldd") is None or not plugin.exists():
        pytest.skip("needs ldd and PySide6's libqxcb.so")
    out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, check=True).stdout
    needed = {}
    for line in out.splitlines():
        name, _, target = line.strip().partition(" => ")
        if target:
            needed[name] = needed.get(name, True) and not target.startswith("not found")
    return needed


def test_sonames_match_the_plugin():
    """Every name the check loads is one the plugin links against, and the check finds missing exactly what the
    loader cannot resolve (whatever this machine has installed: CI's lacks libxcb-icccm and libxcb-keysyms)."""
    needed = plugin_dependencies()
    assert set(xcb_check.XCB_LIBRARIES) <= set(needed)
    unresolved = [name for name in xcb_check.XCB_LIBRARIES if not needed[name]]
    assert xcb_check.missing_xcb_libraries() == unresolved


def test_explorer_exits_2_with_one_line(x11_desktop, capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("explorer: error: Qt's xcb platform plugin needs system libraries that are missing")
    assert err.count("\n") == 1 and "Traceback" not in err
