"""Recording generated batches, in the order that makes a run exactly-once and leaves
no file the store has no row for: the PNG files written under the store's temporary
names, the rows that mark them done, the files renamed into place, then the sinks and
the hooks, image by image, batch after batch.

The writing is a bounded pipeline, so that generation never waits for it: a batch
handed over (:meth:`BatchRecorder.submit`) is encoded and written on encoder threads
(Pillow's PNG encoder and file writes release the GIL) while the caller generates the
next one; its rows, renames, sinks and hooks follow in the caller's thread, in batch
order, once every file of the batch is written. At most ``depth`` batches wait; a
caller that gets ahead waits for the oldest. ``encoders=0`` writes in the caller's
thread, one batch at a time.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from stable_discovery.backends.base import BackendError, Batch
from stable_discovery.backends.families import lora_dirs_for
from stable_discovery.errors import SdpError
from stable_discovery.language.loras import LoraLibrary, lora_hash
from stable_discovery.run.files import EncodedImage, ImageWriter
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import Experiment, Store

__all__ = [
    "BatchRecorder",
    "EncodeError",
    "LoraHashes",
    "SinkError",
    "RunHooks",
    "Sink",
    "check_images",
    "default_encoders",
]

#: Batches that may wait to be written before :meth:`BatchRecorder.submit` waits.
DEFAULT_DEPTH = 2


def default_encoders() -> int:
    """Encoder threads when a run does not say: half the cores, 2 to 8 (one 512x512 PNG
    takes about 30 ms on one core; a GPU making 20 images a second keeps one busy)."""
    return max(2, min(8, (os.cpu_count() or 2) // 2))


class EncodeError(SdpError):
    """An image could not be made into its PNG file (exit status 1)."""

    exit_code = 1


class SinkError(SdpError):
    """A sink failed on an image that is recorded (exit status 1)."""

    exit_code = 1


class Sink(Protocol):
    """An extra output of a run (``--sink``, from a plugin), made for the experiment's folder."""

    def write(self, record: dict[str, Any], image: Any, path: Path) -> None: ...

    def close(self) -> None: ...


class RunHooks(Protocol):
    """The plugin hooks a run calls (pluggy's ``hook`` relay, or a stand-in)."""

    def image_saved(self, *, experiment: str, record: dict, path: str) -> None: ...

    def run_finished(self, *, experiment: str, done: int, count: int, interrupted: bool) -> None: ...


def check_images(batch: Batch, images: Sequence[Any], backend: str) -> None:
    """A :class:`BackendError` unless there is one image of the batch's size per sample
    (an :class:`EncodedImage` must also carry its own sample's index)."""
    if len(images) != len(batch.samples):
        raise BackendError(
            f"backend {backend!r} returned {len(images)} images for {len(batch.samples)} samples"
        )
    want = (batch.key.width, batch.key.height)
    for sample, image in zip(batch.samples, images, strict=True):
        if isinstance(image, EncodedImage) and image.record.get("index") != sample.index:
            raise BackendError(
                f"an encoded image for sample {sample.index} carries the record of sample "
                f"{image.record.get('index')!r}"
            )
        if tuple(image.size) != want:
            raise BackendError(
                f"backend {backend!r} made a {image.size[0]}x{image.size[1]} image "
                f"for a {want[0]}x{want[1]} sample"
            )


class LoraHashes:
    """A1111's short hashes of the LoRA files a batch used (``Lora hashes`` in the PNG
    parameters), found as the backend finds them: the run's LoRA folders, then the
    model's own. A LoRA whose file is not found here (a plugin backend's) gets none."""

    def __init__(self, lora_dirs: Sequence[str]) -> None:
        self.lora_dirs = tuple(lora_dirs)
        self._libraries: dict[str, LoraLibrary] = {}

    def __call__(self, model: str, names: Sequence[str]) -> dict[str, str]:
        if not names:
            return {}
        library = self._libraries.get(model)
        if library is None:
            library = self._libraries[model] = LoraLibrary(lora_dirs_for(model, self.lora_dirs))
        return {n: lora_hash(path) for n in names if (path := library.find(n)) is not None}


@dataclass
class _Pending:
    """A batch handed over and not committed yet. Its images are written by ``jobs``
    (each a contiguous share of the batch, one per encoder); ``outcomes[i]`` is image
    ``i``'s (file name, record) once its file is written, or the exception that
    stopped it."""

    batch: Batch
    images: Sequence[Any]
    seconds: float
    outcomes: list[Any]
    jobs: list[Future] = field(default_factory=list)

    def ready(self) -> bool:
        return all(job.done() for job in self.jobs)


class BatchRecorder:
    """Records an experiment's batches as they come and counts the images it wrote. It
    owns the run's sinks (:meth:`open_sinks` makes them) and its encoder threads;
    :meth:`close` (or the end of a ``with`` block) closes both. A ``with`` block left by
    an exception first records what was fully written (never a row without its file),
    except after Ctrl-C (:class:`KeyboardInterrupt`), which drops what is not recorded.

    Arguments:
        encoders: threads that encode and write PNG files (0: the caller's thread).
        depth: batches that may wait to be recorded before :meth:`submit` waits.
    """

    def __init__(
        self,
        store: Store,
        experiment: Experiment,
        writer: ImageWriter,
        hooks: RunHooks | None = None,
        lora_dirs: Sequence[str] = (),
        *,
        encoders: int = 0,
        depth: int = DEFAULT_DEPTH,
    ) -> None:
        if encoders < 0 or depth < 0:
            raise ValueError("encoders and depth cannot be negative")
        self.store = store
        self.lora_dirs = tuple(lora_dirs)
        self.experiment = experiment
        self.writer = writer
        self.hooks = hooks
        self.sinks: list[Sink] = []
        self.encoders = encoders
        self.depth = depth
        #: Images recorded so far.
        self.generated = 0
        #: The most batches that waited to be recorded at once (tests, reports).
        self.most_waiting = 0
        self._pending: deque[_Pending] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._announce_failed = False
        self._sink_names: list[str] = []

    def open_sinks(self, factories: Iterable[Callable[[Path], Sink]], names: Sequence[str] = ()) -> None:
        """Make a sink for the experiment's folder with each factory (``names``: what
        the user calls them, for messages)."""
        for i, factory in enumerate(factories):
            self.sinks.append(factory(self.writer.folder))
            self._sink_names.append(names[i] if i < len(names) else getattr(factory, "__name__", "?"))

    def close(self) -> None:
        """Drop what is not recorded, stop the encoders and close the sinks; a sink that
        fails to close does not hide the run's outcome."""
        self._drop_pending()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        sinks, self.sinks = self.sinks, []
        self._sink_names = []
        for sink in sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - a sink's close must not hide the run's outcome
                pass

    def __enter__(self) -> BatchRecorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is not None and issubclass(kind, Exception):
            self._salvage()
        self.close()

    # -- recording ----------------------------------------------------------------------

    def record(
        self,
        batch: Batch,
        images: Sequence[Any],
        seconds: float,
        model_name: str,
        lora_hashes: Mapping[str, str] | None = None,
    ) -> int:
        """Record one batch now: stage its files, mark their rows done, move the files
        into place, then tell sinks and hooks; the number of images recorded (with the
        batches still waiting before it). ``lora_hashes`` (name → A1111 short hash) go
        into each PNG's parameters."""
        return self.submit(batch, images, seconds, model_name, lora_hashes) + self.finish()

    def submit(
        self,
        batch: Batch,
        images: Sequence[Any],
        seconds: float,
        model_name: str,
        lora_hashes: Mapping[str, str] | None = None,
    ) -> int:
        """Hand a batch over to be recorded: its files are written on the encoder
        threads; the batches before it whose files are written are recorded now. Waits
        while more than ``depth`` batches wait (the very first batch of all is recorded
        before this returns, so that the first images appear at once). The number of
        images recorded by this call."""
        check_images(batch, images, self.writer.backend)
        pending = _Pending(batch, images, seconds, [None] * len(images))
        self._stage(pending, model_name, lora_hashes)
        self._pending.append(pending)
        self.most_waiting = max(self.most_waiting, len(self._pending))
        keep = 0 if self.generated == 0 else self.depth
        return self._commit(keep)

    def finish(self) -> int:
        """Record every batch handed over (waiting for its files); the number of images."""
        return self._commit(0)

    def _stage(self, pending: _Pending, model_name: str, lora_hashes: Mapping[str, str] | None) -> None:
        """Start writing a batch's files: one job per encoder, each a contiguous share
        of the batch (in this thread without encoders)."""
        n = len(pending.images)
        shares = min(self.encoders, n) or 1
        bounds = [round(i * n / shares) for i in range(shares + 1)]
        for lo, hi in zip(bounds, bounds[1:], strict=False):
            job = _StageJob(self.writer, pending, range(lo, hi), model_name, lora_hashes)
            if self.encoders == 0:
                job()
                done: Future = Future()
                done.set_result(None)
                pending.jobs.append(done)
                continue
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.encoders, thread_name_prefix="sdp-encoder")
            pending.jobs.append(self._pool.submit(job))

    def _commit(self, keep: int) -> int:
        """Record the waiting batches in order: those whose files are all written, and
        more, waiting for them, while more than ``keep`` batches wait."""
        recorded = 0
        while self._pending:
            if len(self._pending) <= keep and not self._pending[0].ready():
                break
            recorded += self._commit_batch(self._pending.popleft())
        return recorded

    def _commit_batch(self, pending: _Pending, announce: bool = True) -> int:
        """Record one batch whose files are (being) written: the rows of the files that
        were written, then the renames, then sinks and hooks; an image that could not
        be written is an :class:`EncodeError`, raised once the others are recorded."""
        written, failure = _results(pending)
        size = len(pending.batch.samples)
        share = pending.seconds / size if size else 0.0
        try:
            if written:
                self.store.record_done(
                    self.experiment.id, [(s, fname, share, size) for s, fname, _r, _i in written]
                )
        except BaseException:
            self.writer.discard(fname for _s, fname, _r, _i in written)
            raise
        self.writer.publish(fname for _s, fname, _r, _i in written)
        self.generated += len(written)
        if announce:
            self._announce(written)
        if failure is not None:
            raise failure
        return len(written)

    def _salvage(self) -> None:
        """After a failure: record the batches whose files were written (never a row
        without its file), telling sinks and hooks unless one of them failed; stop at
        the first error, dropping the rest."""
        try:
            while self._pending:
                self._commit_batch(self._pending.popleft(), announce=not self._announce_failed)
        except Exception:  # noqa: BLE001 - the run's own error is the one the user sees
            pass

    def _drop_pending(self) -> None:
        """Remove the temporary files of batches not recorded (after their encoders end)."""
        pending, self._pending = self._pending, deque()
        jobs = [job for p in pending for job in p.jobs]
        for job in jobs:
            job.cancel()
        wait_futures(jobs)
        for p in pending:
            self.writer.discard(o[0] for o in p.outcomes if isinstance(o, tuple))

    def _announce(self, written: Sequence[tuple[Sample, str, dict[str, Any], Any]]) -> None:
        """Tell the sinks and hooks of each image recorded, in order."""
        folder = self.writer.folder
        try:
            for _sample, fname, record, image in written:
                path = folder / fname
                if self.sinks:
                    self._to_sinks(record, image.image() if isinstance(image, EncodedImage) else image, path)
                if self.hooks is not None:
                    self.hooks.image_saved(experiment=self.experiment.name, record=record, path=str(path))
        except BaseException:
            self._announce_failed = True
            raise

    def _to_sinks(self, record: dict[str, Any], image: Any, path: Path) -> None:
        for i, sink in enumerate(self.sinks):
            try:
                sink.write(record, image, path)
            except Exception as exc:
                name = self._sink_names[i] if i < len(self._sink_names) else "?"
                raise SinkError(
                    f"sink {name!r} failed on {path.name}: {type(exc).__name__}: {exc}. The images "
                    "made so far are recorded; fix the sink (or run without it) and run again to resume"
                ) from exc


class _StageJob:
    """Writes a share of a batch's images under their temporary names, noting each
    one's outcome (an image that fails does not stop the others)."""

    def __init__(
        self,
        writer: ImageWriter,
        pending: _Pending,
        positions: range,
        model_name: str,
        lora_hashes: Mapping[str, str] | None,
    ) -> None:
        self.writer, self.pending, self.positions = writer, pending, positions
        self.model_name, self.lora_hashes = model_name, lora_hashes

    def __call__(self) -> None:
        samples, images, outcomes = self.pending.batch.samples, self.pending.images, self.pending.outcomes
        for i in self.positions:
            try:
                outcomes[i] = self.writer.stage(samples[i], images[i], self.model_name, self.lora_hashes)
            except Exception as exc:  # noqa: BLE001 - reported when the batch is recorded
                outcomes[i] = exc


def _results(
    pending: _Pending,
) -> tuple[list[tuple[Sample, str, dict[str, Any], Any]], BaseException | None]:
    """The images of a batch whose files were written, as (sample, file name, record,
    image), and the first error of those that were not (as an :class:`EncodeError`
    unless it is already an error meant for users). Waits for the batch's jobs."""
    wait_futures(pending.jobs)
    written = []
    failure: BaseException | None = None
    for sample, image, outcome in zip(pending.batch.samples, pending.images, pending.outcomes, strict=True):
        if isinstance(outcome, tuple):
            fname, record = outcome
            written.append((sample, fname, record, image))
        elif isinstance(outcome, SdpError):
            failure = failure or outcome
        else:
            what = f"{type(outcome).__name__}: {outcome}" if outcome is not None else "it was not written"
            failure = failure or EncodeError(
                f"cannot write the image of sample {sample.index} as a PNG file: {what}"
            )
    return written, failure
