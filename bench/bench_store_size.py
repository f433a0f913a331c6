"""Run-store size per 100,000 samples: how many bytes each sample and its trace take.

    python bench/bench_store_size.py [--samples 100000] [--out bench/results/store-size.md]

For each template below, a fresh workspace gets one experiment whose samples (drawn by
the ``random`` sampler, as ``sdp run`` draws them) are recorded through
``Store.record_done`` — the same call the runner makes after each batch — with a file
name per sample, in batches of 1,000. Then the WAL is checkpointed and the database
vacuumed, and its size is read. No image is made: the PNGs are not part of the figure.

Reported per template: trace entries per sample (rows of ``choices``), the database size
in MiB, and bytes per sample. Run it on two commits to compare (same machine, same run).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _template_bench import ROOT, machine_report, table

from stable_discovery.language.program import load, loads
from stable_discovery.plugins import get_sampler
from stable_discovery.store.database import ExperimentSpec, Store

GOLDEN_TEXT = (
    "a Golden Retriever wearing sunglasses {walking on a tropical beach|floating in space|"
    "floating in space with galaxies in the background|floating in space with the moon in the "
    "background|black background|grey background|white background}{|, vector graphics|, art deco}"
    "{|, teal and pink - synthwave style|, teal and pink}"
)

TEMPLATES = {
    "golden (dynamicprompts text)": lambda: loads(GOLDEN_TEXT),
    "examples/golden-glasses.sdp": lambda: load(ROOT / "examples" / "golden-glasses.sdp"),
    "examples/portrait.sdp": lambda: load(ROOT / "examples" / "portrait.sdp"),
    "examples/wildcards-demo.sdp": lambda: load(ROOT / "examples" / "wildcards-demo.sdp"),
}

BATCH = 1000


def measure(label: str, make, samples: int) -> list[str]:
    program = make()
    sampler = get_sampler("random")
    with tempfile.TemporaryDirectory() as tmp:
        workspace = Path(tmp)
        with Store(workspace) as store:
            exp = store.open_experiment(
                ExperimentSpec(
                    name="size",
                    template_path=None,
                    template_text=program.source.text,
                    wildcards_hash="",
                    sampler="random",
                    seed=0,
                    count=samples,
                    backend="dummy",
                    overrides={},
                )
            )
            t0 = time.perf_counter()
            entries = 0
            batch = []
            for sample in sampler.samples(program, 0, samples, 0):
                entries += len(sample.trace)
                batch.append((sample, f"{sample.index:06d}.png", 0.01, 4))
                if len(batch) == BATCH:
                    store.record_done(exp.id, batch)
                    batch = []
            if batch:
                store.record_done(exp.id, batch)
            seconds = time.perf_counter() - t0
        db = sqlite3.connect(workspace / "discovery.db")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("VACUUM")
        db.close()
        size = os.path.getsize(workspace / "discovery.db")
    return [
        label,
        f"{samples:,}",
        f"{entries / samples:.2f}",
        f"{size / 2**20:.1f}",
        f"{size / samples:,.0f}",
        f"{seconds:.1f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = [measure(label, make, args.samples) for label, make in TEMPLATES.items()]
    report = (
        machine_report(("stable-discovery",))
        + "\n\n"
        + table(
            ["template", "samples", "trace entries / sample", "store MiB", "bytes / sample", "record s"],
            rows,
        )
    )
    print(report)
    if args.out is not None:
        args.out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
