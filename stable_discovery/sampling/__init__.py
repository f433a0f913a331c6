"""Samplers: how a program becomes samples (random, combinatorial, shuffle, legacy).

A :class:`Sample` is one prompt with its settings, image seed and trace. The samplers
are imported on first use, so that importing :class:`Sample` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stable_discovery.sampling.sample import Chosen, Sample

if TYPE_CHECKING:
    from stable_discovery.sampling.samplers import (
        CombinatorialSampler,
        RandomSampler,
        SampleBuilder,
        Sampler,
        ShuffleSampler,
    )

__all__ = [
    "Chosen",
    "CombinatorialSampler",
    "RandomSampler",
    "Sample",
    "SampleBuilder",
    "Sampler",
    "ShuffleSampler",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from stable_discovery.sampling import samplers

        return getattr(samplers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
