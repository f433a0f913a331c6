"""Errors that reach users: what is wrong, where (file:line:col), and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Source", "SdpError", "TemplateError", "TemplateWarning", "UsageError"]


@dataclass(frozen=True)
class Source:
    """A template's text and the name it is reported under (a path, or ``<-e>``)."""

    name: str
    text: str
    first_line: int = 1  # line number of the text's first line (a line of a larger file)
    _line_starts: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def _starts(self) -> tuple[int, ...]:
        if not self._line_starts:
            starts = [0]
            find = self.text.find
            pos = find("\n")
            while pos != -1:
                starts.append(pos + 1)
                pos = find("\n", pos + 1)
            object.__setattr__(self, "_line_starts", tuple(starts))
        return self._line_starts

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column of a character offset."""
        from bisect import bisect_right

        starts = self._starts()
        offset = max(0, min(offset, len(self.text)))
        line = bisect_right(starts, offset)
        return line + self.first_line - 1, offset - starts[line - 1] + 1

    def line_text(self, line: int) -> str:
        starts = self._starts()
        line -= self.first_line - 1
        start = starts[line - 1]
        end = starts[line] - 1 if line < len(starts) else len(self.text)
        return self.text[start:end]

    def where(self, offset: int) -> str:
        line, col = self.line_col(offset)
        return f"{self.name}:{line}:{col}"


class SdpError(Exception):
    """Base of every error meant for a user. ``exit_code`` is 2 for bad input, 1 at run time."""

    exit_code = 1

    def format(self) -> str:
        return f"error: {self}"


class UsageError(SdpError):
    """Bad command-line input that is not inside a template."""

    exit_code = 2


_SHOW_MAX = 120  # characters of the offending line shown around the caret


class TemplateError(SdpError):
    """An error in a template, located at a character offset of its source."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        source: Source | None = None,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.offset = offset
        self.hint = hint

    @property
    def location(self) -> str | None:
        if self.source is None:
            return None
        if self.offset is None:
            return self.source.name
        return self.source.where(self.offset)

    def format(self) -> str:
        return _format_located("error", self.message, self.source, self.offset, self.hint)

    def __str__(self) -> str:
        loc = self.location
        return f"{loc}: {self.message}" if loc else self.message


def _format_located(
    kind: str, message: str, source: Source | None, offset: int | None, hint: str | None
) -> str:
    """``FILE:LINE:COL: kind: message``, the line with a caret under the place, the hint."""
    lines = []
    loc = None if source is None else (source.name if offset is None else source.where(offset))
    lines.append(f"{loc}: {kind}: {message}" if loc else f"{kind}: {message}")
    if source is not None and offset is not None:
        line, col = source.line_col(offset)
        text = source.line_text(line)
        # keep the shown line short and printable, even for a 10 MB line
        start = max(0, col - 1 - _SHOW_MAX // 2)
        shown = text[start : start + _SHOW_MAX]
        shown = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in shown)
        caret_col = col - 1 - start
        prefix = "..." if start > 0 else ""
        pad = "".join("\t" if ch == "\t" else " " for ch in shown[:caret_col])
        lines.append(f"    {prefix}{shown}")
        lines.append(f"    {' ' * len(prefix)}{pad}^")
    if hint:
        lines.append(f"hint: {hint}")
    return "\n".join(lines)


@dataclass(frozen=True)
class TemplateWarning:
    """Something in a template that is valid but likely not what was meant (``sdp
    check`` reports it and goes on): located, like an error, and with a hint."""

    message: str
    source: Source | None = None
    offset: int | None = None
    hint: str | None = None

    def format(self) -> str:
        return _format_located("warning", self.message, self.source, self.offset, self.hint)
