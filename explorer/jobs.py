"""One way to compute a run: every view's computation as a Qt-free runner, shared by the app, the CLI, the
prompt-set runs and the recorder.

A runner takes a loaded :class:`~explorer.session.Session` and the values of its engine's options schema (the
names tours, ``--set`` and the GUI panel use) and returns a :class:`Job`: the run's typed metadata (filled in as
the run goes) and a generator factory that yields its records. Views only adapt their settings to a runner's
values and render what it yields.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .session import Session


@dataclass
class Job:
    """A run to compute: ``meta`` describes it (a dataclass of the engine's, completed while ``records()`` runs:
    e.g. the target-only baseline, the cost model) and ``records()`` yields its records, off the GUI thread."""

    meta: Any
    records: Callable[[], Iterator[Any]]


# view name -> "module:function" of its runner: runner(session, values, *, deterministic=False) -> Job.
# Imported on first use, so that opening the app or the CLI does not import every engine.
RUNNERS: dict[str, str] = {
    "generate": "explorer.models.job:generation_job",
    "attention": "explorer.attention.job:attention_job",
    "speculative": "explorer.speculative.job:speculation_job",
    "amp": "explorer.amp.job:amp_job",
    "autograd": "explorer.autograd.job:autograd_job",
    "ddp": "explorer.distributed.job:ddp_job",
}


# view name -> "module:function" fitting its values to the loaded model: fit(values, config) -> values (the app and
# tours follow the model where the command line refuses, e.g. an attention layer past the model's last).
FOLLOW_MODEL: dict[str, str] = {
    "attention": "explorer.attention.job:follow_model",
    "autograd": "explorer.autograd.job:follow_model",
}


def _load(spec: str) -> Callable[..., Any]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def runner(name: str) -> Callable[..., Job]:
    """The runner of view ``name`` (``deterministic``: a recording, which measures nothing with the clock)."""
    return _load(RUNNERS[name])


def follow_model(name: str, values: dict[str, Any], config: Any) -> dict[str, Any]:
    """``values`` of view ``name`` fitted to a model of ``config`` (unchanged for views with no such rule)."""
    return _load(FOLLOW_MODEL[name])(values, config) if name in FOLLOW_MODEL else dict(values)


def run_job(name: str, session: Session, values: dict[str, Any], *, deterministic: bool = False) -> Job:
    return runner(name)(session, values, deterministic=deterministic)
