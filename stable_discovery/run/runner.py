"""Running an experiment: samples → planner → executor → PNG files + run store.

Exactly once, whatever happens: an image is written under a temporary name and renamed
into place, then its row is marked done; a run that was killed leaves at most files
without rows, which the next start sweeps away before resuming. One process at a time
runs an experiment (a lock file in its folder).

The pieces: :mod:`.runplan` resolves the options against the template, :mod:`.files`
owns the folder (lock, sweep, atomic PNG writes), :mod:`.recording` records a batch
(files, rows, sinks, hooks), :mod:`.interrupt` turns Ctrl-C into a stop request and
:mod:`.executors` generates the batches. :func:`run_experiment` drives them.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from stable_discovery.backends.base import Backend, Batch
from stable_discovery.errors import UsageError
from stable_discovery.language.program import Program
from stable_discovery.run.executors import Executor, LocalExecutor
from stable_discovery.run.files import ExperimentLock, ImageWriter, image_name, sweep
from stable_discovery.run.interrupt import StopOnSigint
from stable_discovery.run.planner import plan_by_model
from stable_discovery.run.recording import BatchRecorder, LoraHashes, RunHooks, Sink
from stable_discovery.run.runplan import (
    RunOptions,
    RunPlan,
    apply_overrides,
    parse_overrides,
    resolve_count,
    resolve_plan,
    sampler_name,
    wildcards_hash,
)
from stable_discovery.store.database import Experiment, Store

if TYPE_CHECKING:
    from stable_discovery.sampling.samplers import Sampler

__all__ = [
    "RunParts",
    "RunObserver",
    "RunResult",
    "run_experiment",
    "regenerate",
    # defined in the modules the runner drives, importable from here as before
    "Executor",
    "LocalExecutor",
    "RunOptions",
    "apply_overrides",
    "wildcards_hash",
    "parse_overrides",
    "resolve_count",
    "sampler_name",
    "ExperimentLock",
    "sweep",
    "image_name",
]


@dataclass(frozen=True)
class RunParts:
    """What a run is made with, looked up by the caller (built-in or from plugins).

    Attributes:
        backend_factory: makes the backend, with ``RunOptions.backend_options``.
        sampler: the sampler :func:`sampler_name` names for the run's options and template.
        sink_factories: sinks by name; the run makes those ``RunOptions.sinks`` names.
        hooks: the plugin hooks (``image_saved``, ``run_finished``), or ``None``.
        setting_specs: settings by name, to parse the overrides (default: the built-in ones).
        executor: where batches are generated (default: :class:`LocalExecutor`).
    """

    backend_factory: Callable[..., Backend]
    sampler: Sampler
    sink_factories: Mapping[str, Callable[[Path], Sink]] = field(default_factory=dict)
    hooks: RunHooks | None = None
    setting_specs: Mapping[str, Any] | None = None
    executor: Executor | None = None


class RunObserver:
    """What a run tells whoever started it (``sdp run`` draws a progress bar). Every
    method does nothing here: a subclass overrides those it needs."""

    def started(self, experiment: Experiment, folder: Path) -> None:
        """The experiment is open, locked and swept; nothing is loaded yet."""

    def generating(self, done: int, total: int) -> None:
        """The backend is ready; the first batch is about to be made."""

    def progress(self, done: int, total: int) -> None:
        """A batch was recorded: ``done`` of ``total`` images are done."""

    def generated(self) -> None:
        """The last batch was recorded (not called when the run fails or Ctrl-C twice
        stops it at once)."""


@dataclass(frozen=True)
class RunResult:
    experiment: str
    count: int
    done: int
    generated: int
    seconds: float
    interrupted: bool


def run_experiment(
    store: Store,
    program: Program,
    template_path: str | None,
    options: RunOptions,
    parts: RunParts,
    observer: RunObserver | None = None,
) -> RunResult:
    """Generate every sample of an experiment that is not done yet."""
    plan = resolve_plan(program, template_path, options, parts.sampler, parts.setting_specs)
    exp = store.open_experiment(plan.spec)
    folder = store.experiment_dir(exp.name)
    folder.mkdir(parents=True, exist_ok=True)
    watch = observer if observer is not None else RunObserver()
    started = time.monotonic()
    writer = ImageWriter(folder, exp.name, options.backend, plan.count)
    recorder = BatchRecorder(store, exp, writer, parts.hooks, options.lora_dirs)
    with ExperimentLock(folder, exp.name):
        try:
            done = store.done_indices(exp.id)
            sweep(folder, store.done_files(exp.id))
            watch.started(exp, folder)
            if len(done) >= plan.count:
                return RunResult(exp.name, plan.count, len(done), 0, 0.0, False)
            interrupted = _generate(plan, parts, recorder, done, watch)
        except KeyboardInterrupt:
            interrupted = True  # Ctrl-C twice, or before generation began: stop now
    total_done = store.done_count(exp.id)
    if parts.hooks is not None:
        parts.hooks.run_finished(
            experiment=exp.name, done=total_done, count=plan.count, interrupted=interrupted
        )
    seconds = time.monotonic() - started
    return RunResult(exp.name, plan.count, total_done, recorder.generated, seconds, interrupted)


def _generate(
    plan: RunPlan, parts: RunParts, recorder: BatchRecorder, done: set[int], watch: RunObserver
) -> bool:
    """Generate and record what is not done; whether a stop was asked for. The SIGINT
    handler, the sinks and the backend are put back or closed, in that order, however
    it ends."""
    stop = threading.Event()
    executor: Executor = parts.executor if parts.executor is not None else LocalExecutor()
    with ExitStack() as resources:
        backend = (
            parts.backend_factory(**plan.options.backend_options) if executor.needs_local_backend else None
        )
        if backend is not None:
            resources.callback(backend.close)
            _prepare(backend, plan)
        plan = _with_model_defaults(plan, backend if backend is not None else executor)
        resources.enter_context(recorder)
        recorder.open_sinks(parts.sink_factories[name] for name in plan.options.sinks)
        resources.enter_context(StopOnSigint(stop))
        batches = plan_by_model(
            lambda: plan.todo(done), plan.models(), plan.batch_size, plan.options.max_models
        )
        _drive(executor, backend, batches, stop, recorder, watch, len(done), plan.count)
    return stop.is_set()


def _prepare(backend: Backend, plan: RunPlan) -> None:
    """Let a backend that can load the run's models before the first batch do so."""
    prepare = getattr(backend, "prepare", None)
    if prepare is not None:
        prepare(plan.models())


def _with_model_defaults(plan: RunPlan, source: Any) -> RunPlan:
    """The plan with each model's family defaults, from a backend (or an executor) that
    knows them (``model_defaults(model)``); unchanged otherwise."""
    defaults_of = getattr(source, "model_defaults", None)
    if defaults_of is None:
        return plan
    found = {m: dict(defaults_of(m)) for m in plan.models()}
    return dataclasses.replace(plan, model_defaults={m: d for m, d in found.items() if d})


def _drive(
    executor: Executor,
    backend: Backend | None,
    batches: Iterator[Batch],
    stop: threading.Event,
    recorder: BatchRecorder,
    watch: RunObserver,
    done: int,
    total: int,
) -> None:
    """Hand the batches to the executor and record what it yields, until it ends or
    ``stop`` is set (an executor that drains yields its batches in flight first)."""
    describe = backend.describe_model if backend is not None else executor.describe_model
    drains = bool(getattr(executor, "drains_on_stop", False))
    hashes = LoraHashes(recorder.lora_dirs)
    watch.generating(done, total)
    for batch, images, seconds in executor.run(backend, batches, stop):
        lora_hashes = hashes(batch.key.model, [n for n, _w in batch.key.loras])
        done += recorder.record(batch, images, seconds, describe(batch.key.model), lora_hashes)
        watch.progress(done, total)
        if stop.is_set() and not drains:
            break
    watch.generated()


def regenerate(
    store: Store,
    exp: Experiment,
    index: int,
    backend_factory: Callable[..., Backend],
    backend_options: dict[str, Any] | None = None,
) -> tuple[Any, int | None]:
    """Make a stored sample's image again: (new image, max pixel difference to the file)."""
    from PIL import Image, ImageChops

    from stable_discovery.backends.base import GenerationKey
    from stable_discovery.store.database import sample_from_record

    rec = store.record(exp, index)
    if rec is None or rec["status"] != "done":
        raise UsageError(f"sample {index} of {exp.name!r} is not done yet")
    sample = sample_from_record(rec)
    backend = backend_factory(**(backend_options or {}))
    try:
        image = backend.generate(Batch(GenerationKey.of(sample), (sample,)))[0]
    finally:
        backend.close()
    path = store.experiment_dir(exp.name) / rec["file"]
    if not path.exists():
        return image, None
    with Image.open(path) as stored:
        diff = ImageChops.difference(stored.convert("RGB"), image.convert("RGB"))
        # an RGB image: one (lowest, highest) pair per band
        extrema = cast("tuple[tuple[int, int], ...]", diff.getextrema())
    return image, max(hi for _lo, hi in extrema)
