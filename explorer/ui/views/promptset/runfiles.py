"""Where the prompt-set view keeps run files, and the File menu's dialogs to open and save one."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

from PySide6.QtCore import QStandardPaths
from PySide6.QtWidgets import QFileDialog, QWidget

from ....atomic import atomic_path
from ....models.checkpoint import default_model_dirs

DEFAULT_PROMPTS = Path(default_model_dirs()["target"]).parent.parent / "prompts" / "code.jsonl"
RUN_FILTER = "Runs (*.jsonl);;All files (*)"


def runs_folder() -> Path:
    """Where the app streams the runs it computes (never lost: File › Save run… copies one elsewhere)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
    return Path(base or Path.home() / ".explorer") / "runs"


def new_run_path() -> Path:
    """A new run file in the runs folder, named after the time it starts."""
    return runs_folder() / f"run-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.jsonl"


def copy_complete(src: Path, dst: str | Path, complete_bytes: int) -> Path:
    """Copy run file ``src`` up to its last complete result (``complete_bytes``) to ``dst``: a temporary name
    there, renamed when complete."""
    dst = Path(dst)
    with src.open("rb") as f, atomic_path(dst) as tmp:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(f, out)
            out.truncate(complete_bytes)
    return dst


def choose_run_to_open(parent: QWidget, start: Path) -> str:
    """File › Open run…'s dialog (empty: cancelled)."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open run", str(start), RUN_FILTER)
    return path


def choose_run_to_save(parent: QWidget, name: str) -> str:
    """File › Save run…'s dialog, starting in the home folder under ``name`` (empty: cancelled)."""
    path, _ = QFileDialog.getSaveFileName(parent, "Save run", str(Path.home() / name), "Runs (*.jsonl)")
    return path


def choose_prompt_set(parent: QWidget, start: str) -> str:
    """The prompts row's "…" dialog (empty: cancelled)."""
    path, _ = QFileDialog.getOpenFileName(parent, "Prompt set", start,
                                          "Prompt sets (*.jsonl *.json *.txt);;All files (*)")  # fmt: skip
    return path
