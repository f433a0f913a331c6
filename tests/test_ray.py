"""The Ray executor: a local Ray with 2 CPUs (started once for the module) runs the same
experiments as the local executor and must leave the same store; a worker killed
mid-run loses nothing and duplicates nothing; Ctrl-C drains the batches in flight.

Skipped when Ray is not installed (``pip install -e '.[ray]'``), except the checks of
what a user without Ray is told.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from stable_discovery import plugins
from stable_discovery.backends.base import BackendError
from stable_discovery.backends.dummy import DummyBackend
from stable_discovery.cli.main import main
from stable_discovery.language.program import load
from stable_discovery.plugins.hookspecs import hookimpl
from stable_discovery.run.pngmeta import read_metadata
from stable_discovery.run.runner import RunOptions, RunParts, RunResult, run_experiment
from stable_discovery.store.database import Store

HAVE_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install -e '.[ray]')")

TEMPLATE = """\
subject = a cat | a dog | a heron
style = oil painting | watercolour
prompt = <subject>[, <style>]
negative = blurry, lowres
@steps = 20 | 30
@size = 64x64 | 64x96
@count = 16
@seed = 7
"""

TINY_TEMPLATE = """\
subject = a red fox | a grey heron
prompt = <subject>, ink drawing
negative = blurry
@steps = 2 | 3
@size = 64x64
@count = 4
@seed = 5
"""


# ---------------------------------------------------------------------------------------
# test backends (shipped to the workers pickled: they are not installed there)


class SlowDummy(DummyBackend):
    """The dummy backend, ``delay`` seconds per batch; with ``kill_index`` its worker
    process dies (``os._exit``) the first time it is handed that sample (``marker``
    records that it did)."""

    name = "ray-test-slow"

    def __init__(
        self,
        delay: float = 0.0,
        kill_index: int | None = None,
        marker: str | None = None,
        fail: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.delay = delay
        self.kill_index = kill_index
        self.marker = marker
        self.fail = fail

    def generate(self, batch: Any) -> list[Any]:
        if self.fail == "backend-error":
            raise BackendError("cannot load model 'nowhere': no such folder")
        if self.fail == "bug":
            raise ValueError("something inside the backend broke")
        if self.kill_index is not None and self.marker is not None:
            if any(s.index == self.kill_index for s in batch.samples) and not os.path.exists(self.marker):
                Path(self.marker).write_text(str(os.getpid()))
                os._exit(1)  # the worker process dies mid-batch
        time.sleep(self.delay)
        return super().generate(batch)


class TestBackends:
    @hookimpl
    def register_backends(self, register: Any) -> None:
        register("ray-test-slow", SlowDummy)


class Recorder:
    """Stands in for the plugin hooks: counts how often each sample is written."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.saved: Counter[int] = Counter()
        self.stop_after = stop_after

    def image_saved(self, experiment: str, record: dict, path: str) -> None:
        self.saved[record["index"]] += 1
        if self.stop_after is not None and sum(self.saved.values()) == self.stop_after:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the runner asks the executor to stop

    def run_finished(self, **_: Any) -> None:
        return None


# ---------------------------------------------------------------------------------------
# fixtures and helpers


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    """A local Ray with 2 CPUs for the whole module, shut down at the end."""
    if not HAVE_RAY:
        pytest.skip("Ray is not installed")
    import ray

    # the test backends live in this module, which the workers cannot import
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    plugins.register(TestBackends(), name="ray-test-backends")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        plugins.unregister("ray-test-backends")


def executor(backend: str, options: dict[str, Any] | None = None, workers: int = 2) -> Any:
    from stable_discovery.run.ray_executor import RayExecutor

    return RayExecutor(
        backend_name=backend,
        backend_options=options or {},
        workers=workers,
        backend_factory=plugins.backends()[backend],
        quiet=True,
    )


def run(
    ws: Path,
    tmpl: Path,
    backend: str,
    ex: Any = None,
    options: dict[str, Any] | None = None,
    hooks: Any = None,
    batch: int = 3,
    overrides: dict[str, str] | None = None,
) -> RunResult:
    program = load(tmpl)
    with Store(ws) as store:
        return run_experiment(
            store,
            program,
            str(tmpl),
            RunOptions(
                name="exp",
                backend=backend,
                batch=batch,
                overrides=overrides or {},
                backend_options=options or {},
            ),
            RunParts(plugins.backends()[backend], plugins.get_sampler("random"), hooks=hooks, executor=ex),
        )


def content(ws: Path, pixels: bool = True) -> dict[str, Any]:
    """What a run leaves, without times and ids: experiment, rows, choices, and per
    image its metadata and (``pixels``) its decoded pixels."""
    db = sqlite3.connect(ws / "discovery.db")
    db.row_factory = sqlite3.Row
    exp = dict(
        db.execute(
            "SELECT name, template_path, template_text, template_hash, wildcards_hash, sampler, seed, "
            "count, backend, overrides FROM experiments"
        ).fetchone()
    )
    rows = [
        dict(r)
        for r in db.execute(
            "SELECT idx, prompt, negative, settings, seed, status, file FROM samples ORDER BY idx"
        )
    ]
    choices = [tuple(r) for r in db.execute("SELECT idx, name, choice, text FROM choices ORDER BY idx, name")]
    images = {}
    for r in rows:
        path = ws / exp["name"] / r["file"]
        params, record = read_metadata(path)
        with Image.open(path) as im:
            images[r["file"]] = (params, record, im.mode, im.size, im.tobytes() if pixels else None)
    db.close()
    exp["template_path"] = Path(exp["template_path"]).name
    return {"experiment": exp, "rows": rows, "choices": choices, "images": images}


def max_pixel_difference(a: Path, b: Path) -> int:
    with Image.open(a) as x, Image.open(b) as y:
        extrema = ImageChops.difference(x.convert("RGB"), y.convert("RGB")).getextrema()
    return max(int(band[1]) for band in extrema)  # type: ignore[index]


@pytest.fixture
def tmpl(tmp_path: Path) -> Path:
    path = tmp_path / "pets.sdp"
    path.write_text(TEMPLATE)
    return path


# ---------------------------------------------------------------------------------------
# the same store as the local executor


@needs_ray
def test_dummy_backend_on_ray_leaves_the_same_store(ray_local, tmpl, tmp_path) -> None:
    local = run(tmp_path / "local", tmpl, "dummy")
    hooks = Recorder()
    ex = executor("dummy")
    remote = run(tmp_path / "ray", tmpl, "dummy", ex=ex, hooks=hooks)
    assert (local.done, remote.done, remote.generated, remote.interrupted) == (16, 16, 16, False)
    assert sorted(hooks.saved) == list(range(16)) and set(hooks.saved.values()) == {1}
    a, b = content(tmp_path / "local"), content(tmp_path / "ray")
    assert a["experiment"] == b["experiment"]
    assert a["rows"] == b["rows"]
    assert a["choices"] == b["choices"]
    assert a["images"] == b["images"]  # metadata (Model: dummy (…) included) and pixels
    assert sorted(
        p.name
        for p in (tmp_path / "ray" / "exp").iterdir()
        if p.name not in (".lock", ".sdp-experiment.json")
    ) == sorted(a["images"])
    assert ex.workers_lost == 0


@needs_ray
def test_tiny_model_on_ray_leaves_the_same_store(ray_local, tmp_path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    tmpl = tmp_path / "tiny.sdp"
    tmpl.write_text(TINY_TEMPLATE)
    over = {"model": "tiny"}
    opts = {"threads": 1}
    local = run(tmp_path / "local", tmpl, "diffusers", options=opts, overrides=over, batch=2)
    remote = run(
        tmp_path / "ray",
        tmpl,
        "diffusers",
        ex=executor("diffusers", opts),
        options=opts,
        overrides=over,
        batch=2,
    )
    assert (local.done, remote.done) == (4, 4)
    a, b = content(tmp_path / "local", pixels=False), content(tmp_path / "ray", pixels=False)
    assert a["experiment"] == b["experiment"] and a["rows"] == b["rows"] and a["choices"] == b["choices"]
    assert a["images"] == b["images"]  # prompts, seeds, settings, traces, Model: tiny-sd2-v1
    assert "Model: tiny-sd2-v1" in next(iter(b["images"].values()))[0]
    for r in a["rows"]:
        # same seeds, same model: the same picture (float noise of another process aside)
        assert (
            max_pixel_difference(tmp_path / "local" / "exp" / r["file"], tmp_path / "ray" / "exp" / r["file"])
            <= 2
        )


# ---------------------------------------------------------------------------------------
# failures


@needs_ray
def test_a_worker_killed_mid_batch_loses_nothing_and_duplicates_nothing(ray_local, tmpl, tmp_path) -> None:
    marker = tmp_path / "killed"
    hooks = Recorder()
    ex = executor("ray-test-slow", {"delay": 0.05, "kill_index": 7, "marker": str(marker)})
    result = run(tmp_path / "ray", tmpl, "ray-test-slow", ex=ex, hooks=hooks, batch=2)
    assert marker.exists(), "the worker was not killed"
    assert (result.done, result.generated, result.interrupted) == (16, 16, False)
    assert ex.workers_lost >= 1 and ex.batches_retried >= 1
    # every sample written exactly once, each file once, nothing left over
    assert sorted(hooks.saved) == list(range(16)) and set(hooks.saved.values()) == {1}
    files = sorted(
        p.name
        for p in (tmp_path / "ray" / "exp").iterdir()
        if p.name not in (".lock", ".sdp-experiment.json")
    )
    rows = content(tmp_path / "ray")
    assert files == sorted(rows["images"]) and len(files) == 16
    assert [r["idx"] for r in rows["rows"]] == list(range(16))
    # and the images are the dummy backend's, as a local run makes them
    run(tmp_path / "local", tmpl, "dummy", batch=2)
    local = content(tmp_path / "local")
    assert [im[4] for im in local["images"].values()] == [im[4] for im in rows["images"].values()]


@needs_ray
def test_ctrl_c_drains_the_batches_in_flight_and_a_resume_finishes(ray_local, tmpl, tmp_path) -> None:
    hooks = Recorder(stop_after=1)
    first = run(
        tmp_path / "ws",
        tmpl,
        "ray-test-slow",
        ex=executor("ray-test-slow", {"delay": 0.3}),
        hooks=hooks,
        batch=2,
    )
    assert first.interrupted
    # the first batch written, plus what was in flight (2 workers x 2 batches at most)
    assert 2 <= first.done <= 8 and first.done % 2 == 0, first.done
    hooks.stop_after = None
    second = run(tmp_path / "ws", tmpl, "ray-test-slow", ex=executor("ray-test-slow"), hooks=hooks, batch=2)
    assert (second.done, second.interrupted) == (16, False)
    assert second.generated == 16 - first.done
    assert sorted(hooks.saved) == list(range(16)) and set(hooks.saved.values()) == {1}


@needs_ray
@pytest.mark.parametrize(
    "fail, message",
    [
        ("backend-error", "cannot load model 'nowhere': no such folder"),
        ("bug", "failed on a Ray worker: ValueError: something inside the backend broke"),
    ],
)
def test_a_backend_error_on_a_worker_reaches_the_user_as_one_line(
    ray_local, tmpl, tmp_path, fail, message
) -> None:
    with pytest.raises(BackendError) as info:
        run(tmp_path / "ws", tmpl, "ray-test-slow", ex=executor("ray-test-slow", {"fail": fail}, workers=1))
    assert message in str(info.value)
    assert "Traceback" not in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------
# the command line


@needs_ray
def test_sdp_run_executor_ray(ray_local, tmpl, tmp_path, capsys) -> None:
    ws = tmp_path / "ws"
    argv = [
        "run",
        str(tmpl),
        "--backend",
        "dummy",
        "--executor",
        "ray",
        "--workers",
        "2",
        "--workspace",
        str(ws),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "ray: 2 workers (1 CPU each), backend dummy" in err and "done: 16 of 16" in err
    assert len(list((ws / "pets").glob("*.png"))) == 16
    # resuming a finished run does nothing, with either executor
    assert main(argv) == 0
    assert main(argv[:4] + ["--workspace", str(ws)]) == 0
    assert "16 of 16 done" in capsys.readouterr().err


def test_without_ray_the_user_is_told_how_to_install_it(tmpl, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as if it were missing
    code = main(
        ["run", str(tmpl), "--backend", "dummy", "--executor", "ray", "--workspace", str(tmp_path / "ws")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install -e '.[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "ws" / "pets").exists() or not list((tmp_path / "ws" / "pets").glob("*.png"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--workers", "2"], "--workers go with --executor ray"),
        (["--address", "auto"], "--address go with --executor ray"),
        (["--executor", "ray", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_ray_options_are_checked(tmpl, tmp_path, capsys, argv, message) -> None:
    if "ray" in argv and not HAVE_RAY:
        pytest.skip("Ray is not installed")
    code = main(["run", str(tmpl), "--backend", "dummy", *argv, "--workspace", str(tmp_path / "ws")])
    assert code == 2 and message in capsys.readouterr().err


def test_an_address_where_nothing_answers_is_reported_at_once() -> None:
    import socket

    from stable_discovery.run.ray_executor import _unreachable

    with socket.socket() as s:  # a port on this machine that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    assert "nothing answers at 127.0.0.1" in (_unreachable(f"127.0.0.1:{port}") or "")
    assert "nothing answers" in (_unreachable(f"ray://127.0.0.1:{port}") or "")
    assert time.monotonic() - t0 < 5
    assert _unreachable("auto") is None


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_images_travel_unchanged(mode) -> None:
    from stable_discovery.run.ray_executor import pack_image, unpack_image

    im = (
        Image.linear_gradient("L").resize((37, 21)).convert(mode if mode != "I;16" else "I").convert(mode)
        if mode != "P"
        else Image.linear_gradient("L").resize((37, 21)).convert("RGB").convert("P")
    )
    back = unpack_image(pack_image(im))
    assert back.mode == im.mode and back.size == im.size and back.tobytes() == im.tobytes()
    if mode == "P":
        assert back.getpalette() == im.getpalette()
