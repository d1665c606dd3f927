"""Qt versions for `explorer info` (kept here: Qt is imported only inside explorer.ui)."""


def qt_versions() -> dict:
    import PySide6
    from PySide6 import QtCore

    return {"pyside6": PySide6.__version__, "qt": QtCore.qVersion()}
