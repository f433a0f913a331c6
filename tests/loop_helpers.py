"""Synthetic experiments for the stats/refine/exploit tests: samples from a real sampler,
stored through the Store API (no images), favourites decided by a seeded rule."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from stable_discovery import plugins
from stable_discovery.language.program import loads
from stable_discovery.plugins import get_sampler
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import Experiment, ExperimentSpec, Store

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
    from stable_discovery.errors import Source
    from stable_discovery.language.parser import parse
    from stable_discovery.sampling.sample import Chosen

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
