"""Helpers the tests share: the repository's root, templates expanded or rejected,
wildcard folders, and synthetic experiments for the stats/refine/exploit tests (samples
from a real sampler, stored through the Store API without images, favourites decided
by a seeded rule)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import pytest

from stable_discovery import plugins
from stable_discovery.errors import Source, TemplateError
from stable_discovery.language.parser import parse
from stable_discovery.language.program import Program, loads
from stable_discovery.plugins import get_sampler
from stable_discovery.sampling.sample import Chosen, Sample
from stable_discovery.store.database import Experiment, ExperimentSpec, Store

#: The checkout's root folder.
REPO = Path(__file__).resolve().parent.parent

# -- templates -----------------------------------------------------------------------------


def expand(text: str, wildcards: Sequence[Path | str] = ()) -> list[str]:
    """Every prompt of a template, in combinatorial (odometer) order."""
    program = loads(text, wildcard_dirs=wildcards)
    return [s.prompt for s in get_sampler("combinatorial").samples(program, 0, program.count(), 0)]


def records(
    program: Program, sampler: str = "combinatorial", n: int | None = None, seed: int = 0
) -> list[Sample]:
    """The first ``n`` samples (all by default) of ``program`` from ``sampler``."""
    s = get_sampler(sampler)
    if n is None:
        n = program.count()
    return list(s.samples(program, 0, n, seed))


def traces(sample: Sample) -> dict[str, tuple[int, str]]:
    """A sample's trace as ``{slot: (alternative index, text)}``."""
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


def write_files(root: Path, files: Mapping[str, str]) -> Path:
    """Write ``{"relative/path.ext": text}`` under ``root`` as they are; returns root."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


# -- synthetic experiments -----------------------------------------------------------------

Rule = Callable[[Sample, random.Random], bool]


def make_experiment(
    store: Store,
    name: str,
    template: str,
    n: int,
    favourite: Rule,
    *,
    seed: int = 0,
    rule_seed: int = 12345,
    rejected: Rule | None = None,
    sampler: str | None = None,
    template_path: str | None = None,
    wildcards: tuple[Path, ...] = (),
) -> Experiment:
    """Store ``n`` samples of ``template`` as done, then mark favourites (and rejects)."""
    program = loads(
        template, name=template_path or name, wildcard_dirs=wildcards, extra_settings=plugins.setting_specs()
    )
    sampler_name = sampler or program.setting("sampler", "random")
    samples = list(get_sampler(sampler_name).samples(program, 0, n, seed))
    spec = ExperimentSpec(
        name=name,
        template_path=template_path,
        template_text=program.source.text,
        wildcards_hash="",
        sampler=sampler_name,
        seed=seed,
        count=n,
        backend="dummy",
        overrides={},
        variables=tuple((v.name, v.kind) for v in program.variables),
    )
    exp = store.open_experiment(spec)
    store.record_done(exp.id, [(s, f"{s.index:06d}.png", 0.0, 1) for s in samples])
    rng = random.Random(rule_seed)
    favs = [s.index for s in samples if favourite(s, rng)]
    if favs:
        store.rate(exp, favs, favourite=True)
    if rejected is not None:
        rej = [s.index for s in samples if rejected(s, rng)]
        if rej:
            store.rate(exp, rej, rejected=True)
    return store.require(name)


def rate_by(values: dict[tuple[str, str], float], default: float) -> Rule:
    """Favourite with probability ``values[(slot, text)]`` for the first matching trace
    entry, else ``default``."""

    def rule(sample: Sample, rng: random.Random) -> bool:
        p = default
        for name, chosen in sample.trace.items():
            if (name, chosen.text) in values:
                p = values[(name, chosen.text)]
                break
        return rng.random() < p

    return rule


def store_counts(
    store: Store,
    name: str,
    template: str,
    counts: dict[str, list[tuple[int, int, int]]],
) -> Experiment:
    """An experiment with exact counts: ``counts[slot]`` lists (alternative index, images,
    favourites); each image uses one value of one slot (the others stay absent)."""
    defs = {d.name: d for d in parse(Source(name, template)).definitions}
    samples, favs = [], []
    for slot, rows in counts.items():
        for index, images, favourites in rows:
            text = defs[slot].alternatives[index].text
            for j in range(images):
                i = len(samples)
                samples.append(Sample(i, f"{slot} {text}", "", {}, i, {slot: Chosen(index, text)}))
                if j < favourites:
                    favs.append(i)
    spec = ExperimentSpec(
        name=name,
        template_path=None,
        template_text=template,
        wildcards_hash="",
        sampler="random",
        seed=0,
        count=len(samples),
        backend="dummy",
        overrides={},
    )
    exp = store.open_experiment(spec)
    store.record_done(exp.id, [(s, f"{s.index:06d}.png", 0.0, 1) for s in samples])
    if favs:
        store.rate(exp, favs, favourite=True)
    return store.require(name)
