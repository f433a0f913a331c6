"""The original stable-discovery tool's JSON generator configs, reproduced exactly.

A config (``subjects``, ``actions``, ``suffixes_1..3``, ``steps``, ``num_configs``,
``generator_seed``) is read as the ``.sdp`` text :func:`config_to_sdp` writes, so a JSON
file and its converted ``.sdp`` are the same program. The ``legacy`` sampler
(:mod:`stable_discovery.sampling.legacy`) replays the original algorithm.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.syntax import Text

if TYPE_CHECKING:
    from stable_discovery.language.program import Program

__all__ = ["LegacyConfig", "legacy_source", "config_to_sdp", "config_of", "parse_config", "SUFFIXES"]

KEYS = (
    "subjects",
    "actions",
    "suffixes_1",
    "suffixes_2",
    "suffixes_3",
    "steps",
    "num_configs",
    "generator_seed",
)
SUFFIXES = ("suffix_1", "suffix_2", "suffix_3")
#: The config keys of the suffix lists, in the order of SUFFIXES.
SUFFIX_KEYS = ("suffixes_1", "suffixes_2", "suffixes_3")


@dataclass(frozen=True)
class LegacyConfig:
    subjects: tuple[str, ...]
    actions: tuple[str, ...]
    suffixes: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
    steps: tuple[int, ...]
    num_configs: int
    generator_seed: int


def _where(source: Source, key: str) -> int | None:
    m = re.search(r'"' + re.escape(key) + r'"\s*:', source.text)
    return m.start() if m else None


def parse_config(source: Source) -> LegacyConfig:
    """Read and check a JSON generator config; errors name the key and its place."""
    data = _json_object(source)
    steps = _steps(data, source)
    return LegacyConfig(
        subjects=_strings(data, source, "subjects", required=True),
        actions=_strings(data, source, "actions", required=True),
        suffixes=(
            _strings(data, source, "suffixes_1", required=False),
            _strings(data, source, "suffixes_2", required=False),
            _strings(data, source, "suffixes_3", required=False),
        ),
        steps=steps,
        num_configs=_integer(data, source, "num_configs", 0),
        generator_seed=_integer(data, source, "generator_seed"),
    )


def _json_object(source: Source) -> dict[str, Any]:
    """The config's JSON object, with no key but the known ones."""
    try:
        data = json.loads(source.text)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"not valid JSON: {exc.msg}", source, exc.pos) from None
    if not isinstance(data, dict):
        raise TemplateError("a generator config is a JSON object with keys " + ", ".join(KEYS), source, 0)
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise TemplateError(
            f"unknown key {unknown[0]!r} in a generator config",
            source,
            _where(source, unknown[0]),
            hint="the keys are: " + ", ".join(KEYS),
        )
    return data


def _strings(data: dict[str, Any], source: Source, key: str, required: bool) -> tuple[str, ...]:
    """A list of one-line strings (an absent optional key is an empty list)."""
    if key not in data:
        if required:
            raise TemplateError(f"missing key {key!r}: a list of strings", source, 0)
        return ()
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TemplateError(f"{key!r} must be a list of strings", source, _where(source, key))
    if required and not value:
        raise TemplateError(f"{key!r} must not be empty", source, _where(source, key))
    for v in value:
        if "\n" in v or "\x00" in v:
            raise TemplateError(f"a value of {key!r} contains a line break", source, _where(source, key))
    return tuple(value)


def _integer(data: dict[str, Any], source: Source, key: str, lo: int | None = None) -> int:
    """An integer (not a boolean), at least ``lo`` when given."""
    if key not in data:
        raise TemplateError(f"missing key {key!r}: an integer", source, 0)
    value = data[key]
    if not isinstance(value, int) or isinstance(value, bool) or (lo is not None and value < lo):
        what = "an integer" + (f" of at least {lo}" if lo is not None else "")
        raise TemplateError(f"{key!r} must be {what}", source, _where(source, key))
    return value


def _steps(data: dict[str, Any], source: Source) -> tuple[int, ...]:
    """``steps``: a non-empty list of positive integers."""
    steps = data.get("steps")
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in steps)
    ):
        raise TemplateError(
            "'steps' must be a non-empty list of positive integers", source, _where(source, "steps") or 0
        )
    return tuple(steps)


_SPECIAL = re.compile(r"[\\{}\[\]|#<>$]|_(?=_)|(?<=_)_")
_LOOKS_LIKE_WEIGHT = re.compile(r"\s*(?:\d+(?:\.\d*)?|\.\d+)\s*::")


def _escape(value: str, source: Source, key: str) -> str:
    if _LOOKS_LIKE_WEIGHT.match(value):
        raise TemplateError(
            f"the value {value!r} of {key!r} starts like a weight ('N::') and cannot be converted",
            source,
            _where(source, key),
        )
    return _SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def prompt_shape(config: LegacyConfig) -> str:
    """The prompt line that matches the original tool's prompt construction."""
    text = "<subject> <action>"
    for name, values in zip(SUFFIXES, config.suffixes, strict=False):
        # the original draws among the values and None alike: weighting the part by the
        # number of values gives `absent` the same 1/(n+1) share under @sampler = random
        if len(values) > 1:
            text += f"[{len(values)}::, <{name}>]"
        elif values:
            text += f"[, <{name}>]"
    return text


def _unweighted(prompt: str) -> str:
    """The prompt shape without weights on optional parts (legacy draws ignore them)."""
    return re.sub(r"\[\s*(?:\d+(?:\.\d*)?|\.\d+)\s*::\s*", "[", prompt)


def config_to_sdp(config: LegacyConfig, source: Source) -> str:
    """The ``.sdp`` text equivalent to a config (``sdp convert``)."""

    def slot(name: str, key: str, values: tuple[str, ...]) -> list[str]:
        escaped = [_escape(v, source, key) for v in values]
        pad = " " * len(name)
        if escaped[0] == "" and len(escaped) > 1:
            # `name =` followed by continuation lines has no empty first alternative:
            # keep the empty value by writing the second on the first line
            lines = [f"{name} = | {escaped[1]}"]
            rest = escaped[2:]
        else:
            lines = [f"{name} = {escaped[0]}"]
            rest = escaped[1:]
        lines.extend(f"{pad} | {v}" for v in rest)
        return lines

    out = [
        f"# Converted from {source.name}, a generator config of the original stable-discovery tool.",
        "# `@sampler = legacy` replays that tool's exact sequence (prompts, steps, image seeds);",
        "# with `@sampler = random` the same slots are sampled independently instead.",
    ]
    out += slot("subject", "subjects", config.subjects)
    out += slot("action", "actions", config.actions)
    for name, key, values in zip(SUFFIXES, SUFFIX_KEYS, config.suffixes, strict=False):
        if values:
            out += slot(name, key, values)
    out.append("")
    out.append(f"prompt = {prompt_shape(config)}")
    out.append("")
    out.append("@steps = " + " | ".join(str(s) for s in config.steps))
    out.append(f"@count = {config.num_configs}")
    out.append(f"@seed = {config.generator_seed}")
    out.append("@sampler = legacy")
    return "\n".join(out) + "\n"


def legacy_source(source: Source) -> tuple[str, LegacyConfig]:
    config = parse_config(source)
    return config_to_sdp(config, source), config


def _plain_values(program: Program, name: str) -> tuple[str, ...]:
    info = program.slots.get(name)
    if info is None:
        return ()
    values = []
    for alt in info.alternatives:
        if any(not isinstance(p, Text) for p in alt.parts):
            raise TemplateError(
                f"the legacy sampler needs plain values in <{name}>, not templates",
                program.source,
                alt.start,
                hint="use @sampler = random for templates with choices inside slots",
            )
        values.append("".join(p.value for p in alt.parts if isinstance(p, Text)))
    return tuple(values)


def config_of(program: Program) -> LegacyConfig:
    """The legacy config a program stands for; refuses programs of another shape."""
    if program.legacy is not None:
        return program.legacy
    src = program.source
    missing = [n for n in ("subject", "action") if n not in program.slots]
    if missing or "steps" not in program.settings:
        raise TemplateError(
            "the legacy sampler replays the original tool, which needs slots <subject> and "
            "<action>, optional <suffix_1>..<suffix_3>, and @steps",
            src,
            0,
            hint="use @sampler = random, combinatorial or shuffle for other templates",
        )
    extra = [n for n in program.slots if n not in ("subject", "action", "prompt", "negative") + SUFFIXES]
    config = LegacyConfig(
        subjects=_plain_values(program, "subject"),
        actions=_plain_values(program, "action"),
        suffixes=(
            _plain_values(program, "suffix_1"),
            _plain_values(program, "suffix_2"),
            _plain_values(program, "suffix_3"),
        ),
        steps=tuple(program.settings["steps"].values),
        num_configs=int(program.setting("count", 0)),
        generator_seed=int(program.setting("seed", 0)),
    )
    prompt = program.slots["prompt"]
    written = " ".join(prompt.alternatives[0].text.split()) if len(prompt.alternatives) == 1 else ""
    if extra or _unweighted(written) != _unweighted(prompt_shape(config)):
        raise TemplateError(
            f"the legacy sampler builds prompts as the original tool did: `prompt = {prompt_shape(config)}`",
            src,
            prompt.start,
            hint="use @sampler = random to sample a prompt of another shape",
        )
    negative = program.slots.get("negative")
    if negative is not None and (
        len(negative.alternatives) > 1 or any(not isinstance(p, Text) for p in negative.alternatives[0].parts)
    ):
        raise TemplateError(
            "with the legacy sampler the negative prompt must be plain text", src, negative.start
        )
    sampled = [n for n in program.sampled_settings if n != "steps"]
    if sampled:
        raise TemplateError(
            f"the legacy sampler samples only @steps; @{sampled[0]} has several values",
            src,
            program.settings[sampled[0]].start,
        )
    return config
