"""The traced variables of a template: every random decision, with a stable, readable name.

Names (docs/language.md, "The trace"):

* a slot or a sampled setting: its own name (``style``, ``steps``);
* inside a slot's definition, the inline choices and multi-selects ``{…}`` are numbered
  ``{1}``, ``{2}``, … and the optional parts ``[…]`` ``[1]``, ``[2]``, … in the order
  they open, across all the slot's alternatives, counting only those not inside another
  one: ``prompt{1}``, ``prompt[2]``. Inside a choice or an optional part the numbering
  starts again, after its name: ``prompt{1}{1}``, ``prompt[1]{2}``;
* a construct named in the template (``{#colour: …}``, ``[#hat: …]``) takes that name
  instead (it still counts in the numbering, so naming one does not rename the others),
  and the constructs inside it are named after it: ``colour{1}``;
* a wildcard ``__creature__`` is named after itself wherever it is used; the constructs
  in its lines are numbered across the file's lines: ``__creature__{1}``. The file a
  glob's line came from is ``__styles/*__.file``;
* each item of a multi-select ``prompt{2}`` is a variable of its own, present or absent:
  ``prompt{2}+freckles``; a range of counts adds ``prompt{2}.count``;
* a name met twice in one sample (a wildcard used twice) is numbered from the second
  time on, in the order of the text: ``__animal__``, ``__animal__#2``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from stable_discovery.errors import Source
from stable_discovery.language.syntax import Alternative, Choice

__all__ = [
    "KINDS",
    "Variable",
    "LineRef",
    "Lines",
    "Scope",
    "item_name",
    "count_name",
    "file_name",
    "wildcard_name",
    "merged_choice",
    "value_text",
]

#: What a variable is: a slot, a sampled setting, an inline choice, an optional part, an
#: item of a multi-select, the count of a multi-select with a range, a wildcard's line,
#: the file a glob's line came from.
KINDS = ("slot", "setting", "choice", "optional", "item", "count", "wildcard", "file")


class LineRef(NamedTuple):
    """A wildcard line a variable picks among: its file and line number, its value in
    the trace (its text after its weight) and its weight."""

    path: str
    number: int
    value: str
    weight: float


@dataclass(frozen=True, eq=False)
class Lines:
    """The lines a variable picks among, as columns: four tuples, not one object per
    line (a wildcard may have 10,000 lines); iterating gives :class:`LineRef`\\ s."""

    paths: tuple[str, ...]
    numbers: tuple[int, ...]
    values: tuple[str, ...]
    weights: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[LineRef]:
        for row in zip(self.paths, self.numbers, self.values, self.weights, strict=True):
            yield LineRef(*row)


@dataclass(frozen=True, eq=False)
class Variable:
    """A traced variable: its name, kind, the values it can take (texts as written, in
    the order of their trace index) and where it is written.

    ``node`` is the syntax node (the :class:`Choice` of a choice, optional part or
    multi-select; for an item, the multi-select's). ``lines`` are the wildcard lines
    (:class:`Lines`) a wildcard, or a choice or multi-select among a wildcard's lines,
    picks from. ``group``
    is the multi-select of an item or a count, the wildcard of a file variable;
    ``index`` an item's alternative in its multi-select.
    """

    name: str
    kind: str
    values: tuple[str, ...]
    source: Source
    start: int
    node: Any = field(default=None, repr=False)
    lines: Lines | tuple[()] = field(default=(), repr=False)
    group: str | None = None
    index: int = -1

    @property
    def where(self) -> str:
        """``file:line:col`` of the variable in its template or wildcard file."""
        return self.source.where(self.start)


class Scope:
    """Names the choices and optional parts directly inside one holder: a slot's
    definition, a wildcard file, or a choice or optional part."""

    __slots__ = ("prefix", "braces", "brackets")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.braces = 0
        self.brackets = 0

    def name(self, choice: Choice) -> str:
        """The next construct's name: its own label, or the automatic one."""
        if choice.optional:
            self.brackets += 1
            auto = f"{self.prefix}[{self.brackets}]"
        else:
            self.braces += 1
            auto = f"{self.prefix}{{{self.braces}}}"
        return choice.label if choice.label is not None else auto


def item_name(multi: str, text: str) -> str:
    """The variable of one item of the multi-select ``multi``."""
    return f"{multi}+{text}"


def count_name(multi: str) -> str:
    """The variable of how many items the multi-select ``multi`` picked."""
    return f"{multi}.count"


def wildcard_name(pattern: str) -> str:
    return f"__{pattern}__"


def file_name(wildcard: str) -> str:
    """The variable of the file a glob's line came from."""
    return f"{wildcard}.file"


def merged_choice(choice: Choice) -> Choice | None:
    """For an optional part written ``[a|b]`` (or ``[{a|b}]``, the same thing): the inner
    choice, whose values the optional part's variable takes; else None."""
    if not choice.optional or len(choice.alternatives) != 2:
        return None
    parts = choice.alternatives[1].parts
    if len(parts) != 1 or not isinstance(parts[0], Choice):
        return None
    inner = parts[0]
    if inner.optional or inner.select is not None or inner.label is not None:
        return None
    return inner


_WEIGHT_BEFORE = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::(?=[ \t]*\Z)")


def value_text(alt: Alternative, text: str) -> str:
    """An alternative's value in the trace: its text as written (``text`` is its
    source's), without the weights of the choices inside it, and ``[{a|b}]`` written
    ``[a|b]`` (the same thing). Weights are what ``sdp refine`` changes; a value keeps its
    text from one round to the next."""
    if "::" not in alt.text and "[{" not in alt.text.replace(" ", ""):
        return alt.text
    cuts: list[tuple[int, int]] = []
    _cuts(alt.parts, text, cuts)
    if not cuts:
        return alt.text
    out, pos = [], alt.start
    for a, b in sorted(cuts):
        out.append(text[pos:a])
        pos = max(pos, b)
    out.append(text[pos : alt.start + len(alt.text)])
    return "".join(out)


def _cuts(parts: Any, text: str, cuts: list[tuple[int, int]]) -> None:
    """The spans of ``text`` that :func:`value_text` leaves out, in ``parts``."""
    for node in parts:
        if not isinstance(node, Choice):
            continue
        region = node.start
        for alt in node.alternatives:
            m = _WEIGHT_BEFORE.search(text, region, alt.start)
            if m is not None:
                cuts.append((m.start(), m.end()))
            region = alt.start + len(alt.text)
            _cuts(alt.parts, text, cuts)
        inner = merged_choice(node)
        if inner is not None and inner.start != node.start:  # [{a|b}]: the braces go
            close = text.index("}", inner.alternatives[-1].start + len(inner.alternatives[-1].text))
            cuts.append((inner.start, inner.start + 1))
            cuts.append((close, close + 1))
