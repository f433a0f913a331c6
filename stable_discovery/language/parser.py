"""Text → syntax tree, with the Lark grammar in ``grammar/sdp.lark``.

Every failure becomes a :class:`TemplateError` that names file:line:col, shows the line
with a caret and says what was expected. Brackets are checked before Lark runs, which
gives the friendliest messages (``unclosed '{' opened at 3:14``) and bounds nesting, so
a 10,000-deep input is refused instead of exhausting the stack later on.
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language import peer
from stable_discovery.language.limits import MAX_NESTING, MAX_SPECIAL
from stable_discovery.language.syntax import (
    Alternative,
    Choice,
    Definition,
    Node,
    ParsedTemplate,
    Select,
    SlotRef,
    Text,
    VarRef,
    VarSet,
    Wrap,
)

__all__ = [
    "grammar_path",
    "parse",
    "parse_bare",
    "MAX_NESTING",
    "MAX_SPECIAL",
    "is_definitions_file",
    "blank_comments_and_newlines",
]


_DEFINITION_LINE = re.compile(r"^[ \t]*@?[A-Za-z_][A-Za-z0-9_]*[ \t]*=", re.M)


def grammar_path() -> Path:
    """The grammar file, from an installed wheel or from a source checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_grammar" / "sdp.lark", package.parent / "grammar" / "sdp.lark"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("sdp.lark not found beside the stable_discovery package")


def _cache_dir() -> Path | None:
    """Where built parsers are cached: the user's cache folder, or None if there is none."""
    try:
        if sys.platform == "win32":
            base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        elif sys.platform == "darwin":
            base = str(Path.home() / "Library" / "Caches")
        else:
            xdg = os.environ.get("XDG_CACHE_HOME", "")
            base = xdg if os.path.isabs(xdg) else str(Path.home() / ".cache")
        return Path(base) / "stable-discovery"
    except (RuntimeError, KeyError, OSError):  # no home folder
        return None


_LARK_OPTIONS: dict[str, Any] = {
    "parser": "lalr",
    "lexer": "contextual",
    "maybe_placeholders": False,
}


def _lark_cache_file(grammar: str, start: str) -> str | None:
    """A cache file for one built parser, named by a hash of everything that shapes it:
    a changed grammar, option, Lark or Python version gets a file of its own (and Lark
    checks the same hash inside the file before using it)."""
    folder = _cache_dir()
    if folder is None:
        return None
    import hashlib

    import lark

    key = "\0".join([grammar, start, repr(sorted(_LARK_OPTIONS.items())), lark.__version__, sys.version])
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return str(folder / f"sdp-lark-{start}-{digest}.pickle")


@cache
def _lark(start: str) -> Any:
    """The LALR parser for one entry point, built once per process and cached on disk.

    Loading one from the cache is much faster than building it (bench/RESULTS.md).
    Lark reads and writes the cache file itself and carries on without it when it cannot (a read-only or
    missing folder, a damaged file): the parser is then built as if there were none.
    """
    from lark import Lark

    grammar = grammar_path().read_text(encoding="utf-8")
    cache = _lark_cache_file(grammar, start)
    return Lark(grammar, start=start, cache=cache or False, **_LARK_OPTIONS)


def is_definitions_file(text: str) -> bool:
    """True when some line defines a slot or a setting (``name = …``, ``@name = …``)."""
    return _DEFINITION_LINE.search(text) is not None


# ---------------------------------------------------------------------------------------
# size and bracket pre-checks

_SPECIAL_CHARS = "{}[]|<_\\"
_SPECIAL = re.compile(r"[{}\[\]|<_\\]")


_BAD_VARIABLE = re.compile(r"\$\$|\$\{(?![ \t]*[A-Za-z_][A-Za-z0-9_-]*[ \t]*(?:\??=|:|\}))|\\.")


_NAME_CHAR = r"(?:[^\s_{}\[\]|<>\\#$%()]|[ \t]|_(?!_))"
#: ``__animals/${kind}__``: a wildcard name with a variable in it (dynamicprompts reads it so)
_VARIABLE_IN_NAME = re.compile(rf"\\.|__(?![ \t]){_NAME_CHAR}*(\$\{{)[^{{}}\n]*\}}{_NAME_CHAR}*(?<![ \t])__")


#: ``{-$$a|b}``, ``{$$a|b}``, ``{1-2-3$$…}``: '$$' where a multi-select's count would be
_BAD_MULTI = re.compile(r"[-\d \t]*\$\$")


def _check_variables(source: Source, text: str) -> None:
    """A ``${`` that starts none of dynamicprompts' variable forms is refused here, with
    a hint, before the grammar finds no token for it."""
    if "${" not in text:
        return
    for m in _BAD_VARIABLE.finditer(text):
        if m.group() not in ("$$",) and m.group()[0] == "$":
            raise peer.refuse_bad_variable(m.start(), source)
    for m in _VARIABLE_IN_NAME.finditer(text):
        if m.group(1) is not None:  # not an escape
            raise peer.refuse_variable_in_name(m.start(1), source)


_JINJA = re.compile(r"\\.|#[^\n]*|\{%[^\n]*?%\}")


def _check_jinja(source: Source, text: str) -> None:
    """``{% for … %}``: a Jinja2 statement (dynamicprompts' Jinja templates) would be read
    here as a choice of its text; refused instead."""
    if "{%" not in text:
        return
    for m in _JINJA.finditer(text):
        if m.group().startswith("{%"):
            raise peer.refuse_jinja(m.start(), source)


def _check_size(source: Source, text: str) -> None:
    if sum(text.count(ch) for ch in _SPECIAL_CHARS) <= MAX_SPECIAL:
        return
    for k, m in enumerate(_SPECIAL.finditer(text)):
        if k == MAX_SPECIAL:
            raise TemplateError(
                f"template too large: more than {MAX_SPECIAL:,} choices, slots and "
                "special characters in one template",
                source,
                m.start(),
                hint="put long lists of values in a wildcard file (one value per line)",
            )


#: ``{#name:`` and ``[#name:``: a choice or optional part named for the trace (the
#: ``#`` does not start a comment there)
NAMED_OPENER = r"[{\[]#[A-Za-z_][A-Za-z0-9_]*:"

# escapes and comments are skipped whole; brackets (named ones too) and newlines are the events
_BRACKET_EVENTS = re.compile(NAMED_OPENER + r"|\\[{}\[\]<>|#$_\\]|\\|#[^\n]*|[{}\[\]\n]")
_CLOSER = {"{": "}", "[": "]"}


def _check_brackets(source: Source, text: str, newline_closes: bool) -> None:
    if "{" not in text and "}" not in text and "[" not in text and "]" not in text:
        return
    opens: list[tuple[str, int]] = []
    pairs = {"}": "{", "]": "["}
    for m in _BRACKET_EVENTS.finditer(text):
        ch = m.group()
        if len(ch) > 2 and ch[0] in "{[":
            ch = ch[0]  # {#name: or [#name: opens like { or [
        elif len(ch) != 1 or ch == "\\" or ch == "#":
            continue  # an escape, a lone backslash or a comment
        i = m.start()
        if ch == "\n":
            if newline_closes and opens:
                kind, at = opens[-1]
                line, col = source.line_col(at)
                raise TemplateError(
                    f"unclosed '{kind}' opened at {line}:{col}",
                    source,
                    i,
                    hint=f"close it with '{_CLOSER[kind]}' on the same line, "
                    "or write \\" + kind + " for a literal character",
                )
            continue
        if ch == "{" or ch == "[":
            opens.append((ch, i))
            if len(opens) > MAX_NESTING:
                raise TemplateError(
                    f"nesting deeper than {MAX_NESTING} levels of {{}} and []",
                    source,
                    i,
                    hint="flatten the template, or move inner parts into slots",
                )
        else:
            if not opens:
                raise TemplateError(
                    f"'{ch}' without a matching '{pairs[ch]}'",
                    source,
                    i,
                    hint=f"write \\{ch} for a literal '{ch}'",
                )
            kind, at = opens.pop()
            if kind != pairs[ch]:
                line, col = source.line_col(at)
                raise TemplateError(
                    f"'{kind}' opened at {line}:{col} is closed by '{ch}'",
                    source,
                    i,
                    hint=f"close it with '{_CLOSER[kind]}'",
                )
    if opens:
        kind, at = opens[-1]
        line, col = source.line_col(at)
        raise TemplateError(
            f"unclosed '{kind}' opened at {line}:{col}",
            source,
            len(text),
            hint=f"add the closing '{_CLOSER[kind]}'",
        )


# ---------------------------------------------------------------------------------------
# building the syntax tree from Lark's parse tree


def _merge_texts(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Text):
            if not node.value:
                continue
            if out and isinstance(out[-1], Text):
                prev = out[-1]
                out[-1] = Text(prev.value + node.value, prev.start)
                continue
        out.append(node)
    return out


def _trim(parts: list[Node]) -> tuple[Node, ...]:
    if parts and isinstance(parts[0], Text):
        first = parts[0]
        stripped = first.value.lstrip()
        parts[0] = Text(stripped, first.start + len(first.value) - len(stripped))
    if parts and isinstance(parts[-1], Text):
        last = parts[-1]
        parts[-1] = Text(last.value.rstrip(), last.start)
    return tuple(p for p in parts if not (isinstance(p, Text) and not p.value))


_MULTI = re.compile(
    r"\{[ \t]*(?:(?P<low>\d+)[ \t]*(?:(?P<dash>-)[ \t]*(?P<high>\d*))?|-[ \t]*(?P<only_high>\d+))"
    r"[ \t]*\$\$(?:(?P<joiner>[^${}\\\n]*)\$\$)?"
)


def _select(token_value: str) -> Select:
    m = _MULTI.fullmatch(token_value)
    assert m is not None
    joiner = m.group("joiner")
    joiner = "," if joiner is None else joiner
    if m.group("only_high") is not None:
        return Select(1, int(m.group("only_high")), joiner)
    low = int(m.group("low"))
    if m.group("dash") is None:
        return Select(low, low, joiner)
    high = m.group("high")
    return Select(low, int(high) if high else None, joiner)


def _opener(value: str, kind: str) -> tuple[str | None, Select | None]:
    """The name and the multi-select prefix an opening token carries (``{#colour:``,
    ``{#features: 2$$ and $$``, ``{2$$``, ``{``, ``[``, ``{!2$$``)."""
    label = None
    if kind.startswith("NAMED_"):
        colon = value.index(":")
        label = value[2:colon]
        value = "{" + value[colon + 1 :]
    elif kind.startswith("SAMPLED_"):
        value = "{" + value.lstrip("{ \t")[1:]
    select = _select(value) if kind.endswith("MULTI") else None
    return label, select


class _Builder:
    """Turns Lark's tree into syntax nodes. Iterative: deep input cannot overflow."""

    def __init__(self, source: Source, text: str) -> None:
        self.source = source
        self.text = text

    # token → node ----------------------------------------------------------------------
    def item(self, tok: Any) -> Node:
        kind = tok.type
        value = str(tok)
        start = tok.start_pos
        if kind == "TEXT" or kind == "ANGLE":
            return Text(value, start)
        if kind == "ESCAPE":
            return Text(value[1], start)
        if kind in ("BACKSLASH", "LT", "UNDERSCORE", "BAR", "DOLLARS"):
            return Text(value, start)
        if kind == "SLOT":
            return SlotRef(value[1:-1], start)
        return self.peer_item(kind, value, start)

    def peer_item(self, kind: str, value: str, start: int) -> Node:
        """Tokens of wildcards and of dynamicprompts' forms (:mod:`.peer`)."""
        if kind == "WILDCARD":
            return peer.wildcard_node(value, start, self.source)
        if kind == "WILDCARD_CHOICE":
            return peer.wildcard_choice(value, start, self.source)
        if kind == "WILDCARD_PARAMS":
            raise peer.refuse_params(value, start, self.source)
        if kind == "VAR_REF":
            name, _ = peer.variable_name(value, start, self.source)
            return VarRef(name, None, start)
        raise AssertionError(f"unexpected token {kind}")  # pragma: no cover

    def alternatives(self, children: list[Any], after: int) -> list[Alternative]:
        """Alternatives separated by BAR/CONT tokens; ``after`` is where the first starts."""
        alts: list[Alternative] = []
        start = after
        drop_first_empty = False
        for child in children:
            if getattr(child, "type", None) in ("BAR", "CONT"):
                if not alts or alts[-1] is None:  # pragma: no cover - grammar guarantees
                    pass
                if len(alts) == 1 and child.type == "CONT" and not alts[0].parts:
                    drop_first_empty = True
                start = child.end_pos
                continue
            alts.append(self.alternative(child, start))
        if drop_first_empty:
            alts = alts[1:]
        return alts

    def alternative(self, tree: Any, start: int) -> Alternative:
        weight = 1.0
        parts: list[Node] = []
        text_start = start
        end = start
        for child in tree.children:
            if getattr(child, "type", None) == "WEIGHT":
                weight = float(str(child).strip()[:-2].strip())
                text_start = end = child.end_pos
                continue
            node, child_end = self.node(child)
            parts.append(node)
            end = child_end
        trimmed = _trim(_merge_texts(parts))
        raw = self.text[text_start:end]
        text = raw.strip()
        # errors about an alternative point at its first character, not the space before
        first = text_start + (len(raw) - len(raw.lstrip()) if text else 0)
        return Alternative(trimmed, weight, text, first)

    def node(self, child: Any) -> tuple[Node, int]:
        if hasattr(child, "type"):
            return self.item(child), child.end_pos
        if child.data == "choice":
            return self.choice(child)
        if child.data == "wrap":
            return self.wrap(child)
        if child.data == "variable":
            return self.variable(child)
        if child.data == "optional":
            opener = child.children[0]
            closer = child.children[-1]
            label, _ = _opener(str(opener), opener.type)
            alts = self.alternatives(child.children[1:-1], opener.end_pos)
            empty = Alternative((), 1.0, "", opener.start_pos)
            if len(alts) == 1:
                inner = alts[0]
                present = Alternative(inner.parts, 1.0, inner.text, inner.start)
                if inner.weight != 1.0:
                    present = Alternative(inner.parts, inner.weight, inner.text, inner.start)
            else:
                text = self.text[opener.end_pos : closer.start_pos].strip()
                present = Alternative((Choice(tuple(alts), opener.start_pos),), 1.0, text, opener.end_pos)
            return Choice((empty, present), opener.start_pos, optional=True, label=label), closer.end_pos
        raise AssertionError(child.data)  # pragma: no cover

    def choice(self, child: Any) -> tuple[Node, int]:
        opener = child.children[0]
        closer = child.children[-1]
        if opener.type.startswith("SAMPLED_"):
            method = str(opener).lstrip("{ \t")[0]
            peer.sampling_method(method, self.source, opener.start_pos, "choice")
        if opener.type == "LBRACE":
            bad = _BAD_MULTI.match(self.text, opener.end_pos)
            if bad is not None:
                raise TemplateError(
                    f"'{{{bad.group().strip()}' is not a multi-select: '$$' after '{{' comes after a count "
                    "(2$$, 1-3$$, -3$$, 2-$$)",
                    self.source,
                    opener.start_pos,
                    hint="write the count, {2$$a|b}, or \\$\\$ for the text '$$'",
                )
        label, select = _opener(str(opener), opener.type)
        if select is not None and select.high is not None and select.high < select.low:
            raise TemplateError(
                f"the range {select.low}-{select.high} runs backwards",
                self.source,
                opener.start_pos,
                hint=f"write {{{select.high}-{select.low}$$…}}",
            )
        alts = self.alternatives(child.children[1:-1], opener.end_pos)
        if select is not None:
            self.check_joiner(child.children[1:-1])
        return Choice(tuple(alts), opener.start_pos, select, label=label), closer.end_pos

    def check_joiner(self, children: list[Any]) -> None:
        """``$$`` left in a multi-select's alternatives is a joiner that did not end where
        it was meant to (a joiner cannot contain '$'): refused, not read as text."""
        for tree in children:
            for tok in getattr(tree, "children", ()):
                if getattr(tok, "type", None) == "DOLLARS":
                    raise TemplateError(
                        "'$$' inside a multi-select: a joiner ends at the first '$$' after "
                        "{N$$ and cannot contain '$'",
                        self.source,
                        tok.start_pos,
                        hint="write the joiner without '$' ({2$$ and $$a|b}), or \\$\\$ for the text '$$'",
                    )

    def wrap(self, child: Any) -> tuple[Node, int]:
        """``%{wrapper$$inner}``: both parts as written, spaces kept (dynamicprompts')."""
        opener, closer = child.children[0], child.children[-1]
        sep = next(k for k, c in enumerate(child.children) if getattr(c, "type", None) == "DOLLARS")
        wrapper = _merge_texts([self.node(c)[0] for c in child.children[1:sep]])
        inner = _merge_texts([self.node(c)[0] for c in child.children[sep + 1 : -1]])
        if inner and isinstance(inner[0], Text):  # spaces after '$$' are dropped, as there
            first = inner[0]
            stripped = first.value.lstrip(" \t")
            inner[0] = Text(stripped, first.start + len(first.value) - len(stripped))
            inner = [p for p in inner if not (isinstance(p, Text) and not p.value)]
        return Wrap(tuple(wrapper), tuple(inner), opener.start_pos), closer.end_pos

    def variable(self, child: Any) -> tuple[Node, int]:
        """``${name=value}``, ``${name=!value}`` or ``${name:default}``."""
        opener, closer = child.children[0], child.children[-1]
        name, immediate = peer.variable_name(str(opener), opener.start_pos, self.source)
        parts = [self.node(c)[0] for c in child.children[1:-1]]
        raw = self.text[opener.end_pos : closer.start_pos]
        text = raw.strip()
        first = opener.end_pos + (len(raw) - len(raw.lstrip()) if text else 0)
        value = Alternative(_trim(_merge_texts(parts)), 1.0, text, first)
        if opener.type == "VAR_DEFAULT":
            return VarRef(name, value, opener.start_pos), closer.end_pos
        return VarSet(name, value, immediate, opener.start_pos), closer.end_pos

    # whole files ------------------------------------------------------------------------
    def definitions(self, tree: Any) -> tuple[Definition, ...]:
        out = []
        for stmt in tree.children:
            name_tok, eq_tok, alts_tree = stmt.children
            alts = self.alternatives(alts_tree.children, eq_tok.end_pos)
            out.append(
                Definition(
                    str(name_tok),
                    tuple(alts),
                    stmt.data == "setting",
                    name_tok.start_pos - (1 if stmt.data == "setting" else 0),
                )
            )
        return tuple(out)

    def bare(self, tree: Any) -> tuple[Node, ...]:
        parts = [self.node(child)[0] for child in tree.children]
        return _trim(_merge_texts(parts))


# ---------------------------------------------------------------------------------------
# Lark errors → TemplateError

_TERMINAL_WORDS = {
    "NAME": "a name",
    "EQ": "'='",
    "_AT": "'@'",
    "BAR": "'|'",
    "CONT": "a line starting with '|'",
    "RBRACE": "'}'",
    "RBRACKET": "']'",
    "_NL": "the end of the line",
    "$END": "the end of the file",
}


def _describe_expected(expected: set[str]) -> str:
    words = sorted({_TERMINAL_WORDS.get(t, "") for t in expected} - {""})
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


#: ``name = …`` lines that define slots (not settings)
_SLOT_LINE = re.compile(r"^[ \t]*[A-Za-z_][A-Za-z0-9_]*[ \t]*=", re.M)


def _settings_hint(source: Source) -> str | None:
    """For a file of definitions whose only definitions are ``@settings`` (most likely a
    one-line template with settings added): how to write it."""
    if _SLOT_LINE.search(source.text) is not None:
        return None
    return (
        "a file with @settings is read as definitions, one per line: write the template "
        "as `prompt = …` (only a file without definitions or settings is one template)"
    )


def _definition_hint(source: Source) -> str:
    """The hint for a line of a definitions file that is not a definition."""
    return _settings_hint(source) or "a definition is `name = alternative | alternative`"


def _lark_error(exc: Exception, source: Source, file_mode: bool) -> TemplateError:
    from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

    if isinstance(exc, UnexpectedToken):
        tok = exc.token
        pos = tok.start_pos if tok.start_pos is not None else len(source.text)
        expected = set(exc.expected)
        if tok.type == "$END":
            # Lark's $END token borrows the last token's position: report the real end
            return TemplateError(
                f"unexpected end of input, expected {_describe_expected(expected)}",
                source,
                len(source.text),
            )
        if file_mode and {"EQ"} >= expected:
            return TemplateError(
                f"expected '=' after the name {source.text[_line_start(source, pos) : pos].strip()!r}",
                source,
                pos,
                hint=_definition_hint(source),
            )
        return TemplateError(
            f"unexpected {str(tok)!r}, expected {_describe_expected(expected)}",
            source,
            pos,
            hint=_settings_hint(source) if file_mode else None,
        )
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream if exc.pos_in_stream is not None else len(source.text)
        char = source.text[pos : pos + 1]
        allowed = set(exc.allowed or ())
        if file_mode and ("NAME" in allowed or "EQ" in allowed):
            if "EQ" in allowed:
                return TemplateError(
                    "expected '=' after the name",
                    source,
                    pos,
                    hint=_definition_hint(source),
                )
            return TemplateError(
                "expected a definition `name = …` or a setting `@name = …`",
                source,
                pos,
                hint=_settings_hint(source)
                or "to continue the previous definition, start the line with '|'; "
                "names are letters, digits and '_'",
            )
        return TemplateError(
            f"unexpected character {char!r}",
            source,
            pos,
            hint=_settings_hint(source) if file_mode else None,
        )
    if isinstance(exc, UnexpectedEOF):
        return TemplateError("unexpected end of input", source, len(source.text))
    return TemplateError(f"cannot parse: {exc}", source, 0)


def _line_start(source: Source, pos: int) -> int:
    return source.text.rfind("\n", 0, pos) + 1


# ---------------------------------------------------------------------------------------
# entry points

_COMMENT_OR_ESCAPE = re.compile(NAMED_OPENER + r"|\\[{}\[\]<>|#$_\\]|#[^\n]*")


def blank_comments_and_newlines(text: str) -> str:
    """For bare templates (and values written over several lines): comments become
    spaces, newlines become spaces (offsets kept)."""

    def repl(m: re.Match[str]) -> str:
        s = m.group(0)
        return s if s[0] != "#" else " " * len(s)

    if "#" in text:
        text = _COMMENT_OR_ESCAPE.sub(repl, text)
    return text.replace("\n", " ")


def parse_bare(source: Source, text: str | None = None) -> tuple[Node, ...]:
    """Parse one template (no definitions): newlines are spaces, '|' outside braces is text.

    Templates in the common subset (text, choices, weights, slots, wildcards) are parsed
    by :mod:`stable_discovery.language.fastparse`; the rest, and every error, by Lark.
    """
    prepared = blank_comments_and_newlines(source.text if text is None else text)
    from stable_discovery.language.fastparse import parse_bare_fast

    fast = parse_bare_fast(prepared)
    if fast is not None:  # the common subset, without Lark (same nodes)
        return fast
    return _parse_bare_lark(source, prepared)


def _parse_bare_lark(source: Source, prepared: str) -> tuple[Node, ...]:
    """``parse_bare`` by Lark alone, on text whose comments and newlines are blanked."""
    _check_size(source, prepared)
    _check_brackets(source, prepared, newline_closes=False)
    _check_variables(source, prepared)
    from lark.exceptions import LarkError

    try:
        tree = _lark("bare").parse(prepared)
    except LarkError as exc:
        raise _lark_error(exc, source, file_mode=False) from None
    return _Builder(source, prepared).bare(tree)


def parse(source: Source) -> ParsedTemplate:
    """Parse a template file: definitions, or one bare template when it has none."""
    from lark.exceptions import LarkError

    _check_jinja(source, source.text)
    if not is_definitions_file(source.text):
        if not blank_comments_and_newlines(source.text).strip():
            raise TemplateError(
                "the template is empty (nothing but spaces and comments)",
                source,
                0,
                hint="write a prompt, such as `a {cat|dog} in the snow`, or definitions ending in "
                "`prompt = …`",
            )
        return ParsedTemplate((), parse_bare(source))
    _check_size(source, source.text)
    _check_brackets(source, source.text, newline_closes=True)
    _check_variables(source, source.text)
    try:
        tree = _lark("file").parse(source.text)
    except LarkError as exc:
        raise _lark_error(exc, source, file_mode=True) from None
    return ParsedTemplate(_Builder(source, source.text).definitions(tree))
