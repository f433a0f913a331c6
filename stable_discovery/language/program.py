"""A template, checked and compiled: slots, settings and the space of samples.

``load(path)`` and ``loads(text)`` are the entry points. Everything that can be wrong
with a template is found here, at load time: undefined slots (with the nearest name
suggested), cycles, unknown wildcards, unknown or malformed settings.
"""

from __future__ import annotations

import difflib
import gc
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.fastparse import parse_bare_fast
from stable_discovery.language.parser import parse, parse_bare
from stable_discovery.language.settings import BUILTIN_SETTINGS, SettingSpec, SettingValueError
from stable_discovery.language.syntax import Alternative, Choice, Definition, SlotRef, Text, WildcardRef
from stable_discovery.language.wildcards import WildcardLibrary, read_text_file
from stable_discovery.space.nodes import Lit, Multi, Node, Pick, Ref, Seq, SpaceTooComplex

__all__ = ["Program", "SlotInfo", "SettingInfo", "load", "loads", "SEPARATOR"]

#: Separates prompt, negative prompt and sampled settings inside an evaluated sample.
#: NUL cannot occur in a template: sources that contain it are refused.
SEPARATOR = "\x00"

ENTRY_POINTS = ("prompt", "negative")
MAX_OPEN_MULTI = 10_000
#: Most levels of slots, choices and wildcards inside one another (compiling and
#: sampling recurse through them).
MAX_DEPTH = 100
#: Longest prompt a template may make (a 10 MB line of text is fine; a slot doubling
#: itself a hundred times is not).
MAX_PROMPT_CHARS = 50_000_000


@dataclass(frozen=True)
class SlotInfo:
    name: str
    alternatives: tuple[Alternative, ...]
    start: int
    source: Source


@dataclass(frozen=True)
class SettingInfo:
    """A setting as written: its parsed values, their texts and weights."""

    name: str
    values: tuple[Any, ...]
    texts: tuple[str, ...]
    weights: tuple[float, ...]
    start: int

    @property
    def sampled(self) -> bool:
        return len(self.values) > 1


@dataclass(frozen=True, eq=False)
class Program:
    """A loaded template: what it defines, and its compiled space of samples."""

    source: Source
    slots: Mapping[str, SlotInfo]
    settings: Mapping[str, SettingInfo]
    used_slots: tuple[str, ...]
    shared_slots: tuple[str, ...]
    wildcard_dirs: tuple[Path, ...]
    root: Node = field(repr=False)
    sampled_settings: tuple[str, ...] = ()
    is_bare: bool = False
    legacy: Any | None = None  # a LegacyConfig when loaded from an original JSON config
    wildcard_files: tuple[Path, ...] = ()  # the wildcard files the template reads
    run_settings: frozenset = frozenset()  # settings that steer the run, not each image
    _space: list = field(default_factory=list, repr=False)

    def setting(self, name: str, default: Any = None) -> Any:
        """The single value of a setting, or ``default`` when absent."""
        info = self.settings.get(name)
        if info is None:
            return default
        return info.values[0]

    @property
    def has_negative(self) -> bool:
        return "negative" in self.slots

    def space(self) -> Any:
        """The combinatorial view: ``count`` and ``decode``; computed once."""
        if not self._space:
            from stable_discovery.space.nodes import OpenSpace

            if self.root.closed:
                self._space.append(self.root)
            else:
                try:
                    self._space.append(OpenSpace(self.root))
                except SpaceTooComplex as exc:
                    raise TemplateError(str(exc), self.source) from None
        return self._space[0]

    def count(self) -> int:
        """The exact number of distinct combinations."""
        return self.space().count


# ---------------------------------------------------------------------------------------


def _suggest(name: str, candidates: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def _settings_specs(extra: Sequence[SettingSpec]) -> dict[str, SettingSpec]:
    specs = {s.name: s for s in BUILTIN_SETTINGS}
    for s in extra:
        specs[s.name] = s
    return specs


class _Compiler:
    def __init__(
        self,
        source: Source,
        slots: dict[str, SlotInfo],
        library: WildcardLibrary,
    ) -> None:
        self.source = source
        self.slots = slots
        self.library = library
        self.refcount: dict[str, int] = {}
        self.compiled: dict[str, Node] = {}
        self.in_progress: list[str] = []
        self.refs: dict[str, Ref] = {}
        self.wild_nodes: dict[str, Node] = {}
        self.wild_lines: dict[str, list[tuple[Any, Source]]] = {}
        self.wild_in_progress: list[str] = []
        self.wild_compiled: dict[str, tuple[list[Node], list[str]]] = {}
        self.used: list[str] = []
        self.depth = 0
        self.untraced: set[str] = set()

    # pass 1: how often is each slot referenced ---------------------------------------
    def count_refs(self, roots: Sequence[str]) -> None:
        visited_slots: set[str] = set()
        visited_wild: set[str] = set()
        stack: list[tuple[Any, Source, int]] = []  # (node, source, weight)
        for name in roots:
            if name in self.slots:
                visited_slots.add(name)
                for alt in self.slots[name].alternatives:
                    stack.extend((p, self.slots[name].source, 1) for p in alt.parts)
        stack.reverse()  # pop() then walks the references in source order
        while stack:
            node, src, mult = stack.pop()
            if isinstance(node, SlotRef):
                self.refcount[node.name] = self.refcount.get(node.name, 0) + mult
                info = self.slots.get(node.name)
                if info is None:
                    self._unknown_slot(node, src)
                if node.name not in visited_slots:
                    visited_slots.add(node.name)
                    for alt in reversed(info.alternatives):
                        stack.extend((p, info.source, 1) for p in reversed(alt.parts))
            elif isinstance(node, Choice):
                for alt in reversed(node.alternatives):
                    stack.extend((p, src, mult) for p in reversed(alt.parts))
            elif isinstance(node, WildcardRef):
                for parts, line_src in self.wildcard_lines(node, src):
                    key = line_src.name + ":" + str(line_src.first_line)
                    # a slot used in a wildcard line may be used from many places
                    if key in visited_wild:
                        stack.extend((p, line_src, 2) for p in parts if isinstance(p, SlotRef))
                        continue
                    visited_wild.add(key)
                    # (text refers to nothing: only references and choices are walked)
                    stack.extend((p, line_src, 2) for p in parts if type(p) is not Text)

    def _unknown_slot(self, node: SlotRef, src: Source) -> None:
        names = list(self.slots)
        guess = _suggest(node.name, names)
        hint = None
        others = [n for n in names if n not in ENTRY_POINTS]
        if guess is None and others:
            hint = "defined slots: " + ", ".join(f"<{n}>" for n in others)
        if guess is None and not others:
            hint = "define it with a line `" + node.name + " = value | value`"
        message = f"unknown slot <{node.name}>" + (f": did you mean <{guess}>?" if guess else "")
        raise TemplateError(message, src, node.start, hint=hint)

    # wildcards -------------------------------------------------------------------------
    def wildcard_lines(self, ref: WildcardRef, src: Source) -> list[tuple[Any, Source]]:
        cached = self.wild_lines.get(ref.pattern)
        if cached is not None:
            return cached
        found = self.library.find(ref.pattern)
        if not found:
            folders = ", ".join(str(f) for f in self.library.folders) or "none"
            guess = self.library.suggestions(ref.pattern)
            message = f"unknown wildcard __{ref.pattern}__"
            if guess:
                message += f": did you mean __{guess[0]}__?"
            raise TemplateError(
                message,
                src,
                ref.start,
                hint=f"wildcard folders searched: {folders}; a wildcard is a file "
                f"{ref.pattern}.txt in one of them (--wildcards DIR adds a folder)",
            )
        lines: list[tuple[Any, Source]] = []
        seen: set[str] = set()
        for _name, path in found:
            for line in self.library.lines(path):
                if line.text in seen:
                    continue
                seen.add(line.text)
                lines.append((_parse_line(line.text, line.source), line.source))
        if not lines:
            raise TemplateError(
                f"wildcard __{ref.pattern}__ has no lines",
                src,
                ref.start,
                hint="a wildcard file lists one value per line; blank and # lines are skipped",
            )
        self.wild_lines[ref.pattern] = lines
        return lines

    def wildcard(self, ref: WildcardRef, src: Source) -> tuple[list[Node], list[str]]:
        done = self.wild_compiled.get(ref.pattern)
        if done is not None:  # compiled once: {2$$__a__} inside __b__ inside ... stays linear
            return done
        lines = self.wildcard_lines(ref, src)
        if ref.pattern in self.wild_in_progress:
            cycle = self.wild_in_progress[self.wild_in_progress.index(ref.pattern) :] + [ref.pattern]
            raise TemplateError(
                "wildcards refer to each other in a cycle: " + " → ".join(f"__{p}__" for p in cycle),
                src,
                ref.start,
            )
        self.wild_in_progress.append(ref.pattern)
        try:
            # a line of plain text is a literal (what parts() makes of it, faster)
            plain_ok = self.depth < MAX_DEPTH
            nodes = [
                Lit(parts[0].value)
                if plain_ok and len(parts) == 1 and type(parts[0]) is Text
                else self.parts(parts, line_src)
                for parts, line_src in lines
            ]
        finally:
            self.wild_in_progress.pop()
        done = (nodes, [line_src.text for _, line_src in lines])
        self.wild_compiled[ref.pattern] = done
        return done

    # pass 2: compile -------------------------------------------------------------------
    def slot(self, name: str, at: SlotRef | None, src: Source) -> Node:
        if name not in self.slots:
            assert at is not None
            self._unknown_slot(at, src)
        shared = self.refcount.get(name, 0) > 1
        if shared:
            ref = self.refs.get(name)
            if ref is None:
                ref = self.refs[name] = Ref(name)
            if name in self.compiled:
                return ref
        if name in self.in_progress:
            cycle = self.in_progress[self.in_progress.index(name) :] + [name]
            raise TemplateError(
                "slots refer to each other in a cycle: " + " → ".join(f"<{n}>" for n in cycle),
                src,
                at.start if at is not None else self.slots[name].start,
                hint="a slot cannot contain itself, directly or through other slots",
            )
        self.in_progress.append(name)
        try:
            info = self.slots[name]
            if name not in self.used:
                self.used.append(name)
            traced = name not in self.untraced
            node = self.pick(info.alternatives, info.source, name if traced else None, at=info.start)
        finally:
            self.in_progress.pop()
        self.compiled[name] = node
        if shared:
            ref = self.refs[name]
            ref.pick = node if isinstance(node, Pick) else Pick([node], [1.0])
            ref.max_draws = node.max_draws
            return ref
        return node

    def pick(self, alts: Sequence[Alternative], src: Source, name: str | None, at: int) -> Node:
        nodes = [self.parts(a.parts, src) for a in alts]
        weights = [a.weight for a in alts]
        if len(nodes) == 1 and name is None:
            return nodes[0]
        if sum(weights) <= 0:
            raise TemplateError(
                "every alternative has weight 0, so none can be chosen",
                src,
                at,
                hint="give at least one alternative a positive weight",
            )
        return Pick(nodes, weights, name, [a.text for a in alts], [a.text for a in alts])

    def parts(self, parts: Sequence[Any], src: Source) -> Node:
        # slots inside slots (and choices inside them) nest without bound in the source;
        # compiling and sampling recurse, so depth is bounded here with a located error
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH and parts:
                raise TemplateError(
                    f"the template nests too deeply: more than {MAX_DEPTH} levels of "
                    "slots, choices and wildcards inside one another",
                    src,
                    parts[0].start,
                    hint="flatten it: fewer slots that refer to slots that refer to slots",
                )
            return self._parts(parts, src)
        except SpaceTooComplex as exc:
            raise TemplateError(str(exc), src, parts[0].start) from None
        finally:
            self.depth -= 1

    def _parts(self, parts: Sequence[Any], src: Source) -> Node:
        nodes: list[Node] = []
        for p in parts:
            if isinstance(p, Text):
                nodes.append(Lit(p.value))
            elif isinstance(p, SlotRef):
                nodes.append(self.slot(p.name, p, src))
            elif isinstance(p, WildcardRef):
                cached = self.wild_nodes.get(p.pattern)
                if cached is None:
                    lines, texts = self.wildcard(p, src)
                    if len(lines) == 1 and isinstance(lines[0], Lit) and len(lines[0].text) <= 1000:
                        cached = lines[0]
                    else:
                        # kept whole: a wildcard used again and again is one shared node,
                        # never copied into each use (__a__ = "__b__ __b__" ... would
                        # otherwise double in size at each level)
                        cached = Pick(lines, [1.0] * len(lines), None, texts, texts)
                    self.wild_nodes[p.pattern] = cached
                nodes.append(cached)
            elif isinstance(p, Choice):
                nodes.append(self.choice(p, src))
            else:  # pragma: no cover
                raise AssertionError(type(p))
        return _seq(nodes)

    def choice(self, choice: Choice, src: Source) -> Node:
        alts = choice.alternatives
        only = alts[0].parts if len(alts) == 1 else ()
        if len(only) == 1 and isinstance(only[0], WildcardRef):
            # {2$$__colours__}: choose among the wildcard's values
            nodes, texts = self.wildcard(only[0], src)
            weights = [1.0] * len(nodes)
            keys: list[str | None] = list(texts)
        else:
            nodes = [self.parts(a.parts, src) for a in alts]
            weights = [a.weight for a in alts]
            keys = [a.text for a in alts]
            texts = [a.text for a in alts]
        if choice.select is None:
            if len(nodes) == 1:
                return nodes[0]
            if sum(weights) <= 0:
                raise TemplateError(
                    "every alternative has weight 0, so none can be chosen",
                    src,
                    choice.start,
                    hint="give at least one alternative a positive weight",
                )
            return Pick(nodes, weights, None, texts, keys)
        sel = choice.select
        if sum(weights) <= 0 and sel.low > 0:
            raise TemplateError("every alternative has weight 0, so none can be chosen", src, choice.start)
        if all(n.closed for n in nodes):
            try:
                return Multi(nodes, weights, sel.low, sel.high, sel.joiner, keys)
            except SpaceTooComplex as exc:
                raise TemplateError(str(exc), src, choice.start) from None
        return self._open_multi(nodes, weights, sel, keys, src, choice.start)

    def _open_multi(self, nodes, weights, sel, keys, src, start) -> Node:  # type: ignore[no-untyped-def]
        import itertools

        distinct: list[int] = []
        first: dict = {}
        merged: dict[int, float] = {}  # identical alternatives are one; their weights add up
        for k, key in enumerate(keys):
            if key in first:
                merged[first[key]] += weights[k]
                continue
            first[key] = k
            merged[k] = weights[k]
            distinct.append(k)
        n = len(distinct)
        hi = n if sel.high is None else min(sel.high, n)
        lo = min(sel.low, hi)
        options: list[Node] = []
        option_weights: list[float] = []
        for k in range(lo, hi + 1):
            for perm in itertools.permutations(distinct, k):
                if len(options) >= MAX_OPEN_MULTI:
                    raise TemplateError(
                        "a multi-select whose alternatives use shared slots is limited to "
                        f"{MAX_OPEN_MULTI} selections",
                        src,
                        start,
                    )
                pieces: list[Node] = []
                # the probability the random sampler gives a selection without shared
                # slots (space.Multi): a uniform count, then weighted draws without return
                w = 1.0 / (hi - lo + 1)
                left = sum(merged.values())
                remaining = n
                for i, idx in enumerate(perm):
                    if i:
                        pieces.append(Lit(sel.joiner))
                    pieces.append(nodes[idx])
                    w *= merged[idx] / left if left > 0 else 1.0 / remaining
                    left -= merged[idx]
                    remaining -= 1
                options.append(_seq(pieces))
                option_weights.append(w)
        return Pick(options, option_weights or [1.0])


def _measure(root: Node) -> tuple[int, int]:
    """The length of the longest text the tree can make (an upper bound) and the depth of
    the tree (shared subtrees counted where used), in one iterative walk."""
    measures: dict[int, tuple[int, int]] = {}  # id(node) -> (longest, depth)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if id(node) in measures:
            continue
        if isinstance(node, Seq):
            kids: Sequence[Node] = node.children
        elif isinstance(node, (Pick, Multi)):
            kids = node.alts
        elif isinstance(node, Ref):
            kids = (node.pick,) if node.pick is not None else ()
        else:
            measures[id(node)] = (len(node.text) if isinstance(node, Lit) else 0, 1)
            continue
        if not ready:
            stack.append((node, True))
            for k in kids:
                if id(k) not in measures:
                    if type(k) is Lit:
                        measures[id(k)] = (len(k.text), 1)  # most nodes: no visit of their own
                    else:
                        stack.append((k, False))
            continue
        kid_measures = [measures[id(k)] for k in kids]
        sizes = [m[0] for m in kid_measures]
        depth = 1 + max([m[1] for m in kid_measures], default=0)
        if isinstance(node, Seq):
            longest = sum(sizes)
        elif isinstance(node, Multi):
            top = sorted(sizes, reverse=True)[: node.hi]
            longest = sum(top) + len(node.joiner) * max(0, node.hi - 1)
        else:
            longest = max(sizes, default=0)
        measures[id(node)] = (longest, depth)
    return measures[id(root)]


def _seq(nodes: list[Node]) -> Node:
    # merge adjacent literals, group runs of closed nodes (short continuations later)
    merged: list[Node] = []
    for n in nodes:
        if isinstance(n, Lit) and merged and isinstance(merged[-1], Lit):
            merged[-1] = Lit(merged[-1].text + n.text)
        elif isinstance(n, Seq):
            merged.extend(n.children)
        else:
            merged.append(n)
    if not merged:
        return Lit("")
    if len(merged) == 1:
        return merged[0]
    if not all(n.closed for n in merged):
        grouped: list[Node] = []
        run: list[Node] = []
        for n in merged:
            if n.closed:
                run.append(n)
            else:
                if run:
                    grouped.append(run[0] if len(run) == 1 else Seq(run))
                    run = []
                grouped.append(n)
        if run:
            grouped.append(run[0] if len(run) == 1 else Seq(run))
        merged = grouped
    return Seq(merged)


_SIMPLE_LINE = re.compile(r"[{}\[\]<\\#_]").search


def _parse_line(text: str, source: Source) -> tuple[Any, ...]:
    """One wildcard line (already stripped): plain text at once, the common subset by
    the hand-written parser, the rest (and every error) by Lark."""
    if _SIMPLE_LINE(text) is None:
        return (Text(text, 0),)
    nodes = parse_bare_fast(text)
    if nodes is not None:
        return nodes
    return parse_bare(source)


# ---------------------------------------------------------------------------------------


def _check_setting(d: Definition, specs: dict[str, SettingSpec], source: Source) -> SettingInfo:
    spec = specs.get(d.name)
    if spec is None:
        guess = _suggest(d.name, specs)
        raise TemplateError(
            f"unknown setting @{d.name}" + (f": did you mean @{guess}?" if guess else ""),
            source,
            d.start,
            hint="known settings: " + ", ".join("@" + n for n in specs),
        )
    values, texts, weights = [], [], []
    for alt in d.alternatives:
        if any(not isinstance(p, Text) for p in alt.parts):
            raise TemplateError(
                f"a value of @{d.name} must be plain text, not a template",
                source,
                alt.start,
                hint="list the values with '|': @steps = 30 | 50",
            )
        text = "".join(p.value for p in alt.parts if isinstance(p, Text)).strip()
        try:
            values.append(spec.parse(text))
        except SettingValueError as exc:
            raise TemplateError(f"@{d.name}: {exc}", source, alt.start) from None
        texts.append(text)
        weights.append(alt.weight)
    if not values:
        raise TemplateError(f"@{d.name} has no value", source, d.start)
    if len(values) > 1 and not spec.multi:
        raise TemplateError(f"@{d.name} takes one value, not {len(values)}", source, d.alternatives[1].start)
    if len(values) > 1 and sum(weights) <= 0:
        raise TemplateError(f"every value of @{d.name} has weight 0", source, d.start)
    return SettingInfo(d.name, tuple(values), tuple(texts), tuple(weights), d.start)


def compile_source(
    source: Source,
    wildcard_dirs: Sequence[Path] = (),
    extra_settings: Sequence[SettingSpec] = (),
    legacy: Any = None,
) -> Program:
    """Parse and compile a template source into a :class:`Program`.

    The cyclic garbage collector is paused meanwhile: compiling a large template makes
    a great many small objects that stay alive (and next to no cycles), and the
    collector's passes over them took a fifth of the time.
    """
    enabled = gc.isenabled()
    if enabled:
        gc.disable()
    try:
        return _compile_source(source, wildcard_dirs, extra_settings, legacy)
    finally:
        if enabled:
            gc.enable()


def _compile_source(
    source: Source,
    wildcard_dirs: Sequence[Path],
    extra_settings: Sequence[SettingSpec],
    legacy: Any,
) -> Program:
    if "\x00" in source.text:
        raise TemplateError(
            "contains a NUL character; is this a binary file?", source, source.text.index("\x00")
        )
    parsed = parse(source)
    specs = _settings_specs(extra_settings)
    slots: dict[str, SlotInfo] = {}
    settings: dict[str, SettingInfo] = {}
    if parsed.bare is not None:
        text = source.text.strip()
        slots["prompt"] = SlotInfo("prompt", (Alternative(parsed.bare, 1.0, text, 0),), 0, source)
    else:
        first_at: dict[str, int] = {}
        for d in parsed.definitions:
            key = ("@" if d.is_setting else "") + d.name
            if key in first_at:
                line, col = source.line_col(first_at[key])
                raise TemplateError(
                    f"{key} is defined twice (first at {line}:{col})",
                    source,
                    d.start,
                    hint="give alternatives in one definition: name = a | b",
                )
            first_at[key] = d.start
            if d.is_setting:
                settings[d.name] = _check_setting(d, specs, source)
            else:
                slots[d.name] = SlotInfo(d.name, d.alternatives, d.start, source)
        if "prompt" not in slots:
            guess = _suggest("prompt", slots)
            raise TemplateError(
                "no `prompt = …` definition: the prompt is the template's entry point"
                + (f" (is <{guess}> meant to be it?)" if guess else ""),
                source,
                0,
                hint="add a line such as: prompt = <subject> <action>[, <style>]",
            )
        both = [n for n in settings if n in slots]
        if both:
            raise TemplateError(
                f"'{both[0]}' is both a slot and a setting; the trace needs one name for one thing",
                source,
                slots[both[0]].start,
            )
    if "size" in settings and ("width" in settings or "height" in settings):
        raise TemplateError("use either @size or @width/@height, not both", source, settings["size"].start)
    library = WildcardLibrary(wildcard_dirs)
    comp = _Compiler(source, slots, library)
    if parsed.bare is not None:
        comp.untraced.add("prompt")
    for entry in ENTRY_POINTS:
        if entry in slots and len(slots[entry].alternatives) == 1:
            comp.untraced.add(entry)
    roots = [e for e in ENTRY_POINTS if e in slots]
    comp.count_refs(roots)
    parts: list[Node] = []
    for entry in ENTRY_POINTS:
        if entry in slots:
            parts.append(comp.slot(entry, None, source))
        parts.append(Lit(SEPARATOR))
    sampled = []
    for name, info in settings.items():
        if info.sampled:
            sampled.append(name)
            parts.append(Pick([Lit(t) for t in info.texts], info.weights, name, info.texts, info.texts))
            parts.append(Lit(SEPARATOR))
    try:
        root = Seq(parts) if len(parts) > 1 else parts[0]
    except SpaceTooComplex as exc:
        raise TemplateError(str(exc), source, slots["prompt"].start) from None
    longest, depth = _measure(root)
    if longest > MAX_PROMPT_CHARS:
        # a slot or wildcard used twice inside one used twice ... doubles at each level
        raise TemplateError(
            f"the template can make prompts of up to {longest:,} characters "
            f"(the limit is {MAX_PROMPT_CHARS:,})",
            source,
            slots["prompt"].start,
            hint="a slot used twice inside a slot used twice doubles the text at each level",
        )
    if depth > 2 * MAX_DEPTH + 8:
        # a shared slot or a wildcard compiled once and used again deeper down
        raise TemplateError(
            f"the template nests too deeply: more than {MAX_DEPTH} levels of slots, choices "
            "and wildcards inside one another",
            source,
            slots["prompt"].start,
            hint="flatten it: fewer slots that refer to slots that refer to slots",
        )
    shared = tuple(n for n, c in comp.refcount.items() if c > 1)
    return Program(
        source=source,
        slots=slots,
        settings=settings,
        used_slots=tuple(comp.used),
        shared_slots=shared,
        wildcard_dirs=tuple(wildcard_dirs),
        root=root,
        sampled_settings=tuple(sampled),
        is_bare=parsed.bare is not None,
        legacy=legacy,
        wildcard_files=tuple(library.files_read()),
        run_settings=frozenset(name for name, spec in specs.items() if not spec.per_image),
    )


def default_wildcard_dirs(path: Path | None) -> tuple[Path, ...]:
    if path is None:
        return (Path("wildcards"),)
    return (path.parent / "wildcards",)


def load(
    path: Path | str,
    wildcard_dirs: Sequence[Path | str] | None = None,
    extra_settings: Sequence[SettingSpec] = (),
) -> Program:
    """Load a ``.sdp`` template or an original stable-discovery JSON config."""
    path = Path(path)
    dirs = tuple(Path(d) for d in wildcard_dirs) if wildcard_dirs else default_wildcard_dirs(path)
    text = read_text_file(path)
    if path.suffix.lower() == ".json":
        from stable_discovery.language.legacy_config import legacy_source

        sdp_text, config = legacy_source(Source(str(path), text))
        return compile_source(Source(str(path) + " (as .sdp)", sdp_text), dirs, extra_settings, legacy=config)
    return compile_source(Source(str(path), text), dirs, extra_settings)


def loads(
    text: str,
    name: str = "<template>",
    wildcard_dirs: Sequence[Path | str] = (),
    extra_settings: Sequence[SettingSpec] = (),
) -> Program:
    """Compile template text given directly (``sdp expand -e``)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    dirs = tuple(Path(d) for d in wildcard_dirs) if wildcard_dirs else (Path("wildcards"),)
    return compile_source(Source(name, text), dirs, extra_settings)
