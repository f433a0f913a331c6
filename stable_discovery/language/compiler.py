"""The second pass of compiling: a template's definitions become its space of samples.

:func:`compile_space` turns the checked definitions into one tree of
:mod:`stable_discovery.space.nodes`: the prompt, the negative prompt and each sampled
setting, separated by :data:`SEPARATOR`. Slots referenced more than once (see
:mod:`.references`) become shared :class:`Ref` nodes bound once per sample; a wildcard
is compiled once however often it is used. Cycles, weights that leave nothing to
choose and nesting beyond :data:`~.measure.MAX_DEPTH` are errors located in the source.

Every random decision is traced under the name :mod:`.variables` gives it, and listed
(in the order it is first compiled) as a :class:`~.variables.Variable`; a name given in
the template that is given twice, or that is already a slot's or setting's, is an error.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NoReturn

from stable_discovery.errors import Source, TemplateError, TemplateWarning
from stable_discovery.language.definitions import (
    ENTRY_POINTS,
    Definitions,
    SettingInfo,
    SlotInfo,
    misplaced_variable,
    resolve_variable,
)
from stable_discovery.language.lint import a1111_optional
from stable_discovery.language.measure import MAX_DEPTH, check_limits
from stable_discovery.language.references import count_references, unknown_slot
from stable_discovery.language.syntax import (
    Alternative,
    Choice,
    Select,
    SlotRef,
    Text,
    VarRef,
    VarSet,
    WildcardRef,
    Wrap,
)
from stable_discovery.language.syntax import Node as SyntaxNode
from stable_discovery.language.variables import (
    Lines,
    Scope,
    Variable,
    count_name,
    file_name,
    item_name,
    merged_choice,
    value_text,
    wildcard_name,
)
from stable_discovery.language.wildcard_lines import LineSet, ReadNote, WildcardLines
from stable_discovery.language.wildcards import WildcardLibrary
from stable_discovery.space.nodes import (
    RAND_TABLE_LIMIT,
    Lit,
    Multi,
    Node,
    Pick,
    Ref,
    Seq,
    SpaceTooComplex,
    TextPick,
)
from stable_discovery.space.nodes import Wrap as SpaceWrap
from stable_discovery.space.trace import Chosen

__all__ = ["SEPARATOR", "MAX_OPEN_MULTI", "CompiledSpace", "compile_space"]

#: Separates prompt, negative prompt and sampled settings inside an evaluated sample.
#: NUL cannot occur in a template: sources that contain it are refused.
SEPARATOR = "\x00"

#: Most selections a multi-select over alternatives with shared slots may have (each
#: becomes an alternative of its own).
MAX_OPEN_MULTI = 10_000

_NO_WEIGHT = "every alternative has weight 0, so none can be chosen"
_NO_WEIGHT_HINT = "give at least one alternative a positive weight"


@dataclass(frozen=True)
class CompiledSpace:
    """The space of samples of a template and what compiling it found out."""

    root: Node
    used_slots: tuple[str, ...]  # in the order they were first compiled
    shared_slots: tuple[str, ...]  # referenced more than once: bound once per sample
    sampled_settings: tuple[str, ...]  # settings with several values, in the tree
    variables: tuple[Variable, ...] = ()  # every traced variable, in template order
    warnings: tuple[TemplateWarning, ...] = ()  # optional parts that look like A1111 (or data)


def compile_space(
    source: Source, definitions: Definitions, library: WildcardLibrary, notes: list[ReadNote] | None = None
) -> CompiledSpace:
    """Compile checked definitions (wildcards from ``library``) into one tree; ``notes``
    collects the wildcard lines read as data that a template would read differently."""
    slots = definitions.slots
    lines = WildcardLines(library, notes)
    refcount = count_references(slots, [e for e in ENTRY_POINTS if e in slots], lines, definitions.macros)
    comp = _Compiler(slots, lines, refcount, _untraced(definitions))
    comp.macros, comp.macro_source = definitions.macros, source
    comp.slot_choices = definitions.slot_choices
    parts: list[Node] = []
    for entry in ENTRY_POINTS:
        if entry in slots:
            parts.append(comp.slot(entry, None, source))
        parts.append(Lit(SEPARATOR))
    sampled, setting_parts = _sampled_settings(definitions.settings)
    parts.extend(setting_parts)
    for name in sampled:
        info = definitions.settings[name]
        comp.variable(Variable(name, "setting", info.texts, source, info.start), ("@", name))
    try:
        root = Seq(parts) if len(parts) > 1 else parts[0]
    except SpaceTooComplex as exc:
        raise TemplateError(str(exc), source, slots["prompt"].start) from None
    check_limits(root, source, slots["prompt"].start)
    shared = tuple(n for n, c in refcount.items() if c > 1)
    # a wildcard line's [a|b] that looks like A1111's is warned about once, as A1111's
    warned = {_where(w) for w in comp.warnings}
    warnings = tuple(comp.warnings) + tuple(w for w in lines.warnings if _where(w) not in warned)
    return CompiledSpace(root, tuple(comp.used), shared, sampled, tuple(comp.variables.values()), warnings)


def _where(warning: TemplateWarning) -> str | None:
    src, offset = warning.source, warning.offset
    return None if src is None or offset is None else src.where(offset)


def _untraced(definitions: Definitions) -> set[str]:
    """Entry points that are not recorded in a sample's trace: a bare template's prompt
    and an entry point with a single alternative (it is not a choice)."""
    untraced = {"prompt"} if definitions.is_bare else set()
    slots = definitions.slots
    untraced.update(e for e in ENTRY_POINTS if e in slots and len(slots[e].alternatives) == 1)
    return untraced


def _sampled_settings(settings: Mapping[str, SettingInfo]) -> tuple[tuple[str, ...], list[Node]]:
    """The settings with several values, and for each a traced choice among its values
    followed by the separator."""
    sampled = []
    parts: list[Node] = []
    for name, info in settings.items():
        if info.sampled:
            sampled.append(name)
            parts.append(Pick([Lit(t) for t in info.texts], info.weights, name, info.texts, info.texts))
            parts.append(Lit(SEPARATOR))
    return tuple(sampled), parts


class _Compiler:
    """Compiles slots, choices and wildcards into space nodes, each slot and wildcard once."""

    def __init__(
        self,
        slots: Mapping[str, SlotInfo],
        lines: WildcardLines,
        refcount: Mapping[str, int],
        untraced: set[str],
    ) -> None:
        self.slots = slots
        self.lines = lines
        self.refcount = refcount
        self.untraced = untraced
        self.compiled: dict[str, Node] = {}
        self.in_progress: list[str] = []
        self.refs: dict[str, Ref] = {}
        self.wild_nodes: dict[str, Node] = {}
        self.wild_in_progress: list[str] = []
        self.wild_compiled: dict[str, tuple[list[Node], LineSet]] = {}
        self.wild_special: dict[str, dict[int, Node]] = {}
        self.used: list[str] = []
        self.depth = 0
        self.variables: dict[str, Variable] = {}
        self.macros: Mapping[str, VarSet] = {}  # dynamicprompts' ${name=value}
        self.macro_source: Source = Source("", "")  # where they are set
        self.slot_choices: Mapping[str, Choice] = {}  # ${name=!{a|b}}: the choice written
        self.warnings: list[TemplateWarning] = []
        self.warned: set[tuple[str, int]] = set()
        self.places: dict[str, tuple[Any, ...]] = {}
        self.line_ref_cache: dict[str, Lines] = {}

    # variables -------------------------------------------------------------------------
    def variable(self, var: Variable, place: tuple[Any, ...]) -> None:
        """List a traced variable; ``place`` says which construct it is, so that one
        reached twice (a wildcard's line compiled for two patterns) is listed once and
        two constructs under one name are an error."""
        seen = self.places.get(var.name)
        if seen is None:
            self.places[var.name] = place
            self.variables[var.name] = var
            return
        if seen == place:
            return
        first = self.variables[var.name]
        line, col = first.source.line_col(first.start)
        at = f"{line}:{col}" if first.source.name == var.source.name else first.where
        raise TemplateError(
            f"the name {var.name!r} is given to two things: the {first.kind} at {at} and the {var.kind} here",
            var.source,
            var.start,
            hint="the trace needs one name for one thing: rename one of them",
        )

    # slots -----------------------------------------------------------------------------
    def slot(self, name: str, at: SlotRef | None, src: Source) -> Node:
        """The node of slot ``name`` referenced by ``at`` (None for an entry point): its
        choice, or the shared :class:`Ref` bound to it."""
        if name not in self.slots:
            assert at is not None
            unknown_slot(self.slots, at, src)
        shared = self.refcount.get(name, 0) > 1
        if shared:
            ref = self.refs.get(name)
            if ref is None:
                ref = self.refs[name] = Ref(name)
            if name in self.compiled:
                return ref
        if name in self.in_progress:
            self._cycle(name, at, src)
        self.in_progress.append(name)
        try:
            info = self.slots[name]
            if name not in self.used:
                self.used.append(name)
            traced = name not in self.untraced
            if traced:
                texts = tuple(value_text(a, info.source.text) for a in info.alternatives)
                var = Variable(name, "slot", texts, info.source, info.start, self.slot_choices.get(name))
                self.variable(var, ("<", name))
            scope = Scope(name)
            node = self.pick(info.alternatives, info.source, name if traced else None, info.start, scope)
        finally:
            self.in_progress.pop()
        self.compiled[name] = node
        if shared:
            ref = self.refs[name]
            ref.pick = node if isinstance(node, Pick) else Pick([node], [1.0])
            ref.max_draws = node.max_draws
            return ref
        return node

    def _cycle(self, name: str, at: SlotRef | None, src: Source) -> NoReturn:
        cycle = self.in_progress[self.in_progress.index(name) :] + [name]
        raise TemplateError(
            "slots refer to each other in a cycle: " + " → ".join(f"<{n}>" for n in cycle),
            src,
            at.start if at is not None else self.slots[name].start,
            hint="a slot cannot contain itself, directly or through other slots",
        )

    def pick(self, alts: Sequence[Alternative], src: Source, name: str | None, at: int, scope: Scope) -> Node:
        """A choice among a definition's alternatives, traced as ``name`` unless None."""
        nodes = [self.parts(a.parts, src, scope) for a in alts]
        weights = [a.weight for a in alts]
        if len(nodes) == 1 and name is None:
            return nodes[0]
        if sum(weights) <= 0:
            raise TemplateError(_NO_WEIGHT, src, at, hint=_NO_WEIGHT_HINT)
        texts = [value_text(a, src.text) for a in alts] if name is not None else None
        return Pick(nodes, weights, name, texts, [a.text for a in alts])

    # parts -----------------------------------------------------------------------------
    def parts(self, parts: Sequence[SyntaxNode], src: Source, scope: Scope) -> Node:
        """The sequence of an alternative's parts; ``scope`` names their choices."""
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
            return self._parts(parts, src, scope)
        except SpaceTooComplex as exc:
            raise TemplateError(str(exc), src, parts[0].start) from None
        finally:
            self.depth -= 1

    def _parts(self, parts: Sequence[SyntaxNode], src: Source, scope: Scope) -> Node:
        nodes: list[Node] = []
        for p in parts:
            if isinstance(p, Text):
                nodes.append(Lit(p.value))
            elif isinstance(p, SlotRef):
                nodes.append(self.slot(p.name, p, src))
            elif isinstance(p, WildcardRef):
                nodes.append(self.wildcard_node(p, src))
            elif isinstance(p, Choice) and p.optional:
                nodes.append(self.optional(p, src, scope.name(p)))
            elif isinstance(p, Choice):
                nodes.append(self.choice(p, src, scope.name(p)))
            else:
                nodes.append(self.peer_part(p, src, scope))
        return _seq(nodes)

    def peer_part(self, p: SyntaxNode, src: Source, scope: Scope) -> Node:
        """dynamicprompts' wrap and variables (:mod:`.peer`)."""
        if isinstance(p, Wrap):
            return SpaceWrap(self.parts(p.wrapper, src, scope), self.parts(p.inner, src, scope))
        if isinstance(p, VarRef):
            what = resolve_variable(p, self.slots, self.macros, src)
            if isinstance(what, SlotRef):
                return self.slot(what.name, what, src)
            if isinstance(what, VarSet):  # a copy of the value, named after the variable
                return self.macro(what)
            return self.parts(what.parts, src, scope)  # the default
        if isinstance(p, VarSet):
            raise misplaced_variable(p, src)
        raise AssertionError(type(p))  # pragma: no cover

    def macro(self, var: VarSet) -> Node:
        """A use of ``${name}`` set as ``${name=value}``: the value, chosen anew at each
        use. A value that is one choice is traced under the variable's name (``name``,
        ``name#2`` for the second use in a sample), the choices of another under it
        (``name{1}``)."""
        source = self.macro_source
        parts = var.value.parts
        if len(parts) == 1 and isinstance(parts[0], Choice) and parts[0].label is None:
            parts = (replace(parts[0], label=var.name),)
        return self.parts(parts, source, Scope(var.name))

    # wildcards -------------------------------------------------------------------------
    def wildcard_node(self, ref: WildcardRef, src: Source) -> Node:
        """The node of ``__pattern__``: one of its lines, traced as ``__pattern__`` (and,
        for a glob, the file as ``__pattern__.file``); the pattern as found (see
        :meth:`~.wildcards.WildcardLibrary.lookup`) names it."""
        lines = self.lines.get(ref, src)
        cached = self.wild_nodes.get(lines.pattern)
        if cached is None:
            canon = WildcardRef(lines.pattern, ref.start)
            cached = None
            if len(lines) > RAND_TABLE_LIMIT:
                special = self.special_lines(canon, lines, src)
                if all(node.closed for node in special.values()):
                    cached = self._text_pick(canon, lines, src, special)
            if cached is None:
                cached = self._wildcard_pick(canon, lines, src)
            self.wild_nodes[lines.pattern] = cached
        return cached

    def _wildcard_pick(self, ref: WildcardRef, lines: LineSet, src: Source) -> Node:
        singles, entries = self._wildcard_entries(ref, lines, src) if len(lines) > 1 else (None, None)
        nodes, _ = self.wildcard(ref, src)
        if len(nodes) == 1 and isinstance(nodes[0], Lit) and len(nodes[0].text) <= 1000:
            return nodes[0]  # one short line of text: nothing to choose
        if len(nodes) == 1:
            return Pick(nodes, [1.0])  # one line, nothing to choose, kept whole (below)
        # kept whole: a wildcard used again and again is one shared node, never copied
        # into each use (__a__ = "__b__ __b__" ... would otherwise double at each level)
        weights = _line_weights(lines, src, ref.start)
        return Pick(nodes, weights, None, None, lines.texts, entries=entries, singles=singles)

    def _text_pick(self, ref: WildcardRef, lines: LineSet, src: Source, special: dict[int, Node]) -> Node:
        """A long wildcard: one node for all its lines (no node per plain line)."""
        name = wildcard_name(ref.pattern)
        refs = self.line_refs(ref.pattern, lines)
        values = refs.values  # one tuple of the lines' values, shared
        var = Variable(name, "wildcard", values, src, ref.start, ref, refs)
        self.variable(var, ("__", ref.pattern))
        if lines.weights is not None:
            _line_weights(lines, src, ref.start)
        file_entry = None
        if _is_glob(ref.pattern):
            files, file_of = _line_files(lines)
            fname = file_name(name)
            self.variable(
                Variable(fname, "file", tuple(files), src, ref.start, ref, group=name),
                ("__.file", ref.pattern),
            )
            file_entry = (fname, files, file_of)
        return TextPick(lines.texts, lines.weights, name, values, file_entry, special)

    def _wildcard_entries(self, ref: WildcardRef, lines: LineSet, src: Source) -> tuple[Any, Any]:
        """Each line's trace entry, the line (``singles``); for a glob, the line and the
        file it came from (``entries``)."""
        name = wildcard_name(ref.pattern)
        refs = self.line_refs(ref.pattern, lines)
        texts = refs.values
        var = Variable(name, "wildcard", texts, src, ref.start, ref, refs)
        self.variable(var, ("__", ref.pattern))
        singles = tuple((name, Chosen(k, value)) for k, value in enumerate(texts))
        if not _is_glob(ref.pattern):
            return singles, None
        files, file_of = _line_files(lines)
        fname = file_name(name)
        var = Variable(fname, "file", tuple(files), src, ref.start, ref, group=name)
        self.variable(var, ("__.file", ref.pattern))
        file_entries = [(fname, Chosen(k, f)) for k, f in enumerate(files)]
        return None, tuple((e, file_entries[file_of[k]]) for k, e in enumerate(singles))

    def line_refs(self, pattern: str, lines: LineSet) -> Lines:
        """The lines of a pattern as variables keep them (once per pattern): columns,
        sharing the strings of the wildcard's lines."""
        refs = self.line_ref_cache.get(pattern)
        if refs is None:
            n = len(lines)
            if lines.file_of is None:
                paths: Sequence[str] = (lines.files[0][2].name,) * n
            else:
                names = [f[2].name for f in lines.files]
                paths = tuple(names[f] for f in lines.file_of)
            weights = (1.0,) * n if lines.weights is None else lines.weights
            refs = Lines(paths, lines.numbers, tuple(lines.values), weights)  # type: ignore[arg-type]  # columns: arrays where a tuple would cost an object per line
            self.line_ref_cache[pattern] = refs
        return refs

    def wildcard(self, ref: WildcardRef, src: Source) -> tuple[list[Node], LineSet]:
        """The compiled lines of a wildcard, and the lines."""
        lines = self.lines.get(ref, src)
        pattern = lines.pattern
        done = self.wild_compiled.get(pattern)
        if done is not None:  # compiled once: {2$$__a__} inside __b__ inside ... stays linear
            return done
        special = self.special_lines(ref, lines, src)
        nodes = [special[k] if k in special else Lit(text) for k, text in enumerate(lines.texts)]
        done = (nodes, lines)
        self.wild_compiled[pattern] = done
        return done

    def special_lines(self, ref: WildcardRef, lines: LineSet, src: Source) -> dict[int, Node]:
        """The compiled nodes of a wildcard's lines that are more than plain text (once
        per wildcard); a cycle of wildcards is an error at ``ref``."""
        pattern = lines.pattern
        done = self.wild_special.get(pattern)
        if done is not None:
            return done
        if pattern in self.wild_in_progress:
            cycle = self.wild_in_progress[self.wild_in_progress.index(pattern) :] + [pattern]
            raise TemplateError(
                "wildcards refer to each other in a cycle: " + " → ".join(f"__{p}__" for p in cycle),
                src,
                ref.start,
            )
        self.wild_in_progress.append(pattern)
        try:
            if self.depth >= MAX_DEPTH:  # too deep: parts() says where
                self.parts(lines.parts(0), lines.source(0), Scope(""))
            scope = Scope(wildcard_name(pattern))  # numbers choices across the lines
            parsed = sorted(lines.parsed.items())
            special = {k: self.parts(parts, lines.source(k), scope) for k, parts in parsed}
        finally:
            self.wild_in_progress.pop()
        self.wild_special[pattern] = special
        return special

    # choices ---------------------------------------------------------------------------
    def choice(self, choice: Choice, src: Source, name: str) -> Node:
        """``{a|b}`` or the multi-select ``{2$$a|b|c}``, traced as ``name``."""
        alts = choice.alternatives
        only = alts[0].parts if len(alts) == 1 else ()
        wild = only[0] if len(only) == 1 and isinstance(only[0], WildcardRef) else None
        lines: Lines | tuple[()] = ()
        if wild is not None:  # {2$$__colours__}: choose among the wildcard's lines
            parsed = self.lines.get(wild, src)
            lines = self.line_refs(parsed.pattern, parsed)
            keys = list(parsed.texts)
            texts = list(parsed.values)
            weights = parsed.weight_list()
        else:
            keys = [a.text for a in alts]
            texts = [value_text(a, src.text) for a in alts]
            weights = [a.weight for a in alts]
        if choice.select is not None:
            items, counts = self._multi_entries(choice, keys, texts, src, name, lines)
        elif len(texts) > 1:  # {x} alone has nothing to choose
            if sum(weights) <= 0:
                raise TemplateError(_NO_WEIGHT, src, choice.start, hint=_NO_WEIGHT_HINT)
            var = Variable(name, "choice", tuple(texts), src, choice.start, choice, lines)
            self.variable(var, ("{", choice, src))
        if wild is not None:
            nodes = self.wildcard(wild, src)[0]
        else:
            scope = Scope(name)
            nodes = [self.parts(a.parts, src, scope) for a in alts]
        if choice.select is not None:
            return _multi(nodes, weights, choice.select, keys, src, choice.start, items, counts)
        if len(nodes) == 1:
            return nodes[0]
        return Pick(nodes, weights, name, texts, keys)

    def optional(self, choice: Choice, src: Source, name: str) -> Node:
        """``[x]`` (traced as ``name`` with the value ``x`` when present) or ``[a|b]``
        (the value ``a`` or ``b`` when present)."""
        empty, present = choice.alternatives
        if not present.text:
            return Lit("")  # `[ ]`: nothing to choose
        warning = a1111_optional(choice, src)
        if warning is not None and (src.where(choice.start), 0) not in self.warned:
            self.warned.add((src.where(choice.start), 0))
            self.warnings.append(warning)
        keys = [empty.text, present.text]
        inner = merged_choice(choice)
        scope = Scope(name)
        if inner is None:
            texts: tuple[str, ...] = (value_text(present, src.text),)
        else:
            texts = tuple(value_text(a, src.text) for a in inner.alternatives)
        self.variable(Variable(name, "optional", texts, src, choice.start, choice), ("[", choice, src))
        if inner is None:
            node = self.parts(present.parts, src, scope)
            entries = ((), ((name, Chosen(0, texts[0])),))
            return Pick([Lit(""), node], [empty.weight, present.weight], keys=keys, entries=entries)
        weights = [a.weight for a in inner.alternatives]
        if sum(weights) <= 0:
            raise TemplateError(_NO_WEIGHT, src, inner.start, hint=_NO_WEIGHT_HINT)
        nodes = [self.parts(a.parts, src, scope) for a in inner.alternatives]
        node = Pick(nodes, weights, name, texts, [a.text for a in inner.alternatives])
        return Pick([Lit(""), node], [empty.weight, present.weight], keys=keys)

    def _multi_entries(
        self,
        choice: Choice,
        keys: list[str],
        texts: list[str],
        src: Source,
        name: str,
        lines: Lines | tuple[()],
    ) -> tuple[list[tuple[str, Chosen]], list[tuple[str, Chosen]] | None]:
        """A multi-select's trace entries: one variable per distinct item (present or
        absent), and the count when it varies."""
        sel = choice.select
        assert sel is not None
        first: dict[str, int] = {}
        items = []
        for k, text in enumerate(texts):
            canonical = first.setdefault(text, k)
            item = item_name(name, text)
            items.append((item, Chosen(canonical, text)))
            if canonical == k:
                var = Variable(item, "item", (text,), src, choice.start, choice, lines, name, k)
                self.variable(var, ("+", choice, src, k))
        distinct = len(set(keys))
        hi = distinct if sel.high is None else min(sel.high, distinct)
        if min(sel.low, hi) >= hi:
            return items, None
        cname = count_name(name)
        values = tuple(str(j) for j in range(hi + 1))
        self.variable(
            Variable(cname, "count", values, src, choice.start, choice, group=name), ("#", choice, src)
        )
        return items, [(cname, Chosen(j, str(j))) for j in range(hi + 1)]


def _multi(
    nodes: list[Node],
    weights: list[float],
    sel: Select,
    keys: list[str],
    src: Source,
    start: int,
    items: Sequence[tuple[str, Chosen]],
    counts: Sequence[tuple[str, Chosen]] | None,
) -> Node:
    """``{lo-hi$$joiner$$…}`` over compiled alternatives."""
    if sum(weights) <= 0 and sel.low > 0:
        raise TemplateError(_NO_WEIGHT, src, start)
    if all(n.closed for n in nodes):
        try:
            return Multi(nodes, weights, sel.low, sel.high, sel.joiner, keys, items, counts)
        except SpaceTooComplex as exc:
            raise TemplateError(str(exc), src, start) from None
    return _open_multi(nodes, weights, sel, keys, src, start, items, counts)


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _line_files(lines: LineSet) -> tuple[list[str], list[int]]:
    """The files a glob's lines come from, in the order their first lines do, and each
    line's file among them."""
    first: dict[int, int] = {}
    file_of = lines.file_of
    out = []
    for k in range(len(lines)):
        f = 0 if file_of is None else file_of[k]
        out.append(first.setdefault(f, len(first)))
    files = [lines.files[f][0] for f in first]
    return files, out


def _line_weights(lines: LineSet, src: Source, at: int) -> list[float]:
    weights = lines.weight_list()
    if sum(weights) <= 0:
        raise TemplateError(
            "every line of the wildcard has weight 0, so none can be chosen",
            src,
            at,
            hint="give at least one line a positive weight",
        )
    return weights


# ---------------------------------------------------------------------------------------
# multi-selects


def _open_multi(
    nodes: list[Node],
    weights: list[float],
    sel: Select,
    keys: list[str],
    src: Source,
    start: int,
    items: Sequence[tuple[str, Chosen]],
    counts: Sequence[tuple[str, Chosen]] | None,
) -> Node:
    """A multi-select whose alternatives use shared slots: a choice among every
    selection, each weighted as the random sampler would draw it, and traced as the
    count (for a range) and the items in order."""
    distinct, merged = _merge_identical(keys, weights)
    n = len(distinct)
    hi = n if sel.high is None else min(sel.high, n)
    lo = min(sel.low, hi)
    options: list[Node] = []
    option_weights: list[float] = []
    entries: list[tuple[tuple[str, Chosen], ...]] = []
    for k in range(lo, hi + 1):
        for perm in itertools.permutations(distinct, k):
            if len(options) >= MAX_OPEN_MULTI:
                raise TemplateError(
                    "a multi-select whose alternatives use shared slots is limited to "
                    f"{MAX_OPEN_MULTI} selections",
                    src,
                    start,
                )
            options.append(_joined(nodes, perm, sel.joiner, items))
            option_weights.append(_selection_weight(perm, merged, n, hi - lo + 1))
            head = (counts[k],) if counts is not None else ()
            entries.append(head)
    if not options:
        return Pick([Lit("")], [1.0])
    return Pick(options, option_weights, entries=tuple(entries))


def _merge_identical(keys: list[str], weights: list[float]) -> tuple[list[int], dict[int, float]]:
    """The index of the first of each group of identical alternatives, and each group's
    weight (identical alternatives are one; their weights add up)."""
    distinct: list[int] = []
    first: dict[str, int] = {}
    merged: dict[int, float] = {}
    for k, key in enumerate(keys):
        if key in first:
            merged[first[key]] += weights[k]
            continue
        first[key] = k
        merged[k] = weights[k]
        distinct.append(k)
    return distinct, merged


def _joined(nodes: list[Node], perm: Iterable[int], joiner: str, items: Sequence[tuple[str, Chosen]]) -> Node:
    """The selection ``perm``: each item's trace entry, then its alternative (whose own
    choices are traced after it, as :class:`Multi` traces them), joined."""
    pieces: list[Node] = []
    for i, idx in enumerate(perm):
        if i:
            pieces.append(Lit(joiner))
        pieces.append(Pick([Lit("")], [1.0], entries=((items[idx],),)))  # the entry alone: no draw
        pieces.append(nodes[idx])
    return _seq(pieces)


def _selection_weight(perm: Sequence[int], merged: dict[int, float], n: int, counts: int) -> float:
    """The probability the random sampler gives a selection without shared slots
    (space.Multi): a uniform count, then weighted draws without return."""
    w = 1.0 / counts
    left = sum(merged.values())
    remaining = n
    for idx in perm:
        w *= merged[idx] / left if left > 0 else 1.0 / remaining
        left -= merged[idx]
        remaining -= 1
    return w


# ---------------------------------------------------------------------------------------


def _seq(nodes: list[Node]) -> Node:
    """A sequence: adjacent literals merged, runs of closed nodes grouped (short
    continuations later)."""
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
        merged = _group_closed(merged)
    return Seq(merged)


def _group_closed(nodes: list[Node]) -> list[Node]:
    """Runs of closed nodes each become one sequence between the open ones."""
    grouped: list[Node] = []
    run: list[Node] = []
    for n in nodes:
        if n.closed:
            run.append(n)
        else:
            if run:
                grouped.append(run[0] if len(run) == 1 else Seq(run))
                run = []
            grouped.append(n)
    if run:
        grouped.append(run[0] if len(run) == 1 else Seq(run))
    return grouped
