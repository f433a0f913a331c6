"""A parsed template sorted into what it defines: slots, and settings with their values
checked.

Every mistake that is visible without following references is found here: a name
defined twice, no ``prompt``, a name that is both a slot and a setting, unknown
settings and their malformed values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.settings import BUILTIN_SETTINGS, SettingSpec, SettingValueError
from stable_discovery.language.syntax import (
    Alternative,
    Choice,
    Definition,
    Node,
    ParsedTemplate,
    SlotRef,
    Text,
    VarRef,
    VarSet,
    sub_parts,
)

__all__ = [
    "ENTRY_POINTS",
    "SlotInfo",
    "SettingInfo",
    "Definitions",
    "definitions_of",
    "setting_info",
    "settings_specs",
    "suggest",
    "resolve_variable",
    "misplaced_variable",
]

#: The slots a sample starts from, in the order they appear in it.
ENTRY_POINTS = ("prompt", "negative")


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


@dataclass(frozen=True)
class Definitions:
    """What a template defines, checked; a bare template defines its prompt alone.

    ``macros`` are dynamicprompts' variables set without ``!`` (``${name=value}``): each
    use is a copy of the value, chosen anew. Those set with ``!`` are slots, and
    ``slot_choices`` holds, for such a slot, the choice it was written as
    (``${animal=!{cat|dog}}``: where its weights are)."""

    slots: dict[str, SlotInfo]
    settings: dict[str, SettingInfo]
    specs: dict[str, SettingSpec]  # every setting a template may use
    is_bare: bool
    macros: dict[str, VarSet] = field(default_factory=dict)
    slot_choices: dict[str, Choice] = field(default_factory=dict)


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a misspelt ``name``, if one is close enough."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def settings_specs(extra: Sequence[SettingSpec]) -> dict[str, SettingSpec]:
    """The built-in settings and ``extra`` ones (plugins'), by name; extra ones win."""
    specs = {s.name: s for s in BUILTIN_SETTINGS}
    for s in extra:
        specs[s.name] = s
    return specs


def definitions_of(source: Source, parsed: ParsedTemplate, specs: dict[str, SettingSpec]) -> Definitions:
    """Sort a parsed template into slots and settings, and check them."""
    if parsed.bare is not None:
        text = source.text.strip()
        slots = {"prompt": SlotInfo("prompt", (Alternative(parsed.bare, 1.0, text, 0),), 0, source)}
        settings: dict[str, SettingInfo] = {}
    else:
        slots, settings = _sort(source, parsed.definitions, specs)
        _check_prompt(source, slots)
        _check_names_differ(source, slots, settings)
    if "size" in settings and ("width" in settings or "height" in settings):
        raise TemplateError("use either @size or @width/@height, not both", source, settings["size"].start)
    macros, choices = _variables(source, slots, settings)
    return Definitions(slots, settings, specs, parsed.bare is not None, macros, choices)


# ---------------------------------------------------------------------------------------
# dynamicprompts' variables


def _variables(
    source: Source, slots: dict[str, SlotInfo], settings: dict[str, SettingInfo]
) -> tuple[dict[str, VarSet], dict[str, Choice]]:
    """Take the variables set at the top level of the prompt and the negative prompt
    out of them: ``${a=!…}`` becomes the slot ``a``, ``${a=…}`` a macro. A variable set
    anywhere else is refused (its place is in the error)."""
    found: dict[str, VarSet] = {}
    for entry in ENTRY_POINTS:
        info = slots.get(entry)
        if info is None:
            continue
        alts: list[Alternative] = []
        for alt in info.alternatives:
            kept = [p for p in alt.parts if not isinstance(p, VarSet)]
            for p in alt.parts:
                if isinstance(p, VarSet):
                    _add_variable(source, p, found, slots, settings)
            alts.append(
                alt
                if len(kept) == len(alt.parts)
                else Alternative(tuple(kept), alt.weight, alt.text, alt.start)
            )
        slots[entry] = SlotInfo(entry, tuple(alts), info.start, info.source)
    for info in list(slots.values()):
        for alt in info.alternatives:
            _refuse_nested_sets(alt.parts, source)
    macros: dict[str, VarSet] = {}
    choices: dict[str, Choice] = {}
    for name, var in found.items():
        _refuse_nested_sets(var.value.parts, source)
        if var.immediate:
            slot_alts, choice = _slot_alternatives(var)
            slots[name] = SlotInfo(name, slot_alts, var.start, source)
            if choice is not None:
                choices[name] = choice
        else:
            macros[name] = var
    _check_macro_cycles(source, macros)
    return macros, choices


def _add_variable(
    source: Source,
    var: VarSet,
    found: dict[str, VarSet],
    slots: dict[str, SlotInfo],
    settings: dict[str, SettingInfo],
) -> None:
    first = found.get(var.name)
    if first is not None or var.name in slots or var.name in settings:
        what = (
            f"set twice (first at {':'.join(map(str, source.line_col(first.start)))})"
            if first is not None
            else "already " + ("the name of a setting" if var.name in settings else "a slot")
        )
        raise TemplateError(
            f"the variable {var.name!r} is {what}",
            source,
            var.start,
            hint="a variable is set once for the whole prompt (here a variable is a slot)",
        )
    found[var.name] = var


def _slot_alternatives(var: VarSet) -> tuple[tuple[Alternative, ...], Choice | None]:
    """The alternatives of the slot ``${name=!value}`` becomes: those of the value when
    it is one plain choice (``{cat|dog}``: the slot ``cat | dog``), else the value."""
    parts = var.value.parts
    if len(parts) == 1 and isinstance(parts[0], Choice):
        choice = parts[0]
        if not choice.optional and choice.select is None and choice.label is None:
            return choice.alternatives, choice
    return (var.value,), None


def misplaced_variable(var: VarSet, source: Source) -> TemplateError:
    return TemplateError(
        f"the variable {var.name!r} is set here, inside another construct; a variable is set at "
        "the top level of the prompt (or of the negative prompt)",
        source,
        var.start,
        hint=f"set it at the top of the prompt, or define a slot: `{var.name} = …` in a template "
        "file (a wildcard line uses the prompt's variables and slots)",
    )


def _refuse_nested_sets(parts: Sequence[Node], source: Source) -> None:
    stack = [list(parts)]
    while stack:
        for node in stack.pop():
            if isinstance(node, VarSet):
                raise misplaced_variable(node, source)
            stack.extend(list(sub) for sub in sub_parts(node))


def _macro_refs(var: VarSet) -> list[VarRef]:
    out = []
    stack = [list(var.value.parts)]
    while stack:
        for node in stack.pop():
            if isinstance(node, VarRef):
                out.append(node)
            stack.extend(list(sub) for sub in sub_parts(node))
    return out


def _check_macro_cycles(source: Source, macros: dict[str, VarSet]) -> None:
    """``${a=${b}} ${b=${a}}`` would never end: refused, at the first use in the cycle."""
    state: dict[str, int] = {}  # 1: being followed, 2: done
    for start in macros:
        if state.get(start):
            continue
        path = [(start, iter(_macro_refs(macros[start])))]
        state[start] = 1
        while path:
            name, refs = path[-1]
            ref = next(refs, None)
            if ref is None:
                state[name] = 2
                path.pop()
                continue
            if ref.name not in macros or state.get(ref.name) == 2:
                continue
            if state.get(ref.name) == 1:
                cycle = [n for n, _ in path][[n for n, _ in path].index(ref.name) :] + [ref.name]
                raise TemplateError(
                    "variables refer to each other in a cycle: " + " → ".join(f"${{{n}}}" for n in cycle),
                    source,
                    ref.start,
                    hint="a variable cannot contain itself, directly or through other variables",
                )
            state[ref.name] = 1
            path.append((ref.name, iter(_macro_refs(macros[ref.name]))))


def resolve_variable(
    ref: VarRef, slots: Mapping[str, SlotInfo], macros: Mapping[str, VarSet], src: Source
) -> SlotRef | VarSet | Alternative:
    """What ``${name}`` (or ``${name:default}``) stands for: a slot (set with ``!``, or
    defined), a macro (each use a copy of its value), or the default; else an error."""
    if ref.name in slots:
        return SlotRef(ref.name, ref.start)
    macro = macros.get(ref.name)
    if macro is not None:
        return macro
    if ref.default is not None:
        return ref.default
    names = [n for n in list(slots) + list(macros) if n not in ENTRY_POINTS]
    guess = suggest(ref.name, names)
    raise TemplateError(
        f"unknown variable ${{{ref.name}}}" + (f": did you mean ${{{guess}}}?" if guess else ""),
        src,
        ref.start,
        hint=f"set it at the top of the prompt, ${{{ref.name}=!value}}, define a slot "
        f"`{ref.name} = …`, or give a default: ${{{ref.name}:value}}",
    )


def _sort(
    source: Source, definitions: Sequence[Definition], specs: dict[str, SettingSpec]
) -> tuple[dict[str, SlotInfo], dict[str, SettingInfo]]:
    """Slots and checked settings, in source order; a name defined twice is an error."""
    slots: dict[str, SlotInfo] = {}
    settings: dict[str, SettingInfo] = {}
    first_at: dict[str, int] = {}
    for d in definitions:
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
            settings[d.name] = setting_info(d, specs, source)
        else:
            slots[d.name] = SlotInfo(d.name, d.alternatives, d.start, source)
    return slots, settings


def _check_prompt(source: Source, slots: dict[str, SlotInfo]) -> None:
    if "prompt" not in slots:
        guess = suggest("prompt", slots)
        raise TemplateError(
            "no `prompt = …` definition: the prompt is the template's entry point"
            + (f" (is <{guess}> meant to be it?)" if guess else ""),
            source,
            0,
            hint="add a line such as: prompt = <subject> <action>[, <style>]",
        )


def _check_names_differ(source: Source, slots: dict[str, SlotInfo], settings: dict[str, SettingInfo]) -> None:
    both = [n for n in settings if n in slots]
    if both:
        raise TemplateError(
            f"'{both[0]}' is both a slot and a setting; the trace needs one name for one thing",
            source,
            slots[both[0]].start,
        )


def setting_info(d: Definition, specs: dict[str, SettingSpec], source: Source) -> SettingInfo:
    """A setting's definition checked against its spec: known, plain values that parse."""
    spec = specs.get(d.name)
    if spec is None:
        guess = suggest(d.name, specs)
        raise TemplateError(
            f"unknown setting @{d.name}" + (f": did you mean @{guess}?" if guess else ""),
            source,
            d.start,
            hint="known settings: " + ", ".join("@" + n for n in specs),
        )
    values, texts, weights = [], [], []
    for alt in d.alternatives:
        text = _plain_text(d.name, alt, source)
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


def _plain_text(name: str, alt: Alternative, source: Source) -> str:
    """A setting value's text, stripped; a value with choices or references is refused."""
    if any(not isinstance(p, Text) for p in alt.parts):
        raise TemplateError(
            f"a value of @{name} must be plain text, not a template",
            source,
            alt.start,
            hint="list the values with '|': @steps = 30 | 50",
        )
    return "".join(p.value for p in alt.parts if isinstance(p, Text)).strip()
