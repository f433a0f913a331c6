"""Scheduling batches on Ray workers, for :class:`.ray_executor.RayExecutor`.

:class:`WorkerPool` owns the run's actors (started, replaced, killed). :class:`Scheduler`
reads batches from the planner lazily, keeps at most ``in_flight_per_worker`` on each
ready worker, yields results as they complete (``ray.wait``), replaces a worker that dies
and submits its batches again (up to ``max_attempts`` per batch), and after a stop
request submits nothing new but drains what is in flight.

The classes are given the ``ray`` module; only :class:`Scheduler` imports from Ray
(its exceptions), when a run starts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stable_discovery.backends.base import BackendError, Batch
from stable_discovery.errors import SdpError
from stable_discovery.run.files import EncodedImage
from stable_discovery.run.ray_worker import BackendLookup, BatchWorker, WorkerOptions, unpack_image

if TYPE_CHECKING:
    from stable_discovery.run.executors import Generated

__all__ = ["RayWorker", "Scheduler", "WorkerPool", "first_line", "span"]

#: Where to look when workers die.
_LOGS = "See the worker logs under /tmp/ray/session_latest/logs"

#: Ray's errors that mean a worker process or its node is gone (the batch was not made).
_LOST_ERRORS = ("RayActorError", "WorkerCrashedError", "ObjectLostError", "NodeDiedError")


def first_line(text: str, limit: int = 300) -> str:
    """The first non-blank line of ``text``, at most ``limit`` characters."""
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def span(batch: Batch) -> str:
    """The batch's sample indices for a message: ``3–8`` or ``3, 5``."""
    idx = sorted(s.index for s in batch.samples)
    if not idx:
        return "(none)"
    if idx == list(range(idx[0], idx[-1] + 1)) and len(idx) > 2:
        return f"{idx[0]}–{idx[-1]}"
    return ", ".join(map(str, idx))


@dataclass
class RayWorker:
    """One actor of the pool, as the driver sees it."""

    handle: Any
    number: int
    ready: bool = False
    alive: bool = True
    in_flight: int = 0
    where: str = "?"


@dataclass
class _Task:
    batch: Batch
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


class WorkerPool:
    """The :class:`~.ray_worker.BatchWorker` actors of one run, each reserving one CPU
    and ``per_gpu`` GPUs; Ray does not restart them (the scheduler replaces the lost)."""

    def __init__(
        self,
        ray: Any,
        backend_name: str,
        backend_options: dict[str, Any],
        shipped_factory: bytes | None,
        backend_lookup: BackendLookup | None,
        per_gpu: float,
        options: WorkerOptions | None = None,
    ) -> None:
        self.ray = ray
        self.backend_name = backend_name
        self.backend_options = backend_options
        self.shipped_factory = shipped_factory
        self.backend_lookup = backend_lookup
        self.per_gpu = per_gpu
        self.options = options
        self.workers: list[RayWorker] = []
        #: Actors started so far, the lost included.
        self.spawned = 0
        self._actor_cls: Any = None

    def spawn(self) -> RayWorker:
        """Start one more worker (it loads its backend when asked whether it is ready)."""
        if self._actor_cls is None:
            self._actor_cls = self.ray.remote(BatchWorker)
        opts: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if self.per_gpu > 0:
            opts["num_gpus"] = self.per_gpu
        handle = self._actor_cls.options(**opts).remote(
            self.backend_name, self.backend_options, self.shipped_factory, self.backend_lookup, self.options
        )
        self.spawned += 1
        worker = RayWorker(handle, self.spawned)
        self.workers.append(worker)
        return worker

    def kill(self, worker: RayWorker) -> None:
        try:
            self.ray.kill(worker.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - it is gone already
            pass

    def free(self, limit: int) -> RayWorker | None:
        """The live, ready worker with the fewest batches in flight, if one has fewer
        than ``limit``."""
        free = [w for w in self.workers if w.alive and w.ready and w.in_flight < limit]
        return min(free, key=lambda w: (w.in_flight, w.number)) if free else None

    def ready(self) -> list[RayWorker]:
        return [w for w in self.workers if w.alive and w.ready]

    def any_alive(self) -> bool:
        return any(w.alive for w in self.workers)

    def close(self) -> None:
        """Kill every worker."""
        for worker in self.workers:
            self.kill(worker)
        self.workers = []


@dataclass(frozen=True)
class SchedulerLimits:
    """How hard a scheduler works a pool (see :class:`.ray_executor.RayExecutor`)."""

    in_flight_per_worker: int = 2
    max_attempts: int = 3
    startup_warning_s: float = 60.0


class Scheduler:
    """Runs the planner's batches on a pool's workers; :meth:`results` yields them."""

    def __init__(
        self,
        ray: Any,
        pool: WorkerPool,
        batches: Iterator[Batch],
        stop: threading.Event,
        limits: SchedulerLimits,
        say: Callable[[str], None],
        models: dict[str, str],
    ) -> None:
        import ray.exceptions as rex

        self.ray, self.pool, self.batches, self.stop = ray, pool, batches, stop
        self.limits, self.say, self.models = limits, say, models
        self.lost_errors: tuple[type[BaseException], ...] = tuple(
            getattr(rex, name) for name in _LOST_ERRORS if hasattr(rex, name)
        )
        self.task_error: type[BaseException] = rex.RayTaskError
        self.ray_error: type[BaseException] = rex.RayError
        n = len(pool.workers)
        self.max_spawns = n + n * limits.max_attempts + limits.max_attempts
        self.starting: dict[Any, RayWorker] = {w.handle.ready.remote(): w for w in pool.workers}
        self.in_flight: dict[Any, tuple[_Task, RayWorker]] = {}
        self.retry: deque[_Task] = deque()
        self.exhausted = False
        self.began = time.monotonic()
        self.warned = False
        #: Workers lost during the run.
        self.workers_lost = 0
        #: Batches submitted again after their worker was lost.
        self.batches_retried = 0

    def results(self) -> Iterator[Generated]:
        """(batch, images, seconds) for every batch, as workers finish them."""
        while True:
            self.submit()
            if self.finished():
                return
            if not self.pool.any_alive():
                raise BackendError("no Ray worker is left to run the remaining batches")
            for ref in self.wait():
                if ref in self.starting:
                    self.worker_started(ref)
                    continue
                result = self.collect(ref)
                if result is not None:
                    yield result

    # -- submitting --------------------------------------------------------------------

    def submit(self) -> None:
        """While no stop is asked for, fill the free room: retried batches first."""
        while not self.stop.is_set():
            worker = self.pool.free(self.limits.in_flight_per_worker)
            if worker is None:
                return
            task = self._next_task()
            if task is None:
                return
            ref = worker.handle.generate.remote(task.batch)
            worker.in_flight += 1
            self.in_flight[ref] = (task, worker)

    def _next_task(self) -> _Task | None:
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        batch = next(self.batches, None)
        if batch is None:
            self.exhausted = True
            return None
        return _Task(batch)

    def finished(self) -> bool:
        """Nothing in flight, and nothing more to submit (or a stop was asked for)."""
        if self.in_flight:
            return False
        return self.stop.is_set() or (self.exhausted and not self.retry)

    # -- waiting -----------------------------------------------------------------------

    def wait(self) -> list[Any]:
        """The next finished reference (batch or worker start), or none after a second."""
        waiting = list(self.in_flight) + list(self.starting)
        ready, _ = self.ray.wait(waiting, num_returns=1, timeout=1.0)
        if not ready:
            self._warn_if_no_worker_started()
        return list(ready)

    def _warn_if_no_worker_started(self) -> None:
        if self.warned or self.pool.ready():
            return
        if time.monotonic() - self.began <= self.limits.startup_warning_s:
            return
        self.warned = True
        res = self.ray.available_resources()
        self.say(
            f"no worker has started after {self.limits.startup_warning_s:.0f} s; free resources: "
            f"{int(res.get('CPU', 0))} CPUs, {res.get('GPU', 0):g} GPUs "
            "(fewer --workers, or add machines)"
        )

    # -- collecting --------------------------------------------------------------------

    def worker_started(self, ref: Any) -> None:
        """A worker answered whether it is ready (its backend is loaded) or died trying."""
        worker = self.starting.pop(ref)
        try:
            info = self.ray.get(ref)
        except self.lost_errors as exc:
            self.worker_lost(worker, exc)
            return
        except self.task_error as exc:
            raise _user_error(exc, self.pool.backend_name) from None
        except self.ray_error as exc:
            raise BackendError(f"a Ray worker could not start: {first_line(str(exc))}") from None
        worker.ready = True
        gpus = ",".join(info.get("gpus") or [])
        worker.where = f"{info.get('host')} pid {info.get('pid')}" + (f" GPU {gpus}" if gpus else "")

    def collect(self, ref: Any) -> Generated | None:
        """A finished batch's result; ``None`` when its worker was lost (it is retried)."""
        task, worker = self.in_flight.pop(ref)
        worker.in_flight -= 1
        try:
            packed, seconds, described = self.ray.get(ref)
        except self.lost_errors as exc:
            self.batch_lost(task, worker, exc)
            return None
        except self.task_error as exc:
            raise _user_error(exc, self.pool.backend_name) from None
        except self.ray_error as exc:
            raise BackendError(f"a Ray worker failed: {first_line(str(exc))}") from None
        self.models.setdefault(task.batch.key.model, described)
        images = [p if isinstance(p, EncodedImage) else unpack_image(p) for p in packed]
        return task.batch, images, seconds

    # -- losses ------------------------------------------------------------------------

    def batch_lost(self, task: _Task, worker: RayWorker, exc: BaseException) -> None:
        """The worker died with the batch: submit it again, unless a stop was asked for
        (the next run makes it) or it has lost its worker ``max_attempts`` times."""
        task.attempts += 1
        task.errors.append(first_line(str(exc)))
        self.worker_lost(worker, exc)
        if self.stop.is_set():
            return
        if task.attempts >= self.limits.max_attempts:
            raise BackendError(
                f"samples {span(task.batch)} lost their Ray worker {task.attempts} times "
                f"(out of memory? a crash in the backend?); last: {task.errors[-1]}. {_LOGS}"
            ) from None
        self.batches_retried += 1
        self.say(f"samples {span(task.batch)} go to another worker (try {task.attempts + 1})")
        self.retry.append(task)

    def worker_lost(self, worker: RayWorker, exc: BaseException) -> None:
        """Kill what is left of a dead worker and, unless a stop was asked for, start
        another in its place; too many deaths end the run."""
        if not worker.alive:
            return
        worker.alive = False
        self.workers_lost += 1
        self.pool.kill(worker)
        if self.stop.is_set():
            return
        if self.pool.spawned >= self.max_spawns:
            raise BackendError(
                f"Ray workers keep dying ({self.workers_lost} lost); last: {first_line(str(exc))}. {_LOGS}"
            ) from None
        new = self.pool.spawn()
        self.starting[new.handle.ready.remote()] = new
        self.say(
            f"worker {worker.number} ({worker.where}) was lost; started worker {new.number} in its place"
        )


def _user_error(exc: BaseException, backend_name: str) -> SdpError:
    """A backend's error on a worker as the user's one-line error."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, SdpError):
        err = BackendError(str(cause))
        err.exit_code = cause.exit_code
        return err
    if cause is not None:
        return BackendError(
            f"backend {backend_name!r} failed on a Ray worker: "
            f"{type(cause).__name__}: {first_line(str(cause))}"
        )
    return BackendError(f"a Ray worker failed: {first_line(str(exc))}")
