"""The parsed lines a ``__pattern__`` stands for, read and parsed once per pattern.

A pattern that names no wildcard file, or files without lines, or that is found in
several places, is an error located at the reference. Lines are kept as columns
(:class:`LineSet`); only the lines that are more than plain text are parsed, the common
subset by the hand-written parser, the rest by Lark.

A wildcard file read as data (``--wildcards-literal``, or ``# sdp: literal`` on its
first line) has only ``{…}``, ``__…__``, ``${…}``, ``%{…}``, weights and ``#`` comments
special: ``<…>``, ``[…]``, backslashes and unmatched braces are text. Such a line is
parsed with those characters stood in for by Unicode noncharacters (the same offsets,
so errors point at the right column) and given back in the nodes.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator
from typing import Any, NamedTuple

from stable_discovery.errors import Source, TemplateError, TemplateWarning
from stable_discovery.language.fastparse import parse_bare_fast
from stable_discovery.language.parser import parse_bare
from stable_discovery.language.syntax import Alternative, Choice, Select, Text, WildcardRef, Wrap
from stable_discovery.language.syntax import Node as SyntaxNode
from stable_discovery.language.variables import value_text
from stable_discovery.language.wildcards import FileLines, Lookup, WildcardFile, WildcardLibrary

__all__ = [
    "ParsedLine",
    "LineSet",
    "WildcardLines",
    "parse_line",
    "literal_prepare",
    "reads_differently",
    "ReadNote",
]


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


class ReadNote(NamedTuple):
    """A line of a wildcard file read as data that a template would read differently."""

    path: str
    line: int
    text: str
    reason: str


#: a line without these is plain text, in a template and in a file read as data
_SPECIAL = re.compile(r"[{}\[\]<\\#]|__").search
_SPECIAL_LITERAL = re.compile(r"[{}#]|__").search
#: what a template reads differently from data: brackets, <slot>, escapes
_DIFFERS = re.compile(r"[\[\]]|<[A-Za-z_][A-Za-z0-9_]*>|\\[{}\[\]<>|#$_\\%~@!]")

# data lines: characters that are text there, stood in for while parsing
_STAND_IN = {"[": "\ufdd0", "]": "\ufdd1", "<": "\ufdd2", "\\": "\ufdd3", "{": "\ufdd4", "}": "\ufdd5"}
_BACK = str.maketrans({v: k for k, v in _STAND_IN.items()})
_TO_STAND_IN = str.maketrans({k: v for k, v in _STAND_IN.items() if k in "[]<\\"})
_BRACES = re.compile(r"\{#[A-Za-z_][A-Za-z0-9_]*:|[{}]|#")


def parse_line(text: str, source: Source, literal: bool = False) -> tuple[SyntaxNode, ...]:
    """One wildcard line (already stripped; a weight blanked to spaces): plain text at
    once, the common subset by the hand-written parser, the rest (and every error) by
    Lark. Offsets are into ``source.text``, the line as written."""
    if literal:
        text, _ = literal_prepare(text, source)
        restored: tuple[SyntaxNode, ...] = _restored(parse_line(text, source))
        return restored
    if _SPECIAL(text) is None:
        stripped = text.lstrip()
        return (Text(stripped, len(text) - len(stripped)),)
    nodes = parse_bare_fast(text)
    if nodes is not None:
        return nodes
    return parse_bare(source, text)


def literal_prepare(text: str, source: Source) -> tuple[str, list[str]]:
    """A data line as the parser is to read it (``<`` ``[`` ``]`` ``\\`` and unmatched
    braces stood in for), and what a template would have read differently."""
    if any(ch in text for ch in _STAND_IN.values()):
        at = min(text.find(ch) for ch in _STAND_IN.values() if ch in text)
        raise TemplateError("contains a Unicode noncharacter (U+FDD0–U+FDD5)", source, at)
    reasons = []
    diff = _DIFFERS.search(text)
    if diff is not None:
        reasons.append(f"{diff.group()!r} is text here")
    unmatched = _unmatched_braces(text)
    if unmatched:
        reasons.append(f"the unmatched {text[unmatched[0]]!r} is text here")
        chars = list(text)
        for i in unmatched:
            chars[i] = _STAND_IN[chars[i]]
        text = "".join(chars)
    return text.translate(_TO_STAND_IN), reasons


def reads_differently(text: str) -> bool:
    """Whether a line reads differently as data than as a template."""
    return _DIFFERS.search(text) is not None or bool(_unmatched_braces(text))


def _unmatched_braces(text: str) -> list[int]:
    """The offsets of the braces that pair with none (before a comment)."""
    opens: list[int] = []
    lone: list[int] = []
    for m in _BRACES.finditer(text):
        ch = m.group()
        if ch == "#":
            break
        if ch == "}":
            if opens:
                opens.pop()
            else:
                lone.append(m.start())
        else:
            opens.append(m.start())
    return sorted(lone + opens)


def _restored(nodes: Any) -> Any:
    """The nodes with the stood-in characters given back."""
    out = []
    for node in nodes:
        if isinstance(node, Text):
            node = Text(node.value.translate(_BACK), node.start)
        elif isinstance(node, Choice):
            alts = tuple(
                Alternative(_restored(a.parts), a.weight, a.text.translate(_BACK), a.start)
                for a in node.alternatives
            )
            sel = node.select
            if sel is not None:
                sel = Select(sel.low, sel.high, sel.joiner.translate(_BACK))
            node = Choice(alts, node.start, sel, node.optional, node.label)
        out.append(node)
    return tuple(out)


def _in_folder(nodes: Any, folder: str) -> Any:
    """The nodes with each wildcard reference marked as written in ``folder``."""
    out = []
    for node in nodes:
        if isinstance(node, WildcardRef):
            node = WildcardRef(node.pattern, node.start, folder)
        elif isinstance(node, Choice):
            alts = tuple(
                Alternative(_in_folder(a.parts, folder), a.weight, a.text, a.start) for a in node.alternatives
            )
            node = Choice(alts, node.start, node.select, node.optional, node.label)
        out.append(node)
    return tuple(out)


class LineSet:
    """The distinct lines of a pattern (the union over its files), as columns.

    ``texts`` are the lines' texts after their weights (the keys that make lines
    distinct), ``values`` their values in the trace (the same list when none differs),
    ``parsed`` the parts of the lines that are more than plain text (a plain line is the
    text alone). ``pattern`` is the pattern as found (see :class:`Lookup`)."""

    __slots__ = ("pattern", "texts", "values", "weights", "numbers", "files", "file_of", "index", "parsed")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.texts: list[str] = []
        self.values: list[str] = self.texts
        self.weights: array | None = None
        self.numbers: array = array("l")
        #: (wildcard name, file, its lines) of each file the lines come from
        self.files: list[tuple[str, WildcardFile, FileLines]] = []
        self.file_of: array | None = None  # each line's file (None: the one file)
        self.index: array | None = None  # each line's index in its file's lines
        self.parsed: dict[int, tuple[SyntaxNode, ...]] = {}

    def __len__(self) -> int:
        return len(self.texts)

    def weight(self, k: int) -> float:
        return 1.0 if self.weights is None else self.weights[k]

    def weight_list(self) -> list[float]:
        return [1.0] * len(self.texts) if self.weights is None else list(self.weights)

    def file(self, k: int) -> tuple[str, WildcardFile, FileLines]:
        return self.files[0 if self.file_of is None else self.file_of[k]]

    def source(self, k: int) -> Source:
        """Line ``k`` as written (weight included), numbered as in its file."""
        _, _, lines = self.file(k)
        j = k if self.index is None else self.index[k]
        return Source(lines.name, lines.raw(j), first_line=self.numbers[k])

    def parts(self, k: int) -> tuple[SyntaxNode, ...]:
        parts = self.parsed.get(k)
        if parts is not None:
            return parts
        text = self.texts[k]
        return (Text(text, len(self.source(k).text) - len(text)),)

    def __iter__(self) -> Iterator[ParsedLine]:
        for k, text in enumerate(self.texts):
            name = self.file(k)[0]
            yield ParsedLine(self.parts(k), self.source(k), text, self.weight(k), name, self.values[k])

    def __getitem__(self, k: int) -> ParsedLine:
        return ParsedLine(
            self.parts(k), self.source(k), self.texts[k], self.weight(k), self.file(k)[0], self.values[k]
        )


class WildcardLines:
    """The distinct parsed lines of each pattern, from one template's wildcard folders.

    ``notes`` (when a list is given) collects the lines of files read as data that a
    template would read differently (``sdp check --verbose``); ``warnings`` the first
    optional part ``[…]`` of each file read as a template only because nothing said how
    to read it (dynamicprompts' packs mean ``Name[1]`` as text)."""

    def __init__(self, library: WildcardLibrary, notes: list[ReadNote] | None = None) -> None:
        self.library = library
        self.notes = notes
        self.warnings: list[TemplateWarning] = []
        self._warned: set[str] = set()
        self._sets: dict[str, LineSet] = {}

    def lookup(self, ref: WildcardRef, src: Source) -> Lookup:
        """What ``ref`` names (an error when nothing, or several places)."""
        found = self.library.lookup(ref.pattern, ref.folder)
        if not found.matches:
            raise self._unknown(ref, src, found)
        duplicated = [n for n, _ in found.matches if n in self.library.duplicates]
        if duplicated:
            files = self.library.duplicates[duplicated[0]]
            where = ", ".join(_described(f) for f in files)
            raise TemplateError(
                f"wildcard __{duplicated[0]}__ is given by two files: {where}",
                src,
                ref.start,
                hint="a name is one wildcard: rename or remove one of them",
            )
        return found

    def get(self, ref: WildcardRef, src: Source) -> LineSet:
        """The lines of ``ref``'s pattern, the union over its files with duplicates
        dropped; ``src`` is where ``ref`` is written (for errors)."""
        found = self.lookup(ref, src)
        cached = self._sets.get(found.pattern)
        if cached is not None:
            return cached
        lines = self._union(found)
        if not lines.texts:
            raise TemplateError(
                f"wildcard __{found.pattern}__ has no lines",
                src,
                ref.start,
                hint="a wildcard file lists one value per line; blank and # lines are skipped",
            )
        self._parse(lines)
        self._sets[found.pattern] = lines
        return lines

    def _union(self, found: Lookup) -> LineSet:
        out = LineSet(found.pattern)
        if len(found.matches) == 1:  # one file: its columns as they are
            name, entry = found.matches[0]
            lines = self.library.lines(entry)
            out.texts = out.values = lines.texts
            out.numbers, out.weights = lines.numbers, lines.weights
            out.files.append((name, entry, lines))
            return out
        seen: set[str] = set()
        out.file_of, out.index, weights = array("l"), array("l"), array("d")
        for f, (name, entry) in enumerate(found.matches):
            lines = self.library.lines(entry)
            out.files.append((name, entry, lines))
            for j, text in enumerate(lines.texts):
                if text in seen:
                    continue
                seen.add(text)
                out.texts.append(text)
                out.numbers.append(lines.numbers[j])
                weights.append(lines.weight(j))
                out.file_of.append(f)
                out.index.append(j)
        if any(w != 1.0 for w in weights):
            out.weights = weights
        return out

    def _parse(self, lines: LineSet) -> None:
        """Parse the lines that are more than plain text; note the data lines a template
        would read differently."""
        values: list[str] | None = None
        file_of = lines.file_of
        for k, text in enumerate(lines.texts):
            _, entry, file_lines = lines.files[0 if file_of is None else file_of[k]]
            literal = file_lines.literal
            if literal and self.notes is not None:
                self._note(lines, k, text)
            if (_SPECIAL_LITERAL if literal else _SPECIAL)(text) is None:
                continue
            src = lines.source(k)
            prepared = " " * (len(src.text) - len(text)) + text
            parts = parse_line(prepared, src, literal)
            if entry.folder and "__" in text:
                parts = _in_folder(parts, entry.folder)
            lines.parsed[k] = parts
            if "[" in text and not file_lines.chosen and not literal:
                self._warn_optional(file_lines, parts, src)
            if "::" in text or "[" in text:
                value = value_text(Alternative(parts, 1.0, text, len(src.text) - len(text)), src.text)
                if value != text:
                    if values is None:
                        values = list(lines.texts)
                    values[k] = value
        if values is not None:
            lines.values = values

    def _warn_optional(self, file_lines: FileLines, parts: tuple[SyntaxNode, ...], src: Source) -> None:
        """Warn (once per file) about an optional part in a wildcard line read as a
        template by default: dynamicprompts' packs mean ``Name[1]`` as text."""
        if file_lines.name in self._warned:
            return
        choice = _first_optional(parts)
        if choice is None:
            return
        self._warned.add(file_lines.name)
        text = choice.alternatives[-1].text
        shown = f"[{text if len(text) <= 40 else text[:39] + '…'}]"
        self.warnings.append(
            TemplateWarning(
                f"{shown} is an optional part here (a wildcard line is a template): absent, or its text; "
                "dynamicprompts reads brackets in a wildcard file as text (the first such line of this file)",
                src,
                choice.start,
                hint="if this file is data, read it so: --wildcards-literal, @wildcard_lines = literal, or "
                "`# sdp: literal` on its first line; `# sdp: template` there keeps its optional parts "
                "without this warning",
            )
        )

    def _note(self, lines: LineSet, k: int, text: str) -> None:
        assert self.notes is not None
        src = lines.source(k)
        prepared = " " * (len(src.text) - len(text)) + text
        _, reasons = literal_prepare(prepared, src)
        if reasons:
            self.notes.append(ReadNote(src.name, src.first_line, text, "; ".join(reasons)))

    def _unknown(self, ref: WildcardRef, src: Source, found: Lookup) -> TemplateError:
        library = self.library
        if found.ambiguous:
            shown = ", ".join(f"__{p}__" for p in found.ambiguous[:8])
            more = f" and {len(found.ambiguous) - 8} more" if len(found.ambiguous) > 8 else ""
            return TemplateError(
                f"wildcard __{ref.pattern}__ is not at the top of the wildcard folders, and "
                f"is in several places below: {shown}{more}",
                src,
                ref.start,
                hint="write the one you mean with its folder",
            )
        folders = ", ".join(str(f) for f in library.folders) or "none"
        guess = library.suggestions(ref.pattern)
        message = f"unknown wildcard __{ref.pattern}__"
        if guess:
            message += f": did you mean __{guess[0]}__?"
        hint = (
            f"wildcard folders searched: {folders}; a wildcard is a file "
            f"{ref.pattern}.txt in one of them (--wildcards DIR adds a folder)"
        )
        if library.broken:
            hint += "; these wildcard files could not be read: " + "; ".join(
                str(e) for e in library.broken[:3]
            )
        return TemplateError(message, src, ref.start, hint=hint)


def _described(entry: WildcardFile) -> str:
    if entry.key is None:
        return str(entry.path)
    return f"{entry.path} (key {'/'.join(entry.key) or 'list'})"


def _first_optional(parts: tuple[SyntaxNode, ...]) -> Choice | None:
    """The first optional part ``[…]`` among ``parts``, nested ones included."""
    for part in parts:
        if isinstance(part, Choice):
            if part.optional:
                return part
            for alt in part.alternatives:
                found = _first_optional(alt.parts)
                if found is not None:
                    return found
        elif isinstance(part, Wrap):
            found = _first_optional(part.wrapper + part.inner)
            if found is not None:
                return found
    return None
