"""Warm start: how long ``sdp run`` takes from the command to its first image, against
loading the model alone.

    python bench/bench_warm_start.py [--model tiny] [--repeat 3]

Each repeat, in fresh processes started from this one (the clock runs from the moment
the process is started, so Python's own start counts):

* **model alone**: a process that imports the backend, loads the model
  (``DiffusersBackend.prepare``, what ``sdp run`` does first) and exits: the floor.
* **sdp run**: ``python -m stable_discovery run`` of a 4-image template, batch 1, until
  the first image appears in the experiment's folder (polled every 5 ms), and until
  the command ends.

Target (issue 13): the first image within 5 s of the model's own load. The difference
is everything else: the template compiled, the store opened and swept, the first image
generated and written.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = """\
animal = a cat | a dog | a fox
prompt = <animal> in the snow, {watercolour|oil painting}
negative = blurry
@size = 64x64
@steps = 10
@count = 4
"""

LOAD_ALONE = """\
import time
from stable_discovery.backends.diffusers_backend import DiffusersBackend
backend = DiffusersBackend(device="cpu")
backend.prepare([{model!r}])
print(time.time())
"""


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    return out


def model_alone(model: str) -> float:
    """Seconds from starting the process to the model loaded (not to the process's
    end: torch takes a while to exit)."""
    t0 = time.time()
    done = subprocess.run(
        [sys.executable, "-c", LOAD_ALONE.format(model=model)], check=True, env=env(), capture_output=True
    )
    return float(done.stdout.split()[-1]) - t0


def sdp_run(tmpl: Path, ws: Path, model: str) -> tuple[float, float, str]:
    """(seconds to the first image, seconds to the end, the command's last line)."""
    folder = ws / tmpl.stem
    argv = [sys.executable, "-m", "stable_discovery", "run", str(tmpl), "--model", model]
    argv += ["--batch", "1", "--workspace", str(ws)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = None
    while proc.poll() is None:
        if first is None and folder.is_dir() and any(folder.glob("*.png")):
            first = time.perf_counter() - t0
        time.sleep(0.005)
    end = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"sdp run failed: {err}")
    if first is None:
        first = end
    return first, end, err.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sdp-warm-"))
    tmpl = tmp / "warm.sdp"
    tmpl.write_text(TEMPLATE)
    # build the tiny model once, outside the clock
    model_alone(args.model)
    rows = []
    try:
        for r in range(args.repeat):
            alone = model_alone(args.model)
            first, end, line = sdp_run(tmpl, tmp / f"ws{r}", args.model)
            rows.append((alone, first, end, line))
            shutil.rmtree(tmp / f"ws{r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {load}"
    )
    print(f"model {args.model}, 64x64, 10 steps, batch 1; code from {ROOT}")
    print("| repeat | model alone (s) | sdp run: first image (s) | overhead (s) | sdp run: end (s) |")
    print("|---:|---:|---:|---:|---:|")
    for i, (alone, first, end, _line) in enumerate(rows, 1):
        print(f"| {i} | {alone:.2f} | {first:.2f} | {first - alone:+.2f} | {end:.2f} |")
    best = min(rows, key=lambda r: r[1])
    print(f"best first image {best[1]:.2f} s; model alone (best) {min(r[0] for r in rows):.2f} s")
    print(f"last line of sdp run: {rows[-1][3]}")


if __name__ == "__main__":
    main()
