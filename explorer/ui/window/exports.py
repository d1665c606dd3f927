"""File › Export: the active view as a PNG, its data as CSV or JSON; every file written to a temporary name and
renamed, so that a failed export keeps the old file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from ...atomic import atomic_path, write_text_atomic
from ...errors import ExplorerError
from ..kit.png import save_png
from ..views.base import View


def write_png(widget: QWidget, path: str | Path) -> Path:
    """``widget`` as drawn now, as a PNG at ``path``."""
    return save_png(widget.grab(), path)


def write_data(view: View, path: str | Path) -> Path:
    """``view``'s data as CSV (by the suffix) or JSON, all or nothing."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        header, rows = view.export_rows()
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    else:
        write_text_atomic(path, json.dumps(view.export_data(), indent=1))
    return path


class Exports:
    """The window's export commands (a MainWindow mixin: uses active_view and _show_error)."""

    def export_png(self, path: str | Path) -> Path:
        """The active view as a PNG, written to a temporary name and renamed (a failed save keeps the old file)."""
        return write_png(self.active_view, path)

    def export_data(self, path: str | Path) -> Path:
        """The active view's data as CSV (by suffix) or JSON, all or nothing."""
        return write_data(self.active_view, path)

    def _export_png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export view", f"{self.active_view.name}.png", "PNG (*.png)")
        if path:
            self._guard(lambda: self.export_png(path))

    def _export_data_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export data", f"{self.active_view.name}.json", "JSON (*.json);;CSV (*.csv)"
        )
        if path:
            self._guard(lambda: self.export_data(path))

    def _guard(self, fn) -> None:
        try:
            fn()
        except (OSError, ExplorerError) as exc:  # atomic writes turn a full disk into ExplorerError
            self._show_error(f"export failed: {exc}")
