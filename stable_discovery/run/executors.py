"""Executors: where an experiment's batches are generated.

``local`` (the default, :class:`LocalExecutor`): one backend in this process. ``ray``
(:class:`.ray_executor.RayExecutor`): workers on a local Ray or a Ray cluster. Whatever
the executor, the driver (:func:`stable_discovery.run.runner.run_experiment`) writes
images and rows, so resuming and exactly-once hold the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from stable_discovery.backends.base import Backend, Batch
from stable_discovery.errors import UsageError
from stable_discovery.run.autobatch import BatchFitter, Shrunk
from stable_discovery.run.files import PngSpec

__all__ = ["EXECUTORS", "Executor", "ExecutorSetup", "Generated", "LocalExecutor", "make_executor"]

#: What an executor yields for each batch: (the batch, its images, seconds it took).
#: The images are PIL images, or :class:`~stable_discovery.run.files.EncodedImage` PNG
#: files made where they were generated. A batch may come back in several pieces
#: (``--batch auto``), each yielded as a batch of its own.
Generated = tuple[Batch, list[Any], float]


@dataclass(frozen=True)
class ExecutorSetup:
    """What the driver tells an executor before a run (its ``setup`` method, when it has
    one): how the experiment's PNG files are made (an executor that generates in other
    processes encodes them there with ``png``), the LoRA folders (for the files' LoRA
    hashes), whether batches are fitted to the device's memory (``--batch auto``), and
    where to say that a batch did not fit (in this process only)."""

    png: PngSpec
    lora_dirs: tuple[str, ...] = ()
    auto_batch: bool = False
    notice: Callable[[Shrunk], None] | None = field(default=None, compare=False)


class Executor(Protocol):
    """Where batches are generated. ``run`` yields a :data:`Generated` for every batch it
    is given, in any order; the driver writes files and rows, so resume and exactly-once
    hold whatever the executor. ``stop`` set asks it to stop taking new batches. An
    executor with ``drains_on_stop = True`` then yields the batches it has in flight (the
    driver writes them) before it ends; others are left at once. An executor may have a
    ``setup(ExecutorSetup)`` method, called before ``run``."""

    needs_local_backend: bool

    def run(
        self, backend: Backend | None, batches: Iterator[Batch], stop: threading.Event
    ) -> Iterator[Generated]: ...

    def describe_model(self, model: str) -> str: ...


class LocalExecutor:
    """The default: one backend in this process, one batch at a time (with
    ``--batch auto``, in the pieces that fit: :class:`~.autobatch.BatchFitter`)."""

    name = "local"
    needs_local_backend = True
    drains_on_stop = False

    def __init__(self) -> None:
        self.fitter: BatchFitter | None = None

    def setup(self, setup: ExecutorSetup) -> None:
        self.fitter = BatchFitter(setup.notice) if setup.auto_batch else None

    def batch_sizes(self) -> dict[str, int]:
        """With ``--batch auto``: the most images one call made, per model and size."""
        return self.fitter.found() if self.fitter is not None else {}

    def run(
        self, backend: Backend | None, batches: Iterator[Batch], stop: threading.Event
    ) -> Iterator[Generated]:
        if backend is None:
            raise ValueError("the local executor needs a backend")
        for batch in batches:
            if self.fitter is not None:
                yield from self.fitter.generate(backend, batch)
            else:
                t0 = time.perf_counter()
                images = list(backend.generate(batch))
                yield batch, images, time.perf_counter() - t0
            if stop.is_set():
                return

    def describe_model(self, model: str) -> str:  # pragma: no cover - the backend answers
        return model


#: The names ``sdp run --executor`` takes.
EXECUTORS = ("local", "ray")


def make_executor(
    kind: str | None,
    backend_name: str,
    backend_options: dict[str, Any] | None = None,
    address: str | None = None,
    workers: int | None = None,
    backend_factory: Callable[..., Any] | None = None,
    log: TextIO | None = None,
    backend_lookup: Callable[[], Mapping[str, Callable[..., Any]]] | None = None,
) -> Executor | None:
    """The executor ``sdp run`` asked for; ``None`` for the local one (the runner's
    default, :class:`LocalExecutor`). ``backend_lookup`` (the installed backends by
    name) is called where the batches are generated. Raises :class:`UsageError` for
    options that do not go together, and for ``ray`` without Ray installed (saying how
    to install it)."""
    kind = kind or "local"
    if kind not in EXECUTORS:
        raise UsageError(f"unknown executor {kind!r}; executors: {', '.join(EXECUTORS)}")
    if kind == "local":
        given = [
            flag for flag, value in (("--address", address), ("--workers", workers)) if value is not None
        ]
        if given:
            raise UsageError(f"{' and '.join(given)} go with --executor ray")
        return None
    from stable_discovery.run.ray_executor import RayExecutor

    return RayExecutor(
        backend_name=backend_name,
        backend_options=backend_options,
        address=address,
        workers=workers,
        backend_factory=backend_factory,
        log=log,
        backend_lookup=backend_lookup,
    )
