"""The parsed lines a ``__pattern__`` stands for, read and parsed once per pattern.

A pattern that names no wildcard file, or files without lines, is an error located at
the reference. Lines are parsed the cheapest way that gives the parser's nodes: plain
text at once, the common subset by the hand-written parser, the rest by Lark.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.fastparse import parse_bare_fast
from stable_discovery.language.parser import parse_bare
from stable_discovery.language.syntax import Alternative, Text, WildcardRef
from stable_discovery.language.syntax import Node as SyntaxNode
from stable_discovery.language.variables import value_text
from stable_discovery.language.wildcards import WildcardLibrary

__all__ = ["ParsedLine", "WildcardLines", "parse_line"]


class ParsedLine(NamedTuple):
    """A wildcard line, parsed: its parts, where it is, its text after the weight, its
    weight, the wildcard name of the file it comes from (for globs), and its value in the
    trace (:func:`~stable_discovery.language.variables.value_text`)."""

    parts: tuple[SyntaxNode, ...]
    source: Source
    text: str
    weight: float
    file: str
    value: str


_SIMPLE_LINE = re.compile(r"[{}\[\]<\\#_]").search


def parse_line(text: str, source: Source) -> tuple[SyntaxNode, ...]:
    """One wildcard line (already stripped; a weight blanked to spaces): plain text at
    once, the common subset by the hand-written parser, the rest (and every error) by
    Lark. Offsets are into ``source.text``, the line as written."""
    if _SIMPLE_LINE(text) is None:
        stripped = text.lstrip()
        return (Text(stripped, len(text) - len(stripped)),)
    nodes = parse_bare_fast(text)
    if nodes is not None:
        return nodes
    return parse_bare(source, text)


class WildcardLines:
    """The distinct parsed lines of each pattern, from one template's wildcard folders."""

    def __init__(self, library: WildcardLibrary) -> None:
        self.library = library
        self._lines: dict[str, list[ParsedLine]] = {}

    def get(self, ref: WildcardRef, src: Source) -> list[ParsedLine]:
        """The lines of ``ref``'s pattern, the union over its files with duplicates
        dropped; ``src`` is where ``ref`` is written (for errors)."""
        cached = self._lines.get(ref.pattern)
        if cached is not None:
            return cached
        found = self.library.find(ref.pattern)
        if not found:
            raise self._unknown(ref, src)
        lines: list[ParsedLine] = []
        seen: set[str] = set()
        for name, path in found:
            for line in self.library.lines(path):
                if line.text in seen:
                    continue
                seen.add(line.text)
                parts = parse_line(line.prepared, line.source)
                value = line.text
                if "::" in value or "[" in value:
                    whole = Alternative(parts, 1.0, line.text, len(line.source.text) - len(line.text))
                    value = value_text(whole, line.source.text)
                lines.append(ParsedLine(parts, line.source, line.text, line.weight, name, value))
        if not lines:
            raise TemplateError(
                f"wildcard __{ref.pattern}__ has no lines",
                src,
                ref.start,
                hint="a wildcard file lists one value per line; blank and # lines are skipped",
            )
        self._lines[ref.pattern] = lines
        return lines

    def _unknown(self, ref: WildcardRef, src: Source) -> TemplateError:
        folders = ", ".join(str(f) for f in self.library.folders) or "none"
        guess = self.library.suggestions(ref.pattern)
        message = f"unknown wildcard __{ref.pattern}__"
        if guess:
            message += f": did you mean __{guess[0]}__?"
        return TemplateError(
            message,
            src,
            ref.start,
            hint=f"wildcard folders searched: {folders}; a wildcard is a file "
            f"{ref.pattern}.txt in one of them (--wildcards DIR adds a folder)",
        )
