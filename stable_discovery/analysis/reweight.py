"""Learned weights written into a compiled template: every traced variable where it is
written, in the template's text and in its wildcard files.

:func:`reweight` is what ``sdp refine`` and the ``exploit`` sampler share. For each
variable of the program (:attr:`~stable_discovery.language.program.Program.variables`):

* a slot or sampled setting: its definition's alternatives (``N:: value``), as
  percentages; with ``drop``, clear losers removed (or weighted 0 when they hold choices,
  so that the names of the choices after them do not change);
* an inline choice: ``{31::green|9.5::red}``, percentages; clear losers weighted 0;
* an optional part: its presence against its absence, ``[1.52::x]``; ``[a|b]`` becomes
  ``[p::{wa::a|wb::b}]``, which means the same with weights (and is traced the same);
* a multi-select: each item's weight, from the images with and without it;
* a wildcard (and a choice or multi-select among a wildcard's lines): the lines of its
  files get weights ``N::`` in a copy of each file — the line's weight times its factor
  (times the factors of every variable that picks among the same lines), not normalised;
  choices inside lines are weighted in the copy too.

Every wildcard file the template reads is returned (weighted or not), so that a refined
template can be given a folder of its own copies. A YAML or JSON wildcard file is
returned as YAML: the same key paths, each item ``{text: …, weight: N}`` (a plain text
where its weight is 1), its front matter line kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_discovery.analysis.learn import Learned
from stable_discovery.analysis.rewrite import (
    Edit,
    alt_end,
    apply_edits,
    choice_edits,
    definition_edit,
    definition_region,
    format_weight,
    line_edit,
    opener_end,
    weight_edit,
)
from stable_discovery.errors import Source
from stable_discovery.language.parser import parse
from stable_discovery.language.structured import STRUCTURED_SUFFIXES
from stable_discovery.language.syntax import Choice, Definition, SlotRef, WildcardRef
from stable_discovery.language.variables import Variable, item_name, merged_choice, value_text
from stable_discovery.language.wildcard_lines import WildcardLines
from stable_discovery.language.wildcards import WildcardLibrary, front_matter, read_text_file, split_weight

__all__ = ["Reweighted", "reweight", "new_weights"]

ENTRY_POINTS = ("prompt", "negative")

#: Where an edit applies: the template (None) or a wildcard line (file, line number, and
#: the column its text starts at less one: a YAML line may hold several items).
_Where = tuple[str, int, int] | None


@dataclass(frozen=True)
class Reweighted:
    """A template with learned weights written in, and its wildcard files."""

    text: str
    #: every wildcard file the template reads → its text, weighted where learned (YAML
    #: for a YAML or JSON file)
    wildcard_texts: dict[Path, str] = field(default_factory=dict)
    #: every wildcard file the template reads → the name of its copy, without the suffix
    #: (``styles/painting``); the copy of a YAML or JSON file is ``NAME.yaml``
    wildcard_names: dict[Path, str] = field(default_factory=dict)
    dropped: tuple[tuple[str, str], ...] = ()  # (variable, value)
    rewritten: tuple[str, ...] = ()  # the variables whose weights were written
    optional_slots: tuple[str, ...] = ()  # optional parts weighed by their slot (old traces)


def new_weights(
    alts: Sequence[tuple[str, float]], learned: Learned, drop: bool, name: str
) -> tuple[list[float | None], list[str]]:
    """Per alternative (text, weight): the new weight (percent), or None when dropped;
    and the dropped texts. Never every alternative is dropped: the best one stays."""
    raw = [w * learned.factor(name, text) for text, w in alts]
    estimates = learned.values.get(name, {})
    losing = {
        text for text, w in alts if drop and w > 0 and (est := estimates.get(text)) is not None and est.loses
    }
    alive = [text for text, w in alts if w > 0]
    if alive and all(text in losing for text in alive):
        losing.discard(max(alive, key=lambda t: estimates[t].shrunk))
    total = sum(w for (text, _), w in zip(alts, raw, strict=True) if text not in losing)
    weights: list[float | None] = [
        None if text in losing else (100.0 * w / total if total > 0 else old)
        for (text, old), w in zip(alts, raw, strict=True)
    ]
    dropped = list(dict.fromkeys(text for text, _ in alts if text in losing))
    return weights, dropped


def _percent(weights: Sequence[float]) -> list[float]:
    total = sum(weights)
    return [100.0 * w / total for w in weights] if total > 0 else list(weights)


class _Rewriter:
    """Collects the edits of one program's text and wildcard lines."""

    def __init__(self, program: Any, learned: Learned, drop: bool) -> None:
        self.program = program
        self.learned = learned
        self.drop = drop
        self.text: str = program.source.text
        self.definitions = parse(Source(program.source.name, self.text)).definitions
        self.edits: dict[_Where, list[Edit]] = {}
        self.line_weights: dict[tuple[str, int], float] = {}
        self.item_weights: dict[tuple[str, int, str], float] = {}  # YAML lines: (file, line, value)
        self.dropped: list[tuple[str, str]] = []
        self.rewritten: list[str] = []
        self.done: set[str] = set()

    def where(self, var: Variable) -> _Where:
        src = var.source
        if src is self.program.source:
            return None
        return (src.name, src.first_line, len(src.text) - len(src.text.lstrip(" ")))

    def add(self, where: _Where, edits: Sequence[Edit]) -> None:
        self.edits.setdefault(where, []).extend(edits)

    def known(self, name: str) -> bool:
        return name in self.learned.values or name in self.learned.presences

    # variables ---------------------------------------------------------------------------
    def variable(self, var: Variable) -> None:
        if var.kind == "choice":
            self.choice(var)
        elif var.kind == "optional" and self.known(var.name):
            self.optional(var)
        elif var.kind == "item" and var.group not in self.done:
            self.multi(var)
        elif var.kind == "wildcard" and self.known(var.name):
            self.lines(var, lambda text: self.learned.factor(var.name, text), self.drop)

    def choice(self, var: Variable) -> None:
        if not self.known(var.name):
            return
        if var.lines:  # {__colours__}: a choice among a wildcard's lines
            self.lines(var, lambda text: self.learned.factor(var.name, text), self.drop)
            return
        choice: Choice = var.node
        alts = [(v, a.weight) for v, a in zip(var.values, choice.alternatives, strict=True)]
        weights, lost = new_weights(alts, self.learned, self.drop, var.name)
        source_text = var.source.text
        self.add(self.where(var), choice_edits(source_text, choice, [w or 0.0 for w in weights]))
        self.rewritten.append(var.name)
        self.dropped.extend((var.name, v) for v in lost)

    def optional(self, var: Variable) -> None:
        """``[p::x]``; ``[a|b]`` becomes ``[p::{wa::a|wb::b}]``."""
        node: Choice = var.node
        text = var.source.text
        present = node.alternatives[1]
        presence = present.weight * self.learned.presence(var.name)
        inner = merged_choice(node)
        edits: list[Edit] = []
        if inner is not None and inner.start == node.start:  # [a|b]: braces added
            start = opener_end(node)
            edits.append(Edit(start, start, format_weight(presence) + "::{", -1))
            end = alt_end(inner.alternatives[-1])
            edits.append(Edit(end, end, "}", 1))
        else:
            edits.append(weight_edit(text, opener_end(node), present, presence))
        if inner is not None:
            alts = [(v, a.weight) for v, a in zip(var.values, inner.alternatives, strict=True)]
            weights = _percent([w * self.learned.factor(var.name, t) for t, w in alts])
            edits.extend(choice_edits(text, inner, weights))
        self.add(self.where(var), edits)
        self.rewritten.append(var.name)

    def multi(self, var: Variable) -> None:
        """Each item of a multi-select weighed by its presence against its absence."""
        group = var.group or ""
        self.done.add(group)
        choice: Choice = var.node
        if var.lines:  # {2$$__colours__}: among a wildcard's lines
            if any(self.known(item_name(group, line.value)) for line in var.lines):
                self.lines(var, lambda text: self.learned.presence(item_name(group, text)), False, group)
            return
        values = [value_text(a, var.source.text) for a in choice.alternatives]
        if not any(self.known(item_name(group, v)) for v in values):
            return
        raw = [
            a.weight * self.learned.presence(item_name(group, v))
            for v, a in zip(values, choice.alternatives, strict=True)
        ]
        self.add(self.where(var), choice_edits(var.source.text, choice, _percent(raw)))
        self.rewritten.append(group)

    def lines(self, var: Variable, factor: Any, drop: bool, label: str | None = None) -> None:
        """Factors for the lines a variable picks among, for the copies of their files. A
        line several variables pick from (a file under two patterns, a wildcard also
        multi-selected) gets the product of their factors: each variable's lines keep
        the ratios it learned."""
        lost: set[str] = set()
        if drop:
            alts = [(line.value, line.weight) for line in var.lines]
            dropped = new_weights(alts, self.learned, True, var.name)[1]
            self.dropped.extend((var.name, v) for v in dropped)
            lost = set(dropped)
        for line in var.lines:
            key = (line.path, line.number)
            base = self.line_weights.get(key, line.weight)
            self.line_weights[key] = 0.0 if line.value in lost else base * factor(line.value)
            item = (line.path, line.number, line.value)
            base = self.item_weights.get(item, line.weight)
            self.item_weights[item] = 0.0 if line.value in lost else base * factor(line.value)
        self.rewritten.append(label or var.name)

    # definitions -------------------------------------------------------------------------
    def definition_weights(self) -> list[tuple[Definition, list[float | None]]]:
        """The slots and settings to rewrite, with their new weights."""
        out = []
        for d in self.definitions:
            if len(d.alternatives) < 2 or d.name not in self.learned.values:
                continue
            alts = [(value_text(a, self.text), a.weight) for a in d.alternatives]
            weights, lost = new_weights(alts, self.learned, self.drop, d.name)
            for k, a in enumerate(d.alternatives):
                if weights[k] is None and any(isinstance(p, Choice) for p in a.parts):
                    weights[k] = 0.0  # kept, so that the names of the choices after it stay
            label = ("@" if d.is_setting else "") + d.name
            self.rewritten.append(label)
            self.dropped.extend((label, v) for v in lost)
            out.append((d, weights))
        return out

    def optional_slots(self) -> tuple[list[Edit], list[str]]:
        """For traces made before optional parts were traced: ``[x]`` in prompt/negative
        whose slot is used only there, weighed by the slot's presence."""
        handled = {
            v.node.start for v in self.program.variables if v.kind == "optional" and self.known(v.name)
        }
        counts: dict[str, int] = {}
        for d in self.definitions:
            if not d.is_setting:
                for alt in d.alternatives:
                    _slot_refs(alt.parts, counts)
        edits, names = [], []
        for d in self.definitions:
            if d.is_setting or d.name not in ENTRY_POINTS or len(d.alternatives) != 1:
                continue
            for node in d.alternatives[0].parts:
                if not isinstance(node, Choice) or not node.optional or node.start in handled:
                    continue
                present = node.alternatives[1]
                slot = next(
                    (
                        p.name
                        for p in present.parts
                        if isinstance(p, SlotRef)
                        and counts.get(p.name) == 1
                        and p.name in self.learned.presences
                    ),
                    None,
                )
                if slot is not None:
                    weight = present.weight * self.learned.presence(slot)
                    edits.append(weight_edit(self.text, opener_end(node), present, weight))
                    names.append(slot)
        return edits, names

    # results -----------------------------------------------------------------------------
    def template_text(self, regions: list[tuple[Definition, list[float | None]]], extra: list[Edit]) -> str:
        """The template with its edits: definitions rewritten whole, with the edits
        inside their alternatives applied as they are copied."""
        text = self.text
        points = self.edits.get(None, []) + extra
        region_edits = []
        for d, weights in regions:
            a, b = definition_region(text, d)
            inside = [e for e in points if a <= e.start and e.end <= b]
            points = [e for e in points if not (a <= e.start and e.end <= b)]

            def inner(s: int, e: int, inside: list[Edit] = inside) -> str:
                return apply_edits(text, [x for x in inside if s <= x.start and x.end <= e], s, e)

            region_edits.append(definition_edit(text, d, weights, inner))
        return apply_edits(text, points + region_edits)

    def wildcard_texts(self) -> tuple[dict[Path, str], dict[Path, str]]:
        """Every wildcard file the template reads: its text with the line edits and
        weights, and its wildcard name."""
        texts, names = {}, {}
        for path in self.program.wildcard_files:
            names[path] = _wildcard_name(path, self.program.wildcard_dirs)
            if path.suffix.lower() in STRUCTURED_SUFFIXES:
                texts[path] = self.structured_copy(path)
                continue
            raw = read_text_file(path, "wildcard")
            lines = raw.split("\n")
            for number, line in enumerate(lines, start=1):
                lines[number - 1] = self._line(str(path), number, line)
            texts[path] = "\n".join(lines)
        return texts, names

    def _line(self, path: str, number: int, raw: str) -> str:
        stripped = raw.strip()
        indent = raw[: len(raw) - len(raw.lstrip())]
        # a line's edits are at its columns (its text after as many spaces as it is indented)
        edits = list(self.edits.get((path, number, len(indent)), ()))
        weight = self.line_weights.get((path, number))
        if not edits and weight is None:
            return raw
        tail = raw[len(raw.rstrip()) :]
        weighted = line_edit(stripped, split_weight(stripped)[1], weight)
        if weighted is not None:
            edits.append(
                Edit(weighted.start + len(indent), weighted.end + len(indent), weighted.new, weighted.order)
            )
        return apply_edits(indent + stripped, edits) + tail

    def structured_copy(self, path: Path) -> str:
        """A YAML or JSON wildcard file as YAML, its items weighted where learned."""
        import yaml

        program = self.program
        library = WildcardLibrary(program.wildcard_dirs, literal=program.wildcards_literal)
        lines = WildcardLines(library)
        nowhere = Source(str(path), "")
        tree: Any = {}
        for name, entry in library.names().items():
            if entry.path != path or entry.key is None:
                continue
            found = lines.get(WildcardRef(name, 0), nowhere)
            items = [self._item(str(path), found, k) for k in range(len(found))]
            if not entry.key:  # the file's top level is a list
                tree = items
                break
            node = tree
            for part in entry.key[:-1]:
                node = node.setdefault(part, {})
            node[entry.key[-1]] = items
        first = read_text_file(path, "wildcard").lstrip("\n").split("\n", 1)[0]
        matter = first.strip() + "\n" if front_matter(first.strip()) is not None else ""
        dumped: str = yaml.safe_dump(tree, allow_unicode=True, sort_keys=False, width=1_000_000)
        return matter + dumped

    def _item(self, path: str, found: Any, k: int) -> Any:
        """Item ``k`` of a YAML or JSON wildcard: its text (choices inside weighted) and,
        unless it is 1, its weight."""
        raw = found.source(k).text  # as written, after as many spaces as its column
        pad = len(raw) - len(raw.lstrip(" "))
        number = found.numbers[k]
        edits = self.edits.get((path, number, pad))
        text = apply_edits(raw, list(edits))[pad:] if edits else raw[pad:]
        text = split_weight(text)[1] if found.texts[k] != raw[pad:] else text
        weight = self.item_weights.get((path, number, found.values[k]), found.weight(k))
        return text if weight == 1.0 else {"text": text, "weight": float(format_weight(weight))}


def _slot_refs(nodes: Sequence[object], counts: dict[str, int]) -> None:
    for node in nodes:
        if isinstance(node, SlotRef):
            counts[node.name] = counts.get(node.name, 0) + 1
        elif isinstance(node, Choice):
            for alt in node.alternatives:
                _slot_refs(alt.parts, counts)


def _wildcard_name(path: Path, folders: Sequence[Path]) -> str:
    for folder in folders:
        try:
            return path.relative_to(folder).with_suffix("").as_posix()
        except ValueError:
            continue
    return path.stem  # pragma: no cover - every file read is in one of the folders


def reweight(program: Any, learned: Learned, *, drop: bool = False) -> Reweighted:
    """``program``'s template with learned weights written in (no header, sampler
    unchanged), and its wildcard files with theirs (see the module docstring)."""
    r = _Rewriter(program, learned, drop)
    for var in program.variables:
        r.variable(var)
    regions = r.definition_weights()
    optional_edits, optional_slots = r.optional_slots()
    text = r.template_text(regions, optional_edits)
    wildcard_texts, wildcard_names = r.wildcard_texts()
    return Reweighted(
        text,
        wildcard_texts,
        wildcard_names,
        tuple(r.dropped),
        tuple(dict.fromkeys(r.rewritten)),
        tuple(optional_slots),
    )
