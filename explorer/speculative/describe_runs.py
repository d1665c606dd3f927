"""Words about a prompt-set run, as the prompt-set view shows them: the header line, the table's columns (titles,
values, cell text), the plots' category axis, one legend line per configuration, and the summary's details
(acceptance by token class, the most rejected tokens, what a compared configuration changed).

Qt-free: strings (HTML where the view shows rich text) from a :class:`~explorer.speculative.runs.Run` and the
numbers :mod:`explorer.speculative.analysis` computes, so that the words are tested without a display. Colours come
in as a palette (the UI theme has these attributes) or as a configuration's colour.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..models.text import visible_token
from . import analysis
from .runs import Configuration, PromptResult, Run

# (title, key of analysis.prompt_row, format): the numbers the table shows for each configuration.
PER_CONFIG = (("α", "alpha", "{:.2f}"), ("tok/step", "tokens_per_step", "{:.2f}"), ("speedup", "speedup", "{:.2f}×"))
NO_VALUE = "–"


class Palette(Protocol):
    """The theme colours the words use (explorer.ui.theme.Theme has them)."""

    muted: str
    accent: str


# ---------------------------------------------------------------------------------------------- the table
@dataclass
class TableRow:
    """One prompt of the table: its id, category and text, and its numbers (:func:`analysis.prompt_row`) under each
    configuration that has a result for it, by the configuration's index."""

    id: str
    category: str
    text: str
    cells: dict[int, dict] = field(default_factory=dict)

    def value(self, config: int, key: str) -> Any:
        """The number ``key`` under configuration ``config`` (None while it has no result)."""
        cell = self.cells[config] if config in self.cells else None
        return None if cell is None else cell[key]

    def delta(self, config: int) -> float | None:
        """Δ tokens per step of configuration ``config`` against the base one (None until both have a result)."""
        a, b = self.value(0, "tokens_per_step"), self.value(config, "tokens_per_step")
        return None if a is None or b is None else b - a

    def matches(self, text: str) -> bool:
        """Whether ``text`` (lower case) is in the id, the category or the prompt (what the filter box finds)."""
        return not text or text in self.id.lower() or text in self.category.lower() or text in self.text.lower()


@dataclass(frozen=True)
class Column:
    """One column of the table: its title, its value in a row and how the value reads."""

    title: str
    value: Callable[[TableRow], Any]
    fmt: str = "{}"

    def text(self, row: TableRow) -> str:
        value = self.value(row)
        return NO_VALUE if value is None else self.fmt.format(value)

    @property
    def signed(self) -> bool:
        """A difference (shown green when positive, red when negative)."""
        return self.fmt.startswith("{:+")


def table_columns(configs: Sequence[Configuration]) -> list[Column]:
    """id, category, then α / tokens per step / speedup per configuration (named after it when there are several),
    the first divergence from plain greedy, and Δ tokens per step of each compared configuration."""
    columns = [Column("prompt", lambda r: r.id), Column("category", lambda r: r.category)]
    multi = len(configs) > 1
    for i, c in enumerate(configs):
        for label, key, fmt in PER_CONFIG:
            title = f"{label} {c.key}" if multi else label
            columns.append(Column(title, lambda r, i=i, key=key: r.value(i, key), fmt))
    columns.append(Column("1st div.", lambda r: r.value(0, "first_divergence")))
    for i, c in enumerate(configs[1:], 1):
        columns.append(Column(f"Δ tok/step {c.key}", lambda r, i=i: r.delta(i), "{:+.2f}"))
    return columns


def sort_key(value: Any) -> float | str:
    """What a column sorts by: numbers as numbers (missing ones first), ids 1, 2, 10 in numeric order, other text
    without case."""
    if value is None:
        return float("-inf")
    if isinstance(value, str):
        return float(value) if value.isdigit() else value.lower()
    return float(value)


# ---------------------------------------------------------------------------------------------- the header
def empty_header_html(palette: Palette) -> str:
    return (f"<span style='color:{palette.muted}'>Choose a prompt set and press Run, or File › Open run… "
            "(explorer open RUN.jsonl).</span>")  # fmt: skip


# The replay hides the where-it-pays panel: one line in the header says why (in place of an empty panel).
NO_COSTS_NOTE = "no where-it-pays: a run file has no timed cost curve"  # said under the replayed prompt


def header_html(run: Run, palette: Palette, replayed: PromptResult | None = None, steps: int = 0) -> str:
    """Prompts × configurations, the progress while it computes, the models, the seed and the file; then which
    prompt is replayed (``replayed``, with its ``steps``)."""
    h = run.header
    n_prompts, configs = len(h["prompts"]), run.configurations
    done, total = len(run.results), n_prompts * len(configs)
    models = (h.get("target") or {}).get("name", "?")
    if h.get("draft"):
        models += f" + draft {h['draft']['name']}"
    where = html.escape(str(run.path.name if run.path else "(not saved)"))
    progress = "" if done == total else f" <span style='color:{palette.accent}'>● {done} of {total}</span>"
    replay = ""
    if replayed is not None:
        replay = (f"<br><span style='color:{palette.muted}'>replaying prompt <b>{html.escape(replayed.prompt)}"
                  f"</b> ({html.escape(replayed.category or 'no category')}) under "
                  f"{html.escape(configs[replayed.config].key)}: ←/→ step through its {steps} steps · "
                  f"{NO_COSTS_NOTE}</span>")  # fmt: skip
    return (f"<b style='font-size:120%'>{n_prompts} prompts × {len(configs)} configuration"
            f"{'s' if len(configs) > 1 else ''}</b>{progress} &nbsp; {html.escape(models)} &nbsp; "
            f"seed {h['seed']} &nbsp; <span style='color:{palette.muted}'>{where}</span>{replay}")  # fmt: skip


def config_label(config: Configuration) -> str:
    """A configuration as the configuration box lists it."""
    return f"{config.key}: {config.describe()}"


# ---------------------------------------------------------------------------------------------- plots and summary
# The set's plots' titles, longest first: each plot shows the first that fits its width (kit.TitleFitter).
CATEGORY_TITLES = ["tokens / step by category", "tokens / step", "tok/step"]
CALIBRATION_TITLES = ["calibration", "calib."]
POSITION_TITLES = ["α by draft position", "α by position", "α / pos"]


def category_tick_label(category: str, chars: int = 9) -> str:
    """A category as the per-category plot's axis names it: at most ``chars`` characters (… marks a cut)."""
    return category if len(category) <= chars else category[: chars - 1] + "…"


def plot_categories(results: Sequence[PromptResult]) -> list[str]:
    """The categories the per-category plot shows, in order, with "all" after them when there are several."""
    cats = [c for c in analysis.categories(list(results)) if c != "all"]
    return [*cats, "all"] if len(cats) > 1 else cats


def legend_html(color: str, config: Configuration, counts: analysis.Counts, ece: float, deterministic: bool) -> str:
    """One configuration's pooled numbers, after a square in its plots' colour (no speedup in recordings)."""
    c = counts
    speedup = NO_VALUE if c.speedup is None or deterministic else f"{c.speedup:.2f}×"
    return (f"<span style='color:{color}'>■</span> <b>{html.escape(config.key)}</b> "
            f"({html.escape(config.describe())}): α {c.alpha:.2f}, accepted {c.mean_accepted:.2f} "
            f"(+bonus {c.mean_with_bonus:.2f}), {c.tokens_per_step:.2f} tok/step, speedup {speedup}, "
            f"ECE {ece:.2f}")  # fmt: skip


def detail_html(run: Run, chosen: int, palette: Palette) -> str:
    """The chosen configuration's acceptance by token class and most rejected tokens, then what a compared
    configuration (the chosen one, or the first compared) changed against the base, prompt by prompt."""
    configs = run.configurations
    results = [r for r in run.results if r.config == chosen]
    classes = analysis.by_token_class(results)
    parts = [f"{name} {d['acceptance']:.0%} ({d['decisions']})" for name, d in classes.items()
             if d["acceptance"] is not None]  # fmt: skip
    out = f"<br><br><b>acceptance by token class</b> ({html.escape(configs[chosen].key)}): " + ", ".join(parts)
    rejected = analysis.rejected_tokens(results, top=4)
    if rejected:
        items = [_rejected_html(r, palette) for r in rejected]
        out += "<br><b>most rejected</b> (rejected/decided → target's token): " + "; ".join(items)
    if chosen > 0 or len(configs) > 1:
        other = chosen if chosen > 0 else 1
        diff = analysis.differences(run, other)
        top = ", ".join(f"{html.escape(d['prompt'])} {d['tokens_per_step']:+.2f}" for d in diff["most_changed"][:5])
        out += (f"<br><b>{html.escape(configs[other].key)} vs base</b>: better on {diff['better']}, worse on "
                f"{diff['worse']} prompts; most changed (Δ tok/step): {top}")  # fmt: skip
    return out


def _rejected_html(r: dict, palette: Palette) -> str:
    instead = ", ".join(f"{html.escape(visible_token(x['text'], 8))}×{x['count']}" for x in r["instead"])
    return (f"{html.escape(visible_token(r['text'], 10))} {r['rejected']}/{r['decisions']}"
            f" <span style='color:{palette.muted}'>→ {instead}</span>")  # fmt: skip
