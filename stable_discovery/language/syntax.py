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
    "Wrap",
    "VarSet",
    "VarRef",
    "Node",
    "sub_parts",
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
    """``__pattern__``: one line of a wildcard file (a glob takes the union).

    ``folder`` is the folder (relative to the wildcard folders) of the wildcard file the
    reference is written in, "" in a template: a pattern not found from the top is
    looked up there next (:meth:`~.wildcards.WildcardLibrary.lookup`)."""

    pattern: str
    start: int
    folder: str = ""


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


@dataclass(frozen=True)
class Wrap:
    """dynamicprompts' ``%{wrapper$$inner}``: the wrapper's text with the inner text at
    its ellipsis (``...`` or ``…``), or after it when it has none. Not trimmed: spaces
    inside are kept, as dynamicprompts keeps them."""

    wrapper: tuple[Node, ...]
    inner: tuple[Node, ...]
    start: int


@dataclass(frozen=True)
class VarSet:
    """dynamicprompts' ``${name=value}``; ``immediate`` for ``${name=!value}`` (the value
    is chosen once and used everywhere: a slot), else each use chooses anew."""

    name: str
    value: Alternative
    immediate: bool
    start: int


@dataclass(frozen=True)
class VarRef:
    """dynamicprompts' ``${name}``, or ``${name:default}`` (the default when ``name`` is
    not set)."""

    name: str
    default: Alternative | None
    start: int


#: A part of an alternative.
Node = Text | SlotRef | WildcardRef | Choice | Wrap | VarSet | VarRef


def sub_parts(node: Node) -> tuple[tuple[Node, ...], ...]:
    """The runs of parts directly inside a node (its alternatives', a wrap's two parts,
    a variable's value or default); none for text and references."""
    if isinstance(node, Choice):
        return tuple(a.parts for a in node.alternatives)
    if isinstance(node, Wrap):
        return (node.wrapper, node.inner)
    if isinstance(node, VarSet):
        return (node.value.parts,)
    if isinstance(node, VarRef) and node.default is not None:
        return (node.default.parts,)
    return ()


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
