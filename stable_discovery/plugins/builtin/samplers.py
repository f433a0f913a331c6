"""Built-in samplers: random, combinatorial, shuffle, legacy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_discovery.plugins.hookspecs import hookimpl


def _random() -> Any:
    from stable_discovery.sampling.samplers import RandomSampler

    return RandomSampler()


def _combinatorial() -> Any:
    from stable_discovery.sampling.samplers import CombinatorialSampler

    return CombinatorialSampler()


def _shuffle() -> Any:
    from stable_discovery.sampling.samplers import ShuffleSampler

    return ShuffleSampler()


def _legacy() -> Any:
    from stable_discovery.sampling.legacy import LegacySampler

    return LegacySampler()


@hookimpl
def register_samplers(register: Callable[[str, Callable[[], Any]], None]) -> None:
    register("random", _random)
    register("combinatorial", _combinatorial)
    register("shuffle", _shuffle)
    register("legacy", _legacy)
