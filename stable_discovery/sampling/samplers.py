"""Samplers: how a program becomes samples. Each gives sample ``i`` on its own.

* ``random``: independent samples honouring weights; sample i is a pure function of
  (template, seed, i).
* ``combinatorial``: every combination once, in odometer order.
* ``shuffle``: the combinatorial space in a seeded random order, without repeats.
* ``legacy``: the original stable-discovery tool's sequence (see :mod:`.legacy`).

Third-party samplers implement the same small protocol and arrive through plugins.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from stable_discovery.language.program import SEPARATOR, Program
from stable_discovery.language.settings import GENERATION_DEFAULTS
from stable_discovery.sampling.sample import Sample
from stable_discovery.space.draws import DrawBlock, sample_key, seed_key
from stable_discovery.space.nodes import draw_function
from stable_discovery.space.trace import trace_dict

__all__ = [
    "Sampler",
    "SampleBuilder",
    "RandomSampler",
    "CombinatorialSampler",
    "ShuffleSampler",
]

_BLOCK = 1024
_new_sample = object.__new__
_MAX_BLOCK_DRAWS = 64


@runtime_checkable
class Sampler(Protocol):
    """What a sampler provides. ``seed`` is the sampler seed (``@seed`` or ``--seed``)."""

    name: str

    def size(self, program: Program) -> int | None:
        """How many distinct samples there are; ``None`` when unbounded."""

    def samples(self, program: Program, start: int, stop: int, seed: int) -> Iterator[Sample]:
        """Samples ``start`` .. ``stop - 1``, in order."""

    def sample(self, program: Program, index: int, seed: int) -> Sample:
        """Sample ``index`` alone (the same as the one ``samples`` gives)."""


class SampleBuilder:
    """Turns an evaluated text and trace into a :class:`Sample` (settings resolved)."""

    def __init__(self, program: Program, seed: int) -> None:
        self.program = program
        self.seed = seed
        base: dict[str, Any] = dict(GENERATION_DEFAULTS)
        self.run_settings = program.run_settings
        for name, info in program.settings.items():
            if not info.sampled:
                self._apply(base, name, info.values[0])
        self.base = base
        self.sampled = program.sampled_settings
        self.values = {
            name: dict(zip(program.settings[name].texts, program.settings[name].values, strict=False))
            for name in self.sampled
        }
        self.random_seeds = program.setting("seed_mode", "index") == "random"
        self._base_view = MappingProxyType(base)
        self._combos: dict[tuple, Any] = {}
        self.key = seed_key(seed)

    def _apply(self, settings: dict[str, Any], name: str, value: Any) -> None:
        if name == "size":
            settings["width"], settings["height"] = value
        elif name not in self.run_settings:
            settings[name] = value

    def image_seed(self, index: int) -> int:
        if self.random_seeds:
            return sample_key(self.key ^ 0x5EED, index) >> 33
        return index

    def build(self, index: int, text: str, trace: Any) -> Sample:
        """``text`` is prompt, negative and sampled settings joined by SEPARATOR;
        ``trace`` is a sequence of (name, Chosen) pairs."""
        parts = text.split(SEPARATOR)
        if self.sampled:
            key = tuple(parts[2:-1])
            settings = self._combos.get(key)
            if settings is None:
                settings = dict(self.base)
                for name, value_text in zip(self.sampled, key, strict=False):
                    self._apply(settings, name, self.values[name][value_text])
                settings = self._combos[key] = MappingProxyType(settings)
        else:
            settings = self._base_view
        negative = parts[1]
        traced = dict(trace)
        if len(traced) != len(trace):  # a name made twice: numbered (rare)
            traced = trace_dict(trace)
        # Sample is a frozen dataclass; filling its __dict__ directly skips the slow
        # frozen __setattr__ path on the hot loop (the result is the same object).
        sample = _new_sample(Sample)
        sample.__dict__.update(
            index=index,
            prompt=" ".join(parts[0].split()),
            negative=" ".join(negative.split()) if negative else "",
            settings=settings,
            seed=self.image_seed(index) if self.random_seeds else index,
            trace=traced,
        )
        return sample


class RandomSampler:
    name = "random"

    def size(self, program: Program) -> int | None:
        return None

    def samples(self, program: Program, start: int, stop: int, seed: int) -> Iterator[Sample]:
        builder = SampleBuilder(program, seed)
        root = program.root
        rand = root.rand_fn()
        width = min(root.max_draws, _MAX_BLOCK_DRAWS)
        bounded = root.max_draws <= width
        key = builder.key
        join = "".join
        build = builder.build
        for block_start in range(start, stop, _BLOCK):
            block_stop = min(stop, block_start + _BLOCK)
            block = DrawBlock(key, block_start, block_stop, width)
            index = block_start
            for row, skey in zip(block.rows, block.keys, strict=False):
                out: list[str] = []
                trace: list[tuple] = []
                rand(out, trace, iter(row).__next__ if bounded else draw_function(skey, row), {})
                yield build(index, join(out), trace)
                index += 1

    def prompts(self, program: Program, start: int, stop: int, seed: int) -> Iterator[str]:
        """Only the prompt texts (no records): the fastest way to look at many samples."""
        for s in self.samples(program, start, stop, seed):
            yield s.prompt

    def sample(self, program: Program, index: int, seed: int) -> Sample:
        return next(iter(self.samples(program, index, index + 1, seed)))


class CombinatorialSampler:
    name = "combinatorial"

    def size(self, program: Program) -> int | None:
        return program.count()

    def samples(self, program: Program, start: int, stop: int, seed: int) -> Iterator[Sample]:
        space = program.space()
        stop = min(stop, space.count)
        if start >= stop:
            return
        builder = SampleBuilder(program, seed)
        if space is program.root and start == 0:
            # zip with a range, not islice: stop may exceed sys.maxsize (10**30 combinations)
            for index, (text, trace) in zip(range(stop), space.items(), strict=False):
                yield builder.build(index, text, trace)
            return
        for index in range(start, stop):
            yield self._decode(program, builder, index, index)

    def _decode(self, program: Program, builder: SampleBuilder, position: int, index: int) -> Sample:
        space = program.space()
        if space is program.root:
            out: list[str] = []
            trace: list[tuple] = []
            space.decode(position, out, trace)
        else:
            out, trace = space.decode(position)
        return builder.build(index, "".join(out), trace)

    def sample(self, program: Program, index: int, seed: int) -> Sample:
        count = program.count()
        if not 0 <= index < count:
            raise IndexError(f"index {index} is outside 0..{count - 1}")
        return self._decode(program, SampleBuilder(program, seed), index, index)


class ShuffleSampler(CombinatorialSampler):
    name = "shuffle"

    def samples(self, program: Program, start: int, stop: int, seed: int) -> Iterator[Sample]:
        from stable_discovery.space.permutation import Permutation

        count = program.count()
        perm = Permutation(count, seed)
        builder = SampleBuilder(program, seed)
        for index in range(start, min(stop, count)):
            yield self._decode(program, builder, perm[index], index)

    def sample(self, program: Program, index: int, seed: int) -> Sample:
        from stable_discovery.space.permutation import Permutation

        count = program.count()
        if not 0 <= index < count:
            raise IndexError(f"index {index} is outside 0..{count - 1}")
        return self._decode(program, SampleBuilder(program, seed), Permutation(count, seed)[index], index)
