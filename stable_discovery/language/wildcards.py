"""Wildcard files: ``__name__`` picks one line of ``name.txt`` from the wildcard folders.

Each non-blank line that does not start with ``#`` is a template of its own. A line may
start with a weight ``N::`` (relative, default 1), as an alternative may. Globs
(``__dir/*__``) take the union of the matching files. Identical lines (the text after
the weight) count once: the first one is kept, with its weight.

A wildcard may also be a key path of a YAML or JSON file (:mod:`.structured`), the
format dynamicprompts and the ComfyUI Impact Pack read. Folders are walked following
symbolic links, and a link back to a folder above it (a cycle) is skipped and reported.

Where a name is looked up (:meth:`WildcardLibrary.lookup`): from the top of the wildcard
folders; then, for a reference written in a wildcard file, from that file's folder; then
anywhere below the top (``**/name``), which must then be one place only.

Lines are kept as columns (their texts, line numbers and weights), not as an object per
line: a 50 MB wildcard file is a million lines.
"""

from __future__ import annotations

import fnmatch
import os
import re
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from stable_discovery.errors import Source, TemplateError

__all__ = [
    "WildcardFile",
    "FileLines",
    "Lookup",
    "WildcardLibrary",
    "read_text_file",
    "split_weight",
    "front_matter",
    "LINE_WEIGHT",
]


#: ``N::`` at the start of a wildcard line: the line's weight (the grammar's WEIGHT).
LINE_WEIGHT = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::")

#: ``# sdp: literal`` (or ``# sdp: template``) on a wildcard file's first line: how its
#: lines are read, whatever the command line says.
_FRONT_MATTER = re.compile(r"#[ \t]*sdp[ \t]*:[ \t]*(literal|template)[ \t]*", re.I)


def split_weight(line: str) -> tuple[float, str]:
    """A stripped wildcard line's weight (1 when it has none) and its text after it."""
    if "::" not in line:
        return 1.0, line
    m = LINE_WEIGHT.match(line)
    if m is None:
        return 1.0, line
    return float(m.group().rstrip(":").strip()), line[m.end() :].strip()


def front_matter(first_line: str) -> bool | None:
    """True for ``# sdp: literal``, False for ``# sdp: template``, else None."""
    m = _FRONT_MATTER.fullmatch(first_line.strip())
    return None if m is None else m.group(1).lower() == "literal"


def read_text_file(path: Path, what: str = "template") -> str:
    """Read a UTF-8 text file; bad bytes and unreadable files become TemplateErrors."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TemplateError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise TemplateError(f"{path} is a folder, not a {what} file") from None
    except OSError as exc:
        raise TemplateError(f"cannot read {what} file {path}: {exc.strerror}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode("utf-8", "replace")
        shown = _normalize_newlines(data.decode("utf-8", "replace").replace("\x00", "\ufffd"))
        raise TemplateError(
            f"not valid UTF-8 (byte 0x{data[exc.start]:02x})",
            Source(str(path), shown),
            len(_normalize_newlines(prefix)),
            hint="save the file as UTF-8",
        ) from None
    if "\x00" in text:
        nul = text.index("\x00")
        raise TemplateError(
            "contains a NUL character; is this a binary file?",
            Source(str(path), _normalize_newlines(text)),
            nul,
        )
    return _normalize_newlines(text)


def _normalize_newlines(text: str) -> str:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _stream_lines(path: Path) -> Iterator[str]:
    """The lines of a UTF-8 text file, one at a time (a 50 MB file is never held whole);
    a file that cannot be read, or is not UTF-8 text, is reported by read_text_file."""
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            lines = []
            for line in f:
                if "\x00" in line:
                    raise ValueError("NUL")
                lines.append(line)
                if len(lines) >= 4096:
                    yield from lines
                    lines.clear()
            yield from lines
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        read_text_file(path, "wildcard")  # raises the error, with its place
        raise  # pragma: no cover - read_text_file found nothing wrong this time


class WildcardFile(NamedTuple):
    """Where a wildcard's lines are: a .txt file, or a key path of a YAML/JSON file.

    ``folder`` is the folder the file is in, relative to its wildcard folder ("" at the
    top): a reference written in it is looked up there second."""

    path: Path
    key: tuple[str, ...] | None
    folder: str


@dataclass(eq=False)
class FileLines:
    """The distinct lines of one wildcard, as columns: their texts (after the weight,
    stripped), line numbers and weights (None: all 1); ``raws`` the line as written where
    it differs from its text (it has a weight); ``literal`` whether the file is read as
    data (see docs/language.md, Wildcard files that are data), ``chosen`` whether its
    first line says so (``# sdp: literal`` or ``# sdp: template``)."""

    name: str  # the file, as errors name it
    texts: list[str]
    numbers: array
    weights: array | None
    raws: dict[int, str] = field(default_factory=dict)
    literal: bool = False
    chosen: bool = False

    def __len__(self) -> int:
        return len(self.texts)

    def weight(self, k: int) -> float:
        return 1.0 if self.weights is None else self.weights[k]

    def raw(self, k: int) -> str:
        return self.raws.get(k, self.texts[k])


class _Builder:
    """Collects the distinct lines of one wildcard."""

    def __init__(self, name: str, literal: bool, chosen: bool = False) -> None:
        self.lines = FileLines(name, [], array("l"), None, literal=literal, chosen=chosen)
        self.seen: set[str] = set()

    def add(self, raw: str, number: int, weight: float | None = None, column: int = 1) -> None:
        """Line ``raw`` (stripped) at ``number``, its first character at ``column``."""
        if weight is None:
            weight, body = split_weight(raw)
        else:
            body = raw
        if body in self.seen:
            return
        self.seen.add(body)
        lines = self.lines
        k = len(lines.texts)
        lines.texts.append(body)
        lines.numbers.append(number)
        if weight != 1.0 and lines.weights is None:
            lines.weights = array("d", [1.0]) * k
        if lines.weights is not None:
            lines.weights.append(weight)
        if column > 1:  # errors in the line point at its column in the file
            lines.raws[k] = " " * (column - 1) + raw
        elif body is not raw and body != raw:
            lines.raws[k] = raw


class Lookup(NamedTuple):
    """What a ``__pattern__`` names: the pattern as found (from the top of the wildcard
    folders) and its (name, file) pairs; empty when nothing matches. ``ambiguous`` lists
    the names that matched in several places."""

    pattern: str
    matches: list[tuple[str, WildcardFile]]
    ambiguous: tuple[str, ...] = ()
    how: str = "top"  # "top", "folder" (the referring file's) or "anywhere" (**/)


class WildcardLibrary:
    """The wildcard folders of one template, searched in order."""

    def __init__(
        self,
        folders: Iterable[Path | str] = (),
        texts: Mapping[Path, str] | None = None,
        literal: bool = False,
    ) -> None:
        """``texts`` stands in for the text of some files (the ``exploit`` sampler's
        weighted lines); they are looked up as usual, then read from here. ``literal``
        reads every wildcard file as data (``--wildcards-literal``), unless its first
        line says ``# sdp: template``."""
        self.folders: tuple[Path, ...] = tuple(Path(f) for f in folders)
        self.literal = literal
        self._names: dict[str, WildcardFile] | None = None
        self._dirs: set[str] = set()
        self._by_last: dict[str, list[str]] = {}  # a name's last part → the names below the top
        self._lines: dict[WildcardFile, FileLines] = {}
        self._texts = dict(texts or {})
        self._structured: dict[Path, dict[tuple[str, ...], Any]] = {}
        self._structured_literal: dict[Path, bool | None] = {}
        self._lookups: dict[tuple[str, str], Lookup] = {}
        #: names given by two files of one wildcard folder (a .txt and a YAML key)
        self.duplicates: dict[str, list[WildcardFile]] = {}
        #: folder links skipped because they lead back to a folder above them
        self.cycles: list[tuple[Path, Path]] = []
        #: YAML/JSON files that could not be read (reported when a name is not found)
        self.broken: list[TemplateError] = []

    # the names ---------------------------------------------------------------------------
    def names(self) -> dict[str, WildcardFile]:
        """Every wildcard name (relative path without the suffix, or key path of a
        structured file) → where its lines are; the first folder that has it wins."""
        if self._names is None:
            found: dict[str, WildcardFile] = {}
            for folder in self.folders:
                if folder.is_dir():
                    mine: dict[str, WildcardFile] = {}
                    for name, entry in self._scan(folder):
                        if name in mine:
                            self.duplicates.setdefault(name, [mine[name]]).append(entry)
                            continue
                        mine[name] = entry
                    for name, entry in mine.items():
                        found.setdefault(name, entry)
            self._names = dict(sorted(found.items()))
            for name in self._names:
                parts = name.split("/")
                for i in range(1, len(parts)):
                    self._dirs.add("/".join(parts[:i]))
                if len(parts) > 1:
                    self._by_last.setdefault(parts[-1], []).append(name)
        return self._names

    def _scan(self, top: Path) -> Iterator[tuple[str, WildcardFile]]:
        """The wildcards below one folder, following links to folders (not into a
        folder above them: that would never end), skipping hidden folders."""
        stack: list[tuple[str, str, frozenset]] = [(str(top), "", frozenset({_identity(str(top))}))]
        while stack:
            path, prefix, above = stack.pop()
            try:
                entries = sorted(os.scandir(path), key=lambda e: e.name, reverse=True)
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir():
                    ident = _identity(entry.path)
                    if entry.name.startswith(".") or ident is None:
                        continue
                    if ident in above:
                        self.cycles.append((Path(entry.path), Path(os.path.realpath(entry.path))))
                        continue
                    stack.append((entry.path, prefix + entry.name + "/", above | {ident}))
                elif entry.is_file():
                    yield from self._file_names(Path(entry.path), prefix, entry.name)

    def _file_names(self, path: Path, prefix: str, filename: str) -> Iterator[tuple[str, WildcardFile]]:
        stem, dot, suffix = filename.rpartition(".")
        suffix = "." + suffix.lower() if dot else ""
        folder = prefix.rstrip("/")
        if suffix == ".txt":
            yield prefix + stem, WildcardFile(path, None, folder)
            return
        from stable_discovery.language.structured import STRUCTURED_SUFFIXES

        if suffix not in STRUCTURED_SUFFIXES:
            return
        for key in self._read_structured(path, suffix):
            name = prefix + ("/".join(key) if key else stem)
            yield name, WildcardFile(path, key, folder)

    def _read_structured(self, path: Path, suffix: str) -> dict[tuple[str, ...], Any]:
        from stable_discovery.language.structured import read_structured

        done: dict[tuple[str, ...], Any] | None = self._structured.get(path)
        if done is None:
            try:
                given = self._texts.get(path)  # a weighted copy stands in for it: YAML
                text = read_text_file(path, "wildcard") if given is None else given
                first = text.lstrip("\n").split("\n", 1)[0]
                self._structured_literal[path] = front_matter(first)
                done = read_structured(str(path), text, suffix if given is None else ".yaml")
            except TemplateError as exc:
                self.broken.append(exc)
                done = {}
            self._structured[path] = done
        return done

    # looking a pattern up ----------------------------------------------------------------
    def find(self, pattern: str) -> list[tuple[str, WildcardFile]]:
        """The (name, file) pairs a pattern names from the top of the wildcard folders,
        in name order for globs."""
        names = self.names()
        if any(ch in pattern for ch in "*?["):
            return [(n, names[n]) for n in names if fnmatch.fnmatchcase(n, pattern)]
        return [(pattern, names[pattern])] if pattern in names else []

    def lookup(self, pattern: str, folder: str = "") -> Lookup:
        """What ``__pattern__`` names when written in a file of ``folder`` (relative to
        the wildcard folders; "" for the template itself)."""
        key = (pattern, folder)
        done = self._lookups.get(key)
        if done is None:
            done = self._lookups[key] = self._lookup(pattern, folder)
        return done

    def _lookup(self, pattern: str, folder: str) -> Lookup:
        found = self.find(pattern)
        if found:
            return Lookup(pattern, found)
        if folder:
            beside = f"{folder}/{pattern}"
            found = self.find(beside)
            if found:
                return Lookup(beside, found, how="folder")
        places = self._anywhere(pattern)
        if len(places) == 1:
            return Lookup(places[0], self.find(places[0]), how="anywhere")
        return Lookup(pattern, [], tuple(places), how="anywhere")

    def _anywhere(self, pattern: str) -> list[str]:
        """``**/pattern``: the patterns, each from one folder, that match below the top
        (for a glob, a folder whose matches are all inside another's is not a place of
        its own: ``*`` matches ``/`` too)."""
        names = self.names()
        if not any(ch in pattern for ch in "*?["):
            tail = "/" + pattern
            return [n for n in self._by_last.get(pattern.rsplit("/", 1)[-1], ()) if n.endswith(tail)]
        from bisect import bisect_left

        rx = re.compile(fnmatch.translate(pattern))
        ordered = list(names)
        found: dict[str, set[str]] = {}
        for d in sorted(self._dirs):
            prefix = d + "/"
            i = bisect_left(ordered, prefix)
            hits = set()
            while i < len(ordered) and ordered[i].startswith(prefix):
                if rx.match(ordered[i], len(prefix)):
                    hits.add(ordered[i])
                i += 1
            if hits:
                found[f"{prefix}{pattern}"] = hits
        return [
            p for p, hits in found.items() if not any(q != p and hits < other for q, other in found.items())
        ]

    # the lines ---------------------------------------------------------------------------
    def lines(self, entry: WildcardFile) -> FileLines:
        """The distinct template lines of one wildcard, in file order."""
        cached = self._lines.get(entry)
        if cached is not None:
            return cached
        if entry.key is None:
            lines = self._text_lines(entry.path)
        else:
            lines = self._structured_lines(entry)
        self._lines[entry] = lines
        return lines

    def _text_lines(self, path: Path) -> FileLines:
        given = self._texts.get(path)
        raw_lines: Iterable[str] = given.split("\n") if given is not None else _stream_lines(path)
        builder: _Builder | None = None
        for number, raw in enumerate(raw_lines, start=1):
            line = raw.strip()
            if builder is None and line:
                matter = front_matter(line)
                builder = _Builder(str(path), self.literal if matter is None else matter, matter is not None)
            if not line or line.startswith("#"):
                continue
            assert builder is not None
            builder.add(line, number, None, len(raw) - len(raw.lstrip()) + 1 if raw[0].isspace() else 1)
        return builder.lines if builder is not None else _Builder(str(path), self.literal).lines

    def _structured_lines(self, entry: WildcardFile) -> FileLines:
        items = self._structured.get(entry.path, {}).get(entry.key or (), [])
        if isinstance(items, TemplateError):
            raise items
        matter = self._structured_literal.get(entry.path)
        builder = _Builder(str(entry.path), self.literal if matter is None else matter, matter is not None)
        for item in items:
            text = item.text.strip()
            builder.add(text, item.line, item.weight, item.column + item.text.find(text[:1]))
        return builder.lines

    def files_read(self) -> list[Path]:
        """The wildcard files read so far, in the order they were first read (a YAML or
        JSON file once, however many of its keys were read)."""
        return list(dict.fromkeys(entry.path for entry in self._lines))

    def suggestions(self, pattern: str) -> Sequence[str]:
        """Names close to ``pattern``: as written, else by their last part (a bare name
        misspelt, such as ``scandinavian`` for ``people/scandinavia``)."""
        import difflib

        names = list(self.names())
        close = difflib.get_close_matches(pattern, names, n=3, cutoff=0.6)
        if close:
            return close
        by_last: dict[str, list[str]] = {}
        for name in names:
            by_last.setdefault(name.rsplit("/", 1)[-1], []).append(name)
        last = pattern.rsplit("/", 1)[-1]
        found = difflib.get_close_matches(last, list(by_last), n=3, cutoff=0.75)
        return [name for part in found for name in sorted(by_last[part])][:3]


def _identity(path: str) -> tuple[int, int] | None:
    """What a folder is, wherever links make it appear: its device and inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
