"""The writer pipeline (issue 13): a batch is encoded and written while the next one is
generated, and every guarantee of the store holds — rows only for files on disk,
renames after rows, sinks and hooks in order, nothing lost when a sink, an encoder or
the backend fails, nothing left behind by Ctrl-C; images encoded elsewhere (Ray
workers) are written byte for byte; ``--batch auto`` halves a batch that runs out of
memory and remembers it; the backend loads while the store is prepared; each run is
recorded with how it was run."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stable_discovery.backends.base import BackendError, Batch, GenerationKey, OutOfMemory
from stable_discovery.backends.dummy import DummyBackend
from stable_discovery.cli.main import main
from stable_discovery.errors import UsageError
from stable_discovery.language.program import load
from stable_discovery.plugins import get_sampler
from stable_discovery.run.autobatch import AUTO_BATCH, BatchFitter, is_out_of_memory
from stable_discovery.run.executors import LocalExecutor
from stable_discovery.run.files import EncodedImage, ImageWriter, PngSpec
from stable_discovery.run.pngmeta import read_metadata
from stable_discovery.run.ray_worker import BatchWorker, WorkerOptions
from stable_discovery.run.recording import BatchRecorder, EncodeError, SinkError
from stable_discovery.run.runner import RunObserver, RunParts, run_experiment
from stable_discovery.run.runplan import RunOptions, resolve_plan
from stable_discovery.store.database import Store

TEMPLATE = """\
subject = a cat | a dog | a fox
prompt = <subject>, {studio light|fog}
@size = 64x64
@count = 12
@seed = 3
@batch = 2
"""


@pytest.fixture
def tmpl(tmp_path: Path) -> Path:
    path = tmp_path / "pets.sdp"
    path.write_text(TEMPLATE)
    return path


def samples(tmpl: Path, n: int = 12) -> list[Any]:
    return list(get_sampler("random").samples(load(tmpl), 0, n, 3))


def one_each(tmpl: Path, n: int) -> list[Batch]:
    return [Batch(GenerationKey.of(s), (s,)) for s in samples(tmpl, n)]


def run(tmp_path: Path, tmpl: Path, parts: RunParts, watch: RunObserver | None = None, **options: Any) -> Any:
    with Store(tmp_path / "ws") as store:
        return run_experiment(store, load(tmpl), str(tmpl), RunOptions("pets", **options), parts, watch)


def store_agrees(ws: Path, name: str = "pets") -> list[int]:
    """The done indices, once checked: every done row has its file, every image name
    has its done row, and no temporary file is left."""
    db = sqlite3.connect(ws / "discovery.db")
    rows = db.execute("SELECT idx, file FROM samples WHERE status = 'done' ORDER BY idx").fetchall()
    db.close()
    folder = ws / name
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f for _i, f in rows)
    assert not list(folder.glob("*.sdp-tmp")), "a temporary file was left behind"
    for idx, fname in rows:
        assert read_metadata(folder / fname)[1]["index"] == idx
    return [i for i, _f in rows]


class Journal:
    """A store, sinks and hooks that log what they are told, in order; the store checks
    that every file is under its temporary name, and not yet under its own, when its
    row is marked done."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log: list[tuple[str, Any]] = []

    def record_done(self, experiment_id: int, items: list[tuple[Any, str, float, int]]) -> None:
        assert all((self.folder / f".{fname}.sdp-tmp").is_file() for _s, fname, _sec, _b in items)
        assert not any((self.folder / fname).exists() for _s, fname, _sec, _b in items)
        self.log.append(("rows", [s.index for s, _f, _sec, _b in items]))

    def write(self, record: dict, image: Any, path: Path) -> None:
        assert path.is_file()  # renamed into place before sinks hear of it
        self.log.append(("sink", record["index"]))

    def close(self) -> None:
        pass

    def image_saved(self, *, experiment: str, record: dict, path: str) -> None:
        self.log.append(("hook", record["index"]))


class Exp:
    id = 1
    name = "pets"


@dataclass(frozen=True)
class GatedWriter(ImageWriter):
    """Writes a file only once its gate is open."""

    gate: threading.Event = field(default_factory=threading.Event)

    def stage(self, *args: Any, **kw: Any) -> tuple[str, dict[str, Any]]:
        assert self.gate.wait(30)
        return super().stage(*args, **kw)


# ---------------------------------------------------------------------------------------
# the recorder's pipeline


def test_the_next_batch_is_handed_over_while_one_is_written_and_the_queue_is_bounded(tmpl, tmp_path) -> None:
    b0, b1, b2 = one_each(tmpl, 3)
    journal = Journal(tmp_path)
    writer = GatedWriter(tmp_path, "pets", "dummy", 12)
    backend = DummyBackend()
    with BatchRecorder(journal, Exp(), writer, journal, encoders=1, depth=1) as recorder:
        recorder.open_sinks([lambda folder: journal])
        writer.gate.set()
        assert recorder.submit(b0, backend.generate(b0), 0.1, "m") == 1  # the first: at once
        writer.gate.clear()
        # batch 1 cannot be written yet, and the caller goes on generating
        assert recorder.submit(b1, backend.generate(b1), 0.1, "m") == 0
        handed: list[int] = []
        third = threading.Thread(
            target=lambda: handed.append(recorder.submit(b2, backend.generate(b2), 0.1, "m"))
        )
        third.start()
        third.join(0.3)
        assert third.is_alive(), "more than `depth` batches waited: the queue is not bounded"
        assert [e for e in journal.log if e[0] == "rows"] == [("rows", [0])]
        writer.gate.set()
        third.join(30)
        # batch 1 recorded while batch 2 was handed over (and batch 2 too if it was
        # written by then), the rest at the end
        assert handed[0] in (1, 2) and handed[0] + recorder.finish() == 2
        assert recorder.most_waiting == 2
    i0, i1, i2 = (b.samples[0].index for b in (b0, b1, b2))
    assert journal.log == [
        ("rows", [i0]),
        ("sink", i0),
        ("hook", i0),
        ("rows", [i1]),
        ("sink", i1),
        ("hook", i1),
        ("rows", [i2]),
        ("sink", i2),
        ("hook", i2),
    ]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["00000.png", "00001.png", "00002.png"]


@pytest.mark.parametrize("encoders", [0, 1, 3])
def test_a_run_writes_the_same_files_whatever_the_encoders(tmpl, tmp_path, encoders) -> None:
    parts = RunParts(lambda **o: DummyBackend(), get_sampler("random"))
    result = run(tmp_path, tmpl, parts, encoders=encoders)
    assert (result.done, result.generated) == (12, 12)
    assert store_agrees(tmp_path / "ws") == list(range(12))
    reference = tmp_path / "ref"
    run(reference, tmpl, parts, encoders=0)
    for i in range(12):
        assert (tmp_path / "ws" / "pets" / f"{i:05d}.png").read_bytes() == (
            reference / "ws" / "pets" / f"{i:05d}.png"
        ).read_bytes()


class OrderSink:
    """A slow sink that checks it hears of each image once, in order, after its row."""

    seen: list[int] = []

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def write(self, record: dict, image: Any, path: Path) -> None:
        time.sleep(0.01)
        assert path.is_file() and image.size == (64, 64)
        OrderSink.seen.append(record["index"])

    def close(self) -> None:
        pass


def test_a_slow_sink_slows_the_run_and_loses_nothing(tmpl, tmp_path) -> None:
    OrderSink.seen = []
    parts = RunParts(lambda **o: DummyBackend(), get_sampler("random"), sink_factories={"slow": OrderSink})
    result = run(tmp_path, tmpl, parts, sinks=("slow",), encoders=2)
    assert result.done == 12
    assert OrderSink.seen == list(range(12))
    assert store_agrees(tmp_path / "ws") == list(range(12))


class FailingSink(OrderSink):
    def write(self, record: dict, image: Any, path: Path) -> None:
        if record["index"] == 5:
            raise ValueError("the manifest is full")
        super().write(record, image, path)


def test_a_failing_sink_is_a_clear_error_and_the_images_made_are_kept(tmpl, tmp_path) -> None:
    OrderSink.seen = []
    parts = RunParts(
        lambda **o: DummyBackend(), get_sampler("random"), sink_factories={"manifest": FailingSink}
    )
    with pytest.raises(
        SinkError, match=r"sink 'manifest' failed on 00005.png: ValueError: the manifest is full"
    ):
        run(tmp_path, tmpl, parts, sinks=("manifest",), encoders=2)
    done = store_agrees(tmp_path / "ws")
    assert set(range(6)) <= set(done)  # the images up to the failing one are recorded
    assert OrderSink.seen == [0, 1, 2, 3, 4]
    result = run(tmp_path, tmpl, RunParts(lambda **o: DummyBackend(), get_sampler("random")))
    assert result.done == 12 and store_agrees(tmp_path / "ws") == list(range(12))


class OddModes(DummyBackend):
    """Sample 3's image is in a mode PNG cannot hold."""

    def generate(self, batch: Batch) -> list[Any]:
        images = list(super().generate(batch))
        return [
            im.convert("CMYK") if s.index == 3 else im for s, im in zip(batch.samples, images, strict=True)
        ]


@pytest.mark.parametrize("encoders", [0, 2])
def test_a_failing_encoder_is_a_clear_error_and_the_other_images_are_kept(tmpl, tmp_path, encoders) -> None:
    parts = RunParts(lambda **o: OddModes(), get_sampler("random"))
    with pytest.raises(
        EncodeError, match=r"cannot write the image of sample 3 as a PNG file: OSError: .*CMYK"
    ):
        run(tmp_path, tmpl, parts, encoders=encoders)
    done = store_agrees(tmp_path / "ws")
    assert 3 not in done and {0, 1, 2} <= set(done)
    result = run(tmp_path, tmpl, RunParts(lambda **o: DummyBackend(), get_sampler("random")))
    assert result.done == 12 and store_agrees(tmp_path / "ws") == list(range(12))


def _slow_stage(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    original = ImageWriter.stage

    def stage(self: ImageWriter, *args: Any, **kw: Any) -> Any:
        time.sleep(seconds)
        return original(self, *args, **kw)

    monkeypatch.setattr(ImageWriter, "stage", stage)


class FailsAt(DummyBackend):
    """Raises ``error`` when asked for the ``at``-th batch (counting from 1)."""

    def __init__(self, at: int, error: BaseException) -> None:
        super().__init__()
        self.at, self.error, self.calls = at, error, 0

    def generate(self, batch: Batch) -> list[Any]:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return list(super().generate(batch))


def test_a_backend_failure_keeps_the_batch_still_being_written(tmpl, tmp_path, monkeypatch) -> None:
    _slow_stage(monkeypatch, 0.1)
    parts = RunParts(lambda **o: FailsAt(3, BackendError("the GPU fell off")), get_sampler("random"))
    with pytest.raises(BackendError, match="fell off"):
        run(tmp_path, tmpl, parts, encoders=1)
    # batch 1 was recorded at once, batch 2 was being written when batch 3 failed
    assert store_agrees(tmp_path / "ws") == [0, 1, 2, 3]


def test_ctrl_c_twice_drops_what_is_not_recorded(tmpl, tmp_path, monkeypatch) -> None:
    _slow_stage(monkeypatch, 0.1)
    parts = RunParts(lambda **o: FailsAt(3, KeyboardInterrupt()), get_sampler("random"))
    result = run(tmp_path, tmpl, parts, encoders=1)
    assert result.interrupted and result.done == 2
    assert store_agrees(tmp_path / "ws") == [0, 1]
    again = run(tmp_path, tmpl, RunParts(lambda **o: DummyBackend(), get_sampler("random")))
    assert again.done == 12 and store_agrees(tmp_path / "ws") == list(range(12))


# ---------------------------------------------------------------------------------------
# images encoded where they were made (Ray workers)


class Encoding:
    """An executor that encodes where it generates, as Ray workers do."""

    name = "encoding"
    needs_local_backend = False
    drains_on_stop = False

    def __init__(self, wrong_index: bool = False) -> None:
        self.png: PngSpec | None = None
        self.wrong_index = wrong_index
        self.sent: dict[int, bytes] = {}

    def setup(self, setup: Any) -> None:
        self.png = setup.png

    def describe_model(self, model: str) -> str:
        return "far-away"

    def run(self, backend: Any, batches: Iterator[Batch], stop: threading.Event) -> Iterator[Any]:
        assert self.png is not None
        worker = DummyBackend()
        for batch in batches:
            images = worker.generate(batch)
            encoded = [
                self.png.encode(s, im, "far-away") for s, im in zip(batch.samples, images, strict=True)
            ]
            if self.wrong_index:
                encoded = encoded[::-1]
            for s, e in zip(batch.samples, encoded, strict=True):
                self.sent[s.index] = e.data
            yield batch, encoded, 0.01


def test_images_encoded_by_the_executor_are_written_byte_for_byte(tmpl, tmp_path) -> None:
    executor = Encoding()
    parts = RunParts(lambda **o: DummyBackend(), get_sampler("random"), executor=executor)
    result = run(tmp_path, tmpl, parts, backend="dummy")
    assert result.done == 12 and store_agrees(tmp_path / "ws") == list(range(12))
    for index, data in executor.sent.items():
        assert (tmp_path / "ws" / "pets" / f"{index:05d}.png").read_bytes() == data
    params, record = read_metadata(tmp_path / "ws" / "pets" / "00004.png")
    assert params is not None and "Model: far-away" in params
    assert record is not None and record["experiment"] == "pets" and record["backend"] == "dummy"


def test_an_encoded_image_of_another_sample_is_refused(tmpl, tmp_path) -> None:
    parts = RunParts(lambda **o: DummyBackend(), get_sampler("random"), executor=Encoding(wrong_index=True))
    with pytest.raises(BackendError, match="an encoded image for sample 0 carries the record of sample 1"):
        run(tmp_path, tmpl, parts)
    assert store_agrees(tmp_path / "ws") == []


def test_a_sink_gets_an_encoded_image_opened(tmpl, tmp_path) -> None:
    OrderSink.seen = []
    parts = RunParts(
        lambda **o: DummyBackend(),
        get_sampler("random"),
        executor=Encoding(),
        sink_factories={"s": OrderSink},
    )
    run(tmp_path, tmpl, parts, sinks=("s",))
    assert OrderSink.seen == list(range(12))


def test_an_encoded_image_opens_as_the_image(tmpl) -> None:
    (sample,) = samples(tmpl, 1)
    image = Image.new("RGB", (64, 64), "teal")
    encoded = PngSpec("pets", "dummy").encode(sample, image, "m")
    assert encoded.size == (64, 64) and encoded.record["index"] == sample.index
    assert encoded.image().tobytes() == image.tobytes()


# ---------------------------------------------------------------------------------------
# --batch auto


class OutOfMemoryError(RuntimeError):
    """Named as torch's ``torch.cuda.OutOfMemoryError``, without torch."""


class SmallGPU(DummyBackend):
    """Runs out of memory on more than ``fits`` images per call; counts the calls."""

    def __init__(self, fits: int = 5, error: type[BaseException] = OutOfMemoryError, **_: Any) -> None:
        super().__init__()
        self.fits, self.error = fits, error
        self.calls: list[int] = []

    def generate(self, batch: Batch) -> list[Any]:
        self.calls.append(len(batch.samples))
        if len(batch.samples) > self.fits:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return list(super().generate(batch))


class Notes(RunObserver):
    def __init__(self) -> None:
        self.notes: list[str] = []

    def shrunk(self, text: str) -> None:
        self.notes.append(text)


def test_batch_auto_halves_a_batch_that_runs_out_of_memory_and_remembers(tmpl, tmp_path) -> None:
    gpu = SmallGPU(fits=5)
    parts = RunParts(lambda **o: gpu, get_sampler("random"))
    notes = Notes()
    result = run(tmp_path, tmpl, parts, notes, batch="auto", count=40, overrides={"steps": "20"})
    assert result.done == 40
    # 32 → 16 → 8 → 4 for the first batch, then pieces of 4 only: remembered
    assert gpu.calls[:4] == [32, 16, 8, 4]
    assert all(n <= 4 for n in gpu.calls[4:]) and sum(gpu.calls[3:]) == 40
    assert notes.notes == [
        "32 images of 64x64 at once ran out of memory with 'stabilityai/stable-diffusion-2-1': "
        "batches of 16 from now on",
        "16 images of 64x64 at once ran out of memory with 'stabilityai/stable-diffusion-2-1': "
        "batches of 8 from now on",
        "8 images of 64x64 at once ran out of memory with 'stabilityai/stable-diffusion-2-1': "
        "batches of 4 from now on",
    ]
    db = sqlite3.connect(tmp_path / "ws" / "discovery.db")
    sizes = {r[0] for r in db.execute("SELECT batch_size FROM samples")}
    db.close()
    assert sizes == {4}  # rows record the batch each image was really made in
    assert store_agrees(tmp_path / "ws") == list(range(40))
    with Store(tmp_path / "ws") as store:
        (record,) = store.runs_of(store.require("pets"))
    assert record["settings"]["batch"] == "auto"
    assert record["settings"]["batch_sizes"] == {"stabilityai/stable-diffusion-2-1 64x64": 4}


def test_batch_auto_makes_the_same_images_as_a_fixed_batch(tmpl, tmp_path) -> None:
    run(tmp_path / "a", tmpl, RunParts(lambda **o: SmallGPU(fits=3), get_sampler("random")), batch="auto")
    run(tmp_path / "b", tmpl, RunParts(lambda **o: DummyBackend(), get_sampler("random")), batch=1)
    for i in range(12):
        a = tmp_path / "a" / "ws" / "pets" / f"{i:05d}.png"
        b = tmp_path / "b" / "ws" / "pets" / f"{i:05d}.png"
        assert a.read_bytes() == b.read_bytes()


def test_out_of_memory_errors_are_recognised() -> None:
    assert is_out_of_memory(OutOfMemory("out of GPU memory"))
    assert is_out_of_memory(OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("expected scalar type Half"))
    assert not is_out_of_memory(BackendError("cannot load model"))


def test_only_out_of_memory_is_retried_and_one_image_that_does_not_fit_fails(tmpl) -> None:
    (sample,) = samples(tmpl, 1)
    with pytest.raises(OutOfMemoryError):  # one image that does not fit
        list(BatchFitter().generate(SmallGPU(fits=0), Batch(GenerationKey.of(sample), (sample,))))
    batch = Batch(GenerationKey.of(sample), ())
    gpu = SmallGPU(fits=0, error=ValueError)
    with pytest.raises(ValueError):
        list(BatchFitter().generate(gpu, Batch(batch.key, tuple(samples(tmpl, 4)))))
    assert gpu.calls == [4]  # not retried


def test_batch_auto_is_the_default_where_the_backend_prefers_it(tmpl, tmp_path) -> None:
    class Gpu(SmallGPU):
        prefers_auto_batch = True

    gpu = Gpu(fits=100)
    no_batch = tmp_path / "nobatch.sdp"
    no_batch.write_text(TEMPLATE.replace("@batch = 2\n", ""))
    with Store(tmp_path / "ws") as store:
        opts = RunOptions("auto", count=12)
        run_experiment(
            store, load(no_batch), str(no_batch), opts, RunParts(lambda **o: gpu, get_sampler("random"))
        )
    assert max(gpu.calls) > 4  # batches as large as the samples sharing a key allow
    gpu.calls.clear()
    run(tmp_path, tmpl, RunParts(lambda **o: gpu, get_sampler("random")))  # @batch = 2
    assert max(gpu.calls) == 2
    plan = resolve_plan(load(no_batch), None, RunOptions("p"), get_sampler("random"))
    assert (plan.batch_size, plan.auto_batch, plan.batch_given) == (4, False, False)
    plan = resolve_plan(load(no_batch), None, RunOptions("p", batch="auto"), get_sampler("random"))
    assert (plan.batch_size, plan.auto_batch, plan.batch_given) == (AUTO_BATCH, True, True)
    auto = tmp_path / "auto.sdp"
    auto.write_text(TEMPLATE.replace("@batch = 2", "@batch = auto"))
    assert resolve_plan(load(auto), None, RunOptions("p"), get_sampler("random")).auto_batch


def test_a_ray_worker_fits_batches_and_encodes(tmpl) -> None:
    gpu = SmallGPU(fits=2)
    options = WorkerOptions(PngSpec("pets", "dummy"), (), auto_batch=True)
    worker = BatchWorker("small", {}, None, lambda: {"small": lambda **o: gpu}, options)
    batch = Batch(GenerationKey.of(samples(tmpl, 1)[0]), tuple(s for s in samples(tmpl, 12) if s.index < 5))
    made, _seconds, described = worker.generate(batch)
    assert described.startswith("dummy") and gpu.calls == [5, 2, 2, 1]
    assert [m.record["index"] for m in made] == [s.index for s in batch.samples]
    assert all(isinstance(m, EncodedImage) for m in made)


# ---------------------------------------------------------------------------------------
# the backend loads while the store is prepared; each run is recorded


def test_a_refused_run_does_not_wait_for_the_backend_to_load(tmpl, tmp_path) -> None:
    release = threading.Event()
    closed = threading.Event()

    class Slow(DummyBackend):
        def __init__(self, **_: Any) -> None:
            assert release.wait(30)
            super().__init__()

        def close(self) -> None:
            closed.set()

    with pytest.raises(BackendError):  # half done: the next run needs its backend
        run(
            tmp_path,
            tmpl,
            RunParts(lambda **o: FailsAt(2, BackendError("stop")), get_sampler("random")),
            count=4,
        )
    changed = tmp_path / "pets.sdp"
    changed.write_text(TEMPLATE.replace("a fox", "an owl"))
    with pytest.raises(UsageError, match="already exists and differs"):
        run(tmp_path, changed, RunParts(Slow, get_sampler("random")), count=4)
    assert not release.is_set()  # refused while the backend was still loading
    release.set()
    assert closed.wait(30)  # the abandoned backend is closed once made


def test_a_complete_experiment_loads_no_backend(tmpl, tmp_path) -> None:
    made = []
    parts = RunParts(lambda **o: made.append(1) or DummyBackend(), get_sampler("random"))
    run(tmp_path, tmpl, parts)
    again = run(tmp_path, tmpl, parts)
    assert again.generated == 0 and made == [1]


def test_a_model_that_cannot_load_fails_the_run_as_before(tmpl, tmp_path) -> None:
    def broken(**_: Any) -> Any:
        raise BackendError("cannot load model 'nope'")

    with pytest.raises(BackendError, match="cannot load model 'nope'"):
        run(tmp_path, tmpl, RunParts(broken, get_sampler("random")))
    with Store(tmp_path / "ws") as store:
        (record,) = store.runs_of(store.require("pets"))
    assert record["outcome"] == "failed" and record["generated"] == 0


def test_each_run_is_recorded_with_how_it_was_run(tmpl, tmp_path, capsys) -> None:
    ws = tmp_path / "ws"
    base = ["run", str(tmpl), "--backend", "dummy", "--workspace", str(ws)]
    assert main([*base, "--count", "6", "--encoders", "0"]) == 0
    err = capsys.readouterr().err
    assert "done: 6 of 6 images (6 new, " in err and "; first image " in err and "after the command" in err
    assert main([*base, "--count", "6"]) == 0  # nothing to do: no run recorded
    for i in (1, 2, 4):
        (ws / "pets" / f"{i:05d}.png").unlink()
    assert main([*base, "--count", "6", "--batch", "auto", "--encoders", "3"]) == 0
    capsys.readouterr()
    with Store(ws) as store:
        first, second = store.runs_of(store.require("pets"))
    assert (first["outcome"], first["generated"], second["generated"]) == ("done", 6, 3)
    assert first["settings"]["batch"] == 2 and first["settings"]["encoders"] == 0
    assert second["settings"]["batch"] == "auto" and second["settings"]["encoders"] == 3
    assert first["settings"]["executor"] == "local" and first["first_image_s"] > 0
    assert main(["runs", "pets", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["STARTED", "OUTCOME", "NEW", "IMG/S", "FIRST", "IMAGE", "HOW"]
    assert (
        "local, batch 2, encoders 0" in out[1]
        and "local, batch auto, 3 per call (stabilityai/stable-diffusion-2-1 64x64), encoders 3" in out[2]
    )
    assert main(["runs", "pets", "--workspace", str(ws), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["generated"] for r in lines] == [6, 3]


def test_runs_go_to_the_trash_and_come_back(tmpl, tmp_path, capsys) -> None:
    ws = tmp_path / "ws"
    assert main(["run", str(tmpl), "--backend", "dummy", "--workspace", str(ws), "--count", "2"]) == 0
    assert main(["rm", "pets", "--yes", "--workspace", str(ws)]) == 0
    assert main(["rm", "--restore", "pets", "--workspace", str(ws)]) == 0
    capsys.readouterr()
    with Store(ws) as store:
        assert len(store.runs_of(store.require("pets"))) == 1


def test_speed_options_go_to_the_diffusers_backend_only(tmpl, tmp_path, capsys) -> None:
    from stable_discovery.cli.main import build_parser
    from stable_discovery.cli.run import _backend_options

    def options(*argv: str, backend: str = "diffusers") -> dict[str, Any]:
        args = build_parser().parse_args(["run", str(tmpl), *argv])
        return _backend_options(args, load(tmpl), backend, ())

    got = options("--optimize", "--compile", "--no-fused-qkv", "--sdpa", "flash", "--dtype", "bfloat16")
    assert {k: got[k] for k in ("optimize", "compile", "fused_qkv", "sdpa", "dtype")} == {
        "optimize": True,
        "compile": "default",
        "fused_qkv": False,
        "sdpa": "flash",
        "dtype": "bfloat16",
    }
    assert options("--compile", "max-autotune", "--cuda-graphs")["cuda_graphs"] is True
    assert "optimize" not in options()
    assert options("--optimize", backend="dummy") == {}  # a quick dummy run of the same command
    with pytest.raises(UsageError, match="--optimize go with the diffusers backend, not 'sleep'"):
        options("--optimize", backend="sleep")
    knobs = tmp_path / "knobs.sdp"
    knobs.write_text(TEMPLATE + "@optimize = on\n@compile = max-autotune\n")
    args = build_parser().parse_args(["run", str(knobs)])
    got = _backend_options(args, load(knobs), "diffusers", ())
    assert got["optimize"] is True and got["compile"] == "max-autotune"
    args = build_parser().parse_args(["run", str(knobs), "--no-optimize", "--compile", "off"])
    got = _backend_options(args, load(knobs), "diffusers", ())
    assert got["optimize"] is False and got["compile"] == "off"


def test_batch_and_encoders_are_checked(tmpl, tmp_path, capsys) -> None:
    base = ["run", str(tmpl), "--backend", "dummy", "--workspace", str(tmp_path / "ws")]
    for bad, words in (
        (["--batch", "0"], "a batch is 1 to 4096 images (or auto), not 0"),
        (["--batch", "big"], "expected a whole number or auto"),
        (["--encoders", "-1"], "encoders are 0 to 64 threads"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*base, *bad])
        assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_the_local_executor_yields_pieces_with_batch_auto(tmpl) -> None:
    executor = LocalExecutor()
    executor.setup(dataclasses.replace(_setup(), auto_batch=True))
    batch = Batch(GenerationKey.of(samples(tmpl, 1)[0]), tuple(s for s in samples(tmpl, 12) if s.index < 6))
    pieces = [
        len(b.samples) for b, _im, _s in executor.run(SmallGPU(fits=3), iter([batch]), threading.Event())
    ]
    assert pieces == [3, 3] and executor.batch_sizes() == {"stabilityai/stable-diffusion-2-1 64x64": 3}


def _setup() -> Any:
    from stable_discovery.run.executors import ExecutorSetup

    return ExecutorSetup(PngSpec("pets", "dummy"))
