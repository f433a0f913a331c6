"""A parsed template sorted into what it defines: slots, and settings with their values
checked.

Every mistake that is visible without following references is found here: a name
defined twice, no ``prompt``, a name that is both a slot and a setting, unknown
settings and their malformed values.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.settings import BUILTIN_SETTINGS, SettingSpec, SettingValueError
from stable_discovery.language.syntax import Alternative, Definition, ParsedTemplate, Text

__all__ = [
    "ENTRY_POINTS",
    "SlotInfo",
    "SettingInfo",
    "Definitions",
    "definitions_of",
    "setting_info",
    "settings_specs",
    "suggest",
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
    """What a template defines, checked; a bare template defines its prompt alone."""

    slots: dict[str, SlotInfo]
    settings: dict[str, SettingInfo]
    specs: dict[str, SettingSpec]  # every setting a template may use
    is_bare: bool


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
    return Definitions(slots, settings, specs, parsed.bare is not None)


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
