"""View `promptset` as a package of panels: the view (layout, runs, replay), the table panel (filter boxes, table)
and its model and sort/filter proxy, the set's plots and summary, and the run files' folder and dialogs. Its words
are in the Qt-free explorer/speculative/describe_runs.py."""

from .runfiles import runs_folder
from .view import PromptSetView

__all__ = ["PromptSetView", "runs_folder"]
