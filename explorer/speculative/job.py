"""The speculative view's runner (explorer.jobs): the target alone first, then speculation step by step, then
where the run pays on this machine — and the run's typed metadata, shared by the view, its exports and the
replay of stored prompt-set runs. Qt-free."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ExplorerError
from ..jobs import Job
from ..session import Session
from .costs import APP_CURVE_SIZES, run_costs
from .engine import TimedSpeculation, target_only, timed_pairs
from .heads import find_heads
from .options import HEAD_METHODS, METHODS
from .records import SpecOptions, StepRecord, TargetOnly
from .shape import choose_method

META_VERSION = 1
TREE_METHODS = ("tree", "eagle", "medusa")  # may verify with a tree mask (how costs saved without "tree" are read)
OPTION_FIELDS = {f.name for f in fields(SpecOptions)}


@dataclass
class SpecRunMeta:
    """What one speculative run was asked and what it measured besides its steps.

    ``seconds``: the speculative run's wall seconds, prefill to last step (None until it ends, and for a run that
    kept none): the measured speedup's time (``stats.measured_speedup``), for live runs and replays alike.
    ``seconds`` and ``max_new`` are not written (the export's keys are fixed) nor compared; read when a file has
    them.
    ``options`` are the effective ones (sample acceptance at temperature 0 runs at 1.0). ``measures_costs``: the
    run measures where it pays once it ends (never in recordings, which measure nothing with the clock, nor in
    stored prompt-set runs); ``costs`` is :func:`~explorer.speculative.costs.where_it_pays` once measured.
    ``decode`` turns token ids into text and is never written. ``version`` is the layout of :meth:`as_dict`; files
    carry none (they are all version 1)."""

    target: str | None
    draft: str | None
    prompt: str
    prompt_ids: list[int]
    options: SpecOptions
    target_only: TargetOnly | None = None
    measures_costs: bool = False
    costs: dict | None = None
    seconds: float | None = field(default=None, compare=False)  # like decode: not written (docstring)
    max_new: int | None = field(default=None, compare=False)  # the token limit asked for (None: not known)
    decode: Callable[[list[int]], str] | None = field(default=None, repr=False, compare=False)
    version: int = META_VERSION
    # Chosen, not asked: why ``auto`` drafted with this method, and the shape chooser's report once the run ended
    # (explorer/speculative/shape.py; None for a fixed shape). Written only when there is one.
    method_choice: str | None = None
    shape: dict | None = None

    def as_dict(self) -> dict:
        """JSON-ready, in the keys and order the view's exports have always written (``costs`` only for a run
        that measures them; no ``decode``, no ``version``)."""
        out: dict[str, Any] = {
            "target": self.target,
            "draft": self.draft,
            "prompt": self.prompt,
            "prompt_ids": self.prompt_ids,
            "options": dict(vars(self.options)),
        }
        if self.measures_costs:
            out["costs"] = self.costs
        out["target_only"] = None if self.target_only is None else self.target_only.as_dict()
        if self.method_choice is not None:
            out["method_choice"] = self.method_choice
        if self.shape is not None:
            out["shape"] = self.shape
        return out

    @classmethod
    def from_dict(cls, d: dict, decode: Callable[[list[int]], str] | None = None) -> SpecRunMeta:
        """Read :meth:`as_dict`'s form, or an export's (other keys are ignored), also as written before: no
        version, no target-only baseline or costs, options of older explorers (unknown ones dropped, missing ones
        at their defaults), costs without ``tree`` (then: by the drafting method)."""
        version = d.get("version", META_VERSION)
        if not isinstance(version, int) or version > META_VERSION:
            raise ExplorerError(f"speculative run metadata version {version!r}; this explorer reads {META_VERSION}")
        options = SpecOptions(**{k: v for k, v in (d.get("options") or {}).items() if k in OPTION_FIELDS})
        costs = d.get("costs")
        if costs is not None and "tree" not in costs:
            costs = {**costs, "tree": options.method in TREE_METHODS}
        return cls(
            target=d.get("target"),
            draft=d.get("draft"),
            prompt=d.get("prompt", ""),
            prompt_ids=list(d.get("prompt_ids") or []),
            options=options,
            target_only=TargetOnly.from_dict(d.get("target_only")),
            measures_costs="costs" in d,
            costs=costs,
            seconds=d.get("seconds"),
            max_new=d.get("max_new"),
            decode=decode,
            method_choice=d.get("method_choice"),
            shape=d.get("shape"),
        )


HEAD_PREFERENCE = ("eagle", "medusa", "mtp")  # the default among found heads: EAGLE drafts best (ANCHORS)


def train_heads_hint(target: Path, kind: str) -> str:
    """The command that trains ``kind`` heads for ``target`` where :func:`~explorer.speculative.heads.find_heads`
    finds them (beside the model: ``NAME-heads-KIND``, for a directory and a GGUF file alike)."""
    out = target.parent / f"{target.name.removesuffix('.gguf')}-heads-{kind}"
    return f"explorer train-heads --model {target} --kind {kind} --out {out}"


def method_problems(session: Session) -> dict[str, str | None]:
    """Per drafting method: None where it can run on the session's models (loaded, else the ones it will load),
    else why not, with what to do: a draft model for chain and tree, heads beside the target (or given) for
    medusa, eagle and mtp; prompt lookup always runs."""
    loaded = session.target is not None
    target = session.target.path if loaded else session.target_dir
    has_draft = session.draft is not None if loaded else session.draft_dir is not None
    found = {**find_heads(target), **session.heads_dirs}
    out: dict[str, str | None] = {"auto": None}  # resolved when the run starts (auto_method)
    for method in METHODS:
        if method in HEAD_METHODS:
            hint = train_heads_hint(Path(target), method)
            out[method] = None if method in found else f"no {method} heads beside {Path(target).name}: {hint}"
        elif method == "lookup":
            out[method] = None
        else:
            out[method] = None if has_draft else f"{method} drafting needs a draft model (set Draft and load it)"
    return out


def runnable_method(method: str, problems: dict[str, str | None]) -> str:
    """``method`` if it can run, else what can: heads where found (EAGLE first), else prompt lookup."""
    if problems[method] is None:
        return method
    return next((m for m in HEAD_PREFERENCE if problems[m] is None), "lookup")


def auto_method(session: Session, options: SpecOptions) -> tuple[str, str, str | None]:
    """What ``auto`` drafts with on the session's models: prompt lookup first with the heads found that are
    expected to pay most on this machine, else the draft model's chain, else prompt lookup alone
    (explorer/speculative/shape.py), why, and the kind of those heads (None: none)."""
    problems = method_problems(session)
    heads = {kind: session.heads_for(kind) for kind in HEAD_METHODS if problems[kind] is None}
    return choose_method(options, session.target, heads, session.draft)


def resolve_auto(session: Session, values: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """``values`` with method ``auto`` replaced by what it drafts with on the session's models (auto_method), and
    the kind of heads prompt lookup drafts with besides (None: none): a prompt-set run names its configurations'
    real methods (their heads, the run file's header), as ``explorer speculate --prompts`` does."""
    if values.get("method") != "auto":
        return values, None
    method, _why, kind = auto_method(session, SpecOptions.from_values(values, method="eagle"))
    return {**values, "method": method}, kind


RECORDING_SHAPE = {"gamma": 3, "tree_depth": 4, "tree_topk": 3, "tree_budget": 12, "medusa_tree": "tuned"}


def recording_options(session: Session, options: SpecOptions) -> tuple[SpecOptions, str | None]:
    """What a recording drafts with where the options leave it to ``auto``: the first heads found (EAGLE first),
    else the draft model's chain, else prompt lookup, and the classic fixed shape (chain γ = 3, tree 4/3/12, the
    heads' tuned Medusa tree) for each dimension left at 0. auto chooses from this machine's measured costs and
    its clock, and a tour must be the same video on any machine (the app and the CLI choose as usual)."""
    why = None
    if options.method == "auto":
        method = runnable_method("eagle", method_problems(session))
        if method == "lookup" and session.draft is not None:
            method = "chain"
        why = f"auto in a recording: {method}, the first found (auto sizes from this machine's costs)"
        options = replace(options, method=method)
    fixed = {k: getattr(options, k) or v for k, v in RECORDING_SHAPE.items()}
    return replace(options, **fixed), why


def effective_options(values: dict[str, Any]) -> SpecOptions:
    """The speculative view's settings as engine options: speculative sampling needs a distribution to sample
    from, so ``accept=sample`` at temperature 0 runs at temperature 1.0 (the view shows it: ``meta.options``)."""
    options = SpecOptions.from_values(values)
    if options.accept == "sample" and options.temperature <= 0:
        options.temperature = 1.0
    return options


def speculation_job(session: Session, values: dict[str, Any], *, deterministic: bool = False,
                    curves: dict | None = None) -> Job:  # fmt: skip
    """The target alone (the baseline for speed and for greedy equality), then speculation with the view's
    settings (``values``: the speculative view's options-schema values), then, unless ``deterministic`` (a
    recording), where the run pays on this machine's verification-cost curve. ``curves`` caches the measured
    curves across runs (see :func:`~explorer.speculative.costs.run_costs`)."""
    target, draft, prompt_ids = session.target, session.draft, session.prompt_ids()
    options = effective_options(values)
    method_choice, lookup_kind = None, None
    if deterministic:  # a recording: the same video on any machine, so nothing chosen from this machine's costs
        options, method_choice = recording_options(session, options)
    elif options.method == "auto":
        options.method, method_choice, lookup_kind = auto_method(session, options)
    # draft heads on the target (medusa, eagle, mtp; prompt lookup's where auto gave it some), else None
    heads = session.heads_for(lookup_kind or options.method)
    options.check(draft is not None, heads.kind if heads is not None else None)
    max_new = int(values["max_new"])
    meta = SpecRunMeta(
        target=str(target.path),
        draft=str(draft.path) if draft is not None else None,
        prompt=session.prompt,
        prompt_ids=prompt_ids,
        options=options,
        measures_costs=not deterministic,  # a recording shows no timings: nothing to measure
        max_new=max_new,
        decode=target.decode,
        method_choice=method_choice,
    )

    def records() -> Iterator[StepRecord]:
        meta.target_only = target_only(target, prompt_ids, max_new, options)
        run = TimedSpeculation(target, draft, prompt_ids, max_new, options, heads, timing=not deterministic)
        yield from run
        meta.shape = run.shape
        if not deterministic:  # a recording keeps no wall-clock figure
            # once the run has ended: the view then shows the whole run's speed
            meta.target_only, meta.seconds = quiet_timing(target, draft, prompt_ids, max_new, options, heads,
                                                          meta.target_only)  # fmt: skip
        if meta.measures_costs and run.steps:
            meta.costs = run_costs(target, len(prompt_ids), run.stats(), run.steps, APP_CURVE_SIZES, curves)

    return Job(meta, records)


def quiet_timing(target, draft, prompt_ids: list[int], max_new: int, options: SpecOptions, heads,
                 base: TargetOnly, pairs: int = 3) -> tuple[TargetOnly, float]:  # fmt: skip
    """The run's seconds and the target alone's as ``explorer speculate`` times them, once the steps are out:
    ``pairs`` alternated pairs (the streamed run was the warm-up), the pair of median speedup. While a run streams
    its steps the view draws them on the GUI thread, whose share of the interpreter lock slows the speculative
    side alone (the demo's EAGLE read 0.79x in the view against 1.18-1.27x in explorer speculate), and one pair
    on a noisy machine swung 0.71-1.10x where the median of three held 0.90-1.08x (explorer speculate 0.90-1.06x)."""
    timed = sorted(timed_pairs(target, draft, prompt_ids, max_new, options, heads, pairs), key=lambda p: p[0] / p[1])
    base_seconds, seconds = timed[len(timed) // 2]
    return replace(base, seconds=base_seconds), seconds


def replay_meta(run, result, decode: Callable[[list[int]], str]) -> SpecRunMeta:
    """The metadata of one stored prompt-set result (a :class:`~explorer.speculative.runs.Run`'s
    :class:`~explorer.speculative.runs.PromptResult`), for replaying its steps in the speculative panels: no
    costs (a prompt-set run measures none), the target-only baseline when the run stored one."""
    header = run.header
    prompt = next((p for p in header["prompts"] if str(p["id"]) == result.prompt), {"text": ""})
    return SpecRunMeta(
        target=(header.get("target") or {}).get("path"),
        draft=(header.get("draft") or {}).get("path"),
        prompt=prompt["text"],
        prompt_ids=result.prompt_ids,
        options=run.configurations[result.config].options(),
        target_only=TargetOnly.from_dict(result.target_only),
        seconds=result.stats.get("seconds"),  # the run's wall time: the speedup the prompt-set table shows
        max_new=run.configurations[result.config].max_new,
        decode=decode,
    )
