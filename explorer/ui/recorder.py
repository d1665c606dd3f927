"""Recording: a view's steps (or a scripted tour) drawn offscreen at an exact size, frame by frame.

Frames are rendered into a ``QImage`` over a numpy buffer at exactly the asked width × height with a device-pixel
ratio of 1, whatever the screen or the window's size: the view sits in an offscreen *stage* widget laid out on a
720-line canvas (less the caption strip) and is drawn scaled by height / 720 (the same picture at 720p, 1080p and
2160p, only sharper). Time advances a fixed
step per frame: each shot of the plan (:func:`explorer.recording.tour.plan_shots`) is drawn once and held for its whole
number of frames, so frame i is a pure function of the tour, the records and i. Views run in deterministic mode
(no wall-clock numbers), jobs run with the tour's seed, and fonts are pinned: the same tour gives the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QPoint, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QFontMetricsF, QImage, QPainter, QTextOption
from PySide6.QtWidgets import QApplication, QVBoxLayout, QWidget

from ..errors import ExplorerError
from ..interrupt import check as check_interrupt
from ..interrupt import deferred as deferred_interrupts
from ..recording.tour import VIEW_TITLES, Shot, Tour, plan_shots
from ..recording.video import ThreadedWriter, check_record_output, open_writer
from ..session import Session
from .theme import THEMES, Theme, apply_theme, make_palette
from .views import VIEWS
from .views.base import View

BASE_HEIGHT = 720  # frames are laid out on a 720-line canvas and drawn scaled to the asked size
CAPTION_PX = 26.0  # caption text on that canvas: 3.6% of the frame height (26 px at 720p, 39 px at 1080p)
CAPTION_MAX_LINES = 3
TITLE_PX = 52.0
SUBTITLE_PX = 27.0
FOOTER_PX = 17.0
FONT_FAMILY = "DejaVu Sans"  # pinned (when installed): the same glyphs on every run
UI_POINT_SIZE = 10.0  # the views' text, as in the window at 100%
STRIP_BG = {"light": "#1d2129", "dark": "#0b0c0f"}
STRIP_TEXT = {"light": "#f4f5f7", "dark": "#e6e8eb"}


def family() -> str:
    return FONT_FAMILY if FONT_FAMILY in QFontDatabase.families() else QApplication.font().family()


def pixel_font(px: float, bold: bool = False) -> QFont:
    font = QFont(family())
    font.setPixelSize(max(6, round(px)))
    font.setBold(bold)
    return font


def ui_font() -> QFont:
    font = QFont(family())
    font.setPointSizeF(UI_POINT_SIZE)
    return font


def prepare_view(view: View) -> None:
    """Recording mode for a fresh view, before its records arrive (a view's apply_font redraws its empty state):
    no wall-clock numbers, the pinned font."""
    view.deterministic = True
    font = ui_font()
    view.setFont(font)
    if hasattr(view, "apply_font"):
        view.apply_font(font)


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


class Stage(QWidget):
    """An offscreen top-level widget that holds the view being recorded at exactly the frame's view area."""

    def __init__(self, size: tuple[int, int], theme: Theme):
        super().__init__(None)
        self.setAttribute(Qt.WidgetAttribute.WA_DontShowOnScreen)
        self.setAutoFillBackground(True)
        self.setPalette(make_palette(theme))
        self.setFixedSize(*size)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.view: View | None = None
        self._plots: list = []
        self._plot_items: list = []

    def set_view(self, view: View) -> None:
        if self.view is view:
            return
        if self.view is not None:
            self.layout().removeWidget(self.view)
            self.view.hide()
            self.view.setParent(None)
        self.view = view
        view.setParent(self)
        self.layout().addWidget(view)
        view.show()
        self._plots = view.findChildren(pg.GraphicsView)
        self._plot_items = [
            item for v in self._plots for item in v.scene().items() if isinstance(item, pg.AxisItem | pg.ViewBox)
        ]
        self.settle()

    def settle(self) -> None:
        """Bring the view to the state a paint would leave it in, without painting: plots update their ranges
        (pyqtgraph does that when painted, and axes that change width then ask for a new layout), layouts follow
        (labels that grew, plots that resized). A frame is then the same whatever was drawn before it."""
        if not self.isVisible():
            self.show()
        for _ in range(3):
            for v in self._plots:
                v.scene().prepareForPaint()
            QCoreApplication.sendPostedEvents(None, 0)

    def layout_signature(self) -> tuple:
        """Where the plots' axes and view boxes are. Painting an axis measures its tick labels and may widen it
        (pyqtgraph), which moves its plot: a frame whose signature changed while it was drawn is drawn again."""
        return tuple(item.geometry().getRect() for item in self._plot_items)

    def event(self, e) -> bool:
        if e.type() == QEvent.Type.UpdateRequest:
            return True  # never paint the stage's own backing store: frames are rendered into images
        return super().event(e)


class FrameRenderer:
    """Draws frames of exactly ``size``: a title card, or the stage's view above a caption strip.

    Everything is laid out on a canvas ``BASE_HEIGHT`` (720) lines high and as wide as the frame's aspect asks
    (1280 for 16:9), then drawn into the frame scaled by height / 720: a recording looks the same at 720p, 1080p
    and 2160p, only sharper, and its captions are 3.6% of the frame height. The frame buffer is a numpy array
    that the ``QImage`` paints into (device-pixel ratio 1); the array handed to writers is a view of it.
    """

    def __init__(self, size: tuple[int, int], theme: Theme, captions: list[str]):
        self.size = size
        self.theme = theme
        w, h = size
        self.canvas = (max(1, round(w * BASE_HEIGHT / h)), BASE_HEIGHT)
        self.scale = (w / self.canvas[0], h / BASE_HEIGHT)
        self.caption_font = pixel_font(CAPTION_PX)
        self.strip_h = self._strip_height(captions)
        self.stage = Stage((self.canvas[0], BASE_HEIGHT - self.strip_h), theme)
        self.ui_font = ui_font()
        self.stage.setFont(self.ui_font)
        self._stride = (w * 3 + 3) // 4 * 4

    # ---- geometry (canvas units)
    def _caption_lines(self, text: str, font: QFont) -> int:
        cw = self.canvas[0]
        fm = QFontMetricsF(font)
        rect = fm.boundingRect(QRectF(0, 0, cw * 0.94, 1e6), int(Qt.TextFlag.TextWordWrap), text)
        return max(1, round(rect.height() / fm.lineSpacing()))

    def _strip_height(self, captions: list[str]) -> int:
        lines = max([self._caption_lines(c, self.caption_font) for c in captions if c] or [1])
        lines = min(lines, CAPTION_MAX_LINES)
        fm = QFontMetricsF(self.caption_font)
        return int(round(lines * fm.lineSpacing() + 0.9 * fm.height()))

    # ---- drawing
    def _begin(self, background: str) -> tuple[np.ndarray, QImage, QPainter]:
        w, h = self.size
        buf = np.empty((h, self._stride), np.uint8)
        image = QImage(buf.data, w, h, self._stride, QImage.Format.Format_RGB888)
        image.fill(QColor(background))
        p = QPainter(image)
        p.scale(*self.scale)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing)
        return buf, image, p

    def _frame(self, buf: np.ndarray) -> np.ndarray:
        w, h = self.size
        return buf[:, : w * 3].reshape(h, w, 3)

    def view_frame(self, caption: str, progress: float) -> np.ndarray:
        buf, _image, p = self._begin(self.theme.window)
        self.stage.render(p, QPoint(0, 0))
        self._draw_strip(p, caption, progress)
        p.end()
        return self._frame(buf)

    def _draw_strip(self, p: QPainter, caption: str, progress: float) -> None:
        cw, ch = self.canvas
        top = ch - self.strip_h
        p.fillRect(QRectF(0, top, cw, self.strip_h), QColor(STRIP_BG[self.theme.name]))
        bar = 3.0
        p.fillRect(QRectF(0, top, cw * min(max(progress, 0.0), 1.0), bar), QColor(self.theme.accent))
        if not caption:
            return
        font = QFont(self.caption_font)
        fm = QFontMetricsF(font)
        room = max(1, int((self.strip_h - 0.9 * fm.height()) // fm.lineSpacing()))
        while self._caption_lines(caption, font) > room and font.pixelSize() > 8:
            font.setPixelSize(font.pixelSize() - 1)  # a caption too long for the strip: smaller, never cut
        p.setFont(font)
        p.setPen(QColor(STRIP_TEXT[self.theme.name]))
        option = QTextOption(Qt.AlignmentFlag.AlignCenter)
        option.setWrapMode(QTextOption.WrapMode.WordWrap)
        p.drawText(QRectF(cw * 0.03, top + bar, cw * 0.94, self.strip_h - bar), caption, option)

    def card_frame(self, title: str, subtitle: str, footer: str) -> np.ndarray:
        cw, ch = self.canvas
        buf, _image, p = self._begin(self.theme.base)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        mid = 0.47 * ch
        option = QTextOption(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom)
        option.setWrapMode(QTextOption.WrapMode.WordWrap)
        p.setFont(pixel_font(TITLE_PX, bold=True))
        p.setPen(QColor(self.theme.text))
        p.drawText(QRectF(0.08 * cw, 0.05 * ch, 0.84 * cw, mid - 0.05 * ch), title, option)
        rule = 0.09 * cw
        p.fillRect(QRectF((cw - rule) / 2, mid + 0.025 * ch, rule, 4.0), QColor(self.theme.accent))
        if subtitle:
            option = QTextOption(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
            option.setWrapMode(QTextOption.WrapMode.WordWrap)
            p.setFont(pixel_font(SUBTITLE_PX))
            p.drawText(QRectF(0.12 * cw, mid + 0.07 * ch, 0.76 * cw, 0.36 * ch), subtitle, option)
        if footer:
            option = QTextOption(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom)
            p.setFont(pixel_font(FOOTER_PX))
            p.setPen(QColor(self.theme.muted))
            p.drawText(QRectF(0, 0, cw, ch - 0.04 * ch), footer, option)
        p.end()
        return self._frame(buf)

    def close(self) -> None:
        if self.stage.view is not None:
            self.stage.view.setParent(None)
            self.stage.view = None
        self.stage.close()
        self.stage.deleteLater()


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


@dataclass
class ModelOverrides:
    """`explorer record --model/--draft/--prompt/--device/--dtype`: replace what the tour names."""

    target: str | None = None
    draft: str | None = None
    prompt: str | None = None
    device: str | None = None
    dtype: str | None = None


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
            if scene.kind != "view" or scene.index in self.views:
                continue
            at = ("scene", scene.index)
            view = VIEWS[scene.view](self.theme)
            try:
                for key, value in scene.settings.items():
                    problem = view.check_setting(key, value)
                    if problem:
                        raise self.tour.error(at + ("settings", key), problem)
                for ev in scene.events:
                    for key, value in ev.settings.items():
                        problem = view.check_setting(key, value)
                        if problem is None and key not in view.display_settings:
                            shown = ", ".join(view.display_settings) or "none"
                            problem = (
                                f"setting {key} changes the {view.name} view's computation: set it in the scene's "
                                f"settings; within a scene only display settings can change ({shown})"
                            )
                        if problem:
                            raise self.tour.error(at + ("at", ev.index, "settings", key), problem)
                focus = [("select", at + ("select",), scene.select), ("zoom", at + ("zoom",), scene.zoom)]
                for e in scene.events:
                    focus += [("select", at + ("at", e.index, "select"), e.select)]
                    focus += [("zoom", at + ("at", e.index, "zoom"), e.zoom)]
                for what, path, value in focus:
                    if value is not None and what not in view.focus_help:
                        raise self.tour.error(path, f"the {view.name} view does not support {what}")
            finally:
                view.deleteLater()

    def _session(self, scene) -> Session:
        """The scene's models and prompt; `explorer record --model/--draft/--prompt` replace the tour's."""
        m = self.models
        s = Session()
        if m.target:
            s.target_dir = Path(m.target).expanduser()
            s.draft_dir = Path(m.draft).expanduser() if m.draft else None  # as `explorer --model` does
        else:
            if scene.target is not None:
                s.target_dir = scene.target
            if m.draft:
                s.draft_dir = Path(m.draft).expanduser()
            elif scene.no_draft:
                s.draft_dir = None
            elif scene.draft is not None:
                s.draft_dir = scene.draft
        if m.prompt is not None:
            s.prompt = m.prompt
        elif scene.prompt is not None:
            s.prompt = scene.prompt
        if m.device:
            s.device = m.device
        s.dtype = m.dtype
        return s

    def compute(self) -> None:
        """Run every view scene's job (jobs with equal inputs run once) on models loaded once per pair."""
        import torch

        pairs: dict[tuple, tuple] = {}
        done: dict[tuple, View] = {}
        t0 = time.perf_counter()
        for scene in self.tour.scenes:
            if scene.kind != "view" or scene.index in self.views:
                continue
            at = ("scene", scene.index)
            session = self._session(scene)
            if not VIEWS[scene.view].uses_draft:
                session.draft_dir = None  # nothing to load, and the footer names only what computed
            key = (str(session.target_dir), str(session.draft_dir), session.device, session.dtype)
            if key not in pairs:
                draft = f" + {session.draft_dir.name}" if session.draft_dir else ""
                self.log(f"loading {session.target_dir.name}{draft}")
                try:
                    pairs[key] = session.load_pair()
                except ExplorerError as exc:
                    raise self.tour.error(at + ("target",), str(exc)) from None
            session.target, session.draft = pairs[key]
            view = VIEWS[scene.view](self.theme)
            prepare_view(view)
            if "seed" in view.setting_widgets():
                view.apply_settings({"seed": self.seed})
            view.apply_settings(scene.settings)
            job_key = (scene.view, key, session.prompt, self.seed, tuple(sorted(
                (k, v) for k, v in view.settings_values().items() if k not in view.display_settings
            )))  # fmt: skip
            if job_key in done:
                source = done[job_key]
                if hasattr(source, "meta"):
                    view.meta = source.meta
                for r in source.records:
                    view.add_record(r)
            else:
                self.log(f"scene {scene.index + 1}: running the {scene.view} view")
                torch.manual_seed(self.seed)
                try:
                    job = view.make_job(session)
                    for record in job():
                        check_interrupt()
                        view.add_record(record)
                except ExplorerError as exc:
                    raise self.tour.error(at + ("view",), str(exc)) from None
                done[job_key] = view
            self.views[scene.index] = view
            self.sessions[scene.index] = session
        self.seconds_compute = time.perf_counter() - t0

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
    from .qapp import ensure_app

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
    from ..recording.video import check_fps

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
        writer.close()  # waits for the encoder, flushes it, writes the GIF
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


# ------------------------------------------------------------------------------------------------ the GUI
class GuiRecording(QObject):
    """Records a view's records from the window without freezing it: frames are drawn and encoded in slices of
    a few tens of milliseconds on a zero-interval timer, so the event loop runs between them. Signals:
    progress(done, total), finished(path), failed(message)."""

    progress = Signal(int, int)
    finished = Signal(str)
    failed = Signal(str)

    SLICE_S = 0.03

    def __init__(
        self,
        view: View,
        out: str | Path,
        size: tuple[int, int],
        fps: float,
        seconds_per_step: float = 1.0,
        first_step: int = 0,
        caption: str | None = None,
        session: Session | None = None,
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        from ..recording.tour import single_view_tour

        self.out = Path(out)
        self.format = check_record_output(out)
        clone = view.clone(setup=prepare_view)
        n = len(clone.records)
        if n == 0:
            clone.deleteLater()
            raise ExplorerError(f"the {view.name} view has no steps to record yet: run it first")
        tour = single_view_tour(view.name, None, seconds_per_step)
        tour.scenes[0].steps = (min(max(first_step, 0), n - 1) + 1, n)
        if caption is not None:
            tour.scenes[0].caption = caption
        sessions = {0: session} if session is not None else None
        self.recorder = Recorder(tour, size, fps, theme=view.theme.name, views={0: clone}, sessions=sessions)
        try:
            self.recorder.plan()  # captions with their live fields: a bad one is refused before anything is written
        except BaseException:
            clone.deleteLater()
            raise
        self.total = self.recorder.total_frames
        self.done = 0
        self._writer = None
        self._frames: Iterator[np.ndarray] | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._tick)

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def start(self) -> None:
        self._writer = ThreadedWriter(open_writer(self.out, self.recorder.size, self.recorder.fps))
        self._frames = self.recorder.frames()
        self._timer.start()

    def cancel(self) -> None:
        if not self.running:
            return
        self._timer.stop()
        self._cleanup(abort=True)  # half a video is no video: the temporary file goes, a previous `out` stays
        self.failed.emit("recording cancelled")

    def _tick(self) -> None:
        t0 = time.perf_counter()
        try:
            while time.perf_counter() - t0 < self.SLICE_S:
                frame = next(self._frames, None)
                if frame is None:
                    self._timer.stop()
                    self._cleanup(abort=False)
                    self.progress.emit(self.total, self.total)
                    self.finished.emit(str(self.out))
                    return
                self._writer.write(frame)
                self.done += 1
        except Exception as exc:  # noqa: BLE001 - shown in the window, never raised into the event loop
            self._timer.stop()
            self._cleanup(abort=True)
            self.failed.emit(str(exc) if isinstance(exc, ExplorerError | OSError) else f"{type(exc).__name__}: {exc}")
            return
        self.progress.emit(self.done, self.total)

    def _cleanup(self, abort: bool) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort() if abort else writer.close()
        self._frames = None
        for view in self.recorder.views.values():
            view.deleteLater()
        self.recorder.close()
