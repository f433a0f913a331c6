"""Recording a generated batch, in the order that makes a run exactly-once and leaves
no file the store has no row for: the PNG files written under the store's temporary
names, the rows that mark them done, the files renamed into place, then the sinks and
the hooks, image by image."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from stable_discovery.backends.base import BackendError, Batch
from stable_discovery.backends.families import lora_dirs_for
from stable_discovery.language.loras import LoraLibrary, lora_hash
from stable_discovery.run.files import ImageWriter
from stable_discovery.sampling.sample import Sample
from stable_discovery.store.database import Experiment, Store

__all__ = ["BatchRecorder", "LoraHashes", "RunHooks", "Sink", "check_images"]


class Sink(Protocol):
    """An extra output of a run (``--sink``, from a plugin), made for the experiment's folder."""

    def write(self, record: dict[str, Any], image: Any, path: Path) -> None: ...

    def close(self) -> None: ...


class RunHooks(Protocol):
    """The plugin hooks a run calls (pluggy's ``hook`` relay, or a stand-in)."""

    def image_saved(self, *, experiment: str, record: dict, path: str) -> None: ...

    def run_finished(self, *, experiment: str, done: int, count: int, interrupted: bool) -> None: ...


def check_images(batch: Batch, images: Sequence[Any], backend: str) -> None:
    """A :class:`BackendError` unless there is one image of the batch's size per sample."""
    if len(images) != len(batch.samples):
        raise BackendError(
            f"backend {backend!r} returned {len(images)} images for {len(batch.samples)} samples"
        )
    want = (batch.key.width, batch.key.height)
    for image in images:
        if image.size != want:
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


class BatchRecorder:
    """Records an experiment's batches as they come and counts the images it wrote. It
    owns the run's sinks: :meth:`open_sinks` makes them, :meth:`close` (or the end of a
    ``with`` block) closes them."""

    def __init__(
        self,
        store: Store,
        experiment: Experiment,
        writer: ImageWriter,
        hooks: RunHooks | None = None,
        lora_dirs: Sequence[str] = (),
    ) -> None:
        self.store = store
        self.lora_dirs = tuple(lora_dirs)
        self.experiment = experiment
        self.writer = writer
        self.hooks = hooks
        self.sinks: list[Sink] = []
        #: Images recorded so far.
        self.generated = 0

    def open_sinks(self, factories: Iterable[Callable[[Path], Sink]]) -> None:
        """Make a sink for the experiment's folder with each factory."""
        for factory in factories:
            self.sinks.append(factory(self.writer.folder))

    def close(self) -> None:
        """Close the sinks; a sink that fails to close does not hide the run's outcome."""
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - a sink's close must not hide the run's outcome
                pass

    def __enter__(self) -> BatchRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(
        self,
        batch: Batch,
        images: Sequence[Any],
        seconds: float,
        model_name: str,
        lora_hashes: Mapping[str, str] | None = None,
    ) -> int:
        """Stage the batch's files, mark their rows done, move the files into place,
        then tell sinks and hooks; the number of images recorded. ``lora_hashes``
        (name → A1111 short hash) go into each PNG's parameters."""
        check_images(batch, images, self.writer.backend)
        size = len(batch.samples)
        share = seconds / size if size else 0.0
        written: list[tuple[Sample, str, dict[str, Any], Any]] = []
        try:
            for sample, image in zip(batch.samples, images, strict=True):
                fname, record = self.writer.stage(sample, image, model_name, lora_hashes)
                written.append((sample, fname, record, image))
            # rows are marked done once their files are written; the files take their
            # names after that, so no image name ever lacks a row
            self.store.record_done(
                self.experiment.id, [(s, fname, share, size) for s, fname, _r, _i in written]
            )
        except BaseException:
            self.writer.discard(fname for _s, fname, _r, _i in written)
            raise
        self.writer.publish(fname for _s, fname, _r, _i in written)
        self.generated += len(written)
        self._announce(written)
        return len(written)

    def _announce(self, written: Sequence[tuple[Sample, str, dict[str, Any], Any]]) -> None:
        folder = self.writer.folder
        for _sample, fname, record, image in written:
            path = folder / fname
            for sink in self.sinks:
                sink.write(record, image, path)
            if self.hooks is not None:
                self.hooks.image_saved(experiment=self.experiment.name, record=record, path=str(path))
