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
* Each worker resolves its backend by name on its own machine, through the lookup the
  caller passes (``sdp run`` passes :func:`stable_discovery.plugins.backends`); a backend
  the worker does not know (one registered at run time in the driver) is shipped from
  the driver, pickled.
* Batches are read from the planner lazily, at most ``in_flight_per_worker`` queued per
  worker, and results are yielded as they complete (``ray.wait``), in any order.
* A worker that dies mid-batch (its process killed, its node lost): the worker is
  replaced and each batch it held is submitted again to a live worker; a batch that
  loses its worker ``max_attempts`` times ends the run with a :class:`BackendError`.
  Nothing was written for a lost batch, so nothing is lost or written twice.
* ``stop`` set (Ctrl-C): no new batch is submitted; the batches in flight are
  drained and written, then the run stops.
* Images come back as the experiment's PNG files, encoded with their metadata on the
  workers (the driver's :class:`~.executors.ExecutorSetup` says how): the driver only
  writes bytes and rows, so one driver keeps up with many GPUs. Without a setup (a
  caller of :meth:`RayExecutor.run` of its own), as raw pixel buffers that become PIL
  images in the driver.
* ``--batch auto``: each worker makes each batch in the pieces that fit in its GPU.

The pieces: :mod:`.ray_worker` (the worker actor, images on the wire) and
:mod:`.ray_scheduler` (the pool of workers, the scheduling of batches on them).

Ray is imported only when a run starts; without it, :class:`RayExecutor` raises a
:class:`~stable_discovery.errors.UsageError` (exit status 2) that says how to install it.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from stable_discovery.backends.base import Backend, Batch
from stable_discovery.errors import SdpError, UsageError
from stable_discovery.run.ray_scheduler import Scheduler, SchedulerLimits, WorkerPool, first_line
from stable_discovery.run.ray_worker import (
    BackendLookup,
    BatchWorker,
    WorkerOptions,
    pack_image,
    unpack_image,
)

if TYPE_CHECKING:
    from stable_discovery.run.executors import ExecutorSetup, Generated

__all__ = [
    "RayExecutor",
    "RayUnavailable",
    "RayConnectError",
    "INSTALL_HINT",
    "import_ray",
    # the worker side, importable from here as before
    "BatchWorker",
    "pack_image",
    "unpack_image",
]

#: How to get Ray, as the error message says it.
INSTALL_HINT = "pip install -e '.[ray]'  (or: pip install 'stable-discovery[ray]')"

#: ``ray.init`` options for a run: no dashboard, quiet.
_INIT_OPTIONS: dict[str, Any] = {
    "include_dashboard": False,
    "logging_level": logging.ERROR,
    "log_to_driver": False,
    "configure_logging": True,
}

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
        import ray  # lazily: Ray is an optional extra
    except ImportError as exc:
        raise RayUnavailable(
            f"--executor ray needs Ray, which is not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from None
    return ray


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


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
        backend_name: the backend each worker loads, by name through ``backend_lookup``.
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
        backend_lookup: the backends installed where it is called, by name
            (``stable_discovery.plugins.backends``); each worker calls it on its own
            machine. ``None``: workers use ``backend_factory``.
        log: where one-line status messages go (default: standard error, as it is when
            a message is written).
        quiet: no status messages at all.
        startup_warning_s: after this long with no worker started, say so once.
    """

    name = "ray"
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
        backend_lookup: BackendLookup | None = None,
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
        self.backend_lookup = backend_lookup
        self.log = log
        self.quiet = quiet
        self.startup_warning_s = startup_warning_s
        self._models: dict[str, str] = {}
        self._ray: Any = None
        self._started_ray = False
        self._pool: WorkerPool | None = None
        self._scheduler: Scheduler | None = None
        self._options: WorkerOptions | None = None

    @property
    def workers_lost(self) -> int:
        """Workers lost during the last run (tests, reports)."""
        return self._scheduler.workers_lost if self._scheduler is not None else 0

    @property
    def batches_retried(self) -> int:
        """Batches of the last run submitted again after their worker was lost."""
        return self._scheduler.batches_retried if self._scheduler is not None else 0

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
        t0 = time.monotonic()
        # as ray.init itself does: RAY_ADDRESS names the cluster when --address does not
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            self.address = address
            self._join_cluster(ray, address)
            self._started_ray = True
            res = ray.cluster_resources()
            self._say(
                f"joined the cluster at {address} ({int(res.get('CPU', 0))} CPUs, "
                f"{int(res.get('GPU', 0))} GPUs, {_plural(len(ray.nodes()), 'node')}) "
                f"in {time.monotonic() - t0:.1f} s"
            )
        else:
            self._start_local(ray)
            self._started_ray = True
            res = ray.cluster_resources()
            self._say(
                f"started a local Ray ({int(res.get('CPU', 0))} CPUs, {int(res.get('GPU', 0))} GPUs) "
                f"in {time.monotonic() - t0:.1f} s"
            )
        return ray

    def _join_cluster(self, ray: Any, address: str) -> None:
        way_out = (
            "Start a cluster with `ray start --head` (and `ray start --address=HEAD:6379` "
            "on the other machines), or leave out --address to start Ray on this machine"
        )
        # Ray retries an unreachable GCS for minutes: find out at once
        why = _unreachable(address)
        if why is not None:
            raise RayConnectError(f"cannot connect to Ray at {address!r}: {why}. {way_out}")
        try:
            ray.init(address=address, **_INIT_OPTIONS)
        except ImportError as exc:
            raise RayUnavailable(
                f"--address {address} needs Ray Client ({exc}); install it with: "
                "pip install 'ray[client]', or run sdp on a machine of the cluster with --address auto"
            ) from None
        except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
            why = first_line(str(exc)).rstrip(". ")
            raise RayConnectError(f"cannot connect to Ray at {address!r}: {why}. {way_out}") from None

    def _start_local(self, ray: Any) -> None:
        kwargs: dict[str, Any] = {}
        if self.workers is not None and not self.num_gpus_per_worker:
            # CPU workers: Ray's CPUs are the workers (GPUs are still detected)
            kwargs["num_cpus"] = max(self.workers, 1)
        ray.init(**kwargs, **_INIT_OPTIONS)

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

    def _ship_factory(self) -> bytes | None:
        if self.backend_factory is None:
            return None
        try:
            import ray.cloudpickle as cloudpickle

            return bytes(cloudpickle.dumps(self.backend_factory))
        except Exception:  # noqa: BLE001 - then workers must have the backend installed
            return None

    # -- the protocol ------------------------------------------------------------------

    def setup(self, setup: ExecutorSetup) -> None:
        """Workers encode the experiment's PNG files themselves (and fit batches to
        their GPU with ``--batch auto``)."""
        self._options = WorkerOptions(setup.png, tuple(setup.lora_dirs), setup.auto_batch)

    def describe_model(self, model: str) -> str:
        """The model as a worker's backend described it for the batches it made (which
        is what the same backend in this process would write)."""
        found = self._models.get(model)
        if found is not None:
            return found
        ray = self._ray
        workers = self._pool.ready() if self._pool is not None else []
        for w in workers:
            try:
                found = str(ray.get(w.handle.describe_model.remote(model)))
            except Exception:  # noqa: BLE001 - fall back to the name itself
                continue
            self._models[model] = found
            return found
        return model

    def model_defaults(self, model: str) -> dict[str, Any]:
        """A model's family defaults, told here from its files (the workers have not
        started yet); only for the ``diffusers`` backend."""
        if self.backend_name != "diffusers":
            return {}
        from stable_discovery.backends.families import detect_model

        return dict(detect_model(model).defaults)

    def run(
        self, backend: Backend | None, batches: Iterator[Batch], stop: threading.Event
    ) -> Iterator[Generated]:
        """Yield (batch, images, seconds) for every batch, as workers finish them."""
        ray = self._start_ray()
        self._scheduler = None
        try:
            n, per_gpu = self._plan_workers()
            shipped = self._ship_factory()
            pool = WorkerPool(
                ray,
                self.backend_name,
                self.backend_options,
                shipped,
                self.backend_lookup,
                per_gpu,
                self._options,
            )
            self._pool = pool
            for _ in range(n):
                pool.spawn()
            kind = f"{per_gpu:g} GPU" if per_gpu > 0 else "1 CPU"
            self._say(f"{n} worker{'s' if n != 1 else ''} ({kind} each), backend {self.backend_name}")
            limits = SchedulerLimits(self.in_flight_per_worker, self.max_attempts, self.startup_warning_s)
            self._scheduler = Scheduler(ray, pool, batches, stop, limits, self._say, self._models)
            yield from self._scheduler.results()
        finally:
            self._teardown()

    def _teardown(self) -> None:
        ray = self._ray
        if ray is None:
            return
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._started_ray:
            self._started_ray = False
            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001 - shutting down must not hide the run's outcome
                pass

    def close(self) -> None:
        """Stop the workers, and Ray when this executor started it."""
        self._teardown()
