"""Wildcard files in YAML and JSON: the nested-mapping format of dynamicprompts and the
ComfyUI Impact Pack.

Each path of keys down to a list (or a single string) is a wildcard name, below the
folder the file is in::

    # wildcards/animals.yaml           __mammals/cats__ is `tabby` or `siamese`
    mammals:
      cats: [tabby, siamese]
      dogs:
        - 2:: beagle                  # a weight, as on a line of a .txt file
        - {text: poodle, weight: 3}   # dynamicprompts' weighted item

A file whose top level is a list is one wildcard, named after the file (as a .txt
file is). Items are the lines: a string is a line; a number or a word like ``yes`` is
the text as written; ``{text: …, weight: N}`` (or ``content:``) is a line with a weight;
empty items are skipped. Each line keeps the line number where it is written, so that
errors in it point there.

Reading only, never a construct that runs code: YAML is read with PyYAML's safe loader
(node by node, to keep the positions) and JSON with a small reader of its own that keeps
them too.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any, NamedTuple

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.parser import blank_comments_and_newlines

__all__ = ["StructuredLine", "read_structured", "STRUCTURED_SUFFIXES"]

#: The suffixes of structured wildcard files (lower case).
STRUCTURED_SUFFIXES = (".yaml", ".yml", ".json")

#: Deepest nesting of mappings and lists read (deeper input is refused, not recursed).
MAX_DEPTH = 64


class StructuredLine(NamedTuple):
    """An item of a structured file: its text (a template line, as on a .txt line), the
    weight it was given as ``{text:, weight:}`` (None: none, the text may carry ``N::``),
    and where it is written (1-based line and column of its first character)."""

    text: str
    weight: float | None
    line: int
    column: int


# A structured file read into a small tree, the same for YAML and JSON:
# ("map", [(key, node), ...], line, col) | ("seq", [node, ...]) | ("scalar", text, line, col) | ("null",)
_Node = tuple


#: The lines of one key path, or the error in them (reported when the wildcard is used).
Lines = list[StructuredLine] | TemplateError


def read_structured(name: str, text: str, suffix: str) -> dict[tuple[str, ...], Lines]:
    """Every key path of a structured wildcard file → its lines; ``()`` for a file whose
    top level is a list. ``name`` is the file's path, for errors."""
    tree = _read_yaml(name, text) if suffix in (".yaml", ".yml") else _read_json(name, text)
    source = Source(name, text)
    out: dict[tuple[str, ...], Lines] = {}
    if tree[0] == "seq":
        lines = _lines(tree, source)
        if lines:
            out[()] = lines
    elif tree[0] == "map":
        _walk(tree, source, out)
    return out


def _lines(node: _Node, source: Source) -> Lines:
    try:
        return list(_items(node, source))
    except TemplateError as exc:
        return exc


def _walk(tree: _Node, source: Source, out: dict[tuple[str, ...], Lines]) -> None:
    stack: list[tuple[_Node, tuple[str, ...]]] = [(tree, ())]
    while stack:
        node, path = stack.pop()
        for key, value in reversed(node[1]):
            key_path = path + (key,)
            if value[0] == "map":
                stack.append((value, key_path))
                continue
            lines = _lines(value, source)
            if lines:
                out[key_path] = lines


def _items(node: _Node, source: Source) -> Iterator[StructuredLine]:
    """The lines of a list (or of a single string) in a structured file."""
    items = node[1] if node[0] == "seq" else [node]
    for item in items:
        if item[0] == "scalar":
            _, text, line, col = item
            if text.strip():
                yield StructuredLine(_one_line(text), None, line, col)
        elif item[0] == "map":
            fields = dict(item[1])
            body = fields.get("text") or fields.get("content")
            if body is None or body[0] != "scalar":
                raise _not_a_line(item, source)
            if not body[1].strip():
                continue
            weight = fields.get("weight")
            value = 1.0 if weight is None or weight[0] != "scalar" else _weight(weight, source)
            yield StructuredLine(_one_line(body[1]), value, body[2], body[3])


def _not_a_line(item: _Node, source: Source) -> TemplateError:
    """A mapping in a list that is not ``{text: …, weight: N}``: in YAML, most often a
    line with a weight written without quotes (``- 2:: beagle`` is ``{"2:": "beagle"}``)."""
    offset = _offset(source.text, item[2] - 1, item[3] - 1)
    return TemplateError(
        "a line of a wildcard list must be a text, or {text: …, weight: N}, not a mapping",
        source,
        offset,
        hint="in YAML, put a line with ':' (such as a weight 'N:: text') in quotes: - '2:: text'",
    )


def _weight(node: _Node, source: Source) -> float:
    """A ``weight:`` given to an item: a number, not negative."""
    try:
        value = float(node[1])
    except ValueError:
        value = -1.0
    if not value >= 0:
        offset = _offset(source.text, node[2] - 1, node[3] - 1)
        raise TemplateError(f"a weight must be a number, 0 or more, got {node[1]!r}", source, offset)
    return value


def _one_line(text: str) -> str:
    """A value written over several lines (a YAML block) is one template: a ``#``
    comment ends at the end of its own line (as in a template file, and as
    dynamicprompts reads it), then the newlines are spaces."""
    if "\n" not in text:
        return text
    return blank_comments_and_newlines(text.replace("\r\n", " \n"))


# ---------------------------------------------------------------------------------------
# YAML


def _read_yaml(name: str, text: str) -> _Node:
    try:
        import yaml
    except ImportError:  # pragma: no cover - a dependency; a broken install
        raise TemplateError(
            "reading YAML wildcard files needs PyYAML", Source(name, text), 0, hint="pip install pyyaml"
        ) from None
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader_class)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        offset = _offset(text, mark.line, mark.column) if mark is not None else 0
        raise TemplateError(f"not valid YAML: {exc.problem or exc}", Source(name, text), offset) from None
    except yaml.YAMLError as exc:
        raise TemplateError(f"not valid YAML: {exc}", Source(name, text), 0) from None
    if root is None:
        return ("null",)
    return _yaml_tree(root, Source(name, text))


def _yaml_tree(root: Any, source: Source) -> _Node:
    """PyYAML's node graph as the small tree (iteratively; aliases are followed once per
    place, and a graph nested deeper than MAX_DEPTH is refused)."""
    import yaml

    def convert(node: Any, depth: int) -> _Node:
        if depth > MAX_DEPTH:
            offset = _offset(source.text, node.start_mark.line, node.start_mark.column)
            raise TemplateError(f"nested deeper than {MAX_DEPTH} levels", source, offset)
        if isinstance(node, yaml.MappingNode):
            pairs = []
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "" and k.tag != "tag:yaml.org,2002:null":
                    pairs.append((str(k.value), convert(v, depth + 1)))
            return ("map", pairs, node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.SequenceNode):
            return ("seq", [convert(v, depth + 1) for v in node.value])
        if node.tag == "tag:yaml.org,2002:null":
            return ("null",)
        quote = 1 if node.style in ("'", '"') else 0
        return ("scalar", str(node.value), node.start_mark.line + 1, node.start_mark.column + 1 + quote)

    return convert(root, 0)


def _offset(text: str, line: int, column: int) -> int:
    """The character offset of a 0-based line and column."""
    pos = 0
    for _ in range(line):
        nxt = text.find("\n", pos)
        if nxt == -1:
            return len(text)
        pos = nxt + 1
    return min(pos + column, len(text))


# ---------------------------------------------------------------------------------------
# JSON: the standard reader keeps no positions, so a small one that does.

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WORDS = {"true": ("scalar", "true"), "false": ("scalar", "false"), "null": ("null",)}


class _Json:
    def __init__(self, name: str, text: str) -> None:
        self.source = Source(name, text)
        self.text = text
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def error(self, message: str, pos: int) -> TemplateError:
        return TemplateError(f"not valid JSON: {message}", self.source, pos)

    def where(self, pos: int) -> tuple[int, int]:
        line = bisect_right(self.starts, pos)
        return line, pos - self.starts[line - 1] + 1

    def skip(self, pos: int) -> int:
        m = _WS.match(self.text, pos)
        return m.end() if m else pos

    def value(self, pos: int, depth: int) -> tuple[_Node, int]:
        if depth > MAX_DEPTH:
            raise self.error(f"nested deeper than {MAX_DEPTH} levels", pos)
        pos = self.skip(pos)
        ch = self.text[pos : pos + 1]
        if ch == "{":
            return self.container(pos + 1, depth, "}")
        if ch == "[":
            return self.container(pos + 1, depth, "]")
        if ch == '"':
            text, end = self.string(pos)
            line, col = self.where(pos + 1)
            return ("scalar", text, line, col), end
        for word, node in _WORDS.items():
            if self.text.startswith(word, pos):
                line, col = self.where(pos)
                return (node + (line, col) if node[0] == "scalar" else node), pos + len(word)
        m = _NUMBER.match(self.text, pos)
        if m is None:
            raise self.error("expected a value", pos)
        line, col = self.where(pos)
        return ("scalar", m.group(), line, col), m.end()

    def string(self, pos: int) -> tuple[str, int]:
        try:
            return json.decoder.scanstring(self.text, pos + 1)  # type: ignore[attr-defined,no-any-return]  # a public function of json.decoder, untyped in typeshed
        except json.JSONDecodeError as exc:
            raise self.error(exc.msg, exc.pos) from None

    def container(self, pos: int, depth: int, close: str) -> tuple[_Node, int]:
        items: list[Any] = []
        line, col = self.where(pos - 1)
        pos = self.skip(pos)
        if self.text[pos : pos + 1] == close:
            return self.node(close, items, line, col), pos + 1
        while True:
            if close == "}":
                pos = self.skip(pos)
                if self.text[pos : pos + 1] != '"':
                    raise self.error("expected a key in double quotes", pos)
                key, pos = self.string(pos)
                pos = self.skip(pos)
                if self.text[pos : pos + 1] != ":":
                    raise self.error("expected ':'", pos)
                node, pos = self.value(pos + 1, depth + 1)
                items.append((key, node))
            else:
                node, pos = self.value(pos, depth + 1)
                items.append(node)
            pos = self.skip(pos)
            ch = self.text[pos : pos + 1]
            if ch == close:
                return self.node(close, items, line, col), pos + 1
            if ch != ",":
                raise self.error(f"expected ',' or '{close}'", pos)
            pos += 1

    @staticmethod
    def node(close: str, items: list[Any], line: int, col: int) -> _Node:
        return ("map", items, line, col) if close == "}" else ("seq", items)


def _read_json(name: str, text: str) -> _Node:
    reader = _Json(name, text)
    tree, end = reader.value(0, 0)
    end = reader.skip(end)
    if end != len(text):
        raise reader.error("extra text after the value", end)
    return tree
