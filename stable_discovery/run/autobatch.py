"""``--batch auto``: each batch in the largest pieces that fit in the device's memory.

The planner makes batches of :data:`AUTO_BATCH` samples; :class:`BatchFitter` hands
them to the backend whole, and when the backend runs out of memory it halves the piece
and tries again, down to one image. What fitted is remembered for the model and image
size (what memory depends on), so a run pays for an out-of-memory error once per
model and size. Images do not depend on their batch (one generator per image), so the
pieces change nothing in the pixels.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stable_discovery.backends.base import Backend, Batch, GenerationKey, OutOfMemory

__all__ = ["AUTO_BATCH", "BatchFitter", "Shrunk", "is_out_of_memory"]

#: The batches the planner makes for ``--batch auto``: the most images per call tried.
AUTO_BATCH = 32

#: Error class names that mean a device ran out of memory (torch's, without importing torch).
_OOM_NAMES = ("OutOfMemoryError", "OutOfMemory")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says a device ran out of memory: :class:`OutOfMemory`, torch's
    ``torch.cuda.OutOfMemoryError`` (or another ``OutOfMemoryError``), or a
    ``RuntimeError`` saying "out of memory" (older torch, other devices)."""
    if isinstance(exc, OutOfMemory) or type(exc).__name__ in _OOM_NAMES:
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass(frozen=True)
class Shrunk:
    """A batch did not fit: ``tried`` images of ``width`` x ``height`` with ``model``,
    ``fits`` tried from then on."""

    model: str
    width: int
    height: int
    tried: int
    fits: int

    def __str__(self) -> str:
        return (
            f"{self.tried} images of {self.width}x{self.height} at once ran out of memory with "
            f"{self.model!r}: batches of {self.fits} from now on"
        )


@dataclass
class BatchFitter:
    """Makes batches in pieces that fit (see the module docstring). ``notice`` hears
    each halving."""

    notice: Callable[[Shrunk], None] | None = None
    #: (model, width, height) → the most images per call to try, once one ran out of memory.
    limits: dict[tuple[str, int, int], int] = field(default_factory=dict)
    #: (model, width, height) → the most images one call made.
    largest: dict[tuple[str, int, int], int] = field(default_factory=dict)
    #: Every halving of the run, in order.
    shrunk: list[Shrunk] = field(default_factory=list)

    def generate(self, backend: Backend, batch: Batch) -> Iterator[tuple[Batch, list[Any], float]]:
        """(piece, its images, seconds) for pieces of ``batch`` that fit, in order."""
        key = batch.key
        slot = _slot(key)
        samples = batch.samples
        start = 0
        while start < len(samples):
            size = min(self.limits.get(slot, len(samples)), len(samples) - start)
            piece = Batch(key, samples[start : start + size])
            t0 = time.perf_counter()
            try:
                images = list(backend.generate(piece))
            except Exception as exc:
                if size == 1 or not is_out_of_memory(exc):
                    raise
                self._halve(key, size)
                continue
            seconds = time.perf_counter() - t0
            self.largest[slot] = max(self.largest.get(slot, 0), size)
            yield piece, images, seconds
            start += size

    def _halve(self, key: GenerationKey, size: int) -> None:
        fits = max(1, size // 2)
        self.limits[_slot(key)] = fits
        shrunk = Shrunk(key.model, key.width, key.height, size, fits)
        self.shrunk.append(shrunk)
        if self.notice is not None:
            self.notice(shrunk)

    def found(self) -> dict[str, int]:
        """What fitted, for the run's record: ``"model WxH"`` → the most images one
        call made."""
        return {f"{m} {w}x{h}": n for (m, w, h), n in sorted(self.largest.items())}


def _slot(key: GenerationKey) -> tuple[str, int, int]:
    return (key.model, key.width, key.height)
