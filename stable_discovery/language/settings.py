"""Generation settings (``@name = value | value``): what each means and how it is checked.

A setting with several values is sampled like a slot and recorded in the trace. Plugins
may declare more settings (see :func:`SettingSpec`); an undeclared setting is an error
that lists the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SettingSpec", "BUILTIN_SETTINGS", "GENERATION_DEFAULTS", "SettingValueError"]


class SettingValueError(ValueError):
    """A setting value that does not parse; the message says what is expected."""


@dataclass(frozen=True)
class SettingSpec:
    """A declared setting: its name, how a value parses, and whether it may vary."""

    name: str
    parse: Callable[[str], Any]
    help: str
    multi: bool = True  # may list several values to sample from
    default: Any = None
    per_image: bool = True  # False: steers the sampler or the run, not in sample.settings


def _int(lo: int, hi: int | None = None, what: str = "an integer") -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise SettingValueError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise SettingValueError(f"expected {what} {bound}, got {value}")
        return value

    return parse


def _any_int(text: str) -> int:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise SettingValueError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SettingValueError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise SettingValueError(f"expected a non-negative number, got {text!r}")
    return value


def _dimension(text: str) -> int:
    value = _int(8, 8192, "a size in pixels")(text)
    if value % 8:
        raise SettingValueError(f"sizes must be multiples of 8, got {value}")
    return value


def _batch(text: str) -> int | str:
    if text.strip() == "auto":
        return "auto"
    try:
        return _int(1, 4096, "a batch size")(text)
    except SettingValueError as exc:
        raise SettingValueError(f"{exc}; or auto (the largest batch that fits)") from None


_SIZE = re.compile(r"(\d+)\s*[xX×]\s*(\d+)")


def _size(text: str) -> tuple[int, int]:
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise SettingValueError(f"expected WIDTHxHEIGHT such as 768x768, got {text!r}")
    return _dimension(m.group(1)), _dimension(m.group(2))


def _word(choices: tuple[str, ...] | None = None) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        if not value:
            raise SettingValueError("expected a value, got nothing")
        if choices is not None and value not in choices:
            raise SettingValueError(f"expected one of {', '.join(choices)}; got {value!r}")
        return value

    return parse


SCHEDULERS = (
    "ddim",
    "pndm",
    "lms",
    "euler",
    "euler_a",
    "heun",
    "dpm++2m",
    "dpm++2m_karras",
    "unipc",
    "flow_euler",
)

BUILTIN_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("count", _int(0), "number of samples (random sampler)", multi=False, per_image=False),
    SettingSpec("seed", _any_int, "seed of the sampler", multi=False, default=0, per_image=False),
    SettingSpec(
        "sampler",
        _word(),
        "random | combinatorial | shuffle | legacy | a plugin's",
        multi=False,
        default="random",
        per_image=False,
    ),
    SettingSpec(
        "seed_mode",
        _word(("index", "random")),
        "image seed: the sample index (default) or drawn from @seed",
        multi=False,
        default="index",
        per_image=False,
    ),
    SettingSpec(
        "batch",
        _batch,
        "images per backend call, or auto: the largest batch that fits in memory",
        multi=False,
        per_image=False,
    ),
    SettingSpec(
        "wildcards",
        _word(),
        "a wildcard folder searched before the others (relative to the template's folder)",
        multi=False,
        per_image=False,
    ),
    SettingSpec(
        "wildcard_lines",
        _word(("template", "literal")),
        "how wildcard files are read: template (default) or literal (data: only {…}, __…__, "
        "${…}, %{…}, weights and # comments are special)",
        multi=False,
        default="template",
        per_image=False,
    ),
    SettingSpec("steps", _int(1, 1000, "a step count"), "denoising steps", default=50),
    SettingSpec("guidance", _float, "classifier-free guidance scale", default=7.5),
    SettingSpec("size", _size, "WIDTHxHEIGHT, multiples of 8"),
    SettingSpec("width", _dimension, "width in pixels, a multiple of 8", default=768),
    SettingSpec("height", _dimension, "height in pixels, a multiple of 8", default=768),
    SettingSpec("model", _word(), "model id or path", default="stabilityai/stable-diffusion-2-1"),
    SettingSpec("scheduler", _word(SCHEDULERS), "noise scheduler", default="ddim"),
    SettingSpec(
        "weighting",
        _word(("a1111", "none")),
        "prompt weighting: a1111 ((word:1.3), BREAK) or none (the text as it is)",
        default="a1111",
    ),
    SettingSpec(
        "device",
        _word(),
        "where the diffusers backend runs: auto, cpu, cuda, cuda:N, mps",
        multi=False,
        per_image=False,
    ),
    SettingSpec(
        "optimize",
        _word(("on", "off")),
        "the diffusers backend's speed knobs chosen for the device (on) or none (off)",
        multi=False,
        per_image=False,
    ),
    SettingSpec(
        "compile",
        _word(("off", "default", "max-autotune")),
        "torch.compile the diffusers backend's denoiser: off, default or max-autotune",
        multi=False,
        per_image=False,
    ),
)

#: The generation settings every sample carries, with their defaults.
GENERATION_DEFAULTS: dict[str, Any] = {
    "steps": 50,
    "guidance": 7.5,
    "width": 768,
    "height": 768,
    "model": "stabilityai/stable-diffusion-2-1",
    "scheduler": "ddim",
}
