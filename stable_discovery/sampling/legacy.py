"""The ``legacy`` sampler: the original stable-discovery tool's sequence, replayed exactly.

Python's Mersenne Twister seeded with the config's seed, and per sample
``random.sample`` on the subjects, actions, each suffix list plus ``None``, and the
steps, in that order; the image seed of sample ``i`` is ``i``. The config itself is read
by :mod:`stable_discovery.language.legacy_config`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from stable_discovery.language.legacy_config import SUFFIXES, config_of
from stable_discovery.language.program import Program
from stable_discovery.sampling.sample import Chosen, Sample
from stable_discovery.sampling.samplers import SampleBuilder

__all__ = ["LegacySampler"]


class LegacySampler:
    """Replays the original tool. Sequential by nature: sample i replays 0..i-1 (fast)."""

    name = "legacy"

    def size(self, program: Program) -> int | None:
        return None

    def samples(self, program: Program, start: int, stop: int, seed: int) -> Iterator[Sample]:
        config = config_of(program)
        builder = SampleBuilder(program, seed)
        negative = ""
        if "negative" in program.slots:
            negative = " ".join(program.slots["negative"].alternatives[0].text.split())
        rng = random.Random(seed)
        subjects, actions, steps = config.subjects, config.actions, config.steps
        suffixes = config.suffixes
        base = dict(builder.base)
        for i in range(stop):
            js = rng.sample(range(len(subjects)), 1)[0]
            ja = rng.sample(range(len(actions)), 1)[0]
            jsuf = [rng.sample(range(len(values) + 1), 1)[0] for values in suffixes]
            jst = rng.sample(range(len(steps)), 1)[0]
            if i < start:
                continue
            chosen = [values[j] for values, j in zip(suffixes, jsuf, strict=False) if j < len(values)]
            prompt = subjects[js] + " " + actions[ja] + "".join(", " + s for s in chosen if s)
            trace = {"subject": Chosen(js, subjects[js]), "action": Chosen(ja, actions[ja])}
            for name, values, j in zip(SUFFIXES, suffixes, jsuf, strict=False):
                if j < len(values):
                    trace[name] = Chosen(j, values[j])
            trace["steps"] = Chosen(jst, str(steps[jst]))
            settings = dict(base)
            settings["steps"] = steps[jst]
            yield Sample(i, prompt, negative, settings, i, trace)

    def sample(self, program: Program, index: int, seed: int) -> Sample:
        return next(iter(self.samples(program, index, index + 1, seed)))
