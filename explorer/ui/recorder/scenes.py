"""A tour's view scenes before any frame is drawn: checked against the views' option schemas (no widget, no
model), then computed with the engines' runners (explorer.jobs), not with views: the models of each pair load
once, and scenes that ask for the same job share its records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ExplorerError
from ...interrupt import check as check_interrupt
from ...jobs import follow_model, run_job
from ...options import Option
from ...recording.tour import Scene, Tour, setting_problem
from ...session import Session
from ..views import VIEWS
from ..views.base import View

SPIN_BOX_DECIMALS = 2  # a float setting without its own decimals: what the panel's spin box keeps
@dataclass
class ModelOverrides:
    """`explorer record --model/--draft/--prompt/--device/--dtype`: replace what the tour names."""

    target: str | None = None
    draft: str | None = None
    prompt: str | None = None
    device: str | None = None
    dtype: str | None = None


@dataclass
class ComputedScene:
    """One scene's run: the runner's metadata and records (shared by scenes that asked for the same job) and the
    session that computed them (its models name the footer and the captions' {models})."""

    meta: Any
    records: list[Any]
    session: Session


def check_scene(tour: Tour, scene: Scene) -> None:
    """A view scene's settings, select and zoom, in the schema's words, before any model loads."""
    view = VIEWS[scene.view]
    at = ("scene", scene.index)
    for key, value in scene.settings.items():
        problem = setting_problem(scene.view, key, value)
        if problem:
            raise tour.error(at + ("settings", key), problem)
    for ev in scene.events:
        for key, value in ev.settings.items():
            problem = setting_problem(scene.view, key, value, display_only=True)
            if problem:
                raise tour.error(at + ("at", ev.index, "settings", key), problem)
    focus = [("select", at + ("select",), scene.select), ("zoom", at + ("zoom",), scene.zoom)]
    for e in scene.events:
        focus += [("select", at + ("at", e.index, "select"), e.select)]
        focus += [("zoom", at + ("at", e.index, "zoom"), e.zoom)]
    for what, path, value in focus:
        if value is not None and what not in view.focus_help:
            raise tour.error(path, f"the {view.name} view does not support {what}")


def scene_session(scene: Scene, models: ModelOverrides) -> Session:
    """The scene's models and prompt; `explorer record --model/--draft/--prompt` replace the tour's."""
    m = models
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


def as_panel_holds(option: Option, value: Any) -> Any:
    """``value`` as the panel's control would hold it (what the window would run with): integers as integers,
    numbers as floats rounded to the control's decimals."""
    if value is None:
        return value
    if option.kind is float:
        return round(float(value), option.decimals if option.decimals is not None else SPIN_BOX_DECIMALS)
    if option.kind is int:
        return int(value)
    return value


def scene_values(view: type[View], seed: int, settings: dict[str, Any]) -> dict[str, Any]:
    """The runner's values for a scene: the view's settings at their defaults, then the tour's seed, then the
    scene's settings (display settings change only the drawing: they are no job input)."""
    options = [o for o in view.schema.panel() if not o.display]
    values = {o.name: o.default for o in options}
    if "seed" in values:
        values["seed"] = seed
    values.update({k: v for k, v in settings.items() if k in values})
    return {o.name: as_panel_holds(o, values[o.name]) for o in options}


def compute_scenes(
    tour: Tour, seed: int, models: ModelOverrides, skip: set[int], log: Callable[[str], None]
) -> dict[int, ComputedScene]:
    """Run every view scene's job (but those in ``skip``, computed already) on models loaded once per pair; jobs
    with equal inputs run once. Each job runs deterministic (no clock) from ``seed``."""
    import torch

    pairs: dict[tuple, tuple] = {}
    done: dict[tuple, ComputedScene] = {}
    out: dict[int, ComputedScene] = {}
    for scene in tour.scenes:
        if scene.kind != "view" or scene.index in skip:
            continue
        at = ("scene", scene.index)
        session = scene_session(scene, models)
        if not VIEWS[scene.view].uses_draft:
            session.draft_dir = None  # nothing to load, and the footer names only what computed
        key = (str(session.target_dir), str(session.draft_dir), session.device, session.dtype)
        if key not in pairs:
            draft = f" + {session.draft_dir.name}" if session.draft_dir else ""
            log(f"loading {session.target_dir.name}{draft}")
            try:
                pairs[key] = session.load_pair()
            except ExplorerError as exc:
                raise tour.error(at + ("target",), str(exc)) from None
        session.target, session.draft = pairs[key]
        values = follow_model(scene.view, scene_values(VIEWS[scene.view], seed, scene.settings), session.target.config)
        job_key = (scene.view, key, session.prompt, seed, tuple(sorted(values.items())))
        if job_key not in done:
            log(f"scene {scene.index + 1}: running the {scene.view} view")
            torch.manual_seed(seed)
            try:
                job = run_job(scene.view, session, values, deterministic=True)
                records = []
                for record in job.records():
                    check_interrupt()
                    records.append(record)
            except ExplorerError as exc:
                raise tour.error(at + ("view",), str(exc)) from None
            done[job_key] = ComputedScene(job.meta, records, session)
        out[scene.index] = ComputedScene(done[job_key].meta, done[job_key].records, session)
    return out
