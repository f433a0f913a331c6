"""``sdp convert --from dynamicprompts``: a dynamicprompts template as the equivalent
``.sdp`` template file.

The template is read as dynamicprompts 0.31 reads it and written so that this language
reads the same: text that has a meaning here is escaped (A1111's ``[x]``, ``<word>``,
backslashes before a character with a meaning, ``|`` outside braces, an unmatched
``}``); comments are left out (``#`` always; ``//`` and ``/* */`` where dynamicprompts
takes them for comments: at the start, or right after a construct); the lines are
joined (a template is one line of a definitions file); a variable set with ``!``
(``${animal=!{cat|dog}}``, chosen once) becomes the slot ``animal = cat | dog`` and its
uses ``<animal>``. The wrap command, the variables set without ``!`` and everything else
are written as they are: this language reads them the same. A template that uses
wildcards gets ``@wildcard_lines = literal``: its wildcard files are read as
dynamicprompts reads them (``<…>``, ``[…]`` and a lone brace are text).

What has no equivalent here is refused, at its place in the dynamicprompts template
(:mod:`.peer`): the sampling methods ``~`` and ``@``, wildcard parameters, a variable in
a wildcard name. Where only the spaces differ (dynamicprompts keeps the spaces at the
end of an alternative, ``x{a |b}y`` gives ``xa y``; here alternatives are trimmed), a
warning says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from stable_discovery.errors import Source, TemplateError, TemplateWarning
from stable_discovery.language import peer

__all__ = ["from_dynamicprompts"]

_ESCAPABLE = set("{}[]<>|#$_\\%~@!")
_SLOT_LIKE = re.compile(r"<[A-Za-z_][A-Za-z0-9_]*>")
_VARIANT_HEAD = re.compile(r"\{[ \t\n]*([~@!])?(?:(\d+-\d+|\d+-|-\d+|\d+)\$\$(?:([^${}]+)\$\$)?)?[ \t\n]*")
_JINJA = re.compile(r"\{%[^\n]*?%\}")
_VARIABLE = re.compile(r"\$\{[ \t\n]*([A-Za-z_-][A-Za-z0-9_-]*)[ \t\n]*(?:(\??=)(!)?|(:)|(?=\}))[ \t\n]*")
_WEIGHT = re.compile(r"[ \t\n]*(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::")
_NAME_BAD = re.compile(r"[\[\]<>\\]")


@dataclass
class _Converter:
    source: Source
    slots: dict[str, str] = field(default_factory=dict)  # ${x=!…}: x → its definition
    warnings: list[TemplateWarning] = field(default_factory=list)
    wildcards: bool = False  # the template refers to wildcards

    @property
    def text(self) -> str:
        return self.source.text

    def error(self, message: str, at: int, hint: str | None = None) -> TemplateError:
        return TemplateError(message, self.source, at, hint)

    # runs of chunks ---------------------------------------------------------------------
    def seq(self, i: int, ctx: str) -> tuple[str, int]:
        """Chunks from ``i`` to the end of the context: ``top`` (the template), ``alt``
        (an alternative: ``|`` or ``}``), ``wrapper`` (``$$``), ``inner``/``value``
        (``}``). The converted text and where it stopped."""
        text, out, boundary = self.text, [], True
        while i < len(text):
            c = text[i]
            if (
                c == "}"
                and ctx != "top"
                or c == "|"
                and ctx == "alt"
                or ctx == "wrapper"
                and text.startswith("$$", i)
            ):
                break
            skipped = self.comment(i, ctx, boundary)
            if skipped is not None:
                i = skipped
                continue
            piece = self.construct(i, ctx)
            if piece is not None:
                converted, i = piece
                out.append(converted)
                boundary = True
                continue
            out.append(self.char(i, ctx))
            boundary = boundary and c in " \t\n"
            i += 1
        return "".join(out), i

    def comment(self, i: int, ctx: str, boundary: bool) -> int | None:
        """Where a comment starting at ``i`` ends (None: no comment there)."""
        text = self.text
        if text[i] == "#":
            if ctx != "top":
                raise self.error(
                    "'#' inside a construct: dynamicprompts reads the rest of the line as a comment, "
                    "and cannot read this template either",
                    i,
                    hint="remove the '#', or move the comment after the end of the template",
                )
            end = text.find("\n", i)
            return len(text) if end == -1 else end
        if boundary and ctx == "top" and text.startswith("//", i):
            end = text.find("\n", i)
            return len(text) if end == -1 else end
        if boundary and ctx == "top" and text.startswith("/*", i) and "*/" in text[i + 2 :]:
            return text.index("*/", i + 2) + 2
        return None

    def construct(self, i: int, ctx: str) -> tuple[str, int] | None:
        text = self.text
        if text.startswith("${", i):
            return self.variable(i, ctx)
        if text.startswith("%{", i):
            return self.wrap(i)
        if text.startswith("{%", i) and _JINJA.match(text, i):
            raise peer.refuse_jinja(i, self.source)
        if text[i] == "{":
            return self.variant(i)
        if text.startswith("__", i):
            return self.wildcard(i)
        return None

    def char(self, i: int, ctx: str) -> str:
        """One character of literal text, as this language writes it."""
        text = self.text
        c = text[i]
        if c in "[]":
            return "\\" + c
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            return "\\\\" if nxt in _ESCAPABLE or nxt == "" else "\\"
        if c == "<" and _SLOT_LIKE.match(text, i):
            return "\\<"
        if c == "|" or c == "}":  # text in dynamicprompts where they can be (top level)
            return "\\" + c
        if c == "\n":
            return " "
        return c

    # constructs -------------------------------------------------------------------------
    def variant(self, i: int) -> tuple[str, int]:
        """``{…}``, with dynamicprompts' sampling method and multi-select prefix."""
        head = _VARIANT_HEAD.match(self.text, i)
        assert head is not None
        method, bound, joiner = head.groups()
        if method is not None:
            peer.sampling_method(method, self.source, i, "choice")
        prefix = "{"
        if bound is not None:
            if joiner is not None and "\\" in joiner:
                raise self.error("a multi-select joiner with '\\' has no equivalent here", head.start(3))
            prefix += bound + "$$" + (joiner + "$$" if joiner is not None else "")
        alts, j, spaced = [], head.end(), False
        while True:
            start = j
            alt, j = self.seq(j, "alt")
            raw = self.text[start:j]
            spaced = spaced or (raw.strip() != "" and raw != raw.rstrip())
            alts.append(alt.strip())
            if j >= len(self.text):
                raise self.error("unclosed '{': dynamicprompts cannot read this template either", i)
            if self.text[j] == "}":
                break
            j += 1  # '|'
        end = j + 1
        self.adjacent(i, end, spaced)
        return prefix + "|".join(alts) + "}", end

    def adjacent(self, start: int, end: int, spaced: bool) -> None:
        """Warn when dynamicprompts would keep an alternative's trailing space against
        the next text (here it is trimmed)."""
        nxt = self.text[end : end + 1]
        if spaced and nxt and not nxt.isspace():
            self.warnings.append(
                TemplateWarning(
                    "an alternative here ends with spaces, which dynamicprompts keeps against the text "
                    "after the '}' (x{a |b}y gives 'xa y' there); here alternatives are trimmed ('xay')",
                    self.source,
                    start,
                    hint="put the space outside the braces if every alternative needs it: x{a|b} y",
                )
            )

    def wildcard(self, i: int) -> tuple[str, int]:
        text = self.text
        end = text.find("__", i + 2)
        while end != -1 and text.count("{", i, end) != text.count("}", i, end):
            end = text.find("__", end + 1)
        if end == -1:
            raise self.error("'__' starts a wildcard in dynamicprompts, and this one is not closed", i)
        path = text[i + 2 : end]
        if path[:1] in ("~", "@", "!"):
            peer.sampling_method(path[0], self.source, i + 2, "wildcard")
            path = path[1:]
        if "(" in path:
            raise peer.refuse_params(text[i : end + 2], i, self.source)
        if "${" in path:
            raise peer.refuse_variable_in_name(i + 2 + path.index("${"), self.source)
        bad = _NAME_BAD.search(path)
        if bad is not None:
            raise self.error(f"{bad.group()!r} cannot be part of a wildcard name here", i + 2 + bad.start())
        self.wildcards = True
        return "__" + path + "__", end + 2

    def wrap(self, i: int) -> tuple[str, int]:
        j = i + 2
        while self.text[j : j + 1] in (" ", "\t", "\n"):
            j += 1
        wrapper, j = self.seq(j, "wrapper")
        if not self.text.startswith("$$", j):
            raise self.error("a wrap %{…$$…} without '$$': dynamicprompts cannot read it either", i)
        inner, j = self.seq(j + 2, "inner")
        if j >= len(self.text):
            raise self.error("unclosed '%{': dynamicprompts cannot read this template either", i)
        return "%{" + wrapper + "$$" + inner.lstrip() + "}", j + 1

    def variable(self, i: int, ctx: str) -> tuple[str, int]:
        m = _VARIABLE.match(self.text, i)
        if m is None:
            raise peer.refuse_bad_variable(i, self.source)
        name, sets, immediate, default = m.groups()
        peer.variable_name(self.text[i : m.end()], i, self.source)
        if sets is None and default is None:  # ${name}
            end = self.text.index("}", m.end()) + 1
            return (f"<{name}>" if name in self.slots else f"${{{name}}}"), end
        value, j = self.seq(m.end(), "value")
        if j >= len(self.text):
            raise self.error("unclosed '${': dynamicprompts cannot read this template either", i)
        value = value.strip()
        if default is not None:
            return (f"<{name}>" if name in self.slots else f"${{{name}:{value}}}"), j + 1
        if ctx != "top":
            raise self.error(
                "a variable set inside a construct: dynamicprompts cannot read this template either", i
            )
        if immediate is None:
            return f"${{{name}={value}}}", j + 1
        self.slots[name] = _definition(value)
        return "", j + 1


def _definition(value: str) -> str:
    """The alternatives of the slot a ``${name=!value}`` becomes: those of the value when
    it is one choice, ``{a|b}`` → ``a | b``."""
    if value.startswith("{") and value.endswith("}") and _one_choice(value):
        return " | ".join(value[1:-1].split("|")) if "|" in value else _unweighted(value[1:-1])
    return _unweighted(value)


def _one_choice(value: str) -> bool:
    """Whether ``value`` is one plain ``{…}`` (not a multi-select), whose top-level '|'
    are the only ones in it."""
    if re.match(r"\{[ \t]*(?:\d|-\d)[^{}]*\$\$", value):
        return False
    depth = 0
    for k, ch in enumerate(value):
        if ch == "\\":
            continue
        depth += ch == "{"
        depth -= ch == "}"
        if depth == 0 and k != len(value) - 1:
            return False
    return "|" not in _nested(value[1:-1])


def _nested(text: str) -> str:
    """The parts of ``text`` inside braces (to find '|' that are not top-level)."""
    out, depth = [], 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth > 0:
            out.append(ch)
    return "".join(out)


def _unweighted(text: str) -> str:
    """A text that must not start with what reads as a weight here (``3:: x``)."""
    return "{}" + text if _WEIGHT.match(text) else text


def from_dynamicprompts(source: Source) -> tuple[str, list[TemplateWarning]]:
    """The ``.sdp`` template file equivalent to a dynamicprompts template, and what to
    know about it (warnings); an error at its place for what has no equivalent."""
    conv = _Converter(source)
    prompt, end = conv.seq(0, "top")
    assert end == len(source.text)
    prompt = " ".join(prompt.split())
    lines = [f"# {source.name}, converted from dynamicprompts (sdp convert --from dynamicprompts)"]
    if conv.wildcards:  # as dynamicprompts reads them: <…>, […] and a lone brace are text
        lines.append("@wildcard_lines = literal")
    lines.extend(f"{name} = {definition}" for name, definition in conv.slots.items())
    lines.append(f"prompt = {_unweighted(prompt)}".rstrip())
    return "\n".join(lines) + "\n", conv.warnings
