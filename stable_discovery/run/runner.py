"""Running an experiment: samples → planner → executor → PNG files + run store.

Exactly once, whatever happens: an image is written under the store's temporary name,
its row is marked done, then it is renamed into place; a run that was killed leaves at
most temporary files, which the next start sweeps away, and done rows whose files are
missing, which it makes again (so does a resume after images were deleted). Nothing
else in the folder is touched. One process at a time runs an experiment: the lock in
its folder is taken before the experiment's spec is read or changed.

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
from stable_discovery.run.autobatch import AUTO_BATCH
from stable_discovery.run.executors import Executor, ExecutorSetup, LocalExecutor
from stable_discovery.run.files import (
    ExperimentLock,
    ImageWriter,
    check_new_folder,
    check_unrecorded,
    image_name,
    read_spec_file,
    sweep,
    write_spec_file,
)
from stable_discovery.run.interrupt import StopOnSigint
from stable_discovery.run.loading import BackendLoader, load_backend
from stable_discovery.run.planner import plan_by_model
from stable_discovery.run.recording import BatchRecorder, LoraHashes, RunHooks, Sink, default_encoders
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
from stable_discovery.store.faults import os_fault
from stable_discovery.store.images import image_index, scan_folder

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
        """The experiment is open, locked and swept; the backend may still be loading
        (``experiment.done`` counts the done samples whose images are in place)."""

    def missing(self, experiment: Experiment, names: list[str]) -> None:
        """Images of done samples are missing from the folder: they are made again."""

    def generating(self, done: int, total: int) -> None:
        """The backend is ready; the first batch is about to be made."""

    def shrunk(self, text: str) -> None:
        """``--batch auto``: a batch did not fit in memory (``text`` says which, and the
        size tried from then on)."""

    def progress(self, done: int, total: int) -> None:
        """A batch was recorded: ``done`` of ``total`` images are done."""

    def generated(self) -> None:
        """The last batch was recorded (not called when the run fails or Ctrl-C twice
        stops it at once)."""


@dataclass(frozen=True)
class RunResult:
    """What a run did. ``seconds`` runs from the start of :func:`run_experiment` (or the
    ``started`` it was given) to its end; ``first_image_s`` to the first image recorded
    (None when none was), ``load_s`` is the time the backend took to load its models
    (None without a local backend)."""

    experiment: str
    count: int
    done: int
    generated: int
    seconds: float
    interrupted: bool
    first_image_s: float | None = None
    load_s: float | None = None


@dataclass
class _Timing:
    """When things happened in a run, in ``time.monotonic()`` seconds."""

    started: float
    load_s: float | None = None
    first_image_s: float | None = None


def run_experiment(
    store: Store,
    program: Program,
    template_path: str | None,
    options: RunOptions,
    parts: RunParts,
    observer: RunObserver | None = None,
    *,
    started: float | None = None,
) -> RunResult:
    """Generate every sample of an experiment that is not done yet (or whose image is
    missing). ``started`` (a ``time.monotonic()`` reading, default now) is when the
    command began, for the time to the first image. The backend loads on a thread of
    its own while the experiment is opened and swept."""
    plan = resolve_plan(program, template_path, options, parts.sampler, parts.setting_specs)
    folder, created = _make_folder(store, plan.spec.name)
    watch = observer if observer is not None else RunObserver()
    timing = _Timing(started if started is not None else time.monotonic())
    executor: Executor = parts.executor if parts.executor is not None else LocalExecutor()
    with ExperimentLock(folder, plan.spec.name), ExitStack() as ending:
        loader = _start_loading(store, plan, parts, executor)
        if loader is not None:  # a backend nobody took (the run ended first) is closed
            ending.callback(loader.abandon)
        try:
            exp, done = _open(store, plan, folder, watch)
        except BaseException:
            if created:
                _remove_new_folder(folder)
            raise
        writer = ImageWriter(folder, exp.name, options.backend, plan.count)
        encoders = options.encoders if options.encoders is not None else default_encoders()
        recorder = BatchRecorder(store, exp, writer, parts.hooks, options.lora_dirs, encoders=encoders)
        watch.started(dataclasses.replace(exp, done=len(done)), folder)
        if len(done) >= plan.count:
            return RunResult(exp.name, plan.count, len(done), 0, 0.0, False)
        interrupted = _generate_recorded(
            store, exp, plan, parts, executor, loader, recorder, done, watch, timing
        )
    total_done = store.done_count(exp.id)
    if parts.hooks is not None:
        parts.hooks.run_finished(
            experiment=exp.name, done=total_done, count=plan.count, interrupted=interrupted
        )
    seconds = time.monotonic() - timing.started
    return RunResult(
        exp.name,
        plan.count,
        total_done,
        recorder.generated,
        seconds,
        interrupted,
        timing.first_image_s,
        timing.load_s,
    )


def _make_folder(store: Store, name: str) -> tuple[Path, bool]:
    """The experiment's folder, made when missing: (its path, whether it was made)."""
    folder = store.experiment_dir(name)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder: run under another --name")
    created = not folder.exists()
    if not created and store.get(name) is None:
        # someone else's folder: refused before the lock file is put in it
        check_new_folder(folder, name, scan_folder(folder, ()))
    try:
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise os_fault(exc, f"cannot create the experiment's folder {folder}") from None
    return folder, created


def _remove_new_folder(folder: Path) -> None:
    """Undo :func:`_make_folder` when the run could not start (only the lock is in it)."""
    try:
        (folder / ".lock").unlink()
        folder.rmdir()
    except OSError:
        pass


def _open(store: Store, plan: RunPlan, folder: Path, watch: RunObserver) -> tuple[Experiment, set[int]]:
    """With the run's lock held: open the experiment (refusing a folder of someone
    else's files), sweep the store's leftovers, and find what is done; (the experiment,
    the indices done with their images in place)."""
    if store.get(plan.spec.name) is None:
        check_new_folder(folder, plan.spec.name, scan_folder(folder, ()))
    exp = store.open_experiment(plan.spec)
    spec = store.spec_of(exp)
    if read_spec_file(folder) != (spec, exp.created_at):
        write_spec_file(folder, spec, exp.created_at)
    scan = store.scan(exp)
    sweep(folder, scan)
    check_unrecorded(folder, exp.name, plan.count, scan)
    done = store.done_indices(exp.id)
    if scan.missing:
        watch.missing(exp, list(scan.missing))
        done -= {i for i in map(image_index, scan.missing) if i is not None}
    return exp, done


def _start_loading(store: Store, plan: RunPlan, parts: RunParts, executor: Executor) -> BackendLoader | None:
    """Start loading the backend, unless the executor brings its own or the experiment
    is known to be complete (then no model is loaded for nothing; should images turn
    out to be missing, the backend is loaded when they are made)."""
    if not executor.needs_local_backend:
        return None
    known = store.get(plan.spec.name)
    if known is not None and known.done >= plan.count:
        return None
    return BackendLoader(parts.backend_factory, dict(plan.options.backend_options), plan.models())


def _generate_recorded(
    store: Store,
    exp: Experiment,
    plan: RunPlan,
    parts: RunParts,
    executor: Executor,
    loader: BackendLoader | None,
    recorder: BatchRecorder,
    done: set[int],
    watch: RunObserver,
    timing: _Timing,
) -> bool:
    """:func:`_generate`, recorded in the store's record of runs (how it was run, what
    it made, how it ended); whether a stop was asked for."""
    settings = _run_settings(plan, executor, recorder)
    run_id = store.start_run(exp.id, settings)
    outcome = "failed"
    try:
        interrupted = _generate(plan, parts, executor, loader, recorder, done, watch, timing, settings)
        outcome = "stopped" if interrupted else "done"
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C twice, or before generation began: stop now
        outcome = "stopped"
    finally:
        try:
            store.finish_run(
                run_id,
                outcome=outcome,
                generated=recorder.generated,
                seconds=time.monotonic() - timing.started,
                first_image_s=timing.first_image_s,
                settings=settings,
            )
        except Exception:  # noqa: BLE001 - the record of the run must not hide its outcome
            pass
    return interrupted


def _run_settings(plan: RunPlan, executor: Executor, recorder: BatchRecorder) -> dict[str, Any]:
    """How a run is run, for its record: what changes the speed, not the images."""
    return {
        "executor": getattr(executor, "name", type(executor).__name__),
        "batch": "auto" if plan.auto_batch else plan.batch_size,
        "encoders": recorder.encoders,
        "backend": plan.options.backend,
        "backend_options": {k: v for k, v in plan.options.backend_options.items() if k != "lora_dirs"},
    }


def _generate(
    plan: RunPlan,
    parts: RunParts,
    executor: Executor,
    loader: BackendLoader | None,
    recorder: BatchRecorder,
    done: set[int],
    watch: RunObserver,
    timing: _Timing,
    settings: dict[str, Any],
) -> bool:
    """Generate and record what is not done; whether a stop was asked for. The SIGINT
    handler, the sinks and the backend are put back or closed, in that order, however
    it ends; ``settings`` (the run's record) gets the backend's knobs and the batch
    sizes found."""
    stop = threading.Event()
    with ExitStack() as resources:
        backend = _ready_backend(plan, parts, executor, loader, timing)
        if backend is not None:
            resources.callback(backend.close)
            settings["knobs"] = dict(getattr(backend, "knobs", dict)())
        source = backend if backend is not None else executor
        plan = _with_batch_default(_with_model_defaults(plan, source), source)
        settings["batch"] = "auto" if plan.auto_batch else plan.batch_size
        _setup(executor, plan, recorder, watch)
        resources.enter_context(recorder)
        names = plan.options.sinks
        recorder.open_sinks([parts.sink_factories[name] for name in names], names)
        resources.enter_context(StopOnSigint(stop))
        batches = plan_by_model(
            lambda: plan.todo(done), plan.models(), plan.batch_size, plan.options.max_models
        )
        try:
            _drive(executor, backend, batches, stop, recorder, watch, len(done), plan.count, timing)
        finally:
            sizes = getattr(executor, "batch_sizes", None)
            if sizes is not None and sizes():
                settings["batch_sizes"] = sizes()
    return stop.is_set()


def _ready_backend(
    plan: RunPlan, parts: RunParts, executor: Executor, loader: BackendLoader | None, timing: _Timing
) -> Backend | None:
    """The run's backend, loaded (waiting for the loader), or None for an executor
    that brings its own."""
    if not executor.needs_local_backend:
        return None
    if loader is None:
        t0 = time.monotonic()
        backend = load_backend(parts.backend_factory, plan.options.backend_options, plan.models())
        timing.load_s = time.monotonic() - t0
        return backend
    backend = loader.result()  # Ctrl-C meanwhile: run_experiment abandons the loader
    timing.load_s = loader.seconds
    return backend


def _setup(executor: Executor, plan: RunPlan, recorder: BatchRecorder, watch: RunObserver) -> None:
    """Tell an executor that takes a setup how the files are made and batches sized."""
    setup = getattr(executor, "setup", None)
    if setup is None:
        return
    writer = recorder.writer
    setup(
        ExecutorSetup(
            png=writer.png,
            lora_dirs=recorder.lora_dirs,
            auto_batch=plan.auto_batch,
            notice=lambda shrunk: watch.shrunk(str(shrunk)),
        )
    )


def _with_model_defaults(plan: RunPlan, source: Any) -> RunPlan:
    """The plan with each model's family defaults, from a backend (or an executor) that
    knows them (``model_defaults(model)``); unchanged otherwise."""
    defaults_of = getattr(source, "model_defaults", None)
    if defaults_of is None:
        return plan
    found = {m: dict(defaults_of(m)) for m in plan.models()}
    return dataclasses.replace(plan, model_defaults={m: d for m, d in found.items() if d})


def _with_batch_default(plan: RunPlan, source: Any) -> RunPlan:
    """``--batch auto`` when neither the command nor the template sets a batch and the
    backend (or executor) prefers it (``prefers_auto_batch``: a GPU)."""
    if plan.batch_given or not getattr(source, "prefers_auto_batch", False):
        return plan
    return dataclasses.replace(plan, batch_size=AUTO_BATCH, auto_batch=True)


def _drive(
    executor: Executor,
    backend: Backend | None,
    batches: Iterator[Batch],
    stop: threading.Event,
    recorder: BatchRecorder,
    watch: RunObserver,
    done: int,
    total: int,
    timing: _Timing,
) -> None:
    """Hand the batches to the executor and record what it yields, until it ends or
    ``stop`` is set (an executor that drains yields its batches in flight first). The
    recorder writes a batch while the next one is generated."""
    describe = backend.describe_model if backend is not None else executor.describe_model
    drains = bool(getattr(executor, "drains_on_stop", False))
    hashes = LoraHashes(recorder.lora_dirs)
    watch.generating(done, total)
    for batch, images, seconds in executor.run(backend, batches, stop):
        lora_hashes = hashes(batch.key.model, [n for n, _w in batch.key.loras])
        recorded = recorder.submit(batch, images, seconds, describe(batch.key.model), lora_hashes)
        if recorded:
            done += recorded
            _first_image(timing)
            watch.progress(done, total)
        if stop.is_set() and not drains:
            break
    recorded = recorder.finish()
    if recorded:
        _first_image(timing)
        watch.progress(done + recorded, total)
    watch.generated()


def _first_image(timing: _Timing) -> None:
    if timing.first_image_s is None:
        timing.first_image_s = time.monotonic() - timing.started


def regenerate(
    store: Store,
    exp: Experiment,
    index: int,
    backend_factory: Callable[..., Backend],
    backend_options: dict[str, Any] | None = None,
    *,
    save: bool = False,
) -> tuple[Any, int | None]:
    """Make a stored sample's image again: (new image, max pixel difference to the file,
    None when the file is missing). With ``save``, the new image is written to the
    sample's file (under the experiment's lock) when it is missing or differs."""
    from stable_discovery.backends.base import GenerationKey
    from stable_discovery.store.database import sample_from_record

    rec = store.record(exp, index)
    if rec is None or rec["status"] != "done":
        raise UsageError(f"sample {index} of {exp.name!r} is not done yet")
    sample = sample_from_record(rec)
    key = GenerationKey.of(sample)
    backend = backend_factory(**(backend_options or {}))
    try:
        image = backend.generate(Batch(key, (sample,)))[0]
        model_name = backend.describe_model(key.model)
    finally:
        backend.close()
    folder = store.experiment_dir(exp.name)
    diff = _difference(folder / rec["file"], image)
    if save and diff != 0:
        hashes = LoraHashes((backend_options or {}).get("lora_dirs", ()))
        lora_hashes = hashes(key.model, [n for n, _w in key.loras])
        with ExperimentLock(folder, exp.name):
            writer = ImageWriter(folder, exp.name, exp.backend, exp.count)
            writer.write(sample, image, model_name, lora_hashes, fname=rec["file"])
    return image, diff


def _difference(path: Path, image: Any) -> int | None:
    """The largest difference of any pixel channel between the file and ``image`` (0 to
    255), or None when the file is missing or unreadable."""
    from PIL import Image, ImageChops, UnidentifiedImageError

    try:
        with Image.open(path) as stored:
            if stored.size != image.size:
                return 255
            diff = ImageChops.difference(stored.convert("RGB"), image.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    # an RGB image: one (lowest, highest) pair per band
    extrema = cast("tuple[tuple[int, int], ...]", diff.getextrema())
    return max(hi for _lo, hi in extrema)
