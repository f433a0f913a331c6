"""Run overhead: `sdp run` with the dummy backend against a bare loop that makes the same
images and writes the same PNGs with the same metadata, in the same process and run.

    python bench/bench_run_overhead.py [--count 10000] [--batch 16] [--repeat 3]

Target (issue 3): the run reaches at least 0.9x the bare loop's images/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stable_discovery.backends.base import Batch, GenerationKey
from stable_discovery.backends.dummy import DummyBackend
from stable_discovery.cli.progress import ProgressObserver
from stable_discovery.language.program import load
from stable_discovery.plugins import get_sampler
from stable_discovery.run.files import image_name
from stable_discovery.run.pngmeta import a1111_parameters, png_info
from stable_discovery.run.runner import RunOptions, RunParts, run_experiment
from stable_discovery.store.database import Store

TEMPLATE = """\
subject = a cat | a dog | a fox | an owl | a heron
place = in a forest | on a beach | in space | in the city at night
style = oil painting | watercolour | vector graphics | art deco
prompt = <subject> <place>[, <style>]
negative = blurry, lowres
@steps = 20 | 30 | 40
@size = 64x64
@seed = 1
"""


def bare_loop(program, count: int, out: Path) -> float:
    """What any script would do: sample, make the image, save it with the same metadata."""
    backend = DummyBackend()
    t0 = time.perf_counter()
    for sample in get_sampler("random").samples(program, 0, count, 1):
        image = backend.generate(Batch(GenerationKey.of(sample), (sample,)))[0]
        record = {
            "experiment": "bare",
            "index": sample.index,
            "prompt": sample.prompt,
            "negative": sample.negative,
            "settings": dict(sample.settings),
            "seed": sample.seed,
            "trace": {k: {"index": c.index, "text": c.text} for k, c in sample.trace.items()},
            "backend": "dummy",
        }
        params = a1111_parameters(
            sample.prompt,
            sample.negative,
            sample.settings,
            sample.seed,
            backend.describe_model(sample.settings["model"]),
        )
        image.save(
            out / image_name(sample.index, count),
            format="PNG",
            pnginfo=png_info(params, record),
            compress_level=1,
        )
    return time.perf_counter() - t0


def sdp_run(program, path: Path, count: int, batch: int, ws: Path) -> float:
    with Store(ws) as store:
        t0 = time.perf_counter()
        result = run_experiment(
            store,
            program,
            str(path),
            RunOptions("bench", backend="dummy", batch=batch, count=count),
            RunParts(lambda **o: DummyBackend(), get_sampler("random")),
            ProgressObserver(stream=open(os.devnull, "w")),  # the bar sdp run draws
        )
        elapsed = time.perf_counter() - t0
    assert result.done == count and result.generated == count
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--dir",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="where both loops write (default: /dev/shm, a RAM file system, so "
        "that the disk's file-creation cost, which swings 5x from run to run on "
        "a shared machine, does not drown the difference being measured)",
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sdp-bench-", dir=args.dir))
    path = tmp / "bench.sdp"
    path.write_text(TEMPLATE)
    program = load(path)
    bare, run = [], []
    try:
        for r in range(args.repeat):
            out = tmp / f"bare{r}"
            out.mkdir()
            bare.append(bare_loop(program, args.count, out))
            shutil.rmtree(out)
            ws = tmp / f"ws{r}"
            run.append(sdp_run(program, path, args.count, args.batch, ws))
            shutil.rmtree(ws)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    b, s = min(bare), min(run)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"images: {args.count} at 64x64, batch {args.batch}, best of {args.repeat}, ", end="")
    print(f"written under {tmp.parent}")
    print(f"bare loop : {args.count / b:8.1f} img/s  ({b:.2f} s)")
    print(f"sdp run   : {args.count / s:8.1f} img/s  ({s:.2f} s)")
    print(f"ratio     : {b / s:.2f}x of the bare loop (target >= 0.9x)")


if __name__ == "__main__":
    main()
