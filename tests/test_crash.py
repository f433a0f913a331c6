"""Runs killed with SIGKILL at random moments, then resumed, end with exactly the
experiment's images: no duplicates, no orphans, rows and files agreeing."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from stable_discovery.run.pngmeta import read_metadata

TEMPLATE = """\
animal = cat | dog | fox | owl
colour = red | green | blue
prompt = a <colour> <animal>, {studio light|sunset|fog}
@steps = 10 | 20
@size = 64x64
@count = 400
"""
COUNT = 400


def start(tmpl: Path, ws: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stable_discovery",
            "run",
            str(tmpl),
            "--backend",
            "dummy",
            "--batch",
            "4",
            "--name",
            name,
            "--workspace",
            str(ws),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def check_consistent(ws: Path, name: str) -> list[sqlite3.Row]:
    folder = ws / name
    db = sqlite3.connect(ws / "discovery.db")
    db.row_factory = sqlite3.Row
    stored = db.execute(
        "SELECT s.* FROM samples s JOIN experiments e ON e.id = s.experiment_id "
        "WHERE e.name = ? ORDER BY idx",
        (name,),
    ).fetchall()
    files = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
    assert [r["idx"] for r in stored] == sorted({r["idx"] for r in stored})  # no duplicates
    assert all(r["status"] == "done" for r in stored)
    assert files == sorted(r["file"] for r in stored), "files and rows disagree"
    for r in stored:
        _params, record = read_metadata(folder / r["file"])
        assert record["index"] == r["idx"] and record["prompt"] == r["prompt"]
    return stored


@pytest.mark.parametrize("trial", range(3))
def test_killed_runs_resume_to_exactly_count_images(tmp_path: Path, trial: int) -> None:
    tmpl = tmp_path / "zoo.sdp"
    tmpl.write_text(TEMPLATE)
    ws = tmp_path / "ws"
    rng = random.Random(1000 + trial)
    kills = 0
    for _attempt in range(4):
        before = len(list((ws / "zoo").glob("*.png"))) if (ws / "zoo").exists() else 0
        # kill once the run has made a random amount of progress, whatever the machine's speed
        target = before + rng.randrange(1, 80)
        extra = rng.uniform(0.0, 0.02)
        proc = start(tmpl, ws, "zoo")
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            folder = ws / "zoo"
            if folder.exists() and len(list(folder.glob("*.png"))) >= target:
                break
            time.sleep(0.01)
        time.sleep(extra)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # the survivors of each kill are consistent (a sweep happens on the next start)
        leftover_tmp = list((ws / "zoo").glob("*.tmp")) if (ws / "zoo").exists() else []
        assert len(leftover_tmp) <= 4
    final = start(tmpl, ws, "zoo")
    _out, err = final.communicate(timeout=120)
    assert final.returncode == 0, err
    stored = check_consistent(ws, "zoo")
    assert len(stored) == COUNT
    assert kills >= 1, "the run finished before any kill; make the trial slower"

    # the same experiment run cleanly gives the same images
    clean = start(tmpl, ws, "zoo-clean")
    _out, err = clean.communicate(timeout=120)
    assert clean.returncode == 0, err
    for index in rng.sample(range(COUNT), 12):
        name = f"{index:05d}.png"
        with Image.open(ws / "zoo" / name) as a, Image.open(ws / "zoo-clean" / name) as b:
            assert a.tobytes() == b.tobytes()
