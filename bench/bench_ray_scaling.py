"""Ray executor scaling: a backend with a fixed cost per image (a deterministic sleep),
1 worker against 2 workers on a local Ray, through the real driver (PNG files, store).

    python bench/bench_ray_scaling.py [--count 400] [--batch 4] [--ms 20] [--repeat 3] [--write]

Figures (best of --repeat):
* steady images/s: from the first image written to the last (Ray and worker start-up
  left out; they are reported on their own);
* efficiency: 2 workers' steady images/s over twice 1 worker's (target >= 90%);
* per-batch overhead: 1 worker's seconds per batch less the backend's own cost, with 2
  batches in flight per worker (the default) and with 1 (a full round trip each batch);
* the local executor on the same backend, for reference.

``--write`` also writes bench/results/ray.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _template_bench import cpu_model  # bench/ is on the path when run as a script

from stable_discovery.cli.progress import ProgressObserver
from stable_discovery.language.program import load
from stable_discovery.plugins import get_sampler
from stable_discovery.run.runner import RunOptions, RunParts, run_experiment
from stable_discovery.store.database import Store

TEMPLATE = """\
subject = a cat | a dog | a fox | an owl | a heron
style = oil painting | watercolour | vector graphics
prompt = <subject>[, <style>]
@steps = 20
@size = 64x64
@seed = 1
"""


class SleepBackend:
    """A fixed cost per image: ``ms`` milliseconds of sleep, then a flat 64x64 image."""

    name = "sleep"

    def __init__(self, ms: float = 20.0, **_: Any) -> None:
        self.seconds = ms / 1000.0

    def describe_model(self, model: str) -> str:
        return f"sleep ({model})"

    def generate(self, batch: Any) -> list[Any]:
        from PIL import Image

        time.sleep(self.seconds * len(batch.samples))
        return [
            Image.new("RGB", (batch.key.width, batch.key.height), (s.seed % 256, 80, 160))
            for s in batch.samples
        ]

    def close(self) -> None:
        return None


class Clock:
    """Hooks that note when each image is written."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def image_saved(self, **_: Any) -> None:
        self.times.append(time.perf_counter())

    def run_finished(self, **_: Any) -> None:
        return None


def one_run(path: Path, ws: Path, count: int, batch: int, ms: float, executor: Any) -> dict[str, float]:
    program = load(path)
    clock = Clock()
    with Store(ws) as store:
        t0 = time.perf_counter()
        result = run_experiment(
            store,
            program,
            str(path),
            RunOptions("bench", backend="sleep", batch=batch, count=count, backend_options={"ms": ms}),
            RunParts(SleepBackend, get_sampler("random"), hooks=clock, executor=executor),
            ProgressObserver(stream=open(os.devnull, "w")),
        )
        wall = time.perf_counter() - t0
    assert result.done == count and result.generated == count, result
    first, last = clock.times[batch - 1], clock.times[-1]  # the first batch written .. the last image
    steady = (count - batch) / (last - first)
    return {"wall": wall, "steady": steady, "first": first - t0}


def ray_executor(workers: int, in_flight: int) -> Any:
    from stable_discovery.run.ray_executor import RayExecutor

    return RayExecutor(
        backend_name="sleep",
        backend_options={},
        workers=workers,
        in_flight_per_worker=in_flight,
        backend_factory=SleepBackend,
        quiet=True,
    )


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return max(runs, key=lambda r: r["steady"])


def machine() -> str:
    cpu = cpu_model()
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {system}, Python {platform.python_version()}"


def commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                cwd=Path(__file__).resolve().parents[1],
            ).stdout.strip()
            or "?"
        )
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--ms", type=float, default=20.0, help="backend cost per image (ms)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write bench/results/ray.md")
    args = ap.parse_args(argv)

    import ray

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    ray_start = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="sdp-bench-ray-"))
    path = tmp / "bench.sdp"
    path.write_text(TEMPLATE)
    runs: dict[str, list[dict[str, float]]] = {
        "local": [],
        "1 worker": [],
        "2 workers": [],
        "1 worker, 1 in flight": [],
    }
    try:
        n = 0
        for _ in range(args.repeat):
            for label, make in (
                ("local", lambda: None),
                ("1 worker", lambda: ray_executor(1, 2)),
                ("2 workers", lambda: ray_executor(2, 2)),
                ("1 worker, 1 in flight", lambda: ray_executor(1, 1)),
            ):
                n += 1
                ws = tmp / f"ws{n}"
                runs[label].append(one_run(path, ws, args.count, args.batch, args.ms, make()))
                shutil.rmtree(ws)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()

    ideal_one = 1000.0 / args.ms  # images/s of one worker with no overhead at all
    batch_cost = args.batch * args.ms / 1000.0
    local, one, two, rt = (best(runs[k]) for k in ("local", "1 worker", "2 workers", "1 worker, 1 in flight"))
    eff = two["steady"] / (2 * one["steady"])
    eff_ideal = two["steady"] / (2 * ideal_one)
    eff_wall = one["wall"] / (2 * two["wall"])
    over_pipe = (args.batch / one["steady"] - batch_cost) * 1000
    over_rt = (args.batch / rt["steady"] - batch_cost) * 1000
    over_local = (args.batch / local["steady"] - batch_cost) * 1000

    rows = [
        ("local executor (reference)", local),
        ("ray, 1 worker", one),
        ("ray, 2 workers", two),
        ("ray, 1 worker, 1 batch in flight", rt),
    ]
    header = [
        f"machine: {machine()}",
        f"Ray {ray.__version__}; load average at start {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}",
        f"workload: {args.count} images of 64x64, batches of {args.batch}, {args.ms:g} ms per image "
        f"({batch_cost * 1000:.0f} ms per batch; ideal {ideal_one:.1f} img/s per worker); best of "
        f"{args.repeat}",
        f"local Ray start (ray.init, 2 CPUs): {ray_start:.1f} s, once, not in the figures below",
    ]
    table = [
        "| executor | steady img/s | wall s (incl. worker start) | first image after s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, r in rows:
        table.append(f"| {label} | {r['steady']:.1f} | {r['wall']:.2f} | {r['first']:.2f} |")
    figures = [
        f"efficiency, 2 workers vs 2 x 1 worker (steady): {eff * 100:.1f}% (target >= 90%)",
        f"efficiency, 2 workers vs 2 x the ideal worker: {eff_ideal * 100:.1f}%",
        f"efficiency on wall time, worker start-up included: {eff_wall * 100:.1f}%",
        f"per-batch overhead, 1 worker, 2 batches in flight: {over_pipe:.1f} ms",
        f"per-batch overhead, 1 worker, 1 batch in flight (full round trip): {over_rt:.1f} ms",
        f"per-batch overhead of the local executor (driver writes only): {over_local:.1f} ms",
    ]
    print("\n".join(header + [""] + table + [""] + figures))
    if args.write:
        cmd = "python bench/bench_ray_scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])
        out = Path(__file__).resolve().parent / "results" / "ray.md"
        out.parent.mkdir(exist_ok=True)
        out.write_text(
            "# Ray executor: 1 worker against 2 on this machine\n\n"
            f"Command: `{cmd.strip()}` (commit {commit()} plus the working tree)\n\n"
            "A backend with a fixed cost per image (a sleep), through the real driver: every\n"
            "image is written as a PNG with metadata and recorded in the store. Steady img/s\n"
            "counts from the first image written to the last, so Ray's and the workers' start-up\n"
            "are left out (the wall column has the workers' start-up in it).\n\n"
            + "\n".join(f"- {line}" for line in header)
            + "\n\n"
            + "\n".join(table)
            + "\n\n"
            + "\n".join(f"- {line}" for line in figures)
            + "\n"
        )
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
