"""Recording: a view's steps (or a scripted tour) drawn offscreen at an exact size, frame by frame.

One module per job: ``frames`` draws a frame (title card, or the stage's view above a caption strip), ``pipeline``
records a tour headless (check, compute, plan, draw, encode), ``gui`` records from the window without freezing it.
"""

from .fonts import prepare_view
from .frames import FrameRenderer
from .gui import GuiRecording
from .pipeline import ModelOverrides, Recorder, RecordStats, prepare_app, record

__all__ = ["FrameRenderer", "GuiRecording", "ModelOverrides", "RecordStats", "Recorder", "prepare_app", "prepare_view",
           "record"]  # fmt: skip
