"""The syntax tree of a template, as the parser produces it (plain frozen dataclasses).

Offsets are character offsets into the template's :class:`~stable_discovery.errors.Source`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Text",
    "SlotRef",
    "WildcardRef",
    "Select",
    "Alternative",
    "Choice",
    "Node",
    "Definition",
    "ParsedTemplate",
]


@dataclass(frozen=True)
class Text:
    value: str
    start: int


@dataclass(frozen=True)
class SlotRef:
    """``<name>``: the value of a slot, bound once per prompt."""

    name: str
    start: int


@dataclass(frozen=True)
class WildcardRef:
    """``__pattern__``: one line of a wildcard file (a glob takes the union)."""

    pattern: str
    start: int


@dataclass(frozen=True)
class Select:
    """The multi-select prefix ``{low-high$$joiner$$``; ``None`` bounds mean open."""

    low: int
    high: int | None
    joiner: str


@dataclass(frozen=True)
class Alternative:
    """One alternative of a choice or definition; ``text`` is its source, trimmed."""

    parts: tuple[Node, ...]
    weight: float
    text: str
    start: int


@dataclass(frozen=True)
class Choice:
    """``{a|b}``, ``{2$$a|b}`` or the optional ``[a|b]`` (``optional`` is True).

    ``label`` is the name given in the template (``{#colour: a|b}``, ``[#hat: x]``): the
    name its trace entries carry instead of the automatic one (``prompt{1}``).
    """

    alternatives: tuple[Alternative, ...]
    start: int
    select: Select | None = None
    optional: bool = False
    label: str | None = None


#: A part of an alternative.
Node = Text | SlotRef | WildcardRef | Choice


@dataclass(frozen=True)
class Definition:
    """``name = …`` (a slot) or ``@name = …`` (a setting)."""

    name: str
    alternatives: tuple[Alternative, ...]
    is_setting: bool
    start: int


@dataclass(frozen=True)
class ParsedTemplate:
    """A parsed source: definitions, or (a file without any) one bare template."""

    definitions: tuple[Definition, ...]
    bare: tuple[Node, ...] | None = None
