"""The headless tour pipeline: a tour checked against the views, each scene's job computed, the shots planned
(captions with their live numbers, selections), then frames drawn and encoded.

Frames are rendered into a ``QImage`` over a numpy buffer at exactly the asked width × height with a device-pixel
ratio of 1, whatever the screen or the window's size: the view sits in an offscreen *stage* widget laid out on a
720-line canvas (less the caption strip) and is drawn scaled by height / 720 (the same picture at 720p, 1080p and
2160p, only sharper). Time advances a fixed step per frame: each shot of the plan
(:func:`explorer.recording.tour.plan_shots`) is drawn once and held for its whole number of frames, so frame i is
a pure function of the tour, the records and i. Views run in deterministic mode (no wall-clock numbers), jobs run
with the tour's seed, and fonts are pinned: the same tour gives the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtWidgets import QApplication

from ...interrupt import check as check_interrupt
from ...interrupt import deferred as deferred_interrupts
from ...recording.tour import VIEW_TITLES, Scene, Shot, Tour, plan_shots
from ...recording.video import ThreadedWriter, check_record_output, open_writer
from ...session import Session
from ..theme import THEMES, apply_theme
from ..views import VIEWS
from ..views.base import View
from .fonts import prepare_view, ui_font
from .frames import FrameRenderer
from .scenes import ComputedScene, ModelOverrides, check_scene, compute_scenes


@dataclass
class RecordStats:
    out: Path
    format: str
    size: tuple[int, int]
    fps: float
    frames: int
    shots: int
    seconds_video: float
    seconds_compute: float = 0.0
    seconds_render: float = 0.0
    seconds_encode: float = 0.0  # on the encoding thread, overlapping the drawing
    seconds_wall: float = 0.0  # drawing and encoding, start to end
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.frames / self.seconds_wall if self.seconds_wall > 0 else float("inf")
        return (
            f"{self.out}: {self.frames} frames ({self.seconds_video:.1f} s at {self.fps:g} fps, "
            f"{self.size[0]}x{self.size[1]}, {self.format}); jobs {self.seconds_compute:.1f} s, "
            f"drawing {self.seconds_render:.1f} s ({self.shots} pictures), encoding {self.seconds_encode:.1f} s "
            f"(in parallel): {rate:.0f} frames/s"
        )


def format_caption(tour: Tour, shot: Shot, view: View, session: Session | None = None) -> str:
    if not shot.caption:
        return ""
    record = view.records[shot.step]
    fields: dict[str, Any] = {"step": shot.step + 1, "steps": len(view.records), "title": VIEW_TITLES[view.name]}
    if session is not None and session.target is not None:
        draft = session.draft if view.uses_draft else None
        fields["model"] = session.target.name
        fields["models"] = session.target.name + (f" + draft {draft.name}" if draft is not None else "")
    else:
        fields["model"] = fields["models"] = "the loaded model"
    fields.update(view.caption_fields(record))
    try:
        return shot.caption.format_map(fields)
    except KeyError as exc:
        raise tour.error(
            shot.caption_path,
            f"caption names {{{exc.args[0]}}}, which the {view.name} view does not have "
            f"(fields: {', '.join(fields)}; write {{{{ and }}}} for braces)",
        ) from None
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise tour.error(shot.caption_path, f"caption: {exc}") from None


class Recorder:
    """Records a tour: checks it against the views, runs each scene's job (``prepare``), then yields frames."""

    def __init__(
        self,
        tour: Tour,
        size: tuple[int, int],
        fps: float,
        theme: str = "light",
        seed: int = 0,
        models: ModelOverrides | None = None,
        views: dict[int, View] | None = None,
        sessions: dict[int, Session] | None = None,
        log=None,
    ):
        self.tour, self.size, self.fps = tour, size, fps
        self.theme = THEMES[theme]
        self.seed = seed
        self.models = models or ModelOverrides()
        self.views: dict[int, View] = dict(views or {})  # scene index -> view with its records
        self.sessions: dict[int, Session] = dict(sessions or {})
        self.log = log or (lambda msg: None)
        self.shots: list[Shot] = []
        self.captions: list[str] = []
        self.renderer: FrameRenderer | None = None
        self.seconds_compute = self.seconds_render = 0.0
        self.notes: list[str] = []

    @property
    def total_frames(self) -> int:
        return sum(s.frames for s in self.shots)

    # ---- checking and computing
    def check(self) -> None:
        """Everything that can be checked before a model loads: views, settings, select / zoom support."""
        for scene in self.tour.scenes:
            if scene.kind == "view" and scene.index not in self.views:
                check_scene(self.tour, scene)

    def compute(self) -> None:
        """Run every view scene's job with its engine's runner (jobs with equal inputs run once, on models loaded
        once per pair), then give each scene a view that draws its records."""
        t0 = time.perf_counter()
        computed = compute_scenes(self.tour, self.seed, self.models, set(self.views), self.log)
        self.seconds_compute = time.perf_counter() - t0
        for index, run in computed.items():
            self.views[index] = self._drawing_view(self.tour.scenes[index], run)
            self.sessions[index] = run.session

    def _drawing_view(self, scene: Scene, run: ComputedScene) -> View:
        """A view in recording mode with the scene's settings (display ones included), its run's metadata and
        records."""
        view = VIEWS[scene.view](self.theme)
        prepare_view(view)
        if "seed" in view.setting_widgets():
            view.apply_settings({"seed": self.seed})
        view.apply_settings(scene.settings)
        view.meta = run.meta
        for record in run.records:
            view.add_record(record)
        return view

    def plan(self) -> None:
        """Shots, captions with their live numbers, selections: all checked before the first frame is drawn."""
        counts = {i: len(v.records) for i, v in self.views.items()}
        for scene in self.tour.scenes:
            if scene.kind == "view" and scene.clamp_steps and isinstance(scene.steps, tuple):
                if scene.steps[1] > counts.get(scene.index, 0):
                    self.notes.append(
                        f"the {scene.view} view computed {counts.get(scene.index, 0)} steps, fewer than the "
                        f"{scene.steps[1]} asked for: recording all of them"
                    )
        self.shots = plan_shots(self.tour, self.fps, counts)
        self.captions = []
        previous: tuple | None = None
        for shot in self.shots:
            if shot.step is None:
                self.captions.append("")
                continue
            view = self.views[shot.scene]
            self.captions.append(format_caption(self.tour, shot, view, self.sessions.get(shot.scene)))
            if shot.select is not None and shot.select_path != previous:  # a new selection: it must exist now
                problem = view.focus_problem(view.records[shot.step], shot.select)
                if problem:
                    raise self.tour.error(shot.select_path, problem)
            previous = shot.select_path if shot.select is not None else None

    def prepare(self) -> None:
        self.check()
        self.compute()
        self.plan()

    # ---- drawing
    def _footer(self, index: int) -> str:
        for scene in self.tour.scenes[index:]:
            if scene.kind == "view" and scene.index in self.sessions:
                s = self.sessions[scene.index]
                draft = s.draft if VIEWS[scene.view].uses_draft else None
                names = s.target.name + (f" + draft {draft.name}" if draft is not None else "")
                return f"computed live on {names}"
        return ""

    def frames(self) -> Iterator[np.ndarray]:
        """One array per video frame; a held picture is the same array object frame after frame."""
        if self.renderer is None:
            self.renderer = FrameRenderer(self.size, self.theme, self.captions)
        r = self.renderer
        total = max(self.total_frames, 1)
        prev_select: dict[int, Any] = {}
        for shot, caption in zip(self.shots, self.captions, strict=True):
            t0 = time.perf_counter()
            scene = self.tour.scenes[shot.scene]
            if shot.step is None:
                frame = r.card_frame(scene.title, scene.subtitle, self._footer(shot.scene))
            else:
                view = self.views[shot.scene]
                r.stage.set_view(view)
                if shot.display:
                    changed = {k: v for k, v in shot.display.items() if view.settings_values().get(k) != v}
                    view.apply_settings(changed)
                if view.current != shot.step:
                    view.show_step(shot.step)
                try:
                    view.set_focus(shot.select, shot.zoom)
                except ValueError:
                    if prev_select.get(shot.scene) != shot.select:
                        raise
                    view.set_focus(None, shot.zoom)  # a node that only some steps have: the default there
                prev_select[shot.scene] = shot.select
                for _ in range(3):
                    r.stage.settle()
                    before = r.stage.layout_signature()
                    frame = r.view_frame(caption, shot.first_frame / total)
                    r.stage.settle()
                    if r.stage.layout_signature() == before:
                        break
            self.seconds_render += time.perf_counter() - t0
            for _ in range(shot.frames):
                yield frame

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None


def prepare_app(theme: str) -> QApplication:
    """The QApplication for headless recording, styled as the window would be."""
    from ..qapp import ensure_app

    app = ensure_app(offscreen=QApplication.instance() is None)
    apply_theme(app, THEMES[theme])
    app.setFont(ui_font())  # plot items (tree labels, legends) take the application's font
    return app


def record(
    tour: Tour,
    out: str | Path,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
    theme: str | None = None,
    seed: int | None = None,
    models: ModelOverrides | None = None,
    log=None,
) -> RecordStats:
    """Record ``tour`` headless to ``out`` (MP4, GIF or a directory of PNGs); options override the tour's."""
    from ...recording.video import check_fps

    fmt = check_record_output(out)  # the folder exists and is writable: checked before any work
    size = size or tour.size or (1280, 720)
    fps = check_fps(fps or tour.fps or 30.0)
    theme = theme or tour.theme or "light"
    seed = seed if seed is not None else (tour.seed if tour.seed is not None else 0)
    app = QApplication.instance()
    saved = (app.font(), app.palette()) if app is not None else None  # in-process callers keep their look
    prepare_app(theme)
    rec = Recorder(tour, size, fps, theme=theme, seed=seed, models=models, log=log)
    writer = None
    try:
        with deferred_interrupts():  # Ctrl-C / SIGTERM are taken between frames, never lost inside Qt's calls
            rec.prepare()  # every check and every job before the output is touched
            writer = ThreadedWriter(open_writer(out, size, fps))  # encodes frame i while frame i + 1 is drawn
            t0 = time.perf_counter()
            for frame in rec.frames():
                check_interrupt()
                writer.write(frame)
            writer.drain()  # every frame encoded into the temporary output
            check_interrupt()  # a signal until now: the previous output stays as it was
            # The commit (a directory of PNGs: one rename per frame) is never cut short: a signal during it is
            # taken when the block ends, with the new output whole.
            writer.close()
        return RecordStats(
            out=Path(out), format=fmt, size=size, fps=fps, frames=writer.frames, shots=len(rec.shots),
            seconds_video=writer.frames / fps, seconds_compute=rec.seconds_compute,
            seconds_render=rec.seconds_render, seconds_encode=writer.encode_seconds,
            seconds_wall=time.perf_counter() - t0, notes=rec.notes,
        )  # fmt: skip
    except BaseException:
        if writer is not None:
            writer.abort()  # the temporary output is deleted; a previous file at `out` stays as it was
        raise
    finally:
        rec.close()
        if saved is not None:
            app.setFont(saved[0])
            app.setPalette(saved[1])
