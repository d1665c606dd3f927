"""View registry: each instrument view registers here under its CLI name, as "module:Class" (imported the first time
its class is asked for, as explorer/jobs.py's RUNNERS), with its tab's title and its Qt-free options' schema: the
window's tabs and the panel's stand-in pages need no view imported, and a view's module (its plots, its engine's
imports) costs the launch nothing until its tab is first shown. tests/test_launch.py checks that each class says
the same as its entry."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...options import Schema
    from .base import View


@dataclass(frozen=True)
class ViewEntry:
    view: str  # "module:Class" of the view
    title: str  # the tab's
    schema: str  # "module:NAME" of its settings' Schema, in a Qt-free options module
    uses_draft: bool = False  # whether its job uses the session's draft model


# fmt: off
VIEW_ENTRIES: dict[str, ViewEntry] = {
    "generate": ViewEntry("explorer.ui.views.generate:GenerateView", "Generate", "explorer.models.options:GENERATE"),
    "attention": ViewEntry("explorer.ui.views.attention:AttentionView", "Attention", "explorer.attention.options:VIEW"),
    "speculative": ViewEntry("explorer.ui.views.speculative:SpeculativeView", "Speculative",
                             "explorer.speculative.options:VIEW", uses_draft=True),
    "amp": ViewEntry("explorer.ui.views.amp:AmpView", "Loss scaling", "explorer.amp.options:VIEW"),
    "autograd": ViewEntry("explorer.ui.views.autograd:AutogradView", "Autograd", "explorer.autograd.options:VIEW"),
    "ddp": ViewEntry("explorer.ui.views.ddp:DdpView", "Data parallel", "explorer.distributed.options:VIEW"),
    "promptset": ViewEntry("explorer.ui.views.promptset:PromptSetView", "Prompt set",
                           "explorer.speculative.options:PROMPT_SET_VIEW", uses_draft=True),
}
# fmt: on


def _load(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def view_schema(name: str) -> Schema:
    """The settings' schema of view ``name``, without importing the view."""
    return _load(VIEW_ENTRIES[name].schema)


class ViewClasses(Mapping[str, "type[View]"]):
    """The views' classes by name, in the tabs' order: ``VIEWS[name]`` imports the view's module; iterating, ``len``
    and ``in`` import nothing."""

    def __getitem__(self, name: str) -> type[View]:
        return _load(VIEW_ENTRIES[name].view)

    def __iter__(self) -> Iterator[str]:
        return iter(VIEW_ENTRIES)

    def __len__(self) -> int:
        return len(VIEW_ENTRIES)

    def __contains__(self, name: object) -> bool:
        return name in VIEW_ENTRIES


VIEWS = ViewClasses()
