"""The planner: groups samples that share model, size, steps, guidance, scheduler, LoRA
set and weighting mode (:class:`GenerationKey`) into batches, so a backend makes several
images per call; never two models in one batch. With a cap on the models kept loaded,
:func:`plan_by_model` goes through the models that many at a time, so each model is
still loaded once.

Streaming: samples are read in order and held per key until a batch is full; memory is
bounded by ``max_buffered`` samples whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from stable_discovery.backends.base import Batch, GenerationKey
from stable_discovery.sampling.sample import Sample

__all__ = ["plan", "plan_by_model"]


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


def plan_by_model(
    samples: Callable[[], Iterable[Sample]],
    models: Sequence[str],
    batch_size: int,
    max_models: int | None = None,
) -> Iterator[Batch]:
    """Batches of the samples ``samples()`` gives; with ``max_models`` fewer than the
    run's ``models``, in passes over the models that many at a time (``samples`` is
    called once per pass), so a backend keeping ``max_models`` loaded loads each once."""
    if max_models is None or len(models) <= max_models:
        yield from plan(samples(), batch_size)
        return
    for start in range(0, len(models), max_models):
        group = frozenset(models[start : start + max_models])
        yield from plan((s for s in samples() if str(s.settings.get("model")) in group), batch_size)
