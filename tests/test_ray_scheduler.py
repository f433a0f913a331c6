"""The Ray scheduler's rules, against a stand-in for Ray that runs the workers in this
process (fast; tests/test_ray.py runs the real thing): batches read lazily, at most N in
flight per worker, results as they complete, lost workers replaced and their batches
submitted again up to ``max_attempts``, nothing new after a stop but the batches in
flight drained."""

from __future__ import annotations

import importlib.util
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stable_discovery.backends.base import BackendError, Batch, GenerationKey
from stable_discovery.backends.dummy import DummyBackend
from stable_discovery.language.program import load
from stable_discovery.plugins import get_sampler
from stable_discovery.run.files import EncodedImage, PngSpec
from stable_discovery.run.ray_scheduler import Scheduler, SchedulerLimits, WorkerPool, span
from stable_discovery.run.ray_worker import WorkerOptions

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install -e '.[ray]')"
)

TEMPLATE = """\
subject = a cat | a dog | a fox
prompt = <subject>, {studio light|fog}
@size = 64x64
"""


class Ref:
    """An object reference: the call runs when the driver asks for its result."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call


class Handle:
    """An actor handle: ``handle.method.remote(...)`` queues a call on the fake Ray."""

    def __init__(self, ray: FakeRay, actor: Any, number: int) -> None:
        self.ray, self.actor, self.number = ray, actor, number
        self.dead = False
        self.ready = _Method(ray, self, self._ready)
        self.generate = _Method(ray, self, self._generate)

    def _ready(self) -> dict[str, Any]:
        self.actor._backend()
        return {"host": "here", "pid": self.number, "gpus": []}

    def _generate(self, batch: Batch) -> Any:
        deadly = self.ray.deadly & {s.index for s in batch.samples}
        if deadly:
            self.dead = True
            if self.ray.once:
                self.ray.deadly -= deadly
        return self.actor.generate(batch)


class _Method:
    def __init__(self, ray: FakeRay, handle: Handle, fn: Callable[..., Any]) -> None:
        self.ray, self.handle, self.fn = ray, handle, fn

    def remote(self, *args: Any) -> Ref:
        import ray.exceptions as rex

        handle, fn = self.handle, self.fn

        def call() -> Any:
            if handle.dead:
                raise rex.RayActorError()
            result = fn(*args)
            if handle.dead:  # it died making this batch
                raise rex.RayActorError()
            return result

        ref = Ref(call)
        self.ray.queue.append(ref)
        if fn == handle._generate:
            self.ray.in_flight[handle.number] += 1
            self.ray.most_in_flight = max(self.ray.most_in_flight, self.ray.in_flight[handle.number])
            self.ray.owner[id(ref)] = handle.number
        return ref


class FakeRay:
    """The part of the ``ray`` module the scheduler uses; calls finish in the order
    they were made. A worker handed a sample of ``deadly`` dies making it (only the
    first such worker when ``once``)."""

    def __init__(self, deadly: set[int] | None = None, once: bool = True) -> None:
        self.deadly = set(deadly or ())
        self.once = once
        self.queue: list[Ref] = []
        self.in_flight: Counter[int] = Counter()
        self.owner: dict[int, int] = {}
        self.most_in_flight = 0
        self.spawned = 0

    def remote(self, cls: type) -> Any:
        fake = self

        class ActorClass:
            def options(self, **_: Any) -> ActorClass:
                return self

            def remote(self, *args: Any) -> Handle:
                fake.spawned += 1
                return Handle(fake, cls(*args), fake.spawned)

        return ActorClass()

    def wait(self, refs: list[Ref], num_returns: int = 1, timeout: float = 1.0) -> tuple[list, list]:
        wanted = set(map(id, refs))
        for ref in self.queue:
            if id(ref) in wanted:
                self.queue.remove(ref)
                return [ref], [r for r in refs if r is not ref]
        return [], refs

    def get(self, ref: Ref) -> Any:
        number = self.owner.pop(id(ref), None)
        if number is not None:
            self.in_flight[number] -= 1
        return ref.call()

    def kill(self, handle: Handle, no_restart: bool = True) -> None:
        handle.dead = True

    def available_resources(self) -> dict[str, float]:
        return {"CPU": 0.0}


def batches(tmp_path: Path, pulled: list[int], n: int = 6) -> Iterator[Batch]:
    """``n`` batches of one sample each; ``pulled`` counts those read."""
    path = tmp_path / "t.sdp"
    path.write_text(TEMPLATE)
    for sample in get_sampler("combinatorial").samples(load(path), 0, n, 0):
        pulled.append(sample.index)
        yield Batch(GenerationKey.of(sample), (sample,))


def scheduler(
    ray: FakeRay,
    source: Iterator[Batch],
    stop: threading.Event | None = None,
    workers: int = 2,
    in_flight: int = 2,
    said: list[str] | None = None,
    options: WorkerOptions | None = None,
) -> Scheduler:
    pool = WorkerPool(ray, "dummy", {}, None, lambda: {"dummy": DummyBackend}, 0.0, options)
    for _ in range(workers):
        pool.spawn()
    limits = SchedulerLimits(in_flight_per_worker=in_flight, max_attempts=3)
    say = said.append if said is not None else (lambda _text: None)
    return Scheduler(ray, pool, source, stop or threading.Event(), limits, say, {})


def test_batches_are_read_lazily_with_at_most_n_in_flight_per_worker(tmp_path) -> None:
    ray, pulled = FakeRay(), []
    sched = scheduler(ray, batches(tmp_path, pulled), workers=2, in_flight=2)
    results = sched.results()
    batch, images, _seconds = next(results)
    assert len(pulled) == 4  # 2 workers x 2 in flight, no more
    assert len(images) == 1 and images[0].size == (64, 64)
    done = [batch.samples[0].index] + [b.samples[0].index for b, _i, _s in results]
    assert sorted(done) == list(range(6)) and len(done) == 6
    assert ray.most_in_flight == 2
    model = batch.key.model
    assert sched.models == {model: DummyBackend().describe_model(model)}


def test_a_lost_worker_is_replaced_and_its_batches_go_to_another(tmp_path) -> None:
    ray, pulled, said = FakeRay(deadly={2}), [], []
    sched = scheduler(ray, batches(tmp_path, pulled), said=said)
    done = [b.samples[0].index for b, _i, _s in sched.results()]
    assert sorted(done) == list(range(6)) and len(done) == 6  # nothing lost, nothing twice
    assert sched.workers_lost == 1 and sched.batches_retried == 2  # the batch it died on, and the one queued
    assert sched.pool.spawned == 3
    assert "worker 2 (here pid 2) was lost; started worker 3 in its place" in said
    assert "samples 2 go to another worker (try 2)" in said


def test_a_batch_that_keeps_losing_its_worker_ends_the_run(tmp_path) -> None:
    ray = FakeRay(deadly={0}, once=False)
    sched = scheduler(ray, batches(tmp_path, []), workers=1, in_flight=1)
    with pytest.raises(BackendError, match="samples 0 lost their Ray worker 3 times"):
        list(sched.results())


def test_after_a_stop_nothing_new_is_submitted_and_what_is_in_flight_drains(tmp_path) -> None:
    ray, pulled, stop = FakeRay(), [], threading.Event()
    sched = scheduler(ray, batches(tmp_path, pulled, n=12), stop=stop)
    results = sched.results()
    first = next(results)
    stop.set()
    in_flight = len(sched.in_flight)
    rest = list(results)
    assert in_flight >= 1 and len(rest) == in_flight
    assert len(pulled) == 1 + in_flight  # nothing read after the stop
    assert first[0] not in [b for b, _i, _s in rest]


def test_a_span_names_a_batch_s_samples(tmp_path) -> None:
    made = list(batches(tmp_path, [], n=6))
    run = Batch(made[0].key, tuple(b.samples[0] for b in made[:4]))
    pair = Batch(made[0].key, (made[1].samples[0], made[5].samples[0]))
    assert (span(run), span(pair), span(Batch(made[0].key, ()))) == ("0–3", "1, 5", "(none)")


def test_with_worker_options_workers_send_png_files_the_driver_only_writes(tmp_path) -> None:
    options = WorkerOptions(PngSpec("zoo", "dummy"))
    sched = scheduler(FakeRay(), batches(tmp_path, []), options=options)
    for batch, images, _seconds in sched.results():
        (image,) = images
        assert isinstance(image, EncodedImage) and image.data.startswith(b"\x89PNG")
        assert image.record["index"] == batch.samples[0].index and image.record["experiment"] == "zoo"
