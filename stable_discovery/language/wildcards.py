"""Wildcard files: ``__name__`` picks one line of ``name.txt`` from the wildcard folders.

Each non-blank line that does not start with ``#`` is a template of its own. A line may
start with a weight ``N::`` (relative, default 1), as an alternative may. Globs
(``__dir/*__``) take the union of the matching files. Identical lines (the text after
the weight) count once: the first one is kept, with its weight.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stable_discovery.errors import Source, TemplateError

__all__ = ["WildcardLine", "WildcardLibrary", "read_text_file", "split_weight", "LINE_WEIGHT"]


#: ``N::`` at the start of a wildcard line: the line's weight (the grammar's WEIGHT).
LINE_WEIGHT = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::")


@dataclass(frozen=True)
class WildcardLine:
    """One line of a wildcard file: its text (after the weight), its weight, and where it
    is (the whole line, weight included, numbered as in its file; for errors)."""

    text: str
    source: Source
    weight: float = 1.0

    @property
    def prepared(self) -> str:
        """The line as the parser reads it: the weight blanked, offsets kept."""
        body = self.source.text
        skip = len(body) - len(self.text)
        return " " * skip + self.text if skip else body


def split_weight(line: str) -> tuple[float, str]:
    """A stripped wildcard line's weight (1 when it has none) and its text after it."""
    if "::" not in line:
        return 1.0, line
    m = LINE_WEIGHT.match(line)
    if m is None:
        return 1.0, line
    return float(m.group().rstrip(":").strip()), line[m.end() :].strip()


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


class WildcardLibrary:
    """The wildcard folders of one template, searched in order."""

    def __init__(self, folders: Iterable[Path | str] = (), texts: Mapping[Path, str] | None = None) -> None:
        """``texts`` stands in for the text of some files (the ``exploit`` sampler's
        weighted lines); they are looked up as usual, then read from here."""
        self.folders: tuple[Path, ...] = tuple(Path(f) for f in folders)
        self._names: dict[str, Path] | None = None
        self._lines: dict[Path, tuple[WildcardLine, ...]] = {}
        self._texts = dict(texts or {})

    def names(self) -> dict[str, Path]:
        """Every wildcard name (relative path without ``.txt``) → its file; first folder wins."""
        if self._names is None:
            found: dict[str, Path] = {}
            for folder in self.folders:
                if not folder.is_dir():
                    continue
                for path in sorted(folder.rglob("*.txt")):
                    name = path.relative_to(folder).with_suffix("").as_posix()
                    found.setdefault(name, path)
            self._names = found
        return self._names

    def find(self, pattern: str) -> list[tuple[str, Path]]:
        """The (name, file) pairs a pattern names, in name order for globs."""
        names = self.names()
        if any(ch in pattern for ch in "*?["):
            return [(n, names[n]) for n in sorted(names) if fnmatch.fnmatchcase(n, pattern)]
        return [(pattern, names[pattern])] if pattern in names else []

    def lines(self, path: Path) -> tuple[WildcardLine, ...]:
        """The distinct template lines of a wildcard file, in file order."""
        cached = self._lines.get(path)
        if cached is not None:
            return cached
        given = self._texts.get(path)
        text = given if given is not None else read_text_file(path, "wildcard")
        seen: set[str] = set()
        out: list[WildcardLine] = []
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            weight, body = split_weight(line)
            if body in seen:
                continue
            seen.add(body)
            out.append(WildcardLine(body, Source(str(path), line, first_line=number), weight))
        result = tuple(out)
        self._lines[path] = result
        return result

    def files_read(self) -> list[Path]:
        """The wildcard files read so far, in the order they were first read."""
        return list(self._lines)

    def suggestions(self, pattern: str) -> Sequence[str]:
        import difflib

        return difflib.get_close_matches(pattern, list(self.names()), n=3, cutoff=0.6)
