"""The run stage's units, each on its own: the plan, Ctrl-C handling, recording a batch
(files, then rows, then sinks, then hooks), the local executor's stop, the observer's
calls, the progress bar's lines."""

from __future__ import annotations

import io
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stable_discovery.backends.base import BackendError, Batch, GenerationKey
from stable_discovery.backends.dummy import DummyBackend
from stable_discovery.cli.progress import Progress, ProgressObserver, _duration
from stable_discovery.errors import UsageError
from stable_discovery.language.program import load
from stable_discovery.plugins import get_sampler
from stable_discovery.run.executors import LocalExecutor
from stable_discovery.run.files import ImageWriter, image_name
from stable_discovery.run.interrupt import STOP_NOTICE, StopOnSigint
from stable_discovery.run.pngmeta import read_metadata
from stable_discovery.run.recording import BatchRecorder, check_images
from stable_discovery.run.runner import RunObserver, RunParts, run_experiment
from stable_discovery.run.runplan import RunOptions, resolve_plan, sampler_name
from stable_discovery.store.database import Store

TEMPLATE = """\
subject = a cat | a dog
prompt = <subject>, {studio light|fog}
@steps = 20 | 30
@size = 64x64
@count = 10
@seed = 3
@batch = 2
"""


@pytest.fixture
def tmpl(tmp_path: Path) -> Path:
    path = tmp_path / "pets.sdp"
    path.write_text(TEMPLATE)
    return path


def batches_of(tmpl: Path, n: int = 2) -> list[Batch]:
    program = load(tmpl)
    samples = list(get_sampler("random").samples(program, 0, 4, 3))
    return [Batch(GenerationKey.of(s), (s,)) for s in samples[:n]]


# ---------------------------------------------------------------------------------------
# the plan


def test_the_plan_takes_options_over_the_template(tmpl) -> None:
    program = load(tmpl)
    plan = resolve_plan(program, str(tmpl), RunOptions("p"), get_sampler("random"))
    assert (plan.seed, plan.count, plan.batch_size) == (3, 10, 2)
    assert plan.spec.sampler == "random" and plan.spec.template_path == str(tmpl)
    opts = RunOptions("p", seed=9, count=4, batch=3, overrides={"size": "32x48"})
    plan = resolve_plan(program, None, opts, get_sampler("random"))
    assert (plan.seed, plan.count, plan.batch_size) == (9, 4, 3)
    assert plan.overrides == {"width": 32, "height": 48}
    todo = list(plan.todo({1, 2}))
    assert [s.index for s in todo] == [0, 3]
    assert all(s.settings["width"] == 32 and "size" not in s.trace for s in todo)
    assert sampler_name(program, None) == "random" and sampler_name(program, "shuffle") == "shuffle"


def test_the_plan_refuses_more_than_a_finite_sampler_has(tmpl) -> None:
    with pytest.raises(UsageError, match="more than the 8 combinations"):
        resolve_plan(load(tmpl), None, RunOptions("p", count=9), get_sampler("combinatorial"))


# ---------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_once_asks_to_stop_and_twice_stops_now() -> None:
    stop = threading.Event()
    notice = io.StringIO()
    before = signal.getsignal(signal.SIGINT)
    with StopOnSigint(stop, notice):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.is_set() and notice.getvalue() == STOP_NOTICE
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_outside_the_main_thread_ctrl_c_is_left_alone() -> None:
    seen: list[Any] = []

    def body() -> None:
        with StopOnSigint(threading.Event()):
            seen.append(signal.getsignal(signal.SIGINT))

    before = signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


# ---------------------------------------------------------------------------------------
# recording a batch


class Journal:
    """A store, sinks and hooks that log what they are told, in order; the store checks
    that every file is written under the store's temporary name, and not yet under its
    own, when its row is marked done (so no image name ever lacks a row)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log: list[tuple[str, Any]] = []

    # the store
    def record_done(self, experiment_id: int, items: list[tuple[Any, str, float, int]]) -> None:
        assert all((self.folder / f".{fname}.sdp-tmp").is_file() for _s, fname, _sec, _b in items)
        assert not any((self.folder / fname).exists() for _s, fname, _sec, _b in items)
        self.log.append(("rows", [(s.index, fname, sec, b) for s, fname, sec, b in items]))

    # a sink
    def write(self, record: dict, image: Any, path: Path) -> None:
        self.log.append(("sink", record["index"]))

    def close(self) -> None:
        self.log.append(("close", None))

    # the hooks
    def image_saved(self, *, experiment: str, record: dict, path: str) -> None:
        self.log.append(("hook", record["index"]))

    def run_finished(self, **_: Any) -> None:
        self.log.append(("finished", None))


class Exp:
    id = 1
    name = "pets"


def test_a_batch_is_recorded_files_then_rows_then_sinks_then_hooks(tmpl, tmp_path) -> None:
    samples = list(get_sampler("random").samples(load(tmpl), 0, 2, 3))
    batch = Batch(GenerationKey.of(samples[0]), (samples[0], samples[1]))
    journal = Journal(tmp_path)
    writer = ImageWriter(tmp_path, "pets", "dummy", 10)
    with BatchRecorder(journal, Exp(), writer, journal) as recorder:
        recorder.open_sinks([lambda folder: journal])
        images = DummyBackend().generate(batch)
        assert recorder.record(batch, images, 1.0, "dummy-model") == 2
    assert journal.log == [
        ("rows", [(0, "00000.png", 0.5, 2), (1, "00001.png", 0.5, 2)]),
        ("sink", 0),
        ("hook", 0),
        ("sink", 1),
        ("hook", 1),
        ("close", None),
    ]
    assert recorder.generated == 2
    assert sorted(p.name for p in tmp_path.glob("*.png*")) == ["00000.png", "00001.png"]
    assert not list(tmp_path.glob(".*"))  # no temporary file is left
    params, record = read_metadata(tmp_path / image_name(1, 10))
    assert params is not None and "Model: dummy-model" in params
    assert record == {**record, "experiment": "pets", "index": 1, "backend": "dummy"}


def test_images_that_do_not_fit_the_batch_are_refused(tmpl) -> None:
    (batch,) = batches_of(tmpl, 1)
    with pytest.raises(BackendError, match="returned 0 images for 1 samples"):
        check_images(batch, [], "b")
    with pytest.raises(BackendError, match="made a 8x8 image for a 64x64 sample"):
        check_images(batch, [Image.new("RGB", (8, 8))], "b")
    check_images(batch, [Image.new("RGB", (64, 64))], "b")


# ---------------------------------------------------------------------------------------
# the local executor and the driver


def test_the_local_executor_stops_after_the_batch_in_hand(tmpl) -> None:
    stop = threading.Event()
    made = []
    for batch, _images, _sec in LocalExecutor().run(DummyBackend(), iter(batches_of(tmpl, 2)), stop):
        made.append(batch)
        stop.set()
    assert len(made) == 1


class Watch(RunObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def started(self, experiment: Any, folder: Path) -> None:
        self.calls.append(("started", experiment.name, folder.name))

    def generating(self, done: int, total: int) -> None:
        self.calls.append(("generating", done, total))

    def progress(self, done: int, total: int) -> None:
        self.calls.append(("progress", done, total))

    def generated(self) -> None:
        self.calls.append(("generated",))


def test_the_observer_hears_the_run_in_order(tmpl, tmp_path) -> None:
    parts = RunParts(lambda **o: DummyBackend(), get_sampler("random"))
    watch = Watch()
    with Store(tmp_path / "ws") as store:
        result = run_experiment(store, load(tmpl), str(tmpl), RunOptions("pets", count=5), parts, watch)
    assert (result.done, result.generated, result.interrupted) == (5, 5, False)
    assert watch.calls[:2] == [("started", "pets", "pets"), ("generating", 0, 5)]
    assert watch.calls[-1] == ("generated",)
    progress = [c[1] for c in watch.calls if c[0] == "progress"]
    assert progress[-1] == 5 and progress == sorted(progress)
    # a finished experiment: started, nothing generated
    watch = Watch()
    with Store(tmp_path / "ws") as store:
        again = run_experiment(store, load(tmpl), str(tmpl), RunOptions("pets", count=5), parts, watch)
    assert (again.done, again.generated) == (5, 0) and watch.calls == [("started", "pets", "pets")]


def test_backend_and_sinks_are_closed_when_a_batch_fails(tmpl, tmp_path) -> None:
    closed: list[str] = []

    class Broken(DummyBackend):
        def generate(self, batch: Any) -> list[Any]:
            return []

        def close(self) -> None:
            closed.append("backend")

    class Sink:
        def __init__(self, folder: Path) -> None:
            pass

        def write(self, record: dict, image: Any, path: Path) -> None:
            pass

        def close(self) -> None:
            closed.append("sink")
            raise OSError("a sink that fails to close")

    parts = RunParts(lambda **o: Broken(), get_sampler("random"), sink_factories={"s": Sink})
    before = signal.getsignal(signal.SIGINT)
    with Store(tmp_path / "ws") as store, pytest.raises(BackendError, match="returned 0 images"):
        run_experiment(store, load(tmpl), None, RunOptions("pets", sinks=("s",)), parts)
    assert closed == ["sink", "backend"]
    assert signal.getsignal(signal.SIGINT) is before


# ---------------------------------------------------------------------------------------
# the progress bar (sdp run's)


def test_the_progress_bar_prints_a_line_per_tenth_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress("pets", 20, 0, out)
    for _ in range(10):
        bar.update(2)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("pets [" + "#" * 2 + "-" * 22 + "] 2/20  10.0%  ")
    assert lines[-1].startswith("pets [########################] 20/20 100.0%  ")
    assert " img/s  ETA " in lines[0]


def test_the_progress_observer_draws_the_bar_from_done_counts(tmp_path) -> None:
    out = io.StringIO()
    observer = ProgressObserver(out)

    class E:
        name = "pets"

    observer.started(E(), tmp_path)
    observer.generating(4, 8)
    observer.progress(6, 8)
    observer.progress(8, 8)
    observer.generated()
    lines = out.getvalue().splitlines()
    assert [ln.split("]")[1].split("%")[0] for ln in lines] == [" 6/8  75.0", " 8/8 100.0"]
    assert lines[0].startswith("pets [##################------]")


@pytest.mark.parametrize("seconds, text", [(5.9, "5s"), (61, "1m01s"), (3599, "59m59s"), (7260, "2h01m")])
def test_durations(seconds, text) -> None:
    assert _duration(seconds) == text
