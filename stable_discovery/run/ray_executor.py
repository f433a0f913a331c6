"""Generating on Ray: one worker (a Ray actor) per GPU of a cluster, or CPU workers on a
laptop, each loading the backend once and taking batches from the planner.

The driver (:func:`stable_discovery.run.runner.run_experiment`) still writes every PNG and
every store row, so resuming and exactly-once hold as with the local executor: a worker
only turns a batch into pixels. What this module adds:

* Ray is started locally (``ray.init(num_cpus=…)``, no dashboard, quiet) or joined
  (``--address auto`` on a machine of a cluster started with ``ray start``).
* Workers: ``num_gpus=1`` each when the cluster has GPUs (Ray sets
  ``CUDA_VISIBLE_DEVICES``, so the backend's ``device="auto"`` finds its own GPU), else
  ``num_cpus=1`` each (Ray sets ``OMP_NUM_THREADS=1``: one torch thread per worker).
* Each worker resolves its backend by name through :func:`stable_discovery.plugins.manager.backends`
  on its own machine; a backend the worker does not know (one registered at run time in
  the driver) is shipped from the driver, pickled.
* Batches are read from the planner lazily, at most ``in_flight_per_worker`` queued per
  worker, and results are yielded as they complete (``ray.wait``), in any order.
* A worker that dies mid-batch (its process killed, its node lost): the worker is
  replaced and each batch it held is submitted again to a live worker; a batch that
  loses its worker ``max_attempts`` times ends the run with a :class:`BackendError`.
  Nothing was written for a lost batch, so nothing is lost or written twice.
* ``stop["requested"]`` (Ctrl-C): no new batch is submitted; the batches in flight are
  drained and written, then the run stops.
* Images come back as raw pixel buffers (mode, size, bytes; PNG for palette images) and
  become PIL images in the driver.

Ray is imported only when a run starts; without it, :class:`RayExecutor` raises a
:class:`~stable_discovery.errors.UsageError` (exit status 2) that says how to install it.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from stable_discovery.backends.base import Backend, BackendError, Batch
from stable_discovery.errors import SdpError, UsageError

__all__ = [
    "RayExecutor",
    "RayUnavailable",
    "INSTALL_HINT",
    "import_ray",
    "pack_image",
    "unpack_image",
]

#: How to get Ray, as the error message says it.
INSTALL_HINT = "pip install -e '.[ray]'  (or: pip install 'stable-discovery[ray]')"

#: Image modes sent as raw pixel buffers (exact and cheap); others go as PNG bytes.
_RAW_MODES = frozenset({"1", "L", "LA", "RGB", "RGBA", "I", "F", "I;16"})

#: Without GPUs and without ``--workers``: one worker per CPU, at most this many (each
#: worker holds its own copy of the model in memory).
MAX_DEFAULT_CPU_WORKERS = 4


class RayUnavailable(UsageError):
    """``--executor ray`` without Ray installed (exit status 2)."""


class RayConnectError(SdpError):
    """The Ray cluster named by ``--address`` cannot be reached (exit status 1)."""


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailable` saying how to install it."""
    try:
        import ray  # noqa: PLC0415 - lazily, Ray is an optional extra
    except ImportError as exc:
        raise RayUnavailable(
            f"--executor ray needs Ray, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


# ---------------------------------------------------------------------------------------
# images on the wire


def pack_image(image: Any) -> tuple[Any, ...]:
    """A PIL image as something cheap to send: ``("raw", mode, size, bytes)``, or
    ``("png", bytes)`` for modes without a plain pixel buffer (palette images)."""
    if image.mode in _RAW_MODES:
        return ("raw", image.mode, tuple(image.size), image.tobytes())
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return ("png", buf.getvalue())


def unpack_image(packed: tuple[Any, ...]) -> Any:
    """The PIL image :func:`pack_image` packed."""
    from PIL import Image

    if packed[0] == "raw":
        _kind, mode, size, data = packed
        return Image.frombytes(mode, tuple(size), data)
    with Image.open(io.BytesIO(packed[1])) as im:
        im.load()
        return im.copy()


# ---------------------------------------------------------------------------------------
# the worker (a Ray actor; a plain class here, made remote when a run starts)


class BatchWorker:
    """Holds one backend, loaded once, and turns batches into packed images."""

    def __init__(
        self, backend_name: str, backend_options: dict[str, Any], shipped_factory: bytes | None
    ) -> None:
        self.backend_name = backend_name
        self.backend_options = dict(backend_options)
        self.shipped_factory = shipped_factory
        self.backend: Backend | None = None

    def _backend(self) -> Backend:
        if self.backend is None:
            from stable_discovery import plugins

            factory = plugins.backends().get(self.backend_name)
            if factory is None and self.shipped_factory is not None:
                import ray.cloudpickle as cloudpickle

                try:
                    factory = cloudpickle.loads(self.shipped_factory)
                except Exception as exc:  # noqa: BLE001 - the module is missing here
                    raise BackendError(
                        f"backend {self.backend_name!r} is not installed on worker host "
                        f"{socket.gethostname()} ({type(exc).__name__}: {exc}); install "
                        "stable-discovery and the plugin that provides it on every machine "
                        "of the cluster"
                    ) from None
            if factory is None:
                known = ", ".join(plugins.backends()) or "none"
                raise BackendError(
                    f"backend {self.backend_name!r} is not installed on worker host "
                    f"{socket.gethostname()} (it has: {known}); install the plugin that "
                    "provides it on every machine of the cluster"
                )
            self.backend = factory(**self.backend_options)
        return self.backend

    def ready(self) -> dict[str, Any]:
        """Load the backend; where this worker runs."""
        self._backend()
        import ray

        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpus": [str(g) for g in ray.get_gpu_ids()],
        }

    def generate(self, batch: Batch) -> tuple[list[tuple[Any, ...]], float, str]:
        """(packed images, seconds, the batch's model as the backend describes it)."""
        backend = self._backend()
        t0 = time.perf_counter()
        images = list(backend.generate(batch))
        seconds = time.perf_counter() - t0
        return [pack_image(im) for im in images], seconds, backend.describe_model(batch.key.model)

    def describe_model(self, model: str) -> str:
        return self._backend().describe_model(model)

    def close(self) -> None:
        if self.backend is not None:
            self.backend.close()
            self.backend = None


# ---------------------------------------------------------------------------------------
# the executor


@dataclass
class _Worker:
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


def _span(batch: Batch) -> str:
    idx = sorted(s.index for s in batch.samples)
    if not idx:
        return "(none)"
    if idx == list(range(idx[0], idx[-1] + 1)) and len(idx) > 2:
        return f"{idx[0]}–{idx[-1]}"
    return ", ".join(map(str, idx))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _unreachable(address: str, timeout: float = 5.0) -> str | None:
    """Why ``host:port`` (or ``ray://host:port``) takes no TCP connection, or ``None``
    (also for ``auto`` and other forms Ray resolves itself)."""
    target = address[len("ray://") :] if address.startswith("ray://") else address
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"
    return None


class RayExecutor:
    """Runs batches on Ray workers (see the module docstring).

    Arguments:
        backend_name: the backend each worker loads, through ``plugins.backends()``.
        backend_options: keyword arguments of the backend's factory.
        address: a Ray cluster to join (``"auto"``: the one on this machine started with
            ``ray start``; ``"ray://host:10001"``: Ray Client). ``None``: join the Ray
            this process already started, else start a local one.
        workers: how many workers. Default: one per GPU of the cluster; without GPUs one
            per CPU, at most :data:`MAX_DEFAULT_CPU_WORKERS`.
        num_gpus_per_worker: GPUs each worker reserves; ``None``: 1 when the cluster has
            GPUs, else 0 (CPU workers). Fractions share a GPU between workers.
        in_flight_per_worker: batches queued on each worker at once (2 keeps a worker busy
            while the driver writes the previous batch).
        max_attempts: how many times one batch may lose its worker before the run fails.
        backend_factory: the driver's factory for ``backend_name``, shipped to workers
            that do not have that backend installed (one registered at run time).
        log: where one-line status messages go (default: standard error, as it is when
            a message is written).
        quiet: no status messages at all.
        startup_warning_s: after this long with no worker started, say so once.
    """

    needs_local_backend = False
    #: Tells the driver to keep reading after Ctrl-C: the batches in flight are written.
    drains_on_stop = True

    def __init__(
        self,
        backend_name: str,
        backend_options: dict[str, Any] | None = None,
        address: str | None = None,
        workers: int | None = None,
        num_gpus_per_worker: float | None = None,
        in_flight_per_worker: int = 2,
        max_attempts: int = 3,
        backend_factory: Callable[..., Any] | None = None,
        log: TextIO | None = None,
        quiet: bool = False,
        startup_warning_s: float = 60.0,
    ) -> None:
        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, not {workers}")
        if num_gpus_per_worker is not None and num_gpus_per_worker < 0:
            raise UsageError("num_gpus_per_worker cannot be negative")
        if in_flight_per_worker < 1:
            raise UsageError("in_flight_per_worker must be at least 1")
        if max_attempts < 1:
            raise UsageError("max_attempts must be at least 1")
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise RayUnavailable(
                f"--executor ray needs Ray, which is not installed; install it with: {INSTALL_HINT}"
            )
        self.backend_name = backend_name
        self.backend_options = dict(backend_options or {})
        self.address = address
        self.workers = workers
        self.num_gpus_per_worker = num_gpus_per_worker
        self.in_flight_per_worker = in_flight_per_worker
        self.max_attempts = max_attempts
        self.backend_factory = backend_factory
        self.log = log
        self.quiet = quiet
        self.startup_warning_s = startup_warning_s
        self._models: dict[str, str] = {}
        self._ray: Any = None
        self._started_ray = False
        self._pool: list[_Worker] = []
        self._spawned = 0
        self._actor_cls: Any = None
        self._shipped: bytes | None = None
        #: Workers lost during the last run (tests, reports).
        self.workers_lost = 0
        #: Batches submitted again after their worker was lost.
        self.batches_retried = 0

    # -- status ------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.quiet:
            return
        stream = self.log if self.log is not None else sys.stderr
        stream.write(f"ray: {text}\n")
        stream.flush()

    # -- Ray ---------------------------------------------------------------------------

    def _start_ray(self) -> Any:
        ray = import_ray()
        self._ray = ray
        # a run that fails or stops leaves batches in flight behind on purpose: Ray must not
        # print their errors, with tracebacks, when it drops them (the run's error is ours)
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        if ray.is_initialized():
            return ray
        common: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
            "configure_logging": True,
        }
        t0 = time.monotonic()
        # as ray.init itself does: RAY_ADDRESS names the cluster when --address does not
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            self.address = address
            way_out = (
                "Start a cluster with `ray start --head` (and `ray start --address=HEAD:6379` "
                "on the other machines), or leave out --address to start Ray on this machine"
            )
            # Ray retries an unreachable GCS for minutes: find out at once
            why = _unreachable(self.address)
            if why is not None:
                raise RayConnectError(f"cannot connect to Ray at {self.address!r}: {why}. {way_out}")
            try:
                ray.init(address=self.address, **common)
            except ImportError as exc:
                raise RayUnavailable(
                    f"--address {self.address} needs Ray Client ({exc}); install it with: "
                    "pip install 'ray[client]', or run sdp on a machine of the cluster with --address auto"
                ) from None
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                raise RayConnectError(
                    f"cannot connect to Ray at {self.address!r}: {_first_line(str(exc)).rstrip('. ')}. {way_out}"
                ) from None
            self._started_ray = True
            res = ray.cluster_resources()
            self._say(
                f"joined the cluster at {self.address} ({int(res.get('CPU', 0))} CPUs, "
                f"{int(res.get('GPU', 0))} GPUs, {_plural(len(ray.nodes()), 'node')}) in {time.monotonic() - t0:.1f} s"
            )
        else:
            kwargs: dict[str, Any] = {}
            if self.workers is not None and not self.num_gpus_per_worker:
                # CPU workers: Ray's CPUs are the workers (GPUs are still detected)
                kwargs["num_cpus"] = max(self.workers, 1)
            ray.init(**kwargs, **common)
            self._started_ray = True
            res = ray.cluster_resources()
            self._say(
                f"started a local Ray ({int(res.get('CPU', 0))} CPUs, {int(res.get('GPU', 0))} GPUs) "
                f"in {time.monotonic() - t0:.1f} s"
            )
        return ray

    def _plan_workers(self) -> tuple[int, float]:
        """(number of workers, GPUs per worker) for the cluster at hand."""
        res = self._ray.cluster_resources()
        gpus = float(res.get("GPU", 0))
        cpus = float(res.get("CPU", 0))
        per_gpu = self.num_gpus_per_worker
        if per_gpu is None:
            per_gpu = 1.0 if gpus >= 1 else 0.0
        if self.workers is not None:
            n = self.workers
        elif per_gpu > 0:
            n = max(1, int(gpus // per_gpu))
        else:
            n = max(1, min(int(cpus), MAX_DEFAULT_CPU_WORKERS))
        if per_gpu > 0 and n * per_gpu > gpus:
            self._say(
                f"{n} workers of {per_gpu:g} GPU each but the cluster has {gpus:g} GPUs: "
                "the others start when GPUs free up"
            )
        elif per_gpu == 0 and n > cpus:
            self._say(f"{n} workers but the cluster has {cpus:g} CPUs: the others start when CPUs free up")
        return n, per_gpu

    def _spawn(self, per_gpu: float) -> _Worker:
        ray = self._ray
        if self._actor_cls is None:
            self._actor_cls = ray.remote(BatchWorker)
        opts: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if per_gpu > 0:
            opts["num_gpus"] = per_gpu
        handle = self._actor_cls.options(**opts).remote(
            self.backend_name, self.backend_options, self._shipped
        )
        self._spawned += 1
        worker = _Worker(handle, self._spawned)
        self._pool.append(worker)
        return worker

    def _ship_factory(self) -> bytes | None:
        if self.backend_factory is None:
            return None
        try:
            import ray.cloudpickle as cloudpickle

            return cloudpickle.dumps(self.backend_factory)
        except Exception:  # noqa: BLE001 - then workers must have the backend installed
            return None

    # -- the protocol ------------------------------------------------------------------

    def describe_model(self, model: str) -> str:
        """The model as a worker's backend described it for the batches it made (which
        is what the same backend in this process would write)."""
        found = self._models.get(model)
        if found is not None:
            return found
        ray = self._ray
        for w in self._pool:
            if w.alive and w.ready and ray is not None:
                try:
                    found = ray.get(w.handle.describe_model.remote(model))
                except Exception:  # noqa: BLE001 - fall back to the name itself
                    continue
                self._models[model] = found
                return found
        return model

    def run(
        self, backend: Backend | None, batches: Iterator[Batch], stop: dict
    ) -> Iterator[tuple[Batch, list[Any], float]]:
        """Yield (batch, images, seconds) for every batch, as workers finish them."""
        ray = self._start_ray()
        self.workers_lost = 0
        self.batches_retried = 0
        self._shipped = self._ship_factory()
        try:
            n, per_gpu = self._plan_workers()
            for _ in range(n):
                self._spawn(per_gpu)
            kind = f"{per_gpu:g} GPU" if per_gpu > 0 else "1 CPU"
            self._say(f"{n} worker{'s' if n != 1 else ''} ({kind} each), backend {self.backend_name}")
            yield from self._schedule(ray, batches, stop, n, per_gpu)
        finally:
            self._teardown()

    def _schedule(
        self, ray: Any, batches: Iterator[Batch], stop: dict, n: int, per_gpu: float
    ) -> Iterator[tuple[Batch, list[Any], float]]:
        import ray.exceptions as rex
        from ray.exceptions import RayError, RayTaskError

        # a worker process or its node is gone: the batch was not made, run it elsewhere
        lost_errors: tuple[type[BaseException], ...] = tuple(
            getattr(rex, name)
            for name in ("RayActorError", "WorkerCrashedError", "ObjectLostError", "NodeDiedError")
            if hasattr(rex, name)
        )
        max_spawns = n + n * self.max_attempts + self.max_attempts
        starting: dict[Any, _Worker] = {w.handle.ready.remote(): w for w in self._pool}
        in_flight: dict[Any, tuple[_Task, _Worker]] = {}
        retry: deque[_Task] = deque()
        exhausted = False
        began = time.monotonic()
        warned = False

        def worker_lost(worker: _Worker, exc: BaseException) -> None:
            if not worker.alive:
                return
            worker.alive = False
            self.workers_lost += 1
            try:
                ray.kill(worker.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - it is gone already
                pass
            if stop.get("requested"):
                return
            if self._spawned >= max_spawns:
                raise BackendError(
                    f"Ray workers keep dying ({self.workers_lost} lost); last: {_first_line(str(exc))}. "
                    "See the worker logs under /tmp/ray/session_latest/logs"
                )
            new = self._spawn(per_gpu)
            starting[new.handle.ready.remote()] = new
            self._say(
                f"worker {worker.number} ({worker.where}) was lost; started worker {new.number} in its place"
            )

        def user_error(exc: BaseException) -> SdpError:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, SdpError):
                err = BackendError(str(cause))
                err.exit_code = cause.exit_code
                return err
            if cause is not None:
                return BackendError(
                    f"backend {self.backend_name!r} failed on a Ray worker: "
                    f"{type(cause).__name__}: {_first_line(str(cause))}"
                )
            return BackendError(f"a Ray worker failed: {_first_line(str(exc))}")

        while True:
            # submit while there is room: retried batches first, then the planner's
            while not stop.get("requested"):
                free = [
                    w for w in self._pool if w.alive and w.ready and w.in_flight < self.in_flight_per_worker
                ]
                if not free:
                    break
                task = retry.popleft() if retry else None
                if task is None and not exhausted:
                    batch = next(batches, None)
                    if batch is None:
                        exhausted = True
                    else:
                        task = _Task(batch)
                if task is None:
                    break
                worker = min(free, key=lambda w: (w.in_flight, w.number))
                ref = worker.handle.generate.remote(task.batch)
                worker.in_flight += 1
                in_flight[ref] = (task, worker)
            if not in_flight and (stop.get("requested") or (exhausted and not retry)):
                return
            if not any(w.alive for w in self._pool):
                raise BackendError("no Ray worker is left to run the remaining batches")
            waiting = list(in_flight) + list(starting)
            ready, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
            if not ready:
                if (
                    not warned
                    and not any(w.ready for w in self._pool)
                    and time.monotonic() - began > self.startup_warning_s
                ):
                    warned = True
                    res = ray.available_resources()
                    self._say(
                        f"no worker has started after {self.startup_warning_s:.0f} s; free resources: "
                        f"{int(res.get('CPU', 0))} CPUs, {res.get('GPU', 0):g} GPUs "
                        "(fewer --workers, or add machines)"
                    )
                continue
            for ref in ready:
                if ref in starting:
                    worker = starting.pop(ref)
                    try:
                        info = ray.get(ref)
                    except lost_errors as exc:
                        worker_lost(worker, exc)
                        continue
                    except RayTaskError as exc:
                        raise user_error(exc) from None
                    except RayError as exc:
                        raise BackendError(f"a Ray worker could not start: {_first_line(str(exc))}") from None
                    worker.ready = True
                    gpus = ",".join(info.get("gpus") or [])
                    worker.where = f"{info.get('host')} pid {info.get('pid')}" + (
                        f" GPU {gpus}" if gpus else ""
                    )
                    continue
                task, worker = in_flight.pop(ref)
                worker.in_flight -= 1
                try:
                    packed, seconds, described = ray.get(ref)
                except lost_errors as exc:
                    task.attempts += 1
                    task.errors.append(_first_line(str(exc)))
                    worker_lost(worker, exc)
                    if stop.get("requested"):
                        continue  # not written: the next run makes it
                    if task.attempts >= self.max_attempts:
                        raise BackendError(
                            f"samples {_span(task.batch)} lost their Ray worker {task.attempts} times "
                            f"(out of memory? a crash in the backend?); last: {task.errors[-1]}. "
                            "See the worker logs under /tmp/ray/session_latest/logs"
                        ) from None
                    self.batches_retried += 1
                    self._say(f"samples {_span(task.batch)} go to another worker (try {task.attempts + 1})")
                    retry.append(task)
                    continue
                except RayTaskError as exc:
                    raise user_error(exc) from None
                except RayError as exc:
                    raise BackendError(f"a Ray worker failed: {_first_line(str(exc))}") from None
                self._models.setdefault(task.batch.key.model, described)
                yield task.batch, [unpack_image(p) for p in packed], seconds

    def _teardown(self) -> None:
        ray = self._ray
        if ray is None:
            return
        for w in self._pool:
            try:
                ray.kill(w.handle, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._pool = []
        if self._started_ray:
            self._started_ray = False
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 - shutting down must not hide the run's outcome
                pass

    def close(self) -> None:
        """Stop the workers, and Ray when this executor started it."""
        self._teardown()
