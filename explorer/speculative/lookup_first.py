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

from .shape import Shape, ShapeChooser

LOOKUP_RETRY_EVERY = 8
SHORT = "lookup 1-gram"  # the chooser of the continuations after a one-token match (see LookupFirst)
# what the heads' chooser remembers (ShapeChooser.remember) apart from the heads' own runs: it drafts only where
# lookup found nothing, text the heads accept less (EAGLE's own runs, recalling it, had started the next prompt at a
# chain of 1 and stayed there: 1.17-1.28x where its chain of 3 gave 1.25-1.57x)
AFTER_LOOKUP = "heads after lookup"


class LookupFirst:
    """The shape chooser of ``--method lookup`` with heads: lookup's :class:`ShapeChooser` and the heads', the same
    interface as one. A continuation found after a match of one token alone is a far weaker guess than one after
    two or three (any repeated token matches): with ``short``, those steps have a chooser of their own, with its
    own acceptance. :attr:`method` is the drafter of the latest step ("lookup" or the heads' kind)."""

    def __init__(self, lookup: ShapeChooser, heads: ShapeChooser, matched: Callable[[], int],
                 short: ShapeChooser | None = None):  # fmt: skip
        self.kind = heads.method
        self.choosers = {"lookup": lookup, self.kind: heads, **({SHORT: short} if short is not None else {})}
        self.matched = matched  # the length of the n-gram lookup matched for the next step (0: none)
        self.method = "lookup"
        self._name = "lookup"  # the chooser of the latest step
        self.changes: list[dict] = []  # every chooser's changes, at the run's step, each naming its drafter
        self.steps = dict.fromkeys(self.choosers, 0)  # the steps each drafted
        self._asked = dict.fromkeys(self.choosers, 0)  # each chooser's own step count (the shapes it was asked for)
        self._skipped = 0  # continuations skipped in a row because the heads were expected to pay more
        self._first_rates: dict[str, float] = {}  # a chooser's expected rate before its first choice

    @property
    def heads(self) -> ShapeChooser:
        return self.choosers[self.kind]

    @property
    def max_nodes(self) -> int:
        return max(c.max_nodes for c in self.choosers.values())

    @property
    def fallback_note(self) -> str | None:
        """Why the run decodes with the target alone (the heads' note; they draft what lookup does not)."""
        return self.heads.fallback_note

    def shape_for(self, step: int) -> tuple[Shape, bool]:
        n = self.matched()
        if n:
            name = SHORT if n == 1 and SHORT in self.choosers else "lookup"
            shape, probe = self._ask(name, step)
            pays = self._rate(name) >= self._rate(self.kind)
            if shape.depth and (probe or self._skipped >= LOOKUP_RETRY_EVERY or pays):
                self._skipped = 0
                return self._use(name, shape, probe)
            self._skipped += bool(shape.depth)
        shape, probe = self._ask(self.kind, step)
        return self._use(self.kind, shape, probe)

    def _ask(self, name: str, step: int) -> tuple[Shape, bool]:
        chooser = self.choosers[name]
        seen = len(chooser.changes)
        out = chooser.shape_for(self._asked[name])
        self._asked[name] += 1
        self.changes.extend({**c, "step": step + 1, "drafter": name} for c in chooser.changes[seen:])
        return out

    def _use(self, name: str, shape: Shape, probe: bool) -> tuple[Shape, bool]:
        self._name = name
        self.method = self.kind if name == self.kind else "lookup"
        self.steps[name] += 1
        return shape, probe

    def _rate(self, name: str) -> float:
        """``name``'s chooser's expected tokens per second at its latest choice (before its first one, its best
        shape's from the priors, evaluated once: a choice costs a twentieth of a demo step)."""
        chooser = self.choosers[name]
        if chooser.current is not None:
            return chooser.current.rate()
        if name not in self._first_rates:
            self._first_rates[name] = chooser.evaluate()[0].rate()
        return self._first_rates[name]

    def observe(self, draft, record) -> None:
        self.choosers[self._name].observe(draft, record)

    def remember(self) -> None:
        for chooser in self.choosers.values():
            chooser.remember()

    def report(self) -> dict:
        """The heads' report (the shape of the steps without a continuation), the changes of all at the run's
        steps, lookup's report under "lookup" (and "lookup 1-gram"); the steps each drafted."""
        out = self.heads.report()
        out["changes"] = self.changes
        for name, chooser in self.choosers.items():
            if name != self.kind:
                out[name] = {k: v for k, v in chooser.report().items() if k != "changes"}
        out["drafters"] = {"lookup first": f"lookup where a continuation is expected to pay more, else {self.kind}",
                           "steps": dict(self.steps)}  # fmt: skip
        return out
