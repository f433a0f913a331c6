"""The GPU never waits: ``sdp run`` end to end against its backend alone, and the
driver's cost per image when workers send encoded PNGs.

    python bench/bench_pipeline.py [--count 240] [--batch 8] [--ms 50] [--repeat 3]

1. **Backend alone**: :class:`bench.sleep_backend.SleepBackend` (sleeps ``--ms`` per
   image, as a GPU keeps the process waiting, and returns 512x512 pictures) called on
   the planner's batches, nothing written.
2. **sdp run**: the real command line (``sdp run --backend sleep``, in this process,
   the backend registered as a plugin), every image a PNG with its metadata in the
   store. Target (issue 13): at least 0.9x the backend alone.
3. **Driver, encoded PNGs**: ``run_experiment`` fed by an executor that hands over
   images already encoded (as Ray workers do), so all the driver does is write files
   and rows. Target: at most 2 ms per image (500 images/s). The same with PIL images
   (the driver encodes) for comparison.

Writes go under ``--dir`` (default ``/dev/shm``, a RAM file system, so that the disk's
mood on a shared machine does not drown what is measured; ``--dir /tmp`` for a disk).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sleep_backend  # noqa: E402 - after the path is set
from sleep_backend import SleepBackend, picture  # noqa: E402

from stable_discovery import plugins  # noqa: E402
from stable_discovery.language.program import load  # noqa: E402
from stable_discovery.run.planner import plan  # noqa: E402

TEMPLATE = """\
subject = a cat | a dog | a fox | an owl | a heron
place = in a forest | on a beach | in space | in the city at night
style = oil painting | watercolour | vector graphics | art deco
prompt = <subject> <place>[, <style>]
negative = blurry, lowres
@steps = 20
@size = 512x512
@seed = 1
"""


def backend_alone(program: Any, count: int, batch: int, seconds: float, busy: float) -> float:
    """Seconds the backend takes for every planner batch of the experiment."""
    backend = SleepBackend(seconds, busy)
    samples = list(plugins.get_sampler("random").samples(program, 0, count, 1))
    t0 = time.perf_counter()
    for b in plan(samples, batch):
        backend.generate(b)
    return time.perf_counter() - t0


def sdp_run(path: Path, count: int, batch: int, ws: Path, extra: list[str]) -> float:
    """Seconds ``sdp run`` takes, from the command line to its last line."""
    from stable_discovery.cli.main import main

    argv = ["run", str(path), "--backend", "sleep", "--batch", str(batch), "--count", str(count)]
    argv += ["--workspace", str(ws), "--name", "bench", *extra]
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(argv)
    elapsed = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"sdp run failed ({code}): {err.getvalue()}")
    return elapsed


class Handover:
    """An executor that hands the driver ready images at once: encoded PNGs made before
    the clock started (what Ray workers send), or PIL images (the driver encodes)."""

    name = "handover"
    needs_local_backend = False
    drains_on_stop = False

    def __init__(self, made: dict[int, Any] | None) -> None:
        self.made = made
        self.pictures = [picture(i, 512, 512) for i in range(4)]

    def setup(self, setup: Any) -> None:
        pass

    def describe_model(self, model: str) -> str:
        return "sleep"

    def run(self, backend: Any, batches: Any, stop: threading.Event) -> Any:
        for b in batches:
            if self.made is not None:
                yield b, [self.made[s.index] for s in b.samples], 0.0
            else:
                yield b, [self.pictures[s.index % 4] for s in b.samples], 0.0


def driver(program: Any, path: Path, count: int, batch: int, ws: Path, encoded: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``run_experiment`` with images
    handed over ready; encoded PNGs are made before the clock starts (the workers did
    that)."""
    from stable_discovery.run.runner import RunOptions, RunParts, run_experiment
    from stable_discovery.store.database import Store

    made = None
    if encoded:
        from stable_discovery.run.files import PngSpec  # new in issue 13

        spec = PngSpec("driver", "sleep")
        pictures = [picture(i, 512, 512) for i in range(4)]
        samples = plugins.get_sampler("random").samples(program, 0, count, 1)
        made = {s.index: spec.encode(s, pictures[s.index % 4], "sleep") for s in samples}
    options = RunOptions("driver", backend="sleep", batch=batch, count=count)
    parts = RunParts(lambda **o: SleepBackend(0), plugins.get_sampler("random"), executor=Handover(made))
    with Store(ws) as store:
        c0, t0 = time.process_time(), time.perf_counter()
        result = run_experiment(store, program, str(path), options, parts)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.generated == count, result
    return wall, cpu


def _has_encoded_images() -> bool:
    try:
        from stable_discovery.run.files import PngSpec  # noqa: F401 - only asked whether it exists
    except ImportError:
        return False
    return True


def _commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True)
        return out.stdout.decode().strip() + (" + working tree" if dirty.stdout.strip() else "")
    except OSError:
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=240, help="images per run (default 240)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--ms", type=float, default=50.0, help="the backend's milliseconds per image")
    ap.add_argument(
        "--busy",
        type=float,
        default=0.0,
        help="share of the backend's time spent running Python, holding the GIL, as a thread "
        "launching GPU kernels does (default 0: it only sleeps)",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best counts")
    ap.add_argument("--driver-count", type=int, default=2000, help="images of the driver rows")
    ap.add_argument("--skip-driver", action="store_true", help="leave out the driver rows")
    ap.add_argument("--dir", default="/dev/shm" if Path("/dev/shm").is_dir() else None)
    ap.add_argument("--run-args", default="", help="extra sdp run arguments, e.g. '--encoders 0'")
    args = ap.parse_args()

    os.environ["SDP_SLEEP_MS"] = str(args.ms)
    os.environ["SDP_SLEEP_BUSY"] = str(args.busy)
    plugins.register(sleep_backend, name="sleep-backend")
    tmp = Path(tempfile.mkdtemp(prefix="sdp-pipe-", dir=args.dir))
    path = tmp / "bench.sdp"
    path.write_text(TEMPLATE)
    program = load(path)
    alone, run, rows = [], [], []
    try:
        for r in range(args.repeat):
            alone.append(backend_alone(program, args.count, args.batch, args.ms / 1000, args.busy))
            ws = tmp / f"ws{r}"
            run.append(sdp_run(path, args.count, args.batch, ws, args.run_args.split()))
            shutil.rmtree(ws)
        if not args.skip_driver:
            kinds = (True, False) if _has_encoded_images() else (False,)
            for encoded in kinds:
                best = None
                for r in range(args.repeat):
                    ws = tmp / f"d{r}"
                    got = driver(program, path, args.driver_count, args.batch, ws, encoded)
                    shutil.rmtree(ws)
                    best = got if best is None or got[0] < best[0] else best
                rows.append((encoded, best))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    a, s = min(alone), min(run)
    load_avg = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load {load_avg}; code {_commit()}"
    )
    print(
        f"{args.count} images of 512x512, batch {args.batch}, backend {args.ms:g} ms/image "
        f"({100 * args.busy:.0f}% of it running Python), "
        f"best of {args.repeat}, written under {tmp.parent}"
    )
    print(f"backend alone : {args.count / a:7.2f} img/s  ({a:.2f} s)")
    print(
        f"sdp run       : {args.count / s:7.2f} img/s  ({s:.2f} s)   {a / s:.2f}x of the backend "
        "(target >= 0.9x)"
    )
    for encoded, (wall, cpu) in rows:
        what = "encoded PNGs (workers encode)" if encoded else "PIL images (driver encodes)"
        n = args.driver_count
        print(
            f"driver, {what:<30}: {n / wall:7.1f} img/s, {1000 * wall / n:.2f} ms/image wall, "
            f"{1000 * cpu / n:.2f} ms/image CPU"
        )


if __name__ == "__main__":
    main()
