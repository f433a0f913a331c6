"""The first pass of compiling: how often each slot is referenced from the entry points.

A slot referenced more than once is *shared*: it is bound once per prompt, so that
``<animal> and <animal>`` says the same animal twice. References are followed through
slots, choices and wildcard lines; an undefined slot is reported where it is first met,
with the nearest defined name suggested.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NoReturn

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.definitions import (
    ENTRY_POINTS,
    SlotInfo,
    misplaced_variable,
    resolve_variable,
    suggest,
)
from stable_discovery.language.syntax import Node as SyntaxNode
from stable_discovery.language.syntax import SlotRef, Text, VarRef, VarSet, WildcardRef, sub_parts
from stable_discovery.language.wildcard_lines import WildcardLines

__all__ = ["count_references", "unknown_slot"]


def count_references(
    slots: Mapping[str, SlotInfo],
    roots: Sequence[str],
    lines: WildcardLines,
    macros: Mapping[str, VarSet] | None = None,
) -> dict[str, int]:
    """Slot name → how many times it is referenced (at least twice: shared), walking
    from the ``roots`` in source order; ``macros`` are dynamicprompts' variables set
    without ``!`` (each use is a copy of the value)."""
    counter = _ReferenceCounter(slots, lines, macros or {})
    counter.walk(roots)
    return counter.counts


def unknown_slot(slots: Mapping[str, SlotInfo], ref: SlotRef, src: Source) -> NoReturn:
    """Raise the error for a reference to a slot that is not defined."""
    names = list(slots)
    guess = suggest(ref.name, names)
    hint = None
    others = [n for n in names if n not in ENTRY_POINTS]
    if guess is None and others:
        hint = "defined slots: " + ", ".join(f"<{n}>" for n in others)
    if guess is None and not others:
        hint = "define it with a line `" + ref.name + " = value | value`"
    message = f"unknown slot <{ref.name}>" + (f": did you mean <{guess}>?" if guess else "")
    raise TemplateError(message, src, ref.start, hint=hint)


class _ReferenceCounter:
    """One iterative walk (templates nest deeper than Python's recursion allows)."""

    def __init__(
        self, slots: Mapping[str, SlotInfo], lines: WildcardLines, macros: Mapping[str, VarSet]
    ) -> None:
        self.slots = slots
        self.macros = macros
        self.lines = lines
        self.counts: dict[str, int] = {}
        self.visited_slots: set[str] = set()
        self.visited_lines: set[str] = set()
        # (part, where it is written, how much one visit counts)
        self.stack: list[tuple[SyntaxNode, Source, int]] = []

    def walk(self, roots: Sequence[str]) -> None:
        stack = self.stack
        for name in roots:
            if name in self.slots:
                self.visited_slots.add(name)
                info = self.slots[name]
                for alt in info.alternatives:
                    stack.extend((p, info.source, 1) for p in alt.parts)
        stack.reverse()  # pop() then walks the references in source order
        while stack:
            node, src, mult = stack.pop()
            if isinstance(node, SlotRef):
                self._slot(node, src, mult)
            elif isinstance(node, WildcardRef):
                self._wildcard(node, src)
            elif isinstance(node, VarRef):
                self._variable(node, src, mult)
            elif isinstance(node, VarSet):
                raise misplaced_variable(node, src)
            else:  # choices, wraps: what is inside them
                for parts in reversed(sub_parts(node)):
                    stack.extend((p, src, mult) for p in reversed(parts))

    def _variable(self, ref: VarRef, src: Source, mult: int) -> None:
        what = resolve_variable(ref, self.slots, self.macros, src)
        if isinstance(what, SlotRef):
            self._slot(what, src, mult)
        elif isinstance(what, VarSet):  # each use a copy: its slots count at each
            self.stack.extend((p, self.slots["prompt"].source, mult) for p in reversed(what.value.parts))
        else:
            self.stack.extend((p, src, mult) for p in reversed(what.parts))

    def _slot(self, ref: SlotRef, src: Source, mult: int) -> None:
        self.counts[ref.name] = self.counts.get(ref.name, 0) + mult
        info = self.slots.get(ref.name)
        if info is None:
            unknown_slot(self.slots, ref, src)
        if ref.name not in self.visited_slots:
            self.visited_slots.add(ref.name)
            for alt in reversed(info.alternatives):
                self.stack.extend((p, info.source, 1) for p in reversed(alt.parts))

    def _wildcard(self, ref: WildcardRef, src: Source) -> None:
        stack = self.stack
        lines = self.lines.get(ref, src)
        # (a plain line refers to nothing: only the parsed lines' references and choices
        # are walked; pushed last line first, so that the first mistake is met first)
        for k, parts in reversed(list(lines.parsed.items())):
            line_src = lines.source(k)
            key = line_src.name + ":" + str(line_src.first_line)
            # a slot used in a wildcard line may be used from many places
            if key in self.visited_lines:
                stack.extend((p, line_src, 2) for p in reversed(parts) if isinstance(p, SlotRef))
                continue
            self.visited_lines.add(key)
            stack.extend((p, line_src, 2) for p in reversed(parts) if type(p) is not Text)
