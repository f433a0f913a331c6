"""A hand-written parser for the common subset of bare templates (wildcard lines).

Most lines of a wildcard file are plain text with a few inline choices, weights, slot
references and wildcard references. This module parses such lines with a few
regular-expression searches, much faster than Lark's LALR parser (figures in
bench/RESULTS.md, "Wildcard parse + compile").

:func:`parse_bare_fast` returns *exactly* the syntax nodes :func:`parser.parse_bare`
gives for the same (prepared) text: the same :class:`~stable_discovery.language.syntax.Text`,
:class:`SlotRef`, :class:`WildcardRef`, :class:`Choice` and :class:`Alternative` values
with the same offsets, weights, trimming and merging of text. It covers:

* literal text, including ``|`` outside braces, a lone ``_`` or ``<``, and ``<…>`` that is
  not a slot (``<lora:name:0.5>``);
* ``{a|b|c}``, nested, with a weight ``N::`` at the start of an alternative;
* ``<slot>`` and ``__wildcard__`` references.

On anything else it returns ``None`` and the caller falls back to Lark, so every error
message still comes from one place: ``[`` ``]`` (optional parts), backslashes, ``#``,
newlines, ``$$`` (multi-selects ``{2$$…}`` and malformed ones), dynamicprompts' forms (``${…}``, ``%{…}``,
``{~…}``, ``__~name__``, ``__a/{b|c}__``, ``__name(x=y)__``), unbalanced braces, nesting deeper than
:data:`parser.MAX_NESTING`, or more text than :data:`parser.MAX_SPECIAL` characters.

The token patterns below are the grammar's (``grammar/sdp.lark``; a test checks that
they stay identical) and are tried in the order Lark's contextual lexer tries them: the
weight first at the start of an alternative, then the priority-3 terminals (slot,
wildcard, multi-select), then ``<…>`` text, then single characters.
"""

from __future__ import annotations

import re

from stable_discovery.language.limits import MAX_NESTING, MAX_SPECIAL
from stable_discovery.language.syntax import Alternative, Choice, Node, SlotRef, Text, WildcardRef

__all__ = ["parse_bare_fast"]

# the grammar's terminals (grammar/sdp.lark), verbatim
SLOT_RE = r"<[A-Za-z_][A-Za-z0-9_]*>"
ANGLE_RE = r"<[^<>{}\[\]|\\#\n]*>"
WILDCARD_RE = (
    r"__(?:[^\s_{}\[\]|<>\\#$%()]|_(?!_))(?:(?:[^\s_{}\[\]|<>\\#$%()]|[ \t]|_(?!_))*"
    r"(?:[^\s_{}\[\]|<>\\#$%()]|_(?!_)))?__"
)
WILDCARD_CHOICE_RE = (
    r"__(?:(?:[^\s_{}\[\]|<>\\#$%()]|[ \t]|_(?!_))*\{[^{}\n#]*\})+"
    r"(?:[^\s_{}\[\]|<>\\#$%()]|[ \t]|_(?!_))*__"
)
WILDCARD_PARAMS_RE = r"__(?:[^\s_{}\[\]|<>\\#$%()]|[ \t]|_(?!_))+\([^()\n]*\)__"
SAMPLED_LBRACE_RE = r"\{[ \t]*[~@!]"
MULTI_RE = r"\{[ \t]*(?:\d+[ \t]*(?:-[ \t]*\d*)?|-[ \t]*\d+)[ \t]*\$\$(?:[^${}\\\n]*\$\$)?"
WEIGHT_RE = r"[ \t]*(?:\d+(?:\.\d*)?|\.\d+)[ \t]*::"

_slot = re.compile(SLOT_RE).match
_angle = re.compile(ANGLE_RE).match
_wildcard = re.compile(WILDCARD_RE).match
# wildcard forms the fast parser leaves to Lark: choices of names, parameters
_wildcard_other = re.compile(WILDCARD_CHOICE_RE + "|" + WILDCARD_PARAMS_RE).match
_sampled = re.compile(SAMPLED_LBRACE_RE).match
_multi = re.compile(MULTI_RE).match
_weight = re.compile(WEIGHT_RE).match


def _read_weight(text: str, i: int) -> tuple[float, int]:
    """The weight ``N::`` at an alternative's start (1 when there is none) and where the
    alternative's text begins."""
    w = _weight(text, i)
    if w is None:
        return 1.0, i
    return float(w.group().strip()[:-2].strip()), w.end()


# characters outside the subset: optional parts, escapes, comments, newlines, the
# variables ${…} and wraps %{…} of dynamicprompts, and '$$' (a multi-select's mark)
_outside = re.compile(r"[\[\]\\#\n]|[$%]\{|\$\$").search
# the next character with a meaning; '|' is text outside braces
_next_top = re.compile(r"[{}<_]").search
_next_in = re.compile(r"[{}|<_]").search


def _trim(parts: list[Node]) -> tuple[Node, ...]:
    """``parser._trim`` for parts whose texts are already merged and non-empty."""
    if not parts:
        return ()
    first = parts[0]
    if type(first) is Text:
        value = first.value
        stripped = value.lstrip()
        if len(stripped) != len(value):
            parts[0] = Text(stripped, first.start + len(value) - len(stripped))
    last = parts[-1]
    if type(last) is Text:
        value = last.value
        stripped = value.rstrip()
        if len(stripped) != len(value):
            parts[-1] = Text(stripped, last.start)
    if (type(parts[0]) is Text and not parts[0].value) or (type(parts[-1]) is Text and not parts[-1].value):
        return tuple(p for p in parts if not (type(p) is Text and not p.value))
    return tuple(parts)


def _alternative(text: str, parts: list[Node], weight: float, start: int, seg: int, end: int) -> Alternative:
    """The alternative whose items (after any weight) run from ``start`` to ``end``:
    ``parts`` so far, then the text from ``seg``."""
    raw = text[start:end]
    stripped = raw.strip()
    if not stripped:  # blank: no reference or choice in it, nothing left once trimmed
        return Alternative((), weight, "", start)
    first = start + len(raw) - len(raw.lstrip())
    if not parts:  # text alone (the common case): trimmed, it is the alternative's text
        return Alternative((Text(stripped, first),), weight, stripped, first)
    if seg < end:
        parts.append(Text(text[seg:end], seg))
    return Alternative(_trim(parts), weight, stripped, first)


def parse_bare_fast(text: str) -> tuple[Node, ...] | None:  # noqa: C901 - the hot path: one scanning loop (bench/RESULTS.md)
    """The nodes ``parse_bare`` gives for ``text`` (comments and newlines already
    blanked), or ``None`` when ``text`` is outside the subset this parser covers."""
    if len(text) > MAX_SPECIAL or _outside(text) is not None:
        return None
    # one frame per open '{': (its offset, its alternatives so far, and the enclosing
    # alternative's parts, start and weight)
    stack: list[tuple[int, list[Alternative], list[Node], int, float]] = []
    parts: list[Node] = []  # the current alternative's parts (the template's at the top)
    seg = 0  # where the current run of literal text began
    alt_start = 0  # where the current alternative's items begin (after its weight)
    weight = 1.0
    search = _next_top
    i = 0
    while True:
        m = search(text, i)
        if m is None:
            break
        j = m.start()
        ch = text[j]
        if ch == "_":
            if _wildcard_other(text, j) is not None:
                return None
            w = _wildcard(text, j)
            if w is None:
                i = j + 1  # a lone '_' is text
                continue
            if text[j + 2] in "~@!":  # dynamicprompts' sampling method
                return None
            if seg < j:
                parts.append(Text(text[seg:j], seg))
            i = seg = w.end()
            parts.append(WildcardRef(text[j + 2 : i - 2], j))
        elif ch == "<":
            s = _slot(text, j)
            if s is None:
                a = _angle(text, j)  # <lora:x:0.5> and a lone '<' are text
                i = j + 1 if a is None else a.end()
                continue
            if seg < j:
                parts.append(Text(text[seg:j], seg))
            i = seg = s.end()
            parts.append(SlotRef(text[j + 1 : i - 1], j))
        elif ch == "{":
            if len(stack) >= MAX_NESTING or _multi(text, j) is not None or _sampled(text, j) is not None:
                return None
            if seg < j:
                parts.append(Text(text[seg:j], seg))
            stack.append((j, [], parts, alt_start, weight))
            parts = []
            i = j + 1
            weight, i = _read_weight(text, i)
            alt_start = seg = i
            search = _next_in
        elif ch == "|":  # only searched for inside braces
            stack[-1][1].append(_alternative(text, parts, weight, alt_start, seg, j))
            parts = []
            i = j + 1
            weight, i = _read_weight(text, i)
            alt_start = seg = i
        else:  # '}'
            if not stack:
                return None
            opened, alts, outer, outer_start, outer_weight = stack.pop()
            alts.append(_alternative(text, parts, weight, alt_start, seg, j))
            outer.append(Choice(tuple(alts), opened))
            parts, alt_start, weight = outer, outer_start, outer_weight
            i = seg = j + 1
            if not stack:
                search = _next_top
    if stack:
        return None
    if seg < len(text):
        parts.append(Text(text[seg:], seg))
    return _trim(parts)
