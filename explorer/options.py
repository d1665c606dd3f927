"""One options schema per engine: each option declared once (name, type, default, range, choices, unit, help) and
every surface built from it and checked by it — CLI flags, tour and ``--set`` settings, the GUI panel's controls.

Checks give one message whatever the surface; only the way the option is spelled differs:
``--tree-depth must be an integer in 1..12 (got 0)`` on the command line, ``tree_depth must be an integer in
1..12 (got 0)`` in a tour (after ``tour.toml, line 4:``) or a ``--set``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ExplorerError

TYPE_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def show(value: Any) -> str:
    """A value as the user wrote it, short: 0, 0.5, nan, true, 'tree'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, str):
        return repr(value if len(value) < 40 else value[:37] + "...")
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return repr(value)


def number(x: float) -> str:
    """A bound as text: integers without a decimal point, powers of two above 2^20 as 2^k."""
    if float(x).is_integer() and abs(x) < 2**70:
        x = int(x)
        if x >= 2**20 and x & (x - 1) == 0:
            return f"2^{x.bit_length() - 1}"
        if abs(x) < 10**10:
            return str(x)
    return format(x, "g")


@dataclass(frozen=True)
class Option:
    """One setting of an engine. ``kind`` is int, float, bool or str; ``lo``/``hi`` bound numbers (inclusive unless
    ``lo_open``); floats must be finite unless ``finite`` is False; ``none`` lets None mean "the engine's own
    default"; ``special`` is the GUI's text for the lowest value ("0 (greedy)", "off"); ``display`` marks a setting
    that only changes the drawing (a tour may change it within a scene)."""

    name: str
    kind: type
    default: Any
    help: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    choices: tuple[str, ...] | None = None
    unit: str = ""
    label: str = ""
    finite: bool = True
    none: bool = False
    special: str | None = None
    power_of_two: bool = False
    decimals: int | None = None
    step: float | None = None
    display: bool = False
    flag: str | None = None  # CLI spelling when it is not --name-with-dashes
    aliases: tuple[str, ...] = ()
    default_help: str = ""  # the default as --help words it, when the value alone would mislead
    cli: bool = True  # offered on the command line
    panel: bool = True  # offered in the GUI panel and to tours / --set
    check_fn: Callable[[Any], str | None] | None = field(default=None, compare=False)

    @property
    def dest(self) -> str:
        """The attribute of argparse's namespace (prefixed: never the same as a model option's)."""
        return "opt_" + self.name

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    # ---- checking
    def requirement(self) -> str:
        """What a valid value is, as the end of 'NAME must be ...'."""
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        if self.kind is bool:
            return "true or false"
        what = TYPE_WORDS[self.kind]
        if self.kind is float and self.finite:
            what = "a finite number"
        if self.power_of_two:
            what = "a power of two"
        if self.lo is not None and self.hi is not None and not self.lo_open:
            what += f" in {number(self.lo)}..{number(self.hi)}"
        elif self.lo is not None and self.hi is not None:
            what += f" above {number(self.lo)} and at most {number(self.hi)}"
        elif self.lo is not None:
            what += f" {'above' if self.lo_open else '>='} {number(self.lo)}"
        elif self.hi is not None:
            what += f" <= {number(self.hi)}"
        return what

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable ("must be an integer in 1..12 (got 0)"), or None. No name: the caller
        spells it for its surface."""
        if value is None and self.none:
            return None
        bad = f"must be {self.requirement()} (got {show(value)})"
        if self.choices is not None:
            return None if isinstance(value, str) and value in self.choices else bad
        if self.kind is bool:
            return None if isinstance(value, bool) else bad
        if self.kind is str:
            if not isinstance(value, str):
                return bad
        else:
            allowed = (int,) if self.kind is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed):
                return bad
            if self.kind is float and not math.isfinite(value) and (self.finite or math.isnan(value)):
                return bad
            if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
                return bad
            if self.hi is not None and value > self.hi:
                return bad
            if self.power_of_two and (value < 1 or int(value) & (int(value) - 1)):
                return bad
        return self.check_fn(value) if self.check_fn is not None else None

    def parse(self, text: str) -> Any:
        """A command-line string as this option's type; unparsable text is kept as a string, so that the check
        reports it in the same words as any other bad value."""
        t = text.strip()
        if self.kind is bool:
            return {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}.get(t.lower(), t)
        if self.kind in (int, float):
            try:
                return int(t)
            except ValueError:
                pass
            try:
                v = float(t)
            except ValueError:
                return text
            return v if self.kind is float else text
        return text


class Schema:
    """The options of one engine, in panel order."""

    def __init__(self, name: str, options: Iterable[Option]):
        self.name = name
        self.options = {o.name: o for o in options}

    def __getitem__(self, name: str) -> Option:
        return self.options[name]

    def __contains__(self, name: str) -> bool:
        return name in self.options

    def __iter__(self):
        return iter(self.options.values())

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self}

    def only(self, names: Iterable[str], name: str | None = None, **defaults: Any) -> Schema:
        """A sub-schema (a view's settings, a subcommand's flags) in the given order, with its own defaults."""
        picked = []
        for n in names:
            o = self.options[n]
            picked.append(replace(o, default=defaults.pop(n)) if n in defaults else o)
        if defaults:
            raise KeyError(f"not in {self.name}: {', '.join(defaults)}")
        return Schema(name or self.name, picked)

    def panel(self) -> list[Option]:
        return [o for o in self if o.panel]

    @property
    def display_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self if o.display)

    # ---- checking (one message format for every surface)
    def problem(self, name: str, value: Any, where: str | None = None) -> str | None:
        """``NAME must be ...`` for a bad value, or an unknown name with the known ones; None when fine."""
        known = [o.name for o in self.panel()]
        if name not in self.options or not self.options[name].panel:
            return f"{where or 'the ' + self.name} has no setting {name!r} (its settings: {', '.join(known)})"
        p = self.options[name].problem(value)
        return f"{name} {p}" if p else None

    def check(self, values: dict[str, Any], spell: Callable[[Option], str] | None = None) -> dict[str, Any]:
        """Checks every value (raising ExplorerError with the option spelled by ``spell``, default its name)."""
        for name, value in values.items():
            o = self.options.get(name)
            if o is None:
                raise ExplorerError(f"{self.name} has no option {name!r}")
            p = o.problem(value)
            if p:
                raise ExplorerError(f"{spell(o) if spell else o.name} {p}")
        return values

    # ---- command line
    def add_arguments(self, parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
        """One flag per option (strings, parsed and checked by :meth:`from_args`, so that argparse never words
        a type error differently); the help shows the range or choices and the default."""
        for o in self:
            if not o.cli or (names is not None and o.name not in names):
                continue
            flags = [o.cli_flag, *o.aliases]
            if o.kind is bool:
                parser.add_argument(
                    *flags, dest=o.dest, action=argparse.BooleanOptionalAction, default=None, help=self._help(o)
                )
                continue
            metavar = "{" + ",".join(o.choices) + "}" if o.choices else {int: "N", float: "X"}.get(o.kind, "TEXT")
            parser.add_argument(*flags, dest=o.dest, default=None, metavar=metavar, help=self._help(o))

    @staticmethod
    def _help(o: Option) -> str:
        text = o.help
        if o.choices is None and o.kind is not bool and (o.lo is not None or o.hi is not None or o.power_of_two):
            text += f"; {o.requirement().removeprefix('an ').removeprefix('a ')}"
        if o.unit:
            text += f", in {o.unit}"
        default = o.default_help or o.default
        if o.default_help:
            pass
        elif o.kind is bool:
            default = "on" if default else "off"
        elif default is None:
            default = "the engine's own"
        elif isinstance(default, float):
            default = number(default)
        return f"{text} (default: {default})".replace("%", "%%")

    def from_args(self, args: argparse.Namespace, names: Iterable[str] | None = None) -> dict[str, Any]:
        """The checked values of this schema's flags in ``args`` (defaults where a flag was not given)."""
        out = {}
        for o in self:
            if not o.cli or (names is not None and o.name not in names):
                continue
            raw = getattr(args, o.dest, None)
            if raw is None or o.kind is bool:
                out[o.name] = o.default if raw is None else raw
                continue
            value = o.parse(raw)
            p = o.problem(value)
            if p:
                raise ExplorerError(f"{o.cli_flag} {p}")
            out[o.name] = value
        return out
