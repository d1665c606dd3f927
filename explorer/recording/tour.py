"""Scripted tours: a small TOML format naming scenes in order, and the frame plan a recording follows.

Qt-free. :func:`load_tour` parses and checks a tour (syntax, keys, types, paths) and reports a problem as one line
naming the file, the line and the problem. What needs the views themselves (the view's settings, a caption's live
fields, a step count only known after the computation) is checked by the recorder, which reports through
:meth:`Tour.error` with the same line lookup. :func:`plan_shots` turns a checked tour plus the number of steps
each scene computed into *shots*: one picture held for a whole number of frames. Frame i of a recording is a pure
function of the tour, the records and i: time advances 1/fps per frame, never by the wall clock.

The format (all keys optional unless marked)::

    title = "Speculative decoding"      # shown nowhere; the recording's name
    fps = 30                             # defaults for `explorer record`; its options override them
    size = "1280x720"
    theme = "light"                      # or "dark"
    seed = 0                             # each scene's job runs with this seed (the view's seed setting)
    target = "path/to/model"             # defaults for every scene: models (relative to this file) and prompt
    draft = "path/to/draft"              # "" = no draft
    prompt = "def fibonacci(n):\\n    "

    [[scene]]                            # a title card
    card = "Speculative decoding"        # required for a card: its title
    subtitle = "..."
    seconds = 3

    [[scene]]                            # a view playing its steps
    view = "speculative"                 # required: generate, attention, speculative, amp or autograd
    prompt = "..."                       # target / draft / prompt as above, for this scene
    settings = { method = "chain", gamma = 4 }   # the view's settings by name (see `explorer record --help`)
    steps = [1, 12]                      # first and last step (1-based, as the view counts), a count, or "all"
    seconds_per_step = 1.5
    hold = 2                             # extra seconds on the last step
    caption = "Step {step} of {steps}: ..."   # {fields} are filled with the live numbers of the step shown
    select = 0                           # speculative: tree node; attention: query row
    zoom = "tile"                        # attention: "tile", "block" or "all"

    [[scene.at]]                         # from this step on: another caption, selection, zoom, display setting
    step = 5                             # required
    caption = "..."
    pause = 2                            # extra seconds on this step
    settings = { fa4 = true }            # display-only settings (attention: units, fa4, unsafe; amp: grads)
    select = 3
    zoom = "block"
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..amp.options import VIEW as AMP_VIEW
from ..attention.options import VIEW as ATTENTION_VIEW
from ..autograd.options import VIEW as AUTOGRAD_VIEW
from ..distributed.options import VIEW as DDP_VIEW
from ..errors import ExplorerError
from ..models.options import GENERATE, SEED
from ..options import Schema
from ..speculative.options import VIEW as SPECULATIVE_VIEW

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

VIEW_NAMES = ("generate", "attention", "speculative", "amp", "autograd", "ddp")
# The settings of each view (its panel's controls), by which tours, --set and screenshots are checked.
VIEW_SCHEMAS: dict[str, Schema] = {
    "generate": GENERATE, "attention": ATTENTION_VIEW, "speculative": SPECULATIVE_VIEW, "amp": AMP_VIEW,
    "autograd": AUTOGRAD_VIEW, "ddp": DDP_VIEW,
}  # fmt: skip
VIEW_TITLES = {"generate": "Decoding, token by token", "attention": "FlashAttention's online softmax",
               "speculative": "Speculative decoding", "amp": "Mixed-precision loss scaling",
               "autograd": "The backward graph, as autograd runs it",
               "ddp": "Ring all-reduce on real ranks"}  # fmt: skip
STEP_SETTINGS = {"generate": "max_new", "amp": "steps"}  # views whose length is a setting: one record per unit
DEFAULT_CAPTION = "{title} · step {step} of {steps} · live on {models}"
THEME_NAMES = ("light", "dark")
ZOOMS = ("all", "block", "tile")
MAX_SECONDS = 600.0
MAX_SEED = int(SEED.hi)

TOP_KEYS = {
    "title": "the recording's name",
    "fps": "frames per second",
    "size": "WxH",
    "theme": "light or dark",
    "seed": "seed of every scene's job",
    "target": "default target model directory",
    "draft": "default draft model directory",
    "prompt": "default prompt",
    "scene": "the scenes, in order ([[scene]])",
}
CARD_KEYS = {"card", "subtitle", "seconds"}
VIEW_KEYS = {
    "view", "target", "draft", "prompt", "settings", "steps", "seconds_per_step", "hold", "caption", "select", "zoom",
    "at",
}  # fmt: skip
AT_KEYS = {"step", "caption", "pause", "settings", "select", "zoom"}


@dataclass
class Event:
    """``[[scene.at]]``: changes from one step of a scene on."""

    index: int
    step: int  # 1-based
    caption: str | None = None
    pause: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    select: int | None = None
    zoom: str | None = None


@dataclass
class Scene:
    index: int
    kind: str  # "card" or "view"
    # card
    title: str = ""
    subtitle: str = ""
    seconds: float = 3.0
    # view
    view: str = ""
    target: Path | None = None
    draft: Path | None = None  # None: the default (the demo draft with the demo target); see no_draft
    no_draft: bool = False
    prompt: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    steps: Any = "all"  # "all", a count, or (first, last), 1-based
    seconds_per_step: float = 1.0
    hold: float = 0.0
    caption: str = ""
    select: int | None = None
    zoom: str | None = None
    events: list[Event] = field(default_factory=list)
    clamp_steps: bool = False  # `explorer record --view V --steps N`: play what exists when fewer steps were computed


@dataclass
class Tour:
    name: str  # the file as the user named it (used in messages)
    source: str = ""
    base: Path = field(default_factory=Path.cwd)
    title: str = ""
    fps: float | None = None
    size: tuple[int, int] | None = None
    theme: str | None = None
    seed: int | None = None
    scenes: list[Scene] = field(default_factory=list)

    def line_of(self, path: tuple) -> int | None:
        return locate(self.source, path) if self.source else None

    def error(self, path: tuple, message: str) -> ExplorerError:
        """One line for the user: ``NAME, line N: message`` (the line of the key at ``path``, or the nearest)."""
        line = self.line_of(path)
        where = f"{self.name}, line {line}" if line else self.name
        return ExplorerError(f"{where}: {message}")


@dataclass
class Shot:
    """One picture held for ``frames`` frames: a title card, or one step of a scene's view in a given state."""

    scene: int
    frames: int
    step: int | None = None  # 0-based record index (None for a card)
    caption: str = ""
    caption_path: tuple = ()  # where the caption came from (for errors in its live fields)
    display: dict[str, Any] = field(default_factory=dict)  # display-only settings in force
    select: int | None = None
    select_path: tuple = ()
    zoom: str | None = None
    first_frame: int = 0


# ---------------------------------------------------------------------------------------------------- parsing
def load_tour(path: str | Path) -> Tour:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExplorerError(f"tour file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExplorerError(f"cannot read tour {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_tour(text, name=str(path), base=p.resolve().parent)


def parse_tour(text: str, name: str = "<tour>", base: Path | None = None) -> Tour:
    tour = Tour(name=name, source=text, base=base or Path.cwd())
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ExplorerError(_toml_message(name, exc, text)) from None
    _check_keys(tour, data, (), TOP_KEYS, "the tour")
    tour.title = _get(tour, data, ("title",), str, "")
    fps = _get(tour, data, ("fps",), (int, float), None)
    if fps is not None and not (0 < fps <= 120):  # NaN fails this too
        raise tour.error(("fps",), f"fps must be above 0 and at most 120, got {fps}")
    tour.fps = None if fps is None else float(fps)
    size = _get(tour, data, ("size",), str, None)
    if size is not None:
        from .video import parse_size

        try:
            tour.size = parse_size(size)
        except ExplorerError as exc:
            raise tour.error(("size",), str(exc)) from None
    tour.theme = _choice(tour, data, ("theme",), THEME_NAMES, None)
    tour.seed = _get(tour, data, ("seed",), int, None)
    if tour.seed is not None and not 0 <= tour.seed <= MAX_SEED:
        raise tour.error(("seed",), f"seed must be an integer in 0..{MAX_SEED}, got {tour.seed}")
    defaults = {
        "target": _path(tour, data, ("target",)),
        "draft": _path(tour, data, ("draft",)),
        "prompt": _get(tour, data, ("prompt",), str, None),
    }
    scenes = data.get("scene")
    if scenes is None or scenes == []:
        raise ExplorerError(f"{name}: no scenes; add at least one [[scene]] with view = ... or card = ...")
    if not isinstance(scenes, list) or not all(isinstance(s, dict) for s in scenes):
        raise tour.error(("scene",), "scene must be an array of tables: write each scene as [[scene]]")
    for i, raw in enumerate(scenes):
        tour.scenes.append(_scene(tour, i, raw, defaults))
    return tour


def _scene(tour: Tour, i: int, raw: dict, defaults: dict) -> Scene:
    at = ("scene", i)
    label = f"scene {i + 1}"
    if "card" in raw and "view" in raw:
        raise tour.error(at + ("view",), f"{label} has both card and view; a scene is one or the other")
    if "card" in raw:
        _check_keys(tour, raw, at, CARD_KEYS, f"{label} (a title card)")
        s = Scene(index=i, kind="card")
        s.title = _get(tour, raw, at + ("card",), str, "")
        s.subtitle = _get(tour, raw, at + ("subtitle",), str, "")
        s.seconds = _seconds(tour, raw, at + ("seconds",), 3.0, positive=True)
        return s
    if "view" not in raw:
        raise tour.error(at, f'{label} needs view = "NAME" ({", ".join(VIEW_NAMES)}) or card = "TITLE"')
    _check_keys(tour, raw, at, VIEW_KEYS, f"{label} (view)")
    s = Scene(index=i, kind="view")
    s.view = _choice(tour, raw, at + ("view",), VIEW_NAMES, None, what="view")
    target = _path(tour, raw, at + ("target",))
    s.target = target if target is not None else defaults["target"]
    draft = _path(tour, raw, at + ("draft",))
    if draft is None:
        draft = defaults["draft"]
    if draft is None and s.target is not None:
        draft = "none"  # a tour's own target gets no draft unless one is named (as `explorer --model` does)
    s.no_draft = draft == "none"
    s.draft = None if s.no_draft else draft
    s.prompt = _get(tour, raw, at + ("prompt",), str, None)
    if s.prompt is None:
        s.prompt = defaults["prompt"]
    s.settings = _table(tour, raw, at + ("settings",))
    for key, value in s.settings.items():
        if problem := setting_problem(s.view, key, value):
            raise tour.error(at + ("settings", key), problem)
    s.steps = _steps(tour, raw, at + ("steps",))
    s.seconds_per_step = _seconds(tour, raw, at + ("seconds_per_step",), 1.0, positive=True)
    s.hold = _seconds(tour, raw, at + ("hold",), 0.0)
    s.caption = _get(tour, raw, at + ("caption",), str, "")
    s.select = _get(tour, raw, at + ("select",), int, None)
    s.zoom = _choice(tour, raw, at + ("zoom",), ZOOMS, None, what="zoom")
    events = raw.get("at", [])
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise tour.error(at + ("at",), f"{label}: at must be an array of tables: write each as [[scene.at]]")
    for k, e in enumerate(events):
        p = at + ("at", k)
        _check_keys(tour, e, p, AT_KEYS, f"{label}, [[scene.at]] {k + 1}")
        if "step" not in e:
            raise tour.error(p, f"{label}: each [[scene.at]] needs step = N (1-based)")
        ev = Event(index=k, step=_get(tour, e, p + ("step",), int, 1))
        if ev.step < 1:
            raise tour.error(p + ("step",), f"steps count from 1, got step = {ev.step}")
        ev.caption = _get(tour, e, p + ("caption",), str, None)
        ev.pause = _seconds(tour, e, p + ("pause",), 0.0)
        ev.settings = _table(tour, e, p + ("settings",))
        for key, value in ev.settings.items():
            if problem := setting_problem(s.view, key, value, display_only=True):
                raise tour.error(p + ("settings", key), problem)
        ev.select = _get(tour, e, p + ("select",), int, None)
        ev.zoom = _choice(tour, e, p + ("zoom",), ZOOMS, None, what="zoom")
        s.events.append(ev)
    if isinstance(s.steps, tuple):
        first, last = s.steps
        for ev in s.events:
            if not first <= ev.step <= last:
                raise tour.error(
                    at + ("at", ev.index, "step"), f"step {ev.step} is outside this scene's steps {first}..{last}"
                )
    seen: dict[int, int] = {}
    for ev in s.events:
        if ev.step in seen:
            raise tour.error(at + ("at", ev.index, "step"), f"{label} has two [[scene.at]] for step {ev.step}")
        seen[ev.step] = ev.index
    s.events.sort(key=lambda e: e.step)
    return s


TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a table"}


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return "a number" if set(t) == {int, float} else " or ".join(TYPE_NAMES.get(x, x.__name__) for x in t)
    return TYPE_NAMES.get(t, t.__name__)


def _value_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return repr(v) if len(v) < 40 else repr(v[:37] + "...")
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "an array"
    return str(v)


def _get(tour: Tour, d: dict, path: tuple, types, default):
    key = path[-1]
    if key not in d:
        return default
    v = d[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(v, bool) and bool not in allowed) or not isinstance(v, allowed):
        raise tour.error(path, f"{key} must be {_type_name(types)}, got {_value_text(v)}")
    return v


def _choice(tour: Tour, d: dict, path: tuple, choices: tuple, default, what: str | None = None):
    v = _get(tour, d, path, str, default)
    if v is not None and v not in choices:
        raise tour.error(path, f"unknown {what or path[-1]} {v!r}; choose one of {', '.join(choices)}")
    return v


def _seconds(tour: Tour, d: dict, path: tuple, default: float, positive: bool = False) -> float:
    v = _get(tour, d, path, (int, float), default)
    if not math.isfinite(v) or (positive and v <= 0) or v < 0 or v > MAX_SECONDS:
        bound = "above 0" if positive else "at least 0"
        raise tour.error(path, f"{path[-1]} must be {bound} and at most {MAX_SECONDS:g} seconds, got {v}")
    return float(v)


def _table(tour: Tour, d: dict, path: tuple) -> dict:
    return dict(_get(tour, d, path, dict, {}))  # each value is checked by the view's options schema


def _path(tour: Tour, d: dict, path: tuple):
    """A model directory (relative to the tour file), checked to exist; "" is "none" (no draft)."""
    v = _get(tour, d, path, str, None)
    if v is None:
        return None
    if v.strip() == "":
        if path[-1] != "draft":
            raise tour.error(path, f"{path[-1]} must name a model directory")
        return "none"
    p = Path(v).expanduser()
    if not p.is_absolute():
        p = tour.base / p
    if not p.is_dir():
        raise tour.error(path, f"{path[-1]} model directory not found: {v}")
    return p


def _steps(tour: Tour, d: dict, path: tuple):
    if "steps" not in d:
        return "all"
    v = d["steps"]
    if v == "all":
        return "all"
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 1:
            raise tour.error(path, f"steps must be at least 1, got {v}")
        return (1, v)
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        first, last = v
        if first < 1 or last < first:
            raise tour.error(path, f"steps = [{first}, {last}]: need 1 <= first <= last (1-based, inclusive)")
        return (first, last)
    raise tour.error(path, f'steps must be "all", a count, or [first, last], got {_value_text(v)}')


def _check_keys(tour: Tour, d: dict, path: tuple, known, where: str) -> None:
    for key in d:
        if key not in known:
            near = _closest(key, known)
            hint = f" (did you mean {near}?)" if near else f" (known: {', '.join(sorted(known))})"
            raise tour.error(path + (key,), f"unknown key {key!r} in {where}{hint}")


def _closest(word: str, options) -> str | None:
    import difflib

    m = difflib.get_close_matches(word, list(options), n=1, cutoff=0.75)
    return m[0] if m else None


def _toml_message(name: str, exc: Exception, source: str) -> str:
    text = str(exc)
    line = getattr(exc, "lineno", None)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if m:
        line = line or int(m.group(1))
        text = text[: m.start()]
    elif text.endswith("(at end of document)"):
        text = text[: -len("(at end of document)")].rstrip() + " (at the end of the file)"
        line = line or max(1, len(source.splitlines()))
    text = text[:1].lower() + text[1:]
    return f"{name}, line {line}: invalid TOML: {text}" if line else f"{name}: invalid TOML: {text}"


# ------------------------------------------------------------------------------------------- line lookup
_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"\n]*"|'[^'\n]*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")


def _split_dotted(key: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([A-Za-z0-9_-]+)', key)
    return [a or b or c for a, b, c in parts]


def key_lines(text: str) -> dict[tuple, int]:
    """Line (1-based) of each table header and top-level key of each table, by key path with array indices
    (``("scene", 1, "settings", "gamma")``). Keys inside inline tables are not listed: see :func:`locate`."""
    lines: dict[tuple, int] = {}
    counts: dict[tuple, int] = {}
    current: tuple = ()
    in_string: str | None = None
    depth = 0  # open brackets of a multi-line array / inline table
    for no, line in enumerate(text.splitlines(), 1):
        if in_string:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        if depth == 0:
            h = _HEADER.match(line)
            if h and not _KEY.match(line):
                parts = _split_dotted(h.group(2))
                resolved: list = []
                for k, part in enumerate(parts):
                    resolved.append(part)
                    key = tuple(resolved)
                    last = k == len(parts) - 1
                    if last and h.group(1) == "[[":
                        counts[key] = counts.get(key, 0) + 1
                    if key in counts:
                        resolved.append(counts[key] - 1)
                current = tuple(resolved)
                lines.setdefault(current, no)
                continue
            m = _KEY.match(line)
            if m:
                path = current + tuple(_split_dotted(m.group(1)))
                lines.setdefault(path, no)
                rest = line[m.end() :]
                for q in ('"""', "'''"):
                    if rest.count(q) % 2 == 1:
                        in_string = q
                depth = _bracket_depth(rest)
                continue
        else:
            depth += _bracket_depth(line)
            depth = max(depth, 0)
    return lines


def _bracket_depth(s: str) -> int:
    """Net open brackets in ``s``, outside strings and comments (rough, for skipping multi-line values)."""
    depth, quote, i = 0, None, 0
    while i < len(s):
        c = s[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            break
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return depth


def locate(text: str, path: tuple) -> int | None:
    """The line of ``path``; else, from the line of its longest listed prefix, the next line where the remaining
    keys appear (keys in inline tables: ``settings = { gamma = 4 }``); else the prefix's line."""
    lines = key_lines(text)
    src = text.splitlines()
    for cut in range(len(path), -1, -1):
        prefix = path[:cut]
        if prefix not in lines and cut:
            continue
        start = lines.get(prefix, 1)
        rest = [k for k in path[cut:] if isinstance(k, str)]
        if not rest:
            return start if cut else None
        no = start
        for key in rest:
            pat = re.compile(r'(^|[\s{,.])("?)' + re.escape(key) + r"\2\s*=")
            for j in range(no, len(src) + 1):
                if pat.search(src[j - 1]):
                    no = j
                    break
            else:
                return start if cut else None
        return no
    return None


# ------------------------------------------------------------------------------------------------- plan
def scene_steps(tour: Tour, scene: Scene, computed: int) -> tuple[int, int]:
    """(first, last), 1-based, of the steps this scene plays, given how many its job computed."""
    if computed < 1:
        raise tour.error(
            ("scene", scene.index, "view"), f"scene {scene.index + 1}: the {scene.view} view computed no steps"
        )
    if scene.steps == "all":
        return 1, computed
    first, last = scene.steps
    if last > computed:
        if scene.clamp_steps:
            return min(first, computed), computed
        raise tour.error(
            ("scene", scene.index, "steps"),
            f"scene {scene.index + 1} plays steps {first}..{last} but the {scene.view} view computed {computed} "
            f"(ask for fewer, or change the settings)",
        )
    return first, last


def frames_for(seconds: float, fps: float) -> int:
    return max(1, int(seconds * fps + 0.5))


def plan_shots(tour: Tour, fps: float, computed: dict[int, int]) -> list[Shot]:
    """The shots of the whole recording; ``computed[scene index]`` is how many steps that scene's job produced."""
    shots: list[Shot] = []
    for scene in tour.scenes:
        at = ("scene", scene.index)
        if scene.kind == "card":
            shots.append(Shot(scene=scene.index, frames=frames_for(scene.seconds, fps)))
            continue
        first, last = scene_steps(tour, scene, computed.get(scene.index, 0))
        events = {e.step: e for e in scene.events}
        for ev in scene.events:
            if not first <= ev.step <= last:
                raise tour.error(
                    at + ("at", ev.index, "step"),
                    f"step {ev.step} is outside the steps this scene plays ({first}..{last})",
                )
        caption, caption_path = scene.caption, at + ("caption",)
        display: dict[str, Any] = {}
        select, select_path, zoom = scene.select, at + ("select",), scene.zoom
        for step in range(first, last + 1):
            ev = events.get(step)
            seconds = scene.seconds_per_step
            if ev is not None:
                ep = at + ("at", ev.index)
                if ev.caption is not None:
                    caption, caption_path = ev.caption, ep + ("caption",)
                display = {**display, **ev.settings}
                if ev.select is not None:
                    select, select_path = ev.select, ep + ("select",)
                if ev.zoom is not None:
                    zoom = ev.zoom
                seconds += ev.pause
            if step == last:
                seconds += scene.hold
            shots.append(
                Shot(
                    scene=scene.index, frames=frames_for(seconds, fps), step=step - 1, caption=caption,
                    caption_path=caption_path, display=dict(display), select=select, select_path=select_path,
                    zoom=zoom,
                )
            )  # fmt: skip
    total = 0
    for shot in shots:
        shot.first_frame = total
        total += shot.frames
    return shots


def setting_problem(view: str, key: str, value: Any, display_only: bool = False) -> str | None:
    """Why a view setting is refused, in the options schema's words (None when it is fine). ``display_only``:
    within a scene only settings that change the drawing, not the computation, may change."""
    schema = VIEW_SCHEMAS[view]
    problem = schema.problem(key, value, where=f"the {view} view")
    if problem is None and display_only and key not in schema.display_names:
        shown = ", ".join(schema.display_names) or "none"
        problem = (
            f"setting {key} changes the {view} view's computation: set it in the scene's settings; within a "
            f"scene only display settings can change ({shown})"
        )
    return problem


def check_settings(view: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``--set`` values for ``view``, checked before any model loads (one line for the first bad one)."""
    if view not in VIEW_SCHEMAS:
        raise ExplorerError(f"unknown view {view!r}; available: {', '.join(VIEW_NAMES)}")
    for key, value in settings.items():
        problem = setting_problem(view, key, value)
        if problem:
            raise ExplorerError(problem)
    return settings


def single_view_tour(view: str, steps: int | None, seconds_per_step: float = 1.0) -> Tour:
    """What `explorer record --view NAME --steps N` records: one scene, no captions beyond the view's name."""
    if view not in VIEW_NAMES:
        raise ExplorerError(f"unknown view {view!r}; available: {', '.join(VIEW_NAMES)}")
    if steps is not None and steps < 1:
        raise ExplorerError(f"--steps must be at least 1, got {steps}")
    scene = Scene(index=0, kind="view", view=view, steps="all" if steps is None else (1, steps))
    scene.caption = DEFAULT_CAPTION
    if steps is not None and view in STEP_SETTINGS:
        scene.settings[STEP_SETTINGS[view]] = steps  # compute just the steps recorded
    scene.seconds_per_step = seconds_per_step
    scene.clamp_steps = True
    return Tour(name=f"--view {view}", scenes=[scene])
