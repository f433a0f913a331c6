"""The record of each ``sdp run`` of an experiment (the ``runs`` table): how it was run
(its speed knobs and batch sizes, which change how fast images come but not which
images), how many images it made, in how long, and how long the first one took."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

from stable_discovery.store.migrations import rollback

__all__ = ["start_run", "finish_run", "runs_of"]


def start_run(db: sqlite3.Connection, experiment_id: int, settings: Mapping[str, Any]) -> int:
    """Record that a run of the experiment started with ``settings``; its id."""
    cur = db.execute(
        "INSERT INTO runs (experiment_id, started_at, settings) VALUES (?, ?, ?)",
        (experiment_id, time.time(), json.dumps(dict(settings), sort_keys=True, default=str)),
    )
    return int(cur.lastrowid or 0)


def finish_run(
    db: sqlite3.Connection,
    run_id: int,
    *,
    outcome: str,
    generated: int,
    seconds: float,
    first_image_s: float | None,
    settings: Mapping[str, Any] | None = None,
) -> None:
    """Record how a run ended (``done``, ``stopped`` or ``failed``), with what it made
    and, when given, its settings as they ended up (batch sizes found on the way)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(
            "UPDATE runs SET finished_at = ?, outcome = ?, generated = ?, seconds = ?, first_image_s = ? "
            "WHERE id = ?",
            (time.time(), outcome, generated, seconds, first_image_s, run_id),
        )
        if settings is not None:
            db.execute(
                "UPDATE runs SET settings = ? WHERE id = ?",
                (json.dumps(dict(settings), sort_keys=True, default=str), run_id),
            )
        db.execute("COMMIT")
    except BaseException:
        rollback(db)
        raise


def runs_of(db: sqlite3.Connection, experiment_id: int) -> list[dict[str, Any]]:
    """The runs of an experiment, oldest first, as plain dicts."""
    rows = db.execute(
        "SELECT id, started_at, finished_at, settings, generated, seconds, first_image_s, outcome "
        "FROM runs WHERE experiment_id = ? ORDER BY started_at, id",
        (experiment_id,),
    ).fetchall()
    out = []
    for r in rows:
        item = dict(r)
        item["settings"] = json.loads(item["settings"])
        out.append(item)
    return out
