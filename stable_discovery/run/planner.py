"""The planner: groups samples that share model, size, steps, guidance and scheduler
into batches, so a backend makes several images per call.

Streaming: samples are read in order and held per key until a batch is full; memory is
bounded by ``max_buffered`` samples whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from stable_discovery.backends.base import Batch, GenerationKey
from stable_discovery.sampling.sample import Sample

__all__ = ["plan"]


def plan(samples: Iterable[Sample], batch_size: int, max_buffered: int = 0) -> Iterator[Batch]:
    """Batches of at most ``batch_size`` samples sharing a :class:`GenerationKey`.

    Every sample appears in exactly one batch. A partial batch is emitted when more than
    ``max_buffered`` samples wait (default: 16 batches' worth) and at the end.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    limit = max_buffered or batch_size * 16
    pending: dict[GenerationKey, list[Sample]] = {}
    waiting = 0
    for sample in samples:
        key = GenerationKey.of(sample)
        group = pending.setdefault(key, [])
        group.append(sample)
        waiting += 1
        if len(group) >= batch_size:
            del pending[key]
            waiting -= len(group)
            yield Batch(key, tuple(group))
        elif waiting > limit:
            # the fullest group goes first, so batches stay as large as they can be
            fullest = max(pending, key=lambda k: len(pending[k]))
            group = pending.pop(fullest)
            waiting -= len(group)
            yield Batch(fullest, tuple(group))
    for key, group in pending.items():
        yield Batch(key, tuple(group))
