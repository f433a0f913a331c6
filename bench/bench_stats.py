"""`sdp stats` over an experiment of 100,000 samples with 1,000 favourites.

    python bench/bench_stats.py [--samples 100000] [--favourites 1000] [--repeat 5]
                                [--out bench/results/stats.md]

The rows are inserted straight into a fresh run store (no images are made): 6 slots of
3 to 20 values, one of them optional, and a sampled @steps, drawn with the template's
weights, so the choices table looks like a real run's (about 5.5 rows per sample).
Favourites favour two values, so the table has real winners. Then it times, best of
``--repeat``:

* ``experiment_stats`` in this process (the SQL aggregation and the tests);
* ``sdp stats NAME`` as a user runs it (a new process: start-up, imports, table);
* ``sdp stats NAME --json`` and ``--plot``;
* ``sdp refine NAME`` (the stats, plus parsing and rewriting the template).

Target (issue 4): ``sdp stats`` under 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout first
from _template_bench import cpu_model  # bench/ is on the path when run as a script

from stable_discovery.language.program import loads
from stable_discovery.store.database import ExperimentSpec, Store

ROOT = Path(__file__).resolve().parents[1]

TEMPLATE = """\
subject = a cat | a dog | a fox | an owl | a heron | a tortoise | a hare | a lynx
        | a stag | a badger | a crow | a whale
place   = in a forest | on a beach | in space | in the city at night | in a desert
        | on a frozen lake | in a library | underwater | on a mountain top | in a market
        | in the rain | at a train station | in a greenhouse | on the moon | in a cave
        | on a rooftop | in a cathedral | at a funfair | in a wheat field | on a glacier
style   = oil painting | watercolour | vector graphics | art deco | ukiyo-e | photograph
light   = golden hour | neon | overcast | studio
lens    = 35mm | 85mm | macro
prompt  = <subject> <place>, <style>, <light> light, <lens>[, <extra>]
extra   = highly detailed | film grain | bokeh
@steps  = 20 | 30 | 40
@seed   = 1
"""


def machine() -> str:
    cpu = cpu_model()
    import sqlite3

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    commit = (
        subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    return (
        f"- machine: {os.cpu_count()} cores ({usable} usable), {cpu}, Linux {platform.release()}\n"
        f"- python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}\n"
        f"- commit {commit} (plus the working tree); load average at start "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def build(workspace: Path, n: int, favourites: int, seed: int = 7) -> tuple[str, int]:
    """A fresh store with one experiment of ``n`` done samples; returns (name, choice rows)."""
    from stable_discovery.errors import Source
    from stable_discovery.language.parser import parse

    program = loads(TEMPLATE, name="bench.sdp")
    defs = parse(Source("bench.sdp", TEMPLATE)).definitions
    slots = {
        d.name: [a.text for a in d.alternatives]
        for d in defs
        if d.name in program.used_slots and len(d.alternatives) > 1
    }
    steps = [a.text for d in defs if d.is_setting and d.name == "steps" for a in d.alternatives]
    rng = random.Random(seed)
    name = "bench-100k"
    store = Store(workspace)
    exp = store.open_experiment(
        ExperimentSpec(
            name=name,
            template_path="bench.sdp",
            template_text=TEMPLATE,
            wildcards_hash="",
            sampler="random",
            seed=1,
            count=n,
            backend="dummy",
            overrides={},
        )
    )
    now = time.time()
    samples, choices, score = [], [], []
    for i in range(n):
        trace = {k: rng.randrange(len(v)) for k, v in slots.items() if k != "extra"}
        if rng.random() < 0.5:
            trace["extra"] = rng.randrange(len(slots["extra"]))
        step = rng.randrange(len(steps))
        prompt = ", ".join(slots[k][j] for k, j in trace.items())
        settings = json.dumps({"steps": int(steps[step])})
        samples.append((exp.id, i, prompt, "", settings, i, "done", f"{i:06d}.png", 4, 0.1, now))
        for k, j in trace.items():
            choices.append((exp.id, i, k, j, slots[k][j]))
        choices.append((exp.id, i, "steps", step, steps[step]))
        # planted: 'oil painting' and 'golden hour' make favourites more likely
        score.append(1.0 + 1.0 * (trace["style"] == 0) + 0.5 * (trace["light"] == 0))
    scale = favourites / sum(score)
    fav = [i for i in range(n) if rng.random() < score[i] * scale]
    if len(fav) > favourites:  # exactly ``favourites`` of them
        fav = sorted(rng.sample(fav, favourites))
    else:
        chosen = set(fav)
        fav += rng.sample([i for i in range(n) if i not in chosen], favourites - len(fav))
    rejected = rng.sample(range(n), n // 100)
    fav_set = set(fav)
    db = store.db
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO samples (experiment_id, idx, prompt, negative, settings, seed, status, "
        "file, batch_size, seconds, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        samples,
    )
    db.executemany("INSERT INTO choices (experiment_id, idx, name, choice, text) VALUES (?,?,?,?,?)", choices)
    db.executemany(
        "INSERT OR REPLACE INTO ratings (experiment_id, idx, favourite, stars, rejected, updated_at) "
        "VALUES (?, ?, ?, NULL, ?, ?)",
        [(exp.id, i, 1, 0, now) for i in fav]
        + [(exp.id, i, 0, 1, now) for i in rejected if i not in fav_set],
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.execute("ANALYZE")
    store.close()
    return name, len(choices)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--favourites", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stats.md")
    args = ap.parse_args()

    report = machine()
    tmp = Path(tempfile.mkdtemp(prefix="sdp-bench-stats-"))
    try:
        ws = tmp / "ws"
        t = time.perf_counter()
        name, rows = build(ws, args.samples, args.favourites)
        build_s = time.perf_counter() - t

        from stable_discovery.analysis.stats import experiment_stats

        def in_process() -> None:
            with Store(ws) as store:
                experiment_stats(store, name)

        with Store(ws) as store:
            rep = experiment_stats(store, name)
        top = rep.values[0]
        sdp = [sys.executable, "-m", "stable_discovery"]
        env = dict(os.environ, SDP_WORKSPACE=str(ws))

        def cli(*extra: str) -> None:
            subprocess.run(
                [*sdp, *extra], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

        results = [
            ("`experiment_stats()` in process", best(in_process, args.repeat)),
            (f"`sdp stats {name}`", best(lambda: cli("stats", name), args.repeat)),
            (f"`sdp stats {name} --json`", best(lambda: cli("stats", name, "--json"), args.repeat)),
            (
                f"`sdp stats {name} --plot stats.png`",
                best(lambda: cli("stats", name, "--plot", str(tmp / "stats.png")), args.repeat),
            ),
            (f"`sdp refine {name} --drop`", best(lambda: cli("refine", name, "--drop"), args.repeat)),
            (
                "`python -m stable_discovery --version` (start-up alone)",
                best(lambda: cli("--version"), args.repeat),
            ),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = [
        "# `sdp stats` over 100,000 samples",
        "",
        f"Command: `python bench/bench_stats.py --samples {args.samples} --favourites {args.favourites} "
        f"--repeat {args.repeat}`",
        "",
        report,
        "",
        f"Store: {args.samples:,} done samples, {rows:,} choice rows (6 slots of 3-20 values, one "
        f"optional, and @steps), {rep.favourites:,} favourites, {rep.rejected:,} rejected; "
        f"{rep.tested} values tested; built in {build_s:.1f} s (not timed below). "
        f"Top row: {top.label} ({top.favourites}/{top.images}, significant: {top.significant}).",
        "",
        f"Best of {args.repeat}, wall-clock seconds:",
        "",
        "| what | seconds |",
        "| --- | ---: |",
    ]
    lines += [f"| {what} | {secs:.3f} |" for what, secs in results]
    stats_s = results[1][1]
    lines += [
        "",
        f"Target: `sdp stats` under 2 s: {'met' if stats_s < 2 else 'NOT met'} ({stats_s:.2f} s).",
        "",
    ]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
