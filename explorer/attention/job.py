"""The attention runner: one head of the session's target traced through the FlashAttention kernel, one record
per visited tile. The attention view, ``explorer attention`` and the recorder all compute a trace through it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ExplorerError
from ..jobs import Job
from ..session import Session
from .meta import TraceMeta
from .walk import AttentionWalk, TileStep, compute_walk

# The runner's values: the computation's options of explorer.attention.options.ATTENTION (display ones left out).
VALUES = ("layer", "head", "block_m", "block_n", "causal", "dtype", "backend", "length")


@dataclass
class AttentionRun:
    """An attention run's metadata (``Job.meta``): the prompt as asked and, once the kernel has run, the walk
    (the trace with everything derived from it) whose facts are :attr:`trace`."""

    prompt_ids: list[int]
    walk: AttentionWalk | None = None

    @property
    def trace(self) -> TraceMeta | None:
        return None if self.walk is None else self.walk.meta


def follow_model(values: dict[str, Any], config: Any) -> dict[str, Any]:
    """``values`` with layer and head at most the model's last (the view and tours follow the loaded model; the
    command line refuses instead)."""
    limits = {"layer": config.num_layers, "head": config.num_heads}
    return {k: min(v, limits[k] - 1) if k in limits else v for k, v in values.items()}


def attention_job(session: Session, values: dict[str, Any], *, deterministic: bool = False) -> Job:
    """Trace head ``values["head"]`` of layer ``values["layer"]`` of the session's target on its prompt, continued
    by the model up to ``values["length"]`` tokens (see :func:`explorer.attention.walk.compute_walk`). The records
    are the walk's :class:`TileStep` s. Nothing on screen is measured with the clock, so ``deterministic`` changes
    nothing."""
    missing = [name for name in VALUES if name not in values]
    if missing:
        raise ExplorerError(f"the attention runner lacks the value(s) {', '.join(missing)}")
    lm = session.target
    run = AttentionRun(prompt_ids=session.prompt_ids())  # refuses before the work when no model is loaded
    settings = {name: values[name] for name in VALUES}

    def records() -> Iterator[TileStep]:
        run.walk = compute_walk(lm, run.prompt_ids, **settings)
        yield from run.walk.steps()

    return Job(meta=run, records=records)
