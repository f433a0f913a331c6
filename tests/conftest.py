"""Shared helpers for the test suite: load a template, expand it, catch its error."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from stable_discovery.errors import TemplateError
from stable_discovery.language.program import Program, loads
from stable_discovery.plugins import get_sampler

REPO = Path(__file__).resolve().parent.parent


def expand(text: str, wildcards: Sequence[Path | str] = ()) -> list[str]:
    """Every prompt of a template, in combinatorial (odometer) order."""
    program = loads(text, wildcard_dirs=wildcards)
    return [s.prompt for s in get_sampler("combinatorial").samples(program, 0, program.count(), 0)]


def records(program: Program, sampler: str = "combinatorial", n: int | None = None, seed: int = 0):
    s = get_sampler(sampler)
    if n is None:
        n = program.count()
    return list(s.samples(program, 0, n, seed))


def traces(sample) -> dict[str, tuple[int, str]]:
    return {k: (v.index, v.text) for k, v in sample.trace.items()}


def error(text: str, wildcards: Sequence[Path | str] = (), name: str = "<template>") -> TemplateError:
    """The TemplateError a template raises (fails the test when it loads)."""
    with pytest.raises(TemplateError) as info:
        loads(text, name=name, wildcard_dirs=wildcards)
    return info.value


def write_wildcards(root: Path, files: Mapping[str, Iterable[str] | str]) -> Path:
    """Write wildcard files ``{"dir/name": ["line", ...]}`` under ``root``; returns root."""
    root.mkdir(parents=True, exist_ok=True)
    for name, lines in files.items():
        path = root / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = lines if isinstance(lines, str) else "\n".join(lines) + "\n"
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def wildcards(tmp_path: Path):
    """A factory: ``wildcards({"colours": ["red", "blue"]})`` → the folder."""
    counter = [0]

    def make(files: Mapping[str, Iterable[str] | str]) -> Path:
        counter[0] += 1
        return write_wildcards(tmp_path / f"wildcards{counter[0]}", files)

    return make
