"""Prompt lookup first, the heads where it is not expected to pay more (Qt-free).

Prompt lookup costs nothing to draft and, where the text repeats itself (code, quotes, lists), its continuations
are accepted whole; elsewhere its one-token n-gram matches are guesses the heads make better. On the demo target's
held-out prompts lookup with heads where no n-gram matched was the fastest on 6 prompts of 13 and EAGLE alone on 4
(where lookup paid 1.0-1.3x). So each step that has a continuation weighs the two: lookup's own shape chooser
(its acceptance learnt from the steps it drafted) against the heads' (theirs), in expected tokens per second, and
drafts with the one expected to pay more; a step without a continuation drafts with the heads. Each chooser learns
only from its own steps; a continuation skipped LOOKUP_RETRY_EVERY times running is drafted anyway, so lookup's
estimate cannot go stale below the heads' while the text turns repetitive.
"""

from __future__ import annotations

from collections.abc import Callable

from .shape import Candidate, Shape, ShapeChooser

LOOKUP_RETRY_EVERY = 8


class LookupFirst:
    """The shape chooser of ``--method lookup`` with heads: two :class:`ShapeChooser` (lookup's and the heads'),
    the same interface as one; :attr:`method` is the drafter of the latest step ("lookup" or the heads' kind)."""

    def __init__(self, lookup: ShapeChooser, heads: ShapeChooser, matched: Callable[[], bool]):
        self.lookup, self.heads, self.matched = lookup, heads, matched
        self.kind = heads.method
        self.method = "lookup"
        self.changes: list[dict] = []  # both choosers' changes, at the run's step, each naming its drafter
        self.steps = {"lookup": 0, self.kind: 0}  # the steps each drafted
        self._asked = {"lookup": 0, self.kind: 0}  # each chooser's own step count (the shapes it was asked for)
        self._skipped = 0  # continuations skipped in a row because the heads were expected to pay more

    @property
    def max_nodes(self) -> int:
        return max(self.lookup.max_nodes, self.heads.max_nodes)

    @property
    def fallback_note(self) -> str | None:
        """Why the run decodes with the target alone (the heads' note; they draft what lookup does not)."""
        return self.heads.fallback_note

    def _chooser(self, name: str) -> ShapeChooser:
        return self.lookup if name == "lookup" else self.heads

    def shape_for(self, step: int) -> tuple[Shape, bool]:
        if self.matched():
            shape, probe = self._ask("lookup", step)
            if shape.depth and (probe or self._skipped >= LOOKUP_RETRY_EVERY or self._lookup_pays()):
                self._skipped = 0
                return self._use("lookup", shape, probe)
            self._skipped += bool(shape.depth)
        shape, probe = self._ask(self.kind, step)
        return self._use(self.kind, shape, probe)

    def _ask(self, name: str, step: int) -> tuple[Shape, bool]:
        chooser = self._chooser(name)
        seen = len(chooser.changes)
        out = chooser.shape_for(self._asked[name])
        self._asked[name] += 1
        self.changes.extend({**c, "step": step + 1, "drafter": name} for c in chooser.changes[seen:])
        return out

    def _use(self, name: str, shape: Shape, probe: bool) -> tuple[Shape, bool]:
        self.method = name
        self.steps[name] += 1
        return shape, probe

    def _rate(self, chooser: ShapeChooser) -> float:
        current: Candidate = chooser.current if chooser.current is not None else chooser.evaluate()[0]
        return current.rate()

    def _lookup_pays(self) -> bool:
        return self._rate(self.lookup) >= self._rate(self.heads)

    def observe(self, draft, record) -> None:
        self._chooser(self.method).observe(draft, record)

    def remember(self) -> None:
        self.lookup.remember()
        self.heads.remember()

    def report(self) -> dict:
        """The heads' report (the shape of the steps without a continuation), the changes of both at the run's
        steps, and lookup's report under "lookup"; the steps each drafted."""
        out = self.heads.report()
        lookup = self.lookup.report()
        out["changes"] = self.changes
        out["lookup"] = {k: v for k, v in lookup.items() if k != "changes"}
        out["drafters"] = {"lookup first": f"lookup where a continuation is expected to pay more, else {self.kind}",
                           "steps": dict(self.steps)}  # fmt: skip
        return out
