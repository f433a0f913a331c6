"""Wildcard files: ``__name__`` picks one line of ``name.txt`` from the wildcard folders.

Each non-blank line that does not start with ``#`` is a template of its own. Globs
(``__dir/*__``) take the union of the matching files. Identical lines count once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stable_discovery.errors import Source, TemplateError

__all__ = ["WildcardLine", "WildcardLibrary", "read_text_file"]


@dataclass(frozen=True)
class WildcardLine:
    """One line of a wildcard file: its text and where it is (for errors)."""

    text: str
    source: Source  # the line alone, numbered as in its file


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

    def __init__(self, folders: Iterable[Path | str] = ()) -> None:
        self.folders: tuple[Path, ...] = tuple(Path(f) for f in folders)
        self._names: dict[str, Path] | None = None
        self._lines: dict[Path, tuple[WildcardLine, ...]] = {}

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
        text = read_text_file(path, "wildcard")
        seen: set[str] = set()
        out: list[WildcardLine] = []
        for number, raw in enumerate(text.split("\n"), start=1):
            line = raw.strip()
            if not line or line.startswith("#") or line in seen:
                continue
            seen.add(line)
            out.append(WildcardLine(line, Source(str(path), line, first_line=number)))
        result = tuple(out)
        self._lines[path] = result
        return result

    def files_read(self) -> list[Path]:
        """The wildcard files read so far, in the order they were first read."""
        return list(self._lines)

    def suggestions(self, pattern: str) -> Sequence[str]:
        import difflib

        return difflib.get_close_matches(pattern, list(self.names()), n=3, cutoff=0.6)
