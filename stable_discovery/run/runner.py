"""Running an experiment: samples → planner → backend → PNG files + run store.

Exactly once, whatever happens: an image is written under a temporary name and renamed
into place, then its row is marked done; a run that was killed leaves at most files
without rows, which the next start sweeps away before resuming. One process at a time
runs an experiment (a lock file in its folder).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

from stable_discovery.backends.base import Backend, BackendError, Batch
from stable_discovery.errors import UsageError
from stable_discovery.language.program import Program
from stable_discovery.run.planner import plan
from stable_discovery.run.pngmeta import a1111_parameters, png_info
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import Experiment, ExperimentSpec, Store, StoreError

__all__ = [
    "Executor",
    "LocalExecutor",
    "RunOptions",
    "RunResult",
    "run_experiment",
    "apply_overrides",
    "wildcards_hash",
    "parse_overrides",
    "ExperimentLock",
    "sweep",
    "image_name",
    "Progress",
]


@dataclass(frozen=True)
class RunOptions:
    name: str
    backend: str = "diffusers"
    batch: int | None = None
    count: int | None = None
    seed: int | None = None
    sampler: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    sinks: tuple[str, ...] = ()
    backend_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    experiment: str
    count: int
    done: int
    generated: int
    seconds: float
    interrupted: bool


def wildcards_hash(program: Program) -> str:
    h = hashlib.sha256()
    for path in sorted(program.wildcard_files):
        h.update(str(path.name).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()


def parse_overrides(pairs: Iterable[str], specs: dict[str, Any]) -> dict[str, str]:
    """``KEY=VALUE`` pairs (``--set``), checked against the settings' parsers."""
    from stable_discovery.language.settings import SettingValueError

    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("@")
        if not sep or not key:
            raise UsageError(f"--set takes KEY=VALUE, got {pair!r}")
        spec = specs.get(key)
        if spec is None or key in ("count", "seed", "sampler", "batch"):
            known = ", ".join(k for k in specs if k not in ("count", "seed", "sampler", "batch"))
            raise UsageError(f"--set {key}: not a generation setting; use one of {known}")
        try:
            spec.parse(value.strip())
        except SettingValueError as exc:
            raise UsageError(f"--set {key}: {exc}") from None
        out[key] = value.strip()
    return out


def apply_overrides(sample: Sample, overrides: dict[str, Any]) -> Sample:
    """The sample with settings overridden (``--set``, ``--model``). An overridden
    setting no longer varies, so its choice leaves the trace."""
    if not overrides:
        return sample
    settings = dict(sample.settings)
    settings.update(overrides)
    gone = set(overrides)
    if "width" in gone or "height" in gone:
        gone.add("size")
    trace = {k: v for k, v in sample.trace.items() if k not in gone}
    return dataclasses.replace(sample, settings=settings, trace=trace)


def _parsed_overrides(overrides: dict[str, str], specs: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for key, text in overrides.items():
        value = specs[key].parse(text)
        if key == "size":
            parsed["width"], parsed["height"] = value
        else:
            parsed[key] = value
    return parsed


def _write_atomically(folder: Path, fname: str, image: Any, pnginfo: Any) -> None:
    """Encode in memory, write under a temporary name with one system call, rename."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo, compress_level=1)
    tmp = os.path.join(folder, fname + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = buffer.getbuffer()
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, os.path.join(folder, fname))


def image_name(index: int, count: int) -> str:
    return f"{index:0{max(5, len(str(max(count - 1, 0))))}d}.png"


# ---------------------------------------------------------------------------------------


class ExperimentLock:
    """An exclusive lock on an experiment folder, released when the process ends."""

    def __init__(self, folder: Path, name: str) -> None:
        import fcntl

        self.path = folder / ".lock"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise StoreError(
                f"experiment {name!r} is being run by another process (pid {other}); "
                "wait for it to finish, or stop it first"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def sweep(folder: Path, done_files: set[str]) -> int:
    """Remove what a killed run left: temporary files and images without a done row."""
    removed = 0
    for path in folder.iterdir():
        name = path.name
        if name.endswith(".tmp") or (name.endswith(".png") and name not in done_files):
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass
    return removed


class Progress:
    """A one-line progress bar on stderr: done/total, rate and time left."""

    def __init__(self, label: str, total: int, done: int, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.start_done = done
        self.done = done
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.last = 0.0
        self.last_pct = -1

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if now - self.last >= 0.1 or self.done >= self.total:
                self.last = now
                self.stream.write("\r" + self.line() + "\x1b[K")
                self.stream.flush()
        else:
            pct = int(100 * self.done / self.total) if self.total else 100
            if pct // 10 != self.last_pct // 10 or self.done >= self.total:
                self.last_pct = pct
                self.stream.write(self.line() + "\n")
                self.stream.flush()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        made = self.done - self.start_done
        rate = made / elapsed
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "?"
        pct = 100 * self.done / self.total if self.total else 100.0
        width = 24
        filled = int(width * pct / 100)
        bar = "#" * filled + "-" * (width - filled)
        return f"{self.label} [{bar}] {self.done}/{self.total} {pct:5.1f}%  {rate:.2f} img/s  ETA {eta}"

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---------------------------------------------------------------------------------------


class Executor(Protocol):
    """Where batches are generated. ``run`` yields (batch, images, seconds) for every
    batch it is given, in any order; the driver writes files and rows, so resume and
    exactly-once hold whatever the executor. ``stop["requested"]`` asks it to stop
    taking new batches. An executor with ``drains_on_stop = True`` then yields the batches
    it has in flight (the driver writes them) before it ends; others are left at once."""

    needs_local_backend: bool

    def run(
        self, backend: Backend | None, batches: Iterator[Batch], stop: dict
    ) -> Iterator[tuple[Batch, list[Any], float]]: ...

    def describe_model(self, model: str) -> str: ...


class LocalExecutor:
    """The default: one backend in this process, one batch at a time."""

    needs_local_backend = True

    def run(
        self, backend: Backend | None, batches: Iterator[Batch], stop: dict
    ) -> Iterator[tuple[Batch, list[Any], float]]:
        assert backend is not None
        for batch in batches:
            t0 = time.perf_counter()
            images = list(backend.generate(batch))
            yield batch, images, time.perf_counter() - t0
            if stop.get("requested"):
                return

    def describe_model(self, model: str) -> str:  # pragma: no cover - the backend answers
        return model


def resolve_count(program: Program, sampler: Any, requested: int | None) -> int:
    size = sampler.size(program)
    count = requested if requested is not None else program.setting("count")
    if count is None:
        if size is None:
            raise UsageError(
                f"how many images? the {sampler.name} sampler needs --count N or @count in the template"
            )
        count = size
    if size is not None and count > size:
        raise UsageError(
            f"--count {count} is more than the {size} combinations the {sampler.name} sampler has"
        )
    return int(count)


def run_experiment(
    store: Store,
    program: Program,
    template_path: str | None,
    options: RunOptions,
    backend_factory: Callable[..., Backend],
    sink_factories: dict[str, Callable[..., Any]],
    hooks: Any = None,
    setting_specs: dict[str, Any] | None = None,
    progress_stream: TextIO | None = None,
    on_started: Callable[[Experiment], None] | None = None,
    executor: Executor | None = None,
) -> RunResult:
    """Generate every sample of an experiment that is not done yet."""
    from stable_discovery.language.settings import BUILTIN_SETTINGS
    from stable_discovery.plugins import get_sampler

    specs = setting_specs or {s.name: s for s in BUILTIN_SETTINGS}
    sampler_name = options.sampler or program.setting("sampler", "random")
    sampler = get_sampler(sampler_name)
    seed = options.seed if options.seed is not None else int(program.setting("seed", 0))
    count = resolve_count(program, sampler, options.count)
    batch_size = options.batch or int(program.setting("batch", 0) or 0) or 4
    spec = ExperimentSpec(
        name=options.name,
        template_path=template_path,
        template_text=program.source.text,
        wildcards_hash=wildcards_hash(program),
        sampler=sampler_name,
        seed=seed,
        count=count,
        backend=options.backend,
        overrides=dict(options.overrides),
    )
    overrides = _parsed_overrides(options.overrides, specs)
    exp = store.open_experiment(spec)
    folder = store.experiment_dir(exp.name)
    folder.mkdir(parents=True, exist_ok=True)
    lock = ExperimentLock(folder, exp.name)
    backend: Backend | None = None
    sinks: list[Any] = []
    interrupted = False
    generated = 0
    started = time.monotonic()
    previous_handler: Any = None
    stop = {"requested": False}
    try:
        done = store.done_indices(exp.id)
        sweep(folder, store.done_files(exp.id))
        if on_started is not None:
            on_started(exp)
        if len(done) >= count:
            return RunResult(exp.name, count, len(done), 0, 0.0, False)

        backend = (
            backend_factory(**options.backend_options)
            if executor is None or executor.needs_local_backend
            else None
        )
        todo: Iterator[Sample] = (
            apply_overrides(s, overrides)
            for s in sampler.samples(program, 0, count, seed)
            if s.index not in done
        )
        prepare = getattr(backend, "prepare", None) if backend is not None else None
        if prepare is not None:
            models = sorted({str(overrides.get("model", m)) for m in _models(program)})
            prepare(models)
        sinks = [sink_factories[name](folder) for name in options.sinks]

        def on_sigint(signum: int, frame: Any) -> None:
            if stop["requested"]:
                raise KeyboardInterrupt
            stop["requested"] = True
            sys.stderr.write("\nstopping after the current batch (Ctrl-C again to stop now)\n")

        if _main_thread():
            previous_handler = signal.signal(signal.SIGINT, on_sigint)
        progress = Progress(exp.name, count, len(done), progress_stream)

        run_batches = executor if executor is not None else LocalExecutor()
        for batch, images, seconds in run_batches.run(backend, plan(todo, batch_size), stop):
            if len(images) != len(batch.samples):
                raise BackendError(
                    f"backend {options.backend!r} returned {len(images)} images for "
                    f"{len(batch.samples)} samples"
                )
            model_name = (
                backend.describe_model(batch.key.model)
                if backend is not None
                else run_batches.describe_model(batch.key.model)
            )
            items = []
            for sample, image in zip(batch.samples, images, strict=False):
                if image.size != (batch.key.width, batch.key.height):
                    raise BackendError(
                        f"backend {options.backend!r} made a {image.size[0]}x{image.size[1]} image "
                        f"for a {batch.key.width}x{batch.key.height} sample"
                    )
                fname = image_name(sample.index, count)
                record = {
                    "experiment": exp.name,
                    "index": sample.index,
                    "prompt": sample.prompt,
                    "negative": sample.negative,
                    "settings": dict(sample.settings),
                    "seed": sample.seed,
                    "trace": {k: {"index": c.index, "text": c.text} for k, c in sample.trace.items()},
                    "backend": options.backend,
                }
                params = a1111_parameters(
                    sample.prompt, sample.negative, sample.settings, sample.seed, model_name
                )
                _write_atomically(folder, fname, image, png_info(params, record))
                items.append((sample, fname, seconds / len(batch.samples), len(batch.samples), record, image))
            # rows are marked done only once their files are in place
            store.record_done(exp.id, [(s, f, sec, b) for s, f, sec, b, _r, _i in items])
            generated += len(items)
            for _sample, fname, _sec, _b, record, image in items:
                for sink in sinks:
                    sink.write(record, image, folder / fname)
                if hooks is not None:
                    hooks.image_saved(experiment=exp.name, record=record, path=str(folder / fname))
            progress.update(len(items))
            if stop["requested"]:
                interrupted = True
                if not getattr(run_batches, "drains_on_stop", False):
                    break  # an executor that drains yields its batches in flight, then ends
        interrupted = interrupted or bool(stop["requested"])
        progress.close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGINT, previous_handler)
        for sink in sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - a sink's close must not hide the run's outcome
                pass
        if backend is not None:
            backend.close()
        lock.release()
    total_done = store.done_count(exp.id)
    if hooks is not None:
        hooks.run_finished(experiment=exp.name, done=total_done, count=count, interrupted=interrupted)
    return RunResult(exp.name, count, total_done, generated, time.monotonic() - started, interrupted)


def _models(program: Program) -> list[str]:
    from stable_discovery.language.settings import GENERATION_DEFAULTS

    info = program.settings.get("model")
    if info is None:
        return [GENERATION_DEFAULTS["model"]]
    return [str(v) for v in info.values]


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def regenerate(
    store: Store,
    exp: Experiment,
    index: int,
    backend_factory: Callable[..., Backend],
    backend_options: dict[str, Any] | None = None,
) -> tuple[Any, int | None]:
    """Make a stored sample's image again: (new image, max pixel difference to the file)."""
    from PIL import Image, ImageChops

    from stable_discovery.store.database import sample_from_record

    rec = store.record(exp, index)
    if rec is None or rec["status"] != "done":
        raise UsageError(f"sample {index} of {exp.name!r} is not done yet")
    sample = sample_from_record(rec)
    from stable_discovery.backends.base import GenerationKey

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
        extrema = diff.getextrema()
    return image, max(hi for _lo, hi in extrema)
